/**
 * Colour where it carries meaning, never where it is not wanted or cannot be seen: chalk's own
 * detection (a terminal, FORCE_COLOR) plus NO_COLOR (no-color.org), which chalk does not read.
 * --json output never goes through here.
 */
// Named imports only: chalk 5 is ESM, required from this CommonJS build, where a default
// import would go through interop helpers.
// eslint-disable-next-line unicorn/import-style
import {Chalk, ChalkInstance, chalkStderr} from 'chalk'

/** What the functions below return: chalk's colours, or none. */
export type Colours = ChalkInstance

const plain = new Chalk({level: 0})

/** Colours for text written to stdout. */
export function stdoutColours(env: NodeJS.ProcessEnv = process.env): ChalkInstance {
  return env.NO_COLOR ? plain : new Chalk()
}

/** Colours for text written to stderr (warnings, errors). */
export function stderrColours(env: NodeJS.ProcessEnv = process.env): ChalkInstance {
  return env.NO_COLOR ? plain : chalkStderr
}
