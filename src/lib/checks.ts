/**
 * Checks over parsed restore options that no single flag can make alone. Pure: the prerun
 * hook runs them before the command starts, and the restore library runs them again for
 * callers that do not go through oclif.
 */
import {formatJoinNs, joinLabel, JoinNsSpec, quote} from './join-ns.js'
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
  readonly message: string
  /** An error stops the command; a warning is printed and the command goes on. */
  readonly severity: 'error' | 'warning'
}

/** Every problem found, errors first, in the order of the user's flags. */
export function findProblems(options: JoinOptions): Problem[] {
  const joins = options.joinNs ?? []
  const empty = options.emptyNs ?? []
  const errors: Problem[] = []
  const warnings: Problem[] = []
  const error = (message: string) => errors.push({message, severity: 'error'})

  const firstOfType = new Map<NamespaceDesc, JoinNsSpec>()
  for (const spec of joins) {
    const first = firstOfType.get(spec.ns)
    if (first) {
      error(`${joinLabel(spec)}: the ${spec.ns.name} namespace is already joined by ${first.from ? joinLabel(first) : quote(formatJoinNs(first))}; give one target per namespace type`)
    } else {
      firstOfType.set(spec.ns, spec)
    }

    if (empty.includes(spec.ns)) {
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
      for (const [what, id] of [['UID', spec.uid], ['GID', spec.gid]] as const) {
        if (id !== undefined && id > CRIU_MAX_JOIN_ID) {
          error(`${joinLabel(spec)}: CRIU accepts a ${what} up to ${CRIU_MAX_JOIN_ID} when joining a user namespace, not ${id}`)
        }
      }

      if (!options.allowUserNs) {
        warnings.push({
          message: `${joinLabel(spec)}: ${spec.ns.note}`,
          severity: 'warning',
        })
      }
    }
  }

  return [...errors, ...warnings]
}
