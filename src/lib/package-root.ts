/**
 * The plugin's own folder (the one with its package.json), for the files it ships beside its code:
 * the native module, package.json, the provisioning script. Found by walking up from this code's
 * folder, which is dist/src/lib when tsc compiled it and dist/src/commands/... inside a command
 * bundle (scripts/bundle.mjs), at another depth for ns and criu commands.
 */
import {existsSync, readFileSync} from 'node:fs'
import {dirname, join} from 'node:path'

const NAME = 'oclif-plugin-criu'

let found: string | undefined

function isOurs(dir: string): boolean {
  const file = join(dir, 'package.json')
  if (!existsSync(file)) return false
  try {
    return (JSON.parse(readFileSync(file, 'utf8')) as {name?: unknown}).name === NAME
  } catch {
    return false
  }
}

/** The folder holding the plugin's package.json, the nearest one above this code. */
export function packageRoot(): string {
  if (found) return found
  for (let dir = __dirname; ; dir = dirname(dir)) {
    if (isOurs(dir)) {
      found = dir
      return dir
    }

    if (dirname(dir) === dir) throw new Error(`${NAME}: no package.json of ours above ${__dirname}`)
  }
}
