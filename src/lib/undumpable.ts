/**
 * Kernel objects CRIU cannot checkpoint, found in /proc before CRIU freezes anything.
 *
 * What CRIU 4.2 refuses (read from its source, checked against /proc on Linux 6.18):
 * - Mappings: a mapping whose /proc/PID/map_files entry cannot be opened (ENXIO) is dumped
 *   only when it is a socket or an AIO ring; everything else fails with "Unknown shit"
 *   (criu/proc_parse.c). Every `anon_inode:` mapping is such a one: io_uring rings
 *   (`anon_inode:[io_uring]`), perf buffers (`anon_inode:[perf_event]`).
 * - File descriptors on anonymous inodes (criu/files.c): only the kinds below are dumped; any
 *   other (`anon_inode:[io_uring]`, `[userfaultfd]`, `[perf_event]`, `bpf-prog`, KVM ...)
 *   fails with "Can't dump file ... of that type". The fd's /proc link is what CRIU itself
 *   reads to decide; fdinfo has no type field.
 *
 * The checks are pure functions over the text /proc gives; reading it is at the end.
 */
import {readdirSync, readFileSync, readlinkSync} from 'node:fs'
import {basename} from 'node:path'

import {RefusedError} from './errors.js'

/** The anonymous-inode fd kinds CRIU 4.x dumps, as the fd's /proc link names them after `anon_inode:`. */
export const CRIU_DUMPABLE_ANON_FDS: ReadonlySet<string> = new Set([
  '[eventfd]', '[eventpoll]', '[fanotify]', '[pidfd]', '[signalfd]', '[timerfd]', 'bpf-map', 'inotify',
])

const ANON = 'anon_inode:'

/** What one process shows in /proc: enough to judge it. */
export interface ProcessObjects {
  comm: string
  /** The executable's path (/proc/PID/exe), when readable. */
  exe?: string
  /** Each open fd, its /proc/PID/fd link and, for anonymous inodes, the inode from its fdinfo. */
  fds: readonly {fd: number; ino?: number; link: string}[]
  /** The text of /proc/PID/maps. */
  maps: string
  pid: number
}

/** An object in one process that CRIU cannot dump. */
export interface UndumpableObject {
  comm: string
  /** The program, as people know it: the executable's name, else comm (Node.js names its main thread MainThread). */
  program: string
  /** The fds that hold it. */
  fds: number[]
  /** The anonymous inode's kind as /proc shows it: `[io_uring]`. */
  kind: string
  /** How many mappings of it the process has. */
  mappings: number
  /** How many distinct objects (inodes) of this kind: rings, for io_uring. */
  count: number
  pid: number
  /** Who likely made it, for the person who has to change that. */
  likelyMadeBy: string
  /** The object in words. */
  what: string
}

/** The pathname column of /proc/PID/maps (after address, perms, offset, dev, inode), or '' for none. */
export function mapsPathname(line: string): string {
  const m = /^\S+\s+\S+\s+\S+\s+\S+\s+\d+\s*(.*)$/.exec(line)
  return m ? m[1] : ''
}

/** The mappings of each anonymous-inode kind /proc/PID/maps lists, and their inodes: `[io_uring]` -> 6 mappings of 3 inodes. */
export function anonInodeMappings(maps: string): Map<string, {inodes: Set<number>; mappings: number}> {
  const kinds = new Map<string, {inodes: Set<number>; mappings: number}>()
  for (const line of maps.split('\n')) {
    const path = mapsPathname(line)
    if (path.startsWith(ANON)) {
      const kind = path.slice(ANON.length)
      const entry = kinds.get(kind) ?? {inodes: new Set<number>(), mappings: 0}
      entry.mappings++
      entry.inodes.add(Number(line.split(/\s+/)[4]))
      kinds.set(kind, entry)
    }
  }

  return kinds
}

/** The `ino:` line of /proc/PID/fdinfo/FD text (one inode per io_uring ring), or undefined. */
export function fdinfoInode(fdinfo: string): number | undefined {
  const m = /^ino:\s*(\d+)$/m.exec(fdinfo)
  return m ? Number(m[1]) : undefined
}

function isNode(p: ProcessObjects): boolean {
  return /^node(js)?(\d+)?$/.test(p.exe ? basename(p.exe) : '') || p.comm === 'node' || p.maps.includes('libuv')
}

