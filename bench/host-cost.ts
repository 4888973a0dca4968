/**
 * What the plugin costs a host CLI's own commands: the host's trivial `hello` with the plugin
 * installed (plugins install file:<tarball>, as users do) vs without it, interleaved, medians.
 * Also the same host with the hook as it was before it was split (the checks and @oclif/core
 * loaded eagerly), to show what the split saves. `npm run bench:host`; `--quick` runs fewer rounds.
 *
 *   examples/hostctl: @oclif/core 5, plugin-plugins 7, on Node 24 (the newest host; target <= 1.03)
 *   examples/mycli:   @oclif/core 4, plugin-plugins 5, on this machine's Node
 */
import {execFileSync, spawnSync} from 'node:child_process'
import {existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'

const REPO = join(__dirname, '..', '..')

interface Host {
  bin: string
  dir: string
  node: string
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[(s.length / 2) - 1] + s[s.length / 2]) / 2
}

function nodeMajor(major: number): string {
  return execFileSync('bash', [join(REPO, 'scripts', 'fetch-node.sh'), String(major)], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit']}).trim().split('\n').pop()!
}

/** The hook as it was: the checks (and with them the plugin's @oclif/core) loaded with the hook file. */
const EAGER_HOOK = `"use strict";
Object.defineProperty(exports, "__esModule", {value: true});
const checks = require("../lib/prerun-checks.js");
exports.default = async function (options) {
  const marker = options.Command.criuJoinChecks;
  if (marker !== "criu" && marker !== "plain") return;
  await checks.checkJoinOptions.call(this, options, marker);
};
`

/** Host env with its own data/cache/config folders under `home`. */
function hostEnv(host: Host, home: string): NodeJS.ProcessEnv {
  const prefix = host.bin.toUpperCase()
  mkdirSync(home, {recursive: true})
  return {
    ...process.env,
    [`${prefix}_CACHE_DIR`]: join(home, 'cache'),
    [`${prefix}_CONFIG_DIR`]: join(home, 'config'),
    [`${prefix}_DATA_DIR`]: join(home, 'data'),
    PATH: `${dirname(host.node)}:${process.env.PATH}`,
  }
}

function timeMs(host: Host, env: NodeJS.ProcessEnv): number {
  const t0 = process.hrtime.bigint()
  const r = spawnSync(host.node, [join(host.dir, 'bin', 'run.js'), 'hello'], {encoding: 'utf8', env})
  const ms = Number(process.hrtime.bigint() - t0) / 1e6
  if (r.status !== 0 || r.stdout.trim() !== 'hello') throw new Error(`${host.bin} hello failed: ${r.stderr}`)
  return ms
}

export function benchHostCost(report: (line: string) => void, quick: boolean, label = ''): void {
  const work = mkdtempSync(join(tmpdir(), 'oclif-plugin-criu-bench-'))
  try {
    execFileSync('npm', ['pack', '--ignore-scripts', '--pack-destination', work], {cwd: REPO, stdio: 'ignore'})
    const tarball = join(work, readdirSync(work).find(f => f.endsWith('.tgz'))!)
    const hosts: Host[] = [
      {bin: 'hostctl', dir: join(REPO, 'examples', 'hostctl'), node: nodeMajor(24)},
      {bin: 'mycli', dir: join(REPO, 'examples', 'mycli'), node: process.execPath},
    ]
    const rounds = quick ? 15 : 41
    report(`${label}host CLI's own command (hello) with the plugin installed vs without (median of ${rounds} interleaved runs):`)
    for (const host of hosts) {
      if (!existsSync(join(host.dir, 'node_modules'))) {
        execFileSync('npm', ['ci', '--no-audit', '--no-fund'], {cwd: host.dir, env: hostEnv(host, join(work, 'npm')), stdio: 'ignore'})
      }

      const without = hostEnv(host, join(work, host.bin, 'without'))
      const withPlugin = hostEnv(host, join(work, host.bin, 'with'))
      const eager = hostEnv(host, join(work, host.bin, 'eager'))
      const run = join(host.dir, 'bin', 'run.js')
      const plugins = host.bin === 'hostctl' ? ['plugins:install'] : ['plugins', 'install']
      for (const env of [withPlugin, eager]) execFileSync(host.node, [run, ...plugins, `file:${tarball}`], {env, stdio: 'ignore'})
      writeFileSync(join(eager[`${host.bin.toUpperCase()}_DATA_DIR`]!, 'node_modules', 'oclif-plugin-criu', 'dist', 'src', 'hooks', 'prerun.js'), EAGER_HOOK)

      for (const env of [without, withPlugin, eager]) timeMs(host, env) // warm the page cache
      const a: number[] = []
      const b: number[] = []
      const c: number[] = []
      const sides: [number[], NodeJS.ProcessEnv][] = [[b, without], [a, withPlugin], [c, eager]]
      for (let i = 0; i < rounds; i++) {
        // Interleaved, and the order rotates each round so that no side always runs first.
        for (let k = 0; k < sides.length; k++) {
          const [samples, env] = sides[(i + k) % sides.length]
          samples.push(timeMs(host, env))
        }
      }

      const [x, y, z] = [median(a), median(b), median(c)]
      const version = execFileSync(host.node, ['--version'], {encoding: 'utf8'}).trim()
      report(`   ${host.bin} (Node ${version}): without ${y.toFixed(1)} ms, with ${x.toFixed(1)} ms, ratio ${(x / y).toFixed(3)}${host.bin === 'hostctl' ? ' (target <= 1.03)' : ''}; the eager hook as before: ${z.toFixed(1)} ms, ratio ${(z / y).toFixed(3)}`)
    }
  } finally {
    rmSync(work, {force: true, recursive: true})
  }
}

if (require.main === module) {
  benchHostCost(line => console.log(line), process.argv.includes('--quick'))
}
