/**
 * The `--join-ns` grammar: NS:PID|NS_FILE[:UID[:GID]] (CRIU's NS:TARGET[,UID[,GID]] too).
 * Pure: no file system, no process state; relative paths resolve against the cwd passed in.
 */
import {posix} from 'node:path'

import {
  joinableBy, JoinUse, namespaceByName, NamespaceDesc, namesOf, whyNotJoinable,
} from './namespaces.js'

/** Linux's PID_MAX_LIMIT on 64-bit: no PID is larger. */
export const PID_MAX = 4_194_304
/** (uid_t)-1 means "no change" to the kernel, so the largest usable ID is one less. */
export const ID_MAX = 4_294_967_294

export const JOIN_NS_GRAMMAR = 'NS:PID|NS_FILE[:UID[:GID]]'
export const JOIN_NS_EXAMPLES = ['net:1234', 'uts:/run/netns/blue', 'user:1234:1000:1000']

/** A process whose /proc/PID/ns/* is joined. */
export interface PidTarget {
  readonly kind: 'pid'
  readonly pid: number
  /**
   * The process's start time (/proc/PID/stat field 22, clock ticks after boot) as a container
   * runtime recorded it: pinning refuses a PID that now names another process.
   */
  readonly startTime?: number
}

export type JoinTargetRef = {readonly kind: 'path'; readonly path: string} | PidTarget

/**
 * One parsed `--join-ns` value. Downstream code never looks at the original string again, but
 * for messages (`given`).
 */
export interface JoinNsSpec {
  /** Where the join came from when not from -J, for messages: `--join-container "web"`. */
  readonly from?: string
  readonly gid?: number
  /** The -J value as the user typed it (a relative path stays relative), for messages. */
  readonly given?: string
  readonly ns: NamespaceDesc
  readonly target: JoinTargetRef
  readonly uid?: number
}

/** A `--join-ns` value that does not follow the grammar. `reason` is the part after the token. */
export class JoinNsError extends Error {
  override name = 'JoinNsError'
  /** The message as written here; oclif's parser prefixes `message` with its own words. */
  readonly userMessage: string

  constructor(
    readonly token: string,
    readonly reason: string,
    readonly flag = '--join-ns',
  ) {
    super(`${flag} ${quote(token)}: ${reason}`)
    this.userMessage = this.message
  }
}

/** Longest part of a token or path a message repeats; the rest is elided. */
export const MESSAGE_TOKEN_MAX = 120

/** Quote a token for a message so that spaces, newlines and non-printables stay visible. */
export function quote(token: string): string {
  if (token.length <= MESSAGE_TOKEN_MAX) return JSON.stringify(token)
  return `${JSON.stringify(token.slice(0, MESSAGE_TOKEN_MAX)).slice(0, -1)}..." (${token.length} characters)`
}

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u001F\u007F]/
const NUMBERISH = /^\s*[+-]?\d+\s*$/

function parsePid(token: string, text: string): number {
  if (!/^\d+$/.test(text) || Number(text) < 1 || Number(text) > PID_MAX) {
    throw new JoinNsError(token, `PID ${quote(text)} is not a whole number from 1 to ${PID_MAX} (to name a file whose name is a number, write ./${text.trim()})`)
  }

  return Number(text)
}

function parseId(token: string, what: 'GID' | 'UID', text: string): number {
  if (text === '') throw new JoinNsError(token, `empty ${what} (leave out UID and GID, or give numbers: user:PID:1000:1000)`)
  if (!/^\d+$/.test(text) || Number(text) > ID_MAX) {
    throw new JoinNsError(token, `${what} ${quote(text)} is not a whole number from 0 to ${ID_MAX}`)
  }

  return Number(text)
}

function parseTarget(token: string, text: string, cwd: string): JoinTargetRef {
  if (text === '') throw new JoinNsError(token, `missing target (expected a PID or a namespace file: ${JOIN_NS_GRAMMAR})`)
  if (CONTROL.test(text)) throw new JoinNsError(token, 'the target contains a control character (newline, tab, ...)')
  if (NUMBERISH.test(text)) return {kind: 'pid', pid: parsePid(token, text)}
  return {kind: 'path', path: posix.resolve(cwd, text)}
}

/**
 * Parse one `--join-ns` value.
 *
 * For `user`, the first `:` or `,` after the type's colon ends the target and starts
 * UID[:GID] (one separator kind per value). So a user-namespace file whose path contains
 * `:` or `,` must be given through a symlink. For every other type the whole rest after the
 * first colon is the target, and any path works.
 */
export function parseJoinNs(token: string, cwd: string, use: JoinUse = 'restore'): JoinNsSpec {
  const colon = token.indexOf(':')
  if (colon === -1) {
    throw new JoinNsError(token, `missing ":" between namespace type and target (expected ${JOIN_NS_GRAMMAR}, e.g. net:1234)`)
  }

  const typeName = token.slice(0, colon)
  const rest = token.slice(colon + 1)
  if (typeName === '') throw new JoinNsError(token, `missing namespace type before ":" (expected one of: ${namesOf(joinableBy(use))})`)
  const ns = namespaceByName(typeName)
  if (!ns) throw new JoinNsError(token, `unknown namespace ${quote(typeName)} (expected one of: ${namesOf(joinableBy(use))})`)
  const refused = whyNotJoinable(ns, use)
  if (refused) throw new JoinNsError(token, refused)

  if (ns.name !== 'user') {
    if (/^\s*\d+\s*[:,]/.test(rest)) {
      throw new JoinNsError(token, `UID/GID options are accepted only for user (expected ${ns.name}:PID or ${ns.name}:NS_FILE)`)
    }

    return {given: token, ns, target: parseTarget(token, rest, cwd)}
  }

  const m = /^([^:,]*)(?:([:,])([^:,]*)(?:\2([^:,]*))?)?$/.exec(rest)
  if (!m) {
    throw new JoinNsError(token, 'expected user:PID|NS_FILE[:UID[:GID]] with one kind of separator, e.g. user:1234:1000:1000')
  }

  const [, targetText, , uidText, gidText] = m
  const target = parseTarget(token, targetText, cwd)
  if (uidText === undefined) return {given: token, ns, target}
  const uid = parseId(token, 'UID', uidText)
  if (gidText === undefined) return {given: token, ns, target, uid}
  return {
    gid: parseId(token, 'GID', gidText), given: token, ns, target, uid,
  }
}

/** The canonical text of a target: the PID, or the absolute path. */
export function formatTarget(target: JoinTargetRef): string {
  return target.kind === 'pid' ? String(target.pid) : target.path
}

/** The canonical `--join-ns` text of a spec; parseJoinNs(formatJoinNs(s)) equals s. */
export function formatJoinNs(spec: JoinNsSpec): string {
  let text = `${spec.ns.name}:${formatTarget(spec.target)}`
  if (spec.uid !== undefined) text += `:${spec.uid}`
  if (spec.gid !== undefined) text += `:${spec.gid}`
  return text
}

/** The -J value as typed, else its canonical text. */
export function typedJoinNs(spec: JoinNsSpec): string {
  return spec.given ?? formatJoinNs(spec)
}

/**
 * How messages name a join: the -J value as typed (what resolved from it, such as a relative
 * path made absolute, the message says after it), or the flag it came from and what it resolved to.
 */
export function joinLabel(spec: JoinNsSpec): string {
  return spec.from ? `${spec.from} (${formatJoinNs(spec)})` : `--join-ns ${quote(typedJoinNs(spec))}`
}
