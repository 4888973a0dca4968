/**
 * Checks over parsed restore options that no single flag can make alone. Pure: the prerun
 * hook runs them before the command starts, and the restore library runs them again for
 * callers that do not go through oclif.
 */
import {commandLine} from './cli-names.js'
import {joinLabel, JoinNsSpec, quote, typedJoinNs} from './join-ns.js'
import {NamespaceDesc} from './namespaces.js'

/** CRIU (4.x criu/namespaces.c, check_int_str) refuses a --join-ns user UID or GID above this. */
export const CRIU_MAX_JOIN_ID = 65_535

export interface JoinOptions {
  /**
   * The joins are for CRIU (restore): its UID/GID limit and its user-namespace warning apply.
   * False for `ns exec`, which joins by itself. Default true.
   */
  readonly forCriu?: boolean
  /** --allow-user-ns: the user has read that joining a user namespace is dangerous. */
  readonly allowUserNs?: boolean
  readonly emptyNs?: readonly NamespaceDesc[]
  readonly joinNs?: readonly JoinNsSpec[]
}

export interface Problem {
  /** One line on what to do about it, when there is one. */
  readonly hint?: string
  readonly message: string
  /** An error stops the command; a warning is printed and the command goes on. */
  readonly severity: 'error' | 'warning'
}

/**
 * `-J user:PID:UID:GID` with a UID other than 0 cannot work with CRIU 4.2.1's restore: in the
 * joined user namespace it calls setuid(UID) before setgid(GID) (criu/namespaces.c,
 * switch_user_join_ns), so with any UID but 0 it has already dropped the capability it needs
 * for setgid, which fails with EPERM, and the restore with it. (Through CRIU's command line the
 * IDs were read from freed memory, i.e. not reliably applied at all.) The restored tasks take
 * their credentials from the checkpoint either way. Pure.
 */
export function userIdsProblem(spec: JoinNsSpec): Problem | undefined {
  if (spec.ns.name !== 'user' || spec.uid === undefined || spec.uid === 0) return undefined
  return {
    hint: `leave out :UID:GID (-J user:${spec.target.kind === 'pid' ? spec.target.pid : spec.target.path}): the restored tasks keep the IDs they were checkpointed with; \`${commandLine('ns:exec')}\` and \`${commandLine('launch')}\` do run a program as any UID and GID`,
    message: `--join-ns ${quote(typedJoinNs(spec))}: CRIU (4.2.1) cannot restore as UID ${spec.uid} in the joined user namespace: it switches the UID before the GID, and once it is not UID 0 it may no longer switch the GID (setgid fails with EPERM), so the restore would fail. (CRIU's own command line seems to take these IDs, but it reads them from memory it has already freed and does not apply them.) The restored tasks take their credentials from the checkpoint either way`,
    severity: 'error',
  }
}

/** The hints of these problems, each once, on one line; undefined when none has one. Pure. */
export function hintOf(problems: readonly Problem[]): string | undefined {
  const hints = [...new Set(problems.map(p => p.hint).filter(h => h !== undefined))]
  return hints.length > 0 ? hints.join('; ') : undefined
}

/** Every problem found, errors first, in the order of the user's flags. */
export function findProblems(options: JoinOptions): Problem[] {
  const joins = options.joinNs ?? []
  const empty = options.emptyNs ?? []
  const errors: Problem[] = []
  const warnings: Problem[] = []
  const error = (message: string) => errors.push({message, severity: 'error'})

  // By name, not by the table's objects: the prerun hook's checks (a bundle of their own) check
  // specs that a command bundle's own copy of the table made (scripts/bundle.mjs).
  const firstOfType = new Map<string, JoinNsSpec>()
  for (const spec of joins) {
    const first = firstOfType.get(spec.ns.name)
    if (first) {
      error(`${joinLabel(spec)}: the ${spec.ns.name} namespace is already joined by ${first.from ? joinLabel(first) : quote(typedJoinNs(first))}; give one target per namespace type`)
    } else {
      firstOfType.set(spec.ns.name, spec)
    }

    if (empty.some(ns => ns.name === spec.ns.name)) {
      error(`${joinLabel(spec)} and --empty-ns ${spec.ns.name} both decide the ${spec.ns.name} namespace; keep one of them`)
    }

    if (spec.ns.name !== 'user' && (spec.uid !== undefined || spec.gid !== undefined)) {
      error(`${joinLabel(spec)}: UID/GID options are accepted only for user`)
    }

    // CRIU reopens every file of the tree by its path, in the joined mount namespace.
    if (spec.ns.name === 'mnt' && options.forCriu !== false) {
      warnings.push({message: `${joinLabel(spec)}: ${spec.ns.note}`, severity: 'warning'})
    }

    if (spec.ns.name === 'user' && options.forCriu !== false) {
      const user = userJoinProblems(spec, options.allowUserNs)
      errors.push(...user.filter(p => p.severity === 'error'))
      warnings.push(...user.filter(p => p.severity === 'warning'))
    }
  }

  return [...errors, ...warnings]
}

/** What CRIU makes of a user join: its ID limits, the UID rule, its warning. Pure. */
function userJoinProblems(spec: JoinNsSpec, allowUserNs: boolean | undefined): Problem[] {
  const problems: Problem[] = []
  for (const [what, id] of [['UID', spec.uid], ['GID', spec.gid]] as const) {
    if (id !== undefined && id > CRIU_MAX_JOIN_ID) {
      problems.push({message: `${joinLabel(spec)}: CRIU accepts a ${what} up to ${CRIU_MAX_JOIN_ID} when joining a user namespace, not ${id}`, severity: 'error'})
    }
  }

  // A user join with another UID than 0 is refused either way: here when the target is
  // /proc/PID/ns/user (a user namespace, so nothing is to be said first); after pinning when
  // it is a file, which might not be a user namespace at all, the first thing to say then
  // (restore.ts, userIdsRefusal). A join that is refused gets no warning.
  const ids = userIdsProblem(spec)
  if (ids && spec.target.kind === 'pid' && spec.uid! <= CRIU_MAX_JOIN_ID) problems.push(ids)
  if (!allowUserNs && !ids) problems.push({message: `${joinLabel(spec)}: ${spec.ns.note}`, severity: 'warning'})
  // UID 0 with another GID: accepted by CRIU, but the tasks do not get it (see userIdsProblem).
  if (spec.uid === 0 && spec.gid !== undefined && spec.gid !== 0 && spec.gid <= CRIU_MAX_JOIN_ID) {
    problems.push({message: `${joinLabel(spec)}: the restored tasks keep the UID and GID they were checkpointed with; GID ${spec.gid} is CRIU's own only while it restores`, severity: 'warning'})
  }

  return problems
}
