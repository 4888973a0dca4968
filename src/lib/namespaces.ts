/**
 * The one table of Linux namespace types. Flags, checks, the native bridge and the CRIU
 * argument builder all read it; nothing else spells a CLONE_NEW* value or compares names.
 */

export type NamespaceName = 'cgroup' | 'ipc' | 'mnt' | 'net' | 'pid' | 'time' | 'user' | 'uts'

export interface NamespaceDesc {
  /** The name users type and CRIU's --join-ns expects. */
  readonly name: NamespaceName
  /** The CLONE_NEW* bit, also what ioctl(NS_GET_NSTYPE) answers for a file of this type. */
  readonly flag: number
  /** The entry under /proc/<pid>/ns/. */
  readonly procEntry: string
  /** Whether `restore --join-ns` may join it. */
  readonly joinable: boolean
  /** Why restore may not join it, or the risk of joining it; written for the person at the terminal. */
  readonly note?: string
  /**
   * Whether `ns exec` and `launch` may join it. They join in a forked child that then execs the
   * command (native spawnJoined), so what CRIU can or cannot do does not apply to them.
   */
  readonly execJoinable: boolean
  /** Why `ns exec` and `launch` may not join it. */
  readonly execNote?: string
  /** Whether CRIU can create it empty at restore (`--empty-ns`). */
  readonly emptyable: boolean
  /**
   * Whether `checkpoint --external-ns` supports it: CRIU's --external TYPE[INODE]:KEY, given
   * back at restore as --inherit-fd. CRIU knows net and pid; restore cannot join pid.
   */
  readonly externalizable: boolean
  /**
   * Whether the containers of a pod share it (as Kubernetes and podman pods share net, ipc and
   * uts): what `--join-container ID` joins when no types are given.
   */
  readonly podShared: boolean
}

const table: readonly NamespaceDesc[] = [
  {
    emptyable: false,
    execJoinable: true,
    externalizable: false,
    flag: 0x02_00_00_00,
    joinable: false,
    name: 'cgroup',
    podShared: false,
    note: 'CRIU cannot join a cgroup namespace at restore; use --manage-cgroups to place the tree in cgroups instead',
    procEntry: 'cgroup',
  },
  {
    emptyable: false, execJoinable: true, externalizable: false, flag: 0x08_00_00_00, joinable: true, name: 'ipc', podShared: true, procEntry: 'ipc',
  },
  {
    emptyable: false,
    execJoinable: true,
    externalizable: false,
    flag: 0x00_02_00_00,
    joinable: true,
    name: 'mnt',
    podShared: false,
    // Measured with CRIU 4.2.1: a file missing there fails the restore; one of the same size is taken.
    note: 'risky: the restored tree sees the target\'s mounts, and CRIU reopens every file it had open by its path there: a missing file fails the restore, another file at that path is taken in its place',
    procEntry: 'mnt',
  },
  {
    emptyable: true, execJoinable: true, externalizable: true, flag: 0x40_00_00_00, joinable: true, name: 'net', podShared: true, procEntry: 'net',
  },
  {
    emptyable: false,
    execJoinable: false,
    // Measured (Linux 6.18): after the child's setns, /proc/CHILD/ns/pid is still ours and only
    // ns/pid_for_children is the target's.
    execNote: 'the command is started by the very process that joins, and a PID namespace is entered only by children created after the join: the command would stay in this PID namespace and only the processes it starts would be in the target\'s (nsenter -p forks once more for that)',
    externalizable: false,
    flag: 0x20_00_00_00,
    joinable: false,
    name: 'pid',
    podShared: false,
    note: 'a PID namespace is entered only by children created after the join, and CRIU must give each task back its own PID; checkpoint the tree inside its own PID namespace instead, so restore recreates it',
    procEntry: 'pid',
  },
  {
    emptyable: false, execJoinable: true, externalizable: false, flag: 0x00_00_00_80, joinable: true, name: 'time', podShared: false, procEntry: 'time',
  },
  {
    emptyable: false,
    execJoinable: true,
    externalizable: false,
    flag: 0x10_00_00_00,
    joinable: true,
    name: 'user',
    podShared: false,
    note: 'CRIU calls joining a user namespace dangerous: the restored tree gets the target\'s uid/gid mappings (a warning only: the restore goes ahead; --allow-user-ns silences it)',
    procEntry: 'user',
  },
  {
    emptyable: false, execJoinable: true, externalizable: false, flag: 0x04_00_00_00, joinable: true, name: 'uts', podShared: true, procEntry: 'uts',
  },
]

