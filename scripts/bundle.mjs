#!/usr/bin/env node
// Bundles each command, with the plugin's own modules it needs, into one file in place of what
// tsc wrote to dist/src/commands (run after `tsc -b`, by `npm run build:ts`); and the same for
// the prerun hook's checks (dist/src/lib/prerun-checks.js), which the hook loads for our commands
// only. A restore required some thirty modules of ours one by one: resolving, reading and
// wrapping each took 17 ms of every restore here (Node 20; 20 ms on Node 24), one file 12.5 ms.
// Bundled from the TypeScript sources, so a change in src/lib reaches every bundle even when tsc
// re-emits only that file. Packages (@oclif/core, xxhash-wasm, ...) stay outside; the native
// module is found at run time (src/lib/package-root.ts). The rest of dist/src/lib keeps tsc's
// files, which the tests load.
import {build} from 'esbuild'
import {readdirSync} from 'node:fs'
import {dirname, join, relative} from 'node:path'
import {fileURLToPath} from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
const commands = join(root, 'src', 'commands')
const entryPoints = readdirSync(commands, {recursive: true})
.filter(f => f.endsWith('.ts'))
.map(f => join(commands, f))

const options = {
  absWorkingDir: root,
  bundle: true,
  format: 'cjs',
  logLevel: 'warning',
  packages: 'external',
  platform: 'node',
  sourcemap: 'linked',
  sourcesContent: true,
  target: 'node20',
  tsconfig: join(root, 'tsconfig.json'),
}
await build({...options, entryPoints, outbase: commands, outdir: join(root, 'dist', 'src', 'commands')})
await build({...options, entryPoints: [join(root, 'src', 'lib', 'prerun-checks.ts')], outfile: join(root, 'dist', 'src', 'lib', 'prerun-checks.js')})
process.stderr.write(`bundled ${entryPoints.length} commands (${entryPoints.map(f => relative(commands, f)).join(', ')}) and the hook's checks\n`)
