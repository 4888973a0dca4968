/**
 * What the plugin's commands share: the marker the prerun hook looks for, turning the
 * plugin's errors into one message with the documented exit code (never a stack trace), exiting
 * in a way every host CLI understands, and the host's own names for the plugin's commands.
 */
import {Command, Errors, Interfaces, ux} from '@oclif/core'

import type {CriuIO} from './criu-run.js'

import {commandLine, useCliNames} from './cli-names.js'
import {stderrColours} from './colour.js'
import {isExit, jsonText, printError, refusalOf, reportOf} from './error-output.js'

type FlagOutput = Interfaces.OutputFlags<Interfaces.FlagInput>
type ArgOutput = Interfaces.OutputArgs<Interfaces.ArgInput>

export abstract class CriuCommand extends Command {
  /**
   * The prerun hook checks join options only for commands that carry this marker: 'criu' when
   * CRIU does the joining (its limits apply), 'plain' when the plugin joins by itself.
   */
  static readonly criuJoinChecks: 'criu' | 'plain' = 'criu'

  /**
   * A host CLI recognises oclif's exit error by `instanceof` against its own @oclif/core, and
   * `plugins install` gives the plugin a copy of its own: the host then prints the exit as
   * "Error: EEXIT: N". Every host since core 2 also skips, silently, an error marked
   * skipOclifErrorHandling and exits with its `oclif.exit` (core 4 and 5: errors/handle.js).
   */
  override exit(code = 0): never {
    const exit = new Errors.ExitError(code)
    exit.skipOclifErrorHandling = true
    throw exit
  }

  override async init(): Promise<void> {
    await super.init()
    useCliNames({bin: this.config.bin, topicSeparator: this.config.topicSeparator})
  }

  /**
   * How a long CRIU run talks to the terminal: a spinner on a TTY only (quiet in pipes, CI and
   * --json), and SIGINT/SIGTERM passed on to stop CRIU for as long as it runs.
   */
  protected criuIO(): CriuIO {
    const spinner = Boolean(process.stderr.isTTY) && !this.jsonEnabled()
    return {
      onSignal(handler) {
        process.on('SIGINT', handler)
        process.on('SIGTERM', handler)
        return () => {
          process.off('SIGINT', handler)
          process.off('SIGTERM', handler)
        }
      },
      progress(state, text) {
        if (!spinner) return
        if (state === 'start') ux.action.start(text)
        else ux.action.stop(text)
      },
    }
  }

  /**
   * Every error of the plugin's commands, oclif's parser's included, ends here: printed once, as
   * text on stderr or (with --json) as one JSON object on stdout, then the process exits with the
   * error's code. oclif's own printer is not used: it hard-wraps at the terminal width inside
   * words and paths, and with --json it dumps the parser's whole context.
   */
  /** One warning line on stderr, never wrapped, like the errors; with --json the result carries it instead. */
  protected warning(text: string): void {
    if (!this.jsonEnabled()) process.stderr.write(`${stderrColours().yellow('Warning:')} ${text}\n`)
  }

  protected override async catch(error: Error & {exitCode?: number}): Promise<unknown> {
    if (isExit(error)) throw error
    if (ux.action.running) ux.action.stop('failed')

    const report = reportOf(error, commandLine(this.id ?? '', '--help'))
    printError(report, this.jsonEnabled())
    return this.exit(report.exitCode)
  }

  /**
   * Whatever the parser throws is a refusal before anything started (exit 2), also where oclif
   * marks no exit code: an argument's own parse function (Args.integer) throws a plain Error.
   */
  protected override async parse<F extends FlagOutput, B extends FlagOutput, A extends ArgOutput>(
    options?: Interfaces.Input<F, B, A>,
    argv?: string[],
  ): Promise<Interfaces.ParserOutput<F, B, A>> {
    try {
      return await super.parse(options, argv)
    } catch (error) {
      throw refusalOf(error, commandLine(this.id ?? '', '--help'))
    }
  }

  /** JSON on stdout as every outcome prints it: plain (never coloured), one object. */
  override logJson(json: unknown): void {
    process.stdout.write(jsonText(json))
  }
}
