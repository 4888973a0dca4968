/**
 * Reading a process's state from /proc/<pid>/stat. The command name in field 2 may contain
 * spaces and parentheses, so the fields are counted from the last ')'.
 */
import {readdirSync, readFileSync} from 'node:fs'

export interface ProcessStat {
  ppid: number
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

  const [state, ppid] = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
  return {ppid: Number(ppid), state}
}

/** Whether a process exists and is not a zombie (a zombie is dead; only its PID is still taken). */
export function isRunning(pid: number): boolean {
  const stat = processStat(pid)
  return stat !== undefined && stat.state !== 'Z' && stat.state !== 'X'
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
