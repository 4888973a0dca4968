/**
 * Runs before every command of the host CLI, the host's own included: it must cost those nearly
 * nothing. So this file imports nothing at run time; it tells "not ours" by the marker our
 * commands carry and only then loads the checks (and the plugin's @oclif/core with them).
 */
import type {Hook} from '@oclif/core'

const hook: Hook.Prerun = async function (options) {
  const checks = (options.Command as {criuJoinChecks?: unknown}).criuJoinChecks
  if (checks !== 'criu' && checks !== 'plain') return
  // require, not import(): oclif's ESM loader would parse this CommonJS file again (about 4 ms).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const {checkJoinOptions} = require('../lib/prerun-checks.js') as typeof import('../lib/prerun-checks.js')
  await checkJoinOptions.call(this, options, checks)
}

export default hook
