/**
 * The prerun hook's work for the plugin's own commands (src/hooks/prerun.ts decides which):
 * refuse conflicting namespace options before the command runs. Loads no native code.
 */
import {Flags, Hook, Parser} from '@oclif/core'

import {findProblems} from '../lib/checks.js'
import {EXIT_REFUSED} from '../lib/errors.js'
import {userFacingMessage} from '../lib/flags.js'

export async function checkJoinOptions(
  this: Hook.Context,
  {argv, Command}: Parameters<Hook.Prerun>[0],
  checks: 'criu' | 'plain',
): Promise<void> {
  let flags: Record<string, unknown>
  try {
    ({flags} = await Parser.parse(argv, {
      args: Command.args,
      flags: {...Command.baseFlags, ...Command.flags, ...(Command.enableJsonFlag ? {json: Flags.boolean()} : {})},
      strict: Command.strict,
    }))
  } catch (error) {
    const message = userFacingMessage(error)
    if (message) this.error(message, {exit: EXIT_REFUSED})
    return // other parse errors are the command's to report, in oclif's words
  }

  const problems = findProblems({
    allowUserNs: flags['allow-user-ns'] as boolean | undefined,
    emptyNs: flags['empty-ns'] as never,
    forCriu: checks === 'criu',
    joinNs: flags['join-ns'] as never,
  })
  for (const p of problems) if (p.severity === 'warning') this.warn(p.message)
  const errors = problems.filter(p => p.severity === 'error')
  if (errors.length > 0) this.error(errors.map(p => p.message).join('\n'), {exit: EXIT_REFUSED})
}
