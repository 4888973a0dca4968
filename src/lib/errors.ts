/**
 * Errors as values for the person at the terminal. Each carries the exit code the commands
 * document: 2 when the request was refused before anything started, 1 when the work was
 * tried and failed (or the machine cannot do it), 130 when interrupted.
 */
export const EXIT_REFUSED = 2
export const EXIT_FAILED = 1
export const EXIT_INTERRUPTED = 130

export class CriuPluginError extends Error {
  /** CRIU's log, when CRIU ran and wrote one: set where the run fails, printed with the error. */
  logFile?: string
  /** Which CRIU ran (version, path, why that one), when CRIU had started: --json's `ran`. */
  ran?: string
  override name = 'CriuPluginError'

  constructor(
    message: string,
    readonly exitCode: number,
    /** One line on what to do about it. */
    readonly hint?: string,
  ) {
    super(message)
  }
}

/** The request was refused: bad flags, conflicting options, targets that are not what they should be. */
export class RefusedError extends CriuPluginError {
  override name = 'RefusedError'

  constructor(message: string, hint?: string) {
    super(message, EXIT_REFUSED, hint)
  }
}

/** The work was tried and failed, or this machine cannot do it. */
export class FailedError extends CriuPluginError {
  override name = 'FailedError'

  constructor(
    message: string,
    hint?: string,
    /** CRIU's log, when there is one to read. */
    logFile?: string,
  ) {
    super(message, EXIT_FAILED, hint)
    if (logFile) this.logFile = logFile
  }
}

export class InterruptedError extends CriuPluginError {
  override name = 'InterruptedError'

  constructor(message: string) {
    super(message, EXIT_INTERRUPTED)
  }
}
