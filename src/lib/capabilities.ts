/**
 * The capabilities CRIU uses, what each one is for, and the ones the process that will run
 * CRIU lacks. Root is not always almighty: container runtimes, Kubernetes pods and some VMs
 * (these ones: CapEff 000001fffeffffff, no CAP_SYS_RESOURCE) run root with a reduced set.
 *
 * What each capability is for was read in CRIU's documentation and source (criu-dev, Nov 2025):
 * Documentation/criu.txt ("NON-ROOT"), criu/include/util-caps.h, criu/cr-check.c (check_caps,
 * the TCP repair check), criu/cr-dump.c (dump_task_rlimits), criu/util.c (rlimit_unlimit_nofile),
 * criu/files.c (restore_fs: chroot), criu/namespaces.c (prepare_userns_creds), criu/pie/restorer.c
 * (restoring the credentials), criu/files-reg.c (ghost files), criu/sockets.c, criu/sysctl.c; and
 * in the kernel's rules: prlimit(2) (another process's limits), capabilities(7) (ptrace, time
 * namespace offsets, what a root process keeps across execve).
 */
import {readFileSync} from 'node:fs'

export interface CapabilityNeed {
  /** Bit number in the CapEff mask (linux/capability.h). */
  readonly bit: number
  /** What CRIU cannot do without it, in the user's words. */
  readonly breaks: string
  /** CRIU log lines that an EPERM from this capability produces (for the hint after a failure). */
  readonly logLines?: RegExp
  readonly name: string
  /** Another capability that grants the same (CAP_SYS_ADMIN covers CAP_CHECKPOINT_RESTORE). */
  readonly orElse?: string
  /** When missing, checkpoint and restore cannot work at all. */
  readonly required: boolean
}

/** The one table: every capability CRIU uses as root, and what it breaks. */
export const CRIU_CAPABILITIES: readonly CapabilityNeed[] = [
  {
    bit: 21,
    breaks: 'everything: CRIU refuses to start without it (or CAP_CHECKPOINT_RESTORE with --unprivileged); joining namespaces, mounts and choosing PIDs need it',
    logLines: /CRIU needs to have the CAP_SYS_ADMIN|setns|Can't (?:mount|umount)|ns_last_pid/,
    name: 'CAP_SYS_ADMIN',
    required: true,
  },
  {
    bit: 40,
    breaks: 'choosing the restored PIDs (clone3 set_tid, ns_last_pid) and reading /proc/PID/map_files; CAP_SYS_ADMIN grants the same',
    logLines: /set_tid|map_files/,
    name: 'CAP_CHECKPOINT_RESTORE',
    orElse: 'CAP_SYS_ADMIN',
    required: true,
  },
  {
    bit: 19,
    breaks: 'checkpoint: seizing processes of other users, or with capabilities the caller lacks (ptrace)',
    logLines: /Can't seize|Unable to interrupt task|ptrace|PTRACE_SEIZE/i,
    name: 'CAP_SYS_PTRACE',
    required: false,
  },
  {
    bit: 24,
    breaks: 'checkpoint: reading the resource limits of processes of other users (prlimit: "Can\'t get rlimit"); restore: raising hard limits back; lazy-pages transfer (pipe buffers)',
    logLines: /Can't get rlimit|prlimit|RLIMIT|page-pipe|F_SETPIPE_SZ/,
    name: 'CAP_SYS_RESOURCE',
    required: false,
  },
  {
    bit: 12,
    breaks: 'TCP connections (--tcp-established: TCP repair mode), the network lock (iptables/nftables), restoring network devices, addresses and net sysctls, SO_MARK',
    logLines: /TCP_REPAIR|repair|netlink|iptables|nftables|sysctl.*net|SO_MARK/i,
    name: 'CAP_NET_ADMIN',
    required: false,
  },
  {
    bit: 18,
    breaks: 'restore: CRIU as root puts every restored task into its root with chroot(), and binds unix sockets in other roots',
    logLines: /Can't change root|chroot/i,
    name: 'CAP_SYS_CHROOT',
    required: true,
  },
  {
    bit: 7,
    breaks: 'restore: giving restored processes their user IDs back (processes of other users, -J user:...,UID,GID)',
    logLines: /setuid|setresuid|setfsuid|Unable to initialize id-s/i,
    name: 'CAP_SETUID',
    required: false,
  },
  {
    bit: 6,
    breaks: 'restore: giving restored processes their group IDs and supplementary groups back',
    logLines: /setgid|setresgid|setgroups/i,
    name: 'CAP_SETGID',
    required: false,
  },
  {
    bit: 1,
    breaks: 'opening files of other users the tree has open or mapped, and writing images into folders of other users',
    logLines: /Can't open|open_reg|Permission denied/i,
    name: 'CAP_DAC_OVERRIDE',
    required: false,
  },
  {
    bit: 0,
    breaks: 'restore: giving recreated files (deleted files the tree held, unix socket files) their owners back',
    logLines: /chown/i,
    name: 'CAP_CHOWN',
    required: false,
  },
  {
    bit: 25,
    breaks: 'restore: a new time namespace with the checkpoint\'s clock offsets (every restore without -J time:...)',
    logLines: /timens_offsets|timens/i,
    name: 'CAP_SYS_TIME',
    required: false,
  },
]