/** The object in words and who likely made it: the part of the message that helps someone act. */
export function describeKind(kind: string, p: ProcessObjects): {likelyMadeBy: string; what: string; whatMany: string} {
  switch (kind) {
  case '[io_uring]': {
    return {
      likelyMadeBy: isNode(p)
        ? 'libuv, which Node.js 22 and newer set up at start-up for file and network I/O'
        : 'a library that uses io_uring (libuv in Node.js 22 and newer, liburing)',
      what: 'an io_uring ring',
      whatMany: 'io_uring rings',
    }
  }

  case '[perf_event]': {
    return {likelyMadeBy: 'a profiler or performance counter library', what: 'a perf event', whatMany: 'perf events'}
  }

  case '[userfaultfd]': {
    return {likelyMadeBy: 'a memory manager that handles its own page faults (userfaultfd)', what: 'a userfaultfd', whatMany: 'userfaultfds'}
  }

  case 'bpf-prog': {
    return {likelyMadeBy: 'a program that loads eBPF programs', what: 'a BPF program', whatMany: 'BPF programs'}
  }

  default: {
    return {likelyMadeBy: 'the program or a library it uses', what: `an anonymous kernel object (${ANON}${kind})`, whatMany: `anonymous kernel objects (${ANON}${kind})`}
  }
  }
}

/** Every object in one process that CRIU cannot dump, one entry per kind. Pure. */
export function findUndumpable(p: ProcessObjects): UndumpableObject[] {
  const fdsByKind = new Map<string, {fd: number; ino?: number}[]>()
  for (const {fd, ino, link} of p.fds) {
    if (!link.startsWith(ANON)) continue
    const kind = link.slice(ANON.length)
    if (CRIU_DUMPABLE_ANON_FDS.has(kind)) continue
    fdsByKind.set(kind, [...(fdsByKind.get(kind) ?? []), {fd, ino}])
  }

  const mappings = anonInodeMappings(p.maps)
  const kinds = [...new Set([...fdsByKind.keys(), ...mappings.keys()])].sort()
  return kinds.map(kind => {
    const held = fdsByKind.get(kind) ?? []
    const mapped = mappings.get(kind)
    // Objects are told apart by inode; an fd whose inode is unknown counts as one of its own.
    const inodes = new Set([...(mapped?.inodes ?? []), ...held.flatMap(h => (h.ino === undefined ? [] : [h.ino]))])
    const count = inodes.size + held.filter(h => h.ino === undefined).length
    const {likelyMadeBy, what, whatMany} = describeKind(kind, p)
    return {
      comm: p.comm,
      count,
      fds: held.map(h => h.fd).sort((a, b) => a - b),
      kind,
      likelyMadeBy,
      mappings: mapped?.mappings ?? 0,
      pid: p.pid,
      program: p.exe ? basename(p.exe) : p.comm,
      what: count > 1 ? `${count} ${whatMany}` : what,
    }
  })
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`
}

function where(o: UndumpableObject): string {
  const parts = []
  if (o.fds.length > 0) parts.push(`${o.fds.length === 1 ? 'fd' : 'fds'} ${o.fds.join(', ')}`)
  if (o.mappings > 0) parts.push(plural(o.mappings, 'mapping'))
  return parts.join('; ')
}

/**
 * The refusal for a tree that holds objects CRIU cannot dump, or undefined when it holds none.
 * `launch` is how the user starts the plugin's launch command (`mycli launch`). Pure.
 */
export function undumpableRefusal(objects: readonly UndumpableObject[], launch: string): RefusedError | undefined {
  if (objects.length === 0) return undefined
  const lines = objects.map(o => `process ${o.pid} (${o.program}) holds ${o.what} (${where(o)}), likely made by ${o.likelyMadeBy}`)
  const message = `CRIU cannot checkpoint this process tree: it holds kernel objects CRIU cannot dump (nothing was frozen; it runs on untouched):\n${lines.map(l => `  ${l}`).join('\n')}`
  const ioUring = objects.some(o => o.kind === '[io_uring]')
  const hint = ioUring
    ? `a running process cannot give its rings back: restart the program with \`${launch} -- COMMAND\`, which denies io_uring to it alone so that it falls back to epoll, or set \`sysctl kernel.io_uring_disabled=2\` (system-wide) before it starts`
    : 'CRIU cannot dump a process while it holds these; end their use in the program, or checkpoint another tree'
  return new RefusedError(message, hint)
}

// --- the edge: reading /proc ---

