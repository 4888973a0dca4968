/**
 * Reading a process's state from /proc/<pid>/stat. The command name in field 2 may contain
 * spaces and parentheses, so the fields are counted from the last ')'.
 */
import {readdirSync, readFileSync} from 'node:fs'

export interface ProcessStat {
  /** Field 9: the kernel's PF_* flags. */
  flags: number
  ppid: number
  /** Field 22: clock ticks after boot; with the PID, it names one process for the machine's uptime. */
  startTime: number
  /** R, S, D, T, t, Z, X ... */
  state: string
}

/** The state and parent of a process, or undefined when there is no such process. */
export function processStat(pid: number): ProcessStat | undefined {
  let stat: string
  try {
    stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
  } catch {
    return undefined
  }

  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  // fields[0] is field 3 (state).
  return {
    flags: Number(fields[6]), ppid: Number(fields[1]), startTime: Number(fields[19]), state: fields[0],
  }
}

/** PF_KTHREAD (include/linux/sched.h): the process is a kernel thread. */
const PF_KTHREAD = 0x00_20_00_00

/** Whether a process is a kernel thread (kthreadd and its children): false when it is gone. */
export function isKernelThread(pid: number): boolean {
  const stat = processStat(pid)
  return stat !== undefined && (stat.flags & PF_KTHREAD) !== 0
}

/** Whether a process exists and is not a zombie (a zombie is dead; only its PID is still taken). */
export function isRunning(pid: number): boolean {
  const stat = processStat(pid)
  return stat !== undefined && stat.state !== 'Z' && stat.state !== 'X'
}

/**
 * Whether a process (running or a zombie) descends from this one: restored trees and a killed
 * CRIU's tasks are ours, since this process is their subreaper. Never true for a process that
 * merely reuses a PID we knew.
 */
export function descendsFromThisProcess(pid: number): boolean {
  let p: number | undefined = pid
  for (let depth = 0; p !== undefined && p > 1 && depth < 64; depth++) {
    p = processStat(p)?.ppid
    if (p === process.pid) return true
  }

  return false
}

/** A process's name, IDs (real, effective, saved, fs) and permitted capabilities from /proc/PID/status; undefined when gone. */
export function processIds(pid: number): undefined | {capabilities: bigint; comm: string; gids: number[]; pid: number; uids: number[]} {
  let status: string
  try {
    status = readFileSync(`/proc/${pid}/status`, 'utf8')
  } catch {
    return undefined
  }

  const ids = (field: string) => (new RegExp(`^${field}:\\s*(.*)$`, 'm').exec(status)?.[1] ?? '').trim().split(/\s+/).filter(Boolean).map(Number)
  const capPrm = /^CapPrm:\s*([\da-f]+)$/m.exec(status)?.[1]
  return {capabilities: capPrm ? BigInt(`0x${capPrm}`) : 0n, comm: /^Name:\s*(.*)$/m.exec(status)?.[1] ?? '?', gids: ids('Gid'), pid, uids: ids('Uid')}
}

/** The PIDs of a process and all its descendants (through /proc/PID/task/TID/children), root first. */
export function processTree(pid: number): number[] {
  const tree: number[] = []
  const queue = [pid]
  while (queue.length > 0) {
    const next = queue.shift()!
    if (tree.includes(next)) continue
    tree.push(next)
    let tasks: string[] = []
    try {
      tasks = readdirSync(`/proc/${next}/task`)
    } catch {
      continue // gone meanwhile
    }

    for (const tid of tasks) {
      try {
        queue.push(...readFileSync(`/proc/${next}/task/${tid}/children`, 'utf8').trim().split(' ').filter(Boolean).map(Number))
      } catch {
        // the thread ended meanwhile
      }
    }
  }

  return tree
}