export function capabilityByName(name: string): CapabilityNeed | undefined {
  return CRIU_CAPABILITIES.find(c => c.name === name)
}

export interface CapabilitySets {
  bounding: bigint
  effective: bigint
  inheritable: bigint
}

function mask(status: string, field: string): bigint {
  const m = new RegExp(`^${field}:\\s*([\\da-f]+)$`, 'm').exec(status)
  return m ? BigInt(`0x${m[1]}`) : 0n
}

export function parseCapabilities(status: string): CapabilitySets {
  return {bounding: mask(status, 'CapBnd'), effective: mask(status, 'CapEff'), inheritable: mask(status, 'CapInh')}
}

/**
 * The effective set CRIU will have: it is our child, started by execve. A root process gets
 * its inheritable set plus its bounding set across execve (capabilities(7), "Capabilities and
 * execution of programs by root"); anyone else keeps no capabilities (we pass no ambient set
 * and do not look at file capabilities).
 */
export function criuCapabilities(status = readFileSync('/proc/self/status', 'utf8'), euid = process.geteuid?.() ?? -1): bigint {
  const sets = parseCapabilities(status)
  return euid === 0 ? sets.inheritable | sets.bounding : sets.effective
}

export function hasCapability(set: bigint, need: CapabilityNeed): boolean {
  if ((set & (1n << BigInt(need.bit))) !== 0n) return true
  const other = need.orElse ? capabilityByName(need.orElse) : undefined
  return other ? hasCapability(set, other) : false
}

/** The capabilities from the table that the set lacks. */
export function missingCapabilities(set: bigint): CapabilityNeed[] {
  return CRIU_CAPABILITIES.filter(need => !hasCapability(set, need))
}

/** Root, or CAP_SYS_ADMIN (setns) in the effective set. */
export function hasAdminCapability(status = readFileSync('/proc/self/status', 'utf8')): boolean {
  return hasCapability(parseCapabilities(status).effective, capabilityByName('CAP_SYS_ADMIN')!)
}

/** A process of the tree to checkpoint: its IDs as /proc/PID/status gives them (real, effective, saved). */
export interface TreeProcess {
  /** CapPrm. */
  capabilities: bigint
  comm: string
  gids: readonly number[]
  pid: number
  uids: readonly number[]
}

export interface CapabilityProblem {
  capability: CapabilityNeed
  /** What the workload could change instead. */
  otherwise: string
  processes: TreeProcess[]
  why: string
}

/**
 * What a checkpoint of this tree needs that the set lacks, decided before anything is frozen.
 * Pure. The kernel's rules: reading another process's limits (prlimit) needs CAP_SYS_RESOURCE
 * unless its real, effective and saved UIDs all equal the caller's real UID and the same for
 * GIDs (prlimit(2)); seizing a process of another UID, or one whose permitted capabilities are
 * not all in the caller's, needs CAP_SYS_PTRACE (ptrace(2), "Ptrace access mode checking").
 */
export function checkpointCapabilityProblems(tree: readonly TreeProcess[], set: bigint, self: {gid: number; uid: number}): CapabilityProblem[] {
  // real, effective and saved IDs (the fourth, the filesystem ID, is not compared)
  const otherUser = (p: TreeProcess) => p.uids.slice(0, 3).some(u => u !== self.uid)
  const otherGroup = (p: TreeProcess) => p.gids.slice(0, 3).some(g => g !== self.gid)
  const stronger = (p: TreeProcess) => (p.capabilities & ~set) !== 0n
  const problems: CapabilityProblem[] = []
  const resource = capabilityByName('CAP_SYS_RESOURCE')!
  const limited = tree.filter(p => otherUser(p) || otherGroup(p))
  if (limited.length > 0 && !hasCapability(set, resource)) {
    problems.push({
      capability: resource,
      otherwise: 'run every process of the tree as the user and group that run CRIU (nginx: `user root;`)',
      processes: limited,
      why: 'to read the resource limits of processes of another user or group (CRIU: "Can\'t get rlimit ... Operation not permitted")',
    })
  }

  const ptrace = capabilityByName('CAP_SYS_PTRACE')!
  const seized = tree.filter(p => otherUser(p) || stronger(p))
  if (seized.length > 0 && !hasCapability(set, ptrace)) {
    problems.push({
      capability: ptrace,
      otherwise: 'start the workload as that user, with no capability CRIU lacks',
      processes: seized,
      why: 'to seize processes of another user, or with capabilities it lacks itself',
    })
  }

  return problems
}

/**
 * The capability a failed CRIU run most likely lacked, from its log: the first missing one
 * whose log lines appear there, else the missing ones that break everything, else all missing.
 */
export function capabilityForFailure(log: string, missing: readonly CapabilityNeed[]): CapabilityNeed[] {
  const named = missing.filter(c => c.logLines?.test(log))
  if (named.length > 0) return named.slice(0, 1)
  const required = missing.filter(c => c.required)
  return required.length > 0 ? required : [...missing]
}
