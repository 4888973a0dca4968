/**
 * How an error reaches the person or the script: one report, printed either as text on stderr
 * (`Error: ...`, `Hint: ...`) or, with --json, as one JSON object on stdout and nothing on stderr.
 * The commands (base-command.ts) and the prerun hook (prerun-checks.ts) both print through here,
 * so an error from oclif's flag parser, from the hook and from the work itself look the same.
 * Pure, but for `printError`.
 */
import {CriuPluginError, EXIT_FAILED, EXIT_REFUSED, RefusedError} from './errors.js'

/**
 * A flag error written by the plugin's own parse functions (join-ns.ts's JoinNsError), which the
 * hook and the commands print as it is. Known by its shape, not by instanceof: the prerun hook's
 * checks meet the errors that a command bundle's own copy of the class throws (each is its own
 * bundle: scripts/bundle.mjs).
 */
export function userFacingMessage(error: unknown): string | undefined {
  const e = error as {name?: unknown; userMessage?: unknown} | null | undefined
  return e?.name === 'JoinNsError' && typeof e.userMessage === 'string' ? e.userMessage : undefined
}

/** What --json prints for an error, under `error`. */
export interface ErrorReport {
  /** The exit code the process ends with: 2 refused, 1 failed, 130 interrupted. */
  exitCode: number
  /** One line on what to do about it, when there is one. */
  hint?: string
  /** CRIU's log, when CRIU ran. */
  logFile?: string
  /** What was wrong, naming the flag and the token; may have more than one line. */
  message: string
  /** Which CRIU ran (version, path, why that one), when CRIU ran and failed. */
  ran?: string
}

/** oclif's parser ends its messages with this line; the report makes it the hint. */
const SEE_HELP = /\n?See more help with --help\s*$/
/** oclif's words around an error thrown by a flag's own parse function. */
const PARSING_FLAG = /^Parsing (--[\w-]+) \n\t/

/** An error oclif throws to end the process with a code, having printed what it had to. */
export function isExit(error: unknown): boolean {
  const e = error as {code?: unknown; oclif?: {exit?: unknown}}
  return typeof e?.oclif?.exit === 'number' && e.code === 'EEXIT'
}

/**
 * The report for any error a command can end with. `help` is how this CLI spells the command's
 * --help (`mycli restore --help`), for the hint of an option oclif's parser refused.
 */
export function reportOf(error: unknown, help?: string): ErrorReport {
  if (error instanceof CriuPluginError) {
    return withoutUndefined({exitCode: error.exitCode, hint: error.hint, logFile: error.logFile, message: error.message, ran: error.ran})
  }

  const e = (error ?? {}) as {message?: unknown; oclif?: {exit?: unknown}; userMessage?: unknown}
  // A flag value the plugin parses (JoinNsError): oclif prefixes its message with its own words.
  if (typeof e.userMessage === 'string') return withoutUndefined({exitCode: EXIT_REFUSED, hint: undefined, message: e.userMessage})
  const raw = typeof e.message === 'string' && e.message !== '' ? e.message : String(error)
  const fromParser = SEE_HELP.test(raw) || PARSING_FLAG.test(raw)
  const message = raw.replace(SEE_HELP, '').replace(PARSING_FLAG, '$1: ').trim()
  const exit = typeof e.oclif?.exit === 'number' ? e.oclif.exit : (fromParser ? EXIT_REFUSED : EXIT_FAILED)
  return withoutUndefined({exitCode: exit, hint: fromParser && help ? `see \`${help}\`` : undefined, message})
}

/** An error of the command line's parser as the refusal it is: exit 2, its message and hint as reportOf gives them. */
export function refusalOf(error: unknown, help?: string): CriuPluginError {
  if (error instanceof CriuPluginError) return error
  const report = reportOf(error, help)
  return new RefusedError(report.message, report.hint ?? (help ? `see \`${help}\`` : undefined))
}

/** The text for stderr: `Error: ` and the message as it is (never wrapped), then `Hint: `. */
export function errorText(report: ErrorReport): string {
  return `Error: ${report.message}\n${report.hint ? `Hint: ${report.hint}\n` : ''}`
}

/**
 * The object --json prints: `{"error": {...}}`, the same for every command and every stage.
 * Each fact once: the message loses its `Ran: ...` and `Log: ...` lines, which `ran` and
 * `logFile` carry (the text on stderr keeps them).
 */
export function errorJson(report: ErrorReport): {error: ErrorReport} {
  const repeated = new Set([report.logFile === undefined ? undefined : `Log: ${report.logFile}`, report.ran === undefined ? undefined : `Ran: ${report.ran}`])
  const message = report.message.split('\n').filter(line => !repeated.has(line)).join('\n')
  return {error: {...report, message}}
}

/** JSON as the plugin prints it: indented, never coloured, one object, a final newline. */
export function jsonText(value: unknown): string {
  return `${JSON.stringify(value, null, 2)}\n`
}

/**
 * Whether the user asked for JSON, as oclif's Command.jsonEnabled() decides it (so that the hook
 * decides the same as the command will): the command takes --json, and --json comes before any
 * `--`, or the host's `<BIN>_CONTENT_TYPE` is json.
 */
export function wantsJson(argv: readonly string[], enableJsonFlag: boolean | undefined, contentType?: string): boolean {
  if (!enableJsonFlag) return false
  if (contentType?.toLowerCase() === 'json') return true
  const json = argv.indexOf('--json')
  const end = argv.indexOf('--')
  return json !== -1 && (end === -1 || json < end)
}

/** Print the report where it belongs. The caller then ends the process with report.exitCode. */
export function printError(report: ErrorReport, json: boolean): void {
  if (json) process.stdout.write(jsonText(errorJson(report)))
  else process.stderr.write(errorText(report))
}

function withoutUndefined(report: ErrorReport): ErrorReport {
  return Object.fromEntries(Object.entries(report).filter(([, v]) => v !== undefined)) as unknown as ErrorReport
}
