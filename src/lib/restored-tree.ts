/**
 * The restored tree as the kernel shows it while CRIU holds it at its post-restore stage
 * (every task created, none resumed), and the check of every task's joined namespaces.
 *
 *   readRestoredTree()  effects: walks /proc from the root CRIU names (children by PID);
 *   observeJoins()      effects: stats /proc/PID/task/TID/ns/* of every thread;
 *   judgeJoins()        pure: compares what was seen with what was pinned.
 */
import {readdirSync, readFileSync, statSync} from 'node:fs'

import {FailedError} from './errors.js'
import {NamespaceDesc} from './namespaces.js'
import {processStat} from './proc.js'

export interface RestoredProcess {
  readonly pid: number
  /** Every thread of the process, the main thread (pid) first. */
  readonly tids: readonly number[]
}

export interface RestoredTree {
  readonly root: number
  /** Every process of the tree: the root first, then breadth-first, children by PID. */
  readonly processes: readonly RestoredProcess[]
}

/** A deeper tree than this is a loop or an attack, not a checkpoint. */
const MAX_PROCESSES = 65_536

function threadsOf(pid: number): number[] {
  const tids = readdirSync(`/proc/${pid}/task`).map(Number).filter(t => t !== pid)
  return [pid, ...tids.sort((a, b) => a - b)]
}

/** Children of every thread (a child belongs to the thread that forked it), by PID. */
function childrenOf(pid: number, tids: readonly number[]): number[] {
  const children = tids.flatMap(tid => readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').trim().split(' ').filter(Boolean).map(Number))
  return children.sort((a, b) => a - b)
}

/**
 * The tree under `root`, read from /proc. The tasks are frozen while CRIU waits for the
 * post-restore verdict, so the walk sees a tree that cannot change under it.
 */
export function readRestoredTree(root: number): RestoredTree {
  const processes: RestoredProcess[] = []
  const queue = [root]
  const seen = new Set<number>()
  try {
    while (queue.length > 0) {
      const pid = queue.shift()!
      if (seen.has(pid)) continue
      seen.add(pid)
      if (seen.size > MAX_PROCESSES) throw new Error(`more than ${MAX_PROCESSES} processes`)
      const tids = threadsOf(pid)
      processes.push({pid, tids})
      queue.push(...childrenOf(pid, tids))
    }
  } catch (error) {
    throw new FailedError(`cannot read the restored tree under PID ${root} from /proc: ${(error as Error).message}`)
  }

  return {processes, root}
}

/** A pinned target as the judge needs it. */
export interface PinnedIdentity {
  readonly dev: number
  readonly ino: number
  readonly ns: NamespaceDesc
  readonly source: string
}

/** What one thread's /proc/PID/task/TID/ns/TYPE was; undefined ino for a zombie (no namespaces left). */
export interface Observation {
  readonly dev?: number
  readonly ino?: number
  readonly ns: NamespaceDesc
  readonly pid: number
  readonly tid: number
}

function observe(pid: number, tid: number, ns: NamespaceDesc): Observation {
  const path = `/proc/${pid}/task/${tid}/ns/${ns.procEntry}`
  try {
    const st = statSync(path)
    return {dev: st.dev, ino: st.ino, ns, pid, tid}
  } catch (error) {
    // A zombie (CRIU restores dead tasks as zombies) has no namespaces and runs no code.
    if (processStat(tid)?.state === 'Z') return {ns, pid, tid}
    throw new FailedError(`cannot read ${path} of the restored tree: ${(error as Error).message}`)
  }
}

/** Stat every joined type of every thread of the tree. */
export function observeJoins(tree: RestoredTree, types: readonly NamespaceDesc[]): Observation[] {
  return tree.processes.flatMap(({pid, tids}) => tids.flatMap(tid => types.map(ns => observe(pid, tid, ns))))
}

export interface VerifiedNamespace {
  inode: number
  source: string
  type: string
}

export interface VerifiedTask {
  namespaces: VerifiedNamespace[]
  pid: number
  /** Threads checked besides the main one. */
  threads: number[]
}

/**
 * Compare every observation with the pinned target of its type. Pure. Throws a FailedError
 * naming the first task, type, inode found and inode pinned; otherwise returns the verified
 * namespaces per process.
 */
export function judgeJoins(tree: RestoredTree, observations: readonly Observation[], pins: readonly PinnedIdentity[]): VerifiedTask[] {
  for (const seen of observations) {
    const pin = pins.find(p => p.ns === seen.ns)
    if (!pin || seen.ino === undefined) continue
    if (seen.ino !== pin.ino || seen.dev !== pin.dev) {
      const task = seen.tid === seen.pid ? `task ${seen.pid}` : `task ${seen.pid} (thread ${seen.tid})`
      const devices = seen.dev === pin.dev ? '' : ` (device ${seen.dev}, pinned device ${pin.dev})`
      throw new FailedError(
        `${task} of the restored tree is in ${seen.ns.name} namespace inode ${seen.ino}, not the one pinned from ${pin.source} (inode ${pin.ino})${devices}; it was stopped before it ran`,
        'CRIU joined another namespace than the one it was given: nothing was resumed, and the tree was ended',
      )
    }
  }

  return tree.processes.map(({pid, tids}) => ({
    namespaces: pins.map(pin => ({inode: pin.ino, source: pin.source, type: pin.ns.name})),
    pid,
    threads: tids.filter(t => t !== pid),
  }))
}
