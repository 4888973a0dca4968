/**
 * The prerun hook's work for the plugin's own commands (src/hooks/prerun.ts decides which):
 * refuse conflicting namespace options before the command runs. Loads no native code.
 * A refusal is printed as the commands print theirs (error-output.ts): text on stderr, or with
 * --json one JSON object on stdout; oclif would print a hook's error as text, --json or not.
 */
import {Errors, Flags, Hook, Parser} from '@oclif/core'

import {findProblems, hintOf} from '../lib/checks.js'
import {commandLine, useCliNames} from '../lib/cli-names.js'
import {printError, reportOf, userFacingMessage, wantsJson} from '../lib/error-output.js'
import {RefusedError} from '../lib/errors.js'

export async function checkJoinOptions(
  this: Hook.Context,
  {argv, Command}: Parameters<Hook.Prerun>[0],
  checks: 'criu' | 'plain',
): Promise<void> {
  // The hook runs before the command's init(): messages name commands in this host's words.
  useCliNames({bin: this.config.bin, topicSeparator: this.config.topicSeparator})
  const json = wantsJson(argv, Command.enableJsonFlag, this.config.scopedEnvVar?.('CONTENT_TYPE'))
  const refuse = (error: unknown): never => {
    const report = reportOf(error, commandLine(Command.id, '--help'))
    printError(report, json)
    // Ends the command: the host's runHook passes on an error with oclif.exit, and its handler
    // exits with that code without printing anything more.
    const exit = new Errors.ExitError(report.exitCode)
    exit.skipOclifErrorHandling = true
    throw exit
  }

  let flags: Record<string, unknown>
  try {
    ({flags} = await Parser.parse(argv, {
      args: Command.args,
      flags: {...Command.baseFlags, ...Command.flags, ...(Command.enableJsonFlag ? {json: Flags.boolean()} : {})},
      strict: Command.strict,
    }))
  } catch (error) {
    if (userFacingMessage(error)) refuse(error)
    return // other parse errors are the command's to report (its catch prints them the same way)
  }

  const problems = findProblems({
    allowUserNs: flags['allow-user-ns'] as boolean | undefined,
    emptyNs: flags['empty-ns'] as never,
    forCriu: checks === 'criu',
    joinNs: flags['join-ns'] as never,
  })
  // A refused command prints only its refusal: no warning about what it will not do.
  const errors = problems.filter(p => p.severity === 'error')
  if (errors.length > 0) refuse(new RefusedError(errors.map(p => p.message).join('\n'), hintOf(errors)))
  // With --json the command puts the warnings into its JSON (restore: `warnings`).
  if (!json) for (const p of problems) process.stderr.write(`Warning: ${p.message}\n`)
}
