/**
 * Colour where it carries meaning, never where it is not wanted or cannot be seen: chalk's own
 * detection (a terminal, FORCE_COLOR) plus NO_COLOR (no-color.org), which chalk does not read.
 * --json output never goes through here.
 *
 * chalk is loaded only where it could colour at all. Where its detection is certain to say "no
 * colour" (the stream is not a terminal, and neither FORCE_COLOR nor a --color flag nor Azure
 * Pipelines says otherwise), the text stays plain without it: chalk 5 is ESM, and requiring it
 * from this CommonJS build costs about 12 ms per command on Node 20.
 */
import {isatty} from 'node:tty'

type Paint = (text: string) => string

/** The colours the commands use; chalk's instances have them. */
export interface Colours {
  readonly green: Paint
  readonly red: Paint
  readonly yellow: Paint
}

const same: Paint = text => text
const PLAIN: Colours = {green: same, red: same, yellow: same}

/**
 * Whether chalk's detection (its vendored supports-color) could give this stream any colour.
 * false only where it certainly gives none; otherwise chalk decides. Pure.
 */
export function mayColour(streamIsTTY: boolean, env: NodeJS.ProcessEnv, argv: readonly string[]): boolean {
  if (streamIsTTY || 'FORCE_COLOR' in env) return true
  if ('TF_BUILD' in env && 'AGENT_NAME' in env) return true
  return argv.some(a => /^--(no-)?colors?(=|$)/.test(a))
}

function chalk(): typeof import('chalk') {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require('chalk') as typeof import('chalk')
}

/** Colours for text written to stdout. */
export function stdoutColours(env: NodeJS.ProcessEnv = process.env, argv: readonly string[] = process.argv): Colours {
  if (env.NO_COLOR || !mayColour(isatty(1), env, argv)) return PLAIN
  return new (chalk().Chalk)()
}

/** Colours for text written to stderr (warnings, errors). */
export function stderrColours(env: NodeJS.ProcessEnv = process.env, argv: readonly string[] = process.argv): Colours {
  if (env.NO_COLOR || !mayColour(isatty(2), env, argv)) return PLAIN
  return chalk().chalkStderr
}