/** Every namespace type, in alphabetical order. */
export const NAMESPACES: readonly NamespaceDesc[] = table

/** The types `restore --join-ns` accepts. */
export const JOINABLE: readonly NamespaceDesc[] = table.filter(d => d.joinable)

/**
 * Who joins: CRIU at restore, or the plugin's forked child for `ns exec` and `launch`. What may
 * be joined, and why not, differs between them.
 */
export type JoinUse = 'exec' | 'restore'

/** The types that use may join. */
export function joinableBy(use: JoinUse): readonly NamespaceDesc[] {
  return use === 'restore' ? JOINABLE : table.filter(d => d.execJoinable)
}

/** Why that use cannot join the type, or undefined when it can. */
export function whyNotJoinable(desc: NamespaceDesc, use: JoinUse): string | undefined {
  if (use === 'restore') return desc.joinable ? undefined : `the ${desc.name} namespace cannot be joined at restore: ${desc.note}`
  return desc.execJoinable ? undefined : `the ${desc.name} namespace cannot be joined by ns exec or launch: ${desc.execNote}`
}

/** The types the containers of a pod share: what `--join-container ID` joins by default. */
export const POD_SHARED: readonly NamespaceDesc[] = table.filter(d => d.podShared)

const byName = new Map<string, NamespaceDesc>(table.map(d => [d.name, d]))
const byFlag = new Map<number, NamespaceDesc>(table.map(d => [d.flag, d]))

/** The descriptor for a name, or undefined. Case-sensitive, as in CRIU and /proc. */
export function namespaceByName(name: string): NamespaceDesc | undefined {
  return byName.get(name)
}

/** The descriptor for a single CLONE_NEW* bit (what NS_GET_NSTYPE answers), or undefined. */
export function namespaceByFlag(flag: number): NamespaceDesc | undefined {
  return byFlag.get(flag)
}

/** The union of the flags of the given descriptors. */
export function flagsOf(descs: Iterable<NamespaceDesc>): number {
  let flags = 0
  for (const d of descs) flags |= d.flag
  return flags >>> 0
}

/** The descriptors whose bits are set in `flags`, in table order. Unknown bits are ignored. */
export function namespacesIn(flags: number): NamespaceDesc[] {
  return table.filter(d => (flags & d.flag) !== 0)
}

/** Names for display: `ipc, net, uts`. */
export function namesOf(descs: Iterable<NamespaceDesc>): string {
  return [...descs].map(d => d.name).join(', ')
}

export class NamespaceListError extends Error {
  override name = 'NamespaceListError'
}

/**
 * Parse a comma-separated list such as `net,uts,ipc` into descriptors (table order, no
 * duplicates). `allowed` narrows the accepted types; the message then lists only those.
 */
export function parseNamespaceList(input: string, allowed: readonly NamespaceDesc[] = NAMESPACES): NamespaceDesc[] {
  const seen = new Set<NamespaceDesc>()
  const parts = input.split(',')
  for (const raw of parts) {
    const part = raw.trim()
    if (part === '') throw new NamespaceListError(`empty namespace name in "${input}" (expected one of: ${namesOf(allowed)})`)
    const desc = byName.get(part)
    if (!desc) throw new NamespaceListError(`unknown namespace "${part}" (expected one of: ${namesOf(allowed)})`)
    if (!allowed.includes(desc)) {
      throw new NamespaceListError(`namespace "${part}" is not supported here (expected one of: ${namesOf(allowed)})`)
    }

    seen.add(desc)
  }

  return table.filter(d => seen.has(d))
}
