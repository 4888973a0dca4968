/**
 * Reading a process's state from /proc/<pid>/stat. The command name in field 2 may contain
 * spaces and parentheses, so the fields are counted from the last ')'.
 */
import {readFileSync} from 'node:fs'

export interface ProcessStat {
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
  return {ppid: Number(fields[1]), startTime: Number(fields[19]), state: fields[0]}
}

/** Whether a process exists and is not a zombie (a zombie is dead; only its PID is still taken). */
export function isRunning(pid: number): boolean {
  const stat = processStat(pid)
  return stat !== undefined && stat.state !== 'Z' && stat.state !== 'X'
}
