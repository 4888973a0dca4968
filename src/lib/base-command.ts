/**
 * What the plugin's commands share: the marker the prerun hook looks for, and turning the
 * plugin's errors into one message with the documented exit code (never a stack trace).
 */
import {Command} from '@oclif/core'

import {CriuPluginError, EXIT_REFUSED} from './errors.js'
import {userFacingMessage} from './flags.js'

export abstract class CriuCommand extends Command {
  /**
   * The prerun hook checks join options only for commands that carry this marker: 'criu' when
   * CRIU does the joining (its limits apply), 'plain' when the plugin joins by itself.
   */
  static readonly criuJoinChecks: 'criu' | 'plain' = 'criu'

  protected override async catch(error: Error & {exitCode?: number}): Promise<unknown> {
    const flagMessage = userFacingMessage(error)
    if (flagMessage) this.error(flagMessage, {exit: EXIT_REFUSED})
    if (error instanceof CriuPluginError) {
      const message = error.hint ? `${error.message}\nHint: ${error.hint}` : error.message
      if (this.jsonEnabled()) {
        this.logJson({error: {exitCode: error.exitCode, hint: error.hint, message: error.message}})
        this.exit(error.exitCode)
      }

      this.error(message, {exit: error.exitCode})
    }

    return super.catch(error)
  }
}