/** The PIDs of the tree rooted at `root`, root first (children of every thread, through /proc/PID/task/TID/children). */
export function treePids(root: number): number[] {
  const seen = new Set<number>([root])
  const order = [root]
  for (let i = 0; i < order.length; i++) {
    const pid = order[i]
    let tids: string[]
    try {
      tids = readdirSync(`/proc/${pid}/task`)
    } catch {
      continue // ended meanwhile
    }

    for (const tid of tids) {
      let text = ''
      try {
        text = readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8')
      } catch {
        continue
      }

      for (const child of text.split(' ').filter(Boolean).map(Number)) {
        if (!seen.has(child)) {
          seen.add(child)
          order.push(child)
        }
      }
    }
  }

  return order
}

function readlinkOr(path: string): string | undefined {
  try {
    return readlinkSync(path)
  } catch {
    return undefined
  }
}

function readOr(path: string): string {
  try {
    return readFileSync(path, 'utf8')
  } catch {
    return ''
  }
}

/** What /proc shows of one process, or undefined when it ended or cannot be read (not root). */
export function readProcessObjects(pid: number): ProcessObjects | undefined {
  try {
    const maps = readFileSync(`/proc/${pid}/maps`, 'utf8')
    const comm = readFileSync(`/proc/${pid}/comm`, 'utf8').trim()
    const fds = readdirSync(`/proc/${pid}/fd`).flatMap(name => {
      const link = readlinkOr(`/proc/${pid}/fd/${name}`)
      if (link === undefined) return []
      if (!link.startsWith(ANON)) return [{fd: Number(name), link}]
      return [{fd: Number(name), ino: fdinfoInode(readOr(`/proc/${pid}/fdinfo/${name}`)), link}]
    })
    return {comm, exe: readlinkOr(`/proc/${pid}/exe`), fds, maps, pid}
  } catch {
    return undefined
  }
}

/** Every object CRIU cannot dump in the tree rooted at `root`. */
export function scanTree(root: number): UndumpableObject[] {
  return treePids(root).flatMap(pid => {
    const p = readProcessObjects(pid)
    return p ? findUndumpable(p) : []
  })
}

/** Refuse, before CRIU freezes anything, a tree that holds objects CRIU cannot dump. */
export function refuseUndumpable(root: number, launch: string): void {
  const refusal = undumpableRefusal(scanTree(root), launch)
  if (refusal) throw refusal
}

// --- kernel.io_uring_disabled, for `criu check` ---

export const IO_URING_SYSCTL = '/proc/sys/kernel/io_uring_disabled'

export interface IoUringPolicy {
  /** Whether programs started now can make io_uring rings (which CRIU cannot dump). */
  ringsPossible: boolean | undefined
  /** One line for the doctor: the setting and what it means for checkpointing. */
  summary: string
  /** 0, 1, 2; undefined when the kernel has no such setting (before Linux 6.6) or it could not be read. */
  value: number | undefined
}

/**
 * What the text of /proc/sys/kernel/io_uring_disabled (undefined: the file is missing) means
 * for checkpointing. Pure.
 */
export function ioUringPolicy(sysctlText?: string): IoUringPolicy {
  const advice = 'programs started now may make io_uring rings (libuv in Node.js 22 and newer does at start-up), which CRIU cannot checkpoint: start them with the plugin\'s launch command, or set it to 2 before they start'
  if (sysctlText === undefined) {
    return {ringsPossible: true, summary: `kernel.io_uring_disabled: not present (kernel before 6.6); ${advice.replace(', or set it to 2 before they start', '')}`, value: undefined}
  }

  const text = sysctlText.trim()
  switch (text) {
  case '0': {
    return {ringsPossible: true, summary: `kernel.io_uring_disabled = 0: ${advice}`, value: 0}
  }

  case '1': {
    return {ringsPossible: true, summary: `kernel.io_uring_disabled = 1 (only root and kernel.io_uring_group may use io_uring): ${advice}`, value: 1}
  }

  case '2': {
    return {ringsPossible: false, summary: 'kernel.io_uring_disabled = 2: io_uring is off; programs started from now on fall back to epoll and can be checkpointed (ones started before may still hold rings)', value: 2}
  }

  default: {
    return {ringsPossible: undefined, summary: `kernel.io_uring_disabled = ${JSON.stringify(text)}: not a value this plugin knows (0, 1 or 2)`, value: undefined}
  }
  }
}

/** kernel.io_uring_disabled on this machine, judged. */
export function readIoUringPolicy(): IoUringPolicy {
  let text: string | undefined
  try {
    text = readFileSync(IO_URING_SYSCTL, 'utf8')
  } catch {
    text = undefined
  }

  return ioUringPolicy(text)
}
