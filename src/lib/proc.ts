/**
 * Reading a process's state from /proc/<pid>/stat. The command name in field 2 may contain
 * spaces and parentheses, so the fields are counted from the last ')'.
 */
import {readFileSync} from 'node:fs'

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
