/**
 * The bridge to native/ns_linux.cc. Loaded lazily, on first use: `mycli --help` and the host
 * CLI's other commands never load native code. Every errno-level detail is turned into a
 * message here, using the namespace table for the words.
 */
import {existsSync, readdirSync} from 'node:fs'
import {constants as osConstants} from 'node:os'
import {join} from 'node:path'

import {FailedError, RefusedError} from './errors.js'
import {joinLabel, JoinNsSpec, MESSAGE_TOKEN_MAX} from './join-ns.js'
import {NamespaceDesc, namespaceByFlag} from './namespaces.js'
import {packageRoot} from './package-root.js'
import {processStat} from './proc.js'

export interface NsDescription {
  readonly dev: number
  readonly ino: number
  /** st_mode of the opened file. */
  readonly mode: number
  /** CLONE_NEW* bit, or 0 when the file is not a namespace. */
  readonly nstype: number
  /** Owner UID of a user namespace (NS_GET_OWNER_UID). */
  readonly ownerUid?: number
  /** Inode of the user namespace that owns this one, when visible to the caller. */
  readonly ownerIno?: number
}

interface SpawnRequest {
  argv: string[]
  candidates: string[]
  cwd?: string
  denyIoUring?: boolean
  env: string[]
  gid?: number
  groups?: number[]
  joins: {fd: number; flag: number}[]
  newSession?: boolean
  stdio: number[]
  uid?: number
}

interface StartRequest {
  argv: string[]
  candidates: string[]
  env: string[]
  /** Placed at 3, 4, ...; -1: a new pipe whose read end comes back in `pipes`. */
  fds: number[]
  newSession: boolean
  stderrPipe: boolean
}

/** A child's end as waitpid reports it: an exit code or the number of the signal that ended it. */
type RawExit = {code: null | number; signal: null | number}

interface NativeExitWatch {
  kill(signal: number): boolean
  unref(): void
}

interface NativeModule {
  closeFd(fd: number): void
  ExitWatch: new (pid: number, onExit: (exit: RawExit) => void) => NativeExitWatch
  inspectFd(fd: number): NsDescription
  inspectPath(path: string): NsDescription
  pinPath(path: string): NsDescription & {fd: number}
  pinPid(pid: number, procEntry: string): NsDescription & {fd: number}
  probeHwBreakpoints(boundMs: number): {detail: string; works: boolean | null}
  receiveMessage(fd: number): Promise<Buffer | null>
  sendMessage(fd: number, message: Uint8Array): void
  seqpacketPair(): [number, number]
  shutdownSocket(fd: number): void
  getChildSubreaper(): boolean
  setChildSubreaper(on: boolean): void
  spawnJoined(request: SpawnRequest): number
  startProgram(request: StartRequest): {pid: number; pipes: number[]; stderr: number}
  supported: boolean
  waitPid(pid: number): Promise<{code: null | number; signal: null | number}>
}

/** A system call failed; `code` is the errno name, as in Node's own errors. */
export interface NativeError extends Error {
  code: string
  errno: number
  index?: number
  path?: string
  step?: number
  syscall: string
}

export function isNativeError(error: unknown): error is NativeError {
  return error instanceof Error && typeof (error as NativeError).syscall === 'string'
}

let loaded: NativeModule | undefined

/**
 * The compiled module this process loads, in node-gyp-build's order: a build from source (the
 * first .node file in build/Release, as node-gyp-build takes it; see the README) before the
 * prebuild for this CPU; undefined when neither is there. Two existsSync calls where there is no
 * source build, instead of node-gyp-build's search of prebuilds/, which took 3-5 ms of every
 * restore here.
 */
export function nativeBinary(root = packageRoot()): string | undefined {
  const release = join(root, 'build', 'Release')
  const built = existsSync(release) ? readdirSync(release).find(f => f.endsWith('.node')) : undefined
  if (built) return join(release, built)
  const prebuild = join(root, 'prebuilds', `${process.platform}-${process.arch}`, 'oclif-plugin-criu.node')
  return existsSync(prebuild) ? prebuild : undefined
}

function loadNative(): NativeModule {
  const file = nativeBinary()
  if (file) {
    try {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      return require(file) as NativeModule
    } catch {
      // A prebuild this machine cannot load (musl, an older glibc): node-gyp-build says why.
    }
  }

  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return (require('node-gyp-build') as (dir: string) => NativeModule)(packageRoot())
}

/** The native module; throws a clear error off Linux. */
export function native(): NativeModule {
  loaded ??= loadNative()
  if (!loaded.supported) {
    throw new Error(`namespaces are a Linux feature: this command needs Linux (this is ${process.platform})`)
  }

  return loaded
}

/** Whether the native module has been loaded in this process (for tests of laziness). */
export function nativeLoaded(): boolean {
  return loaded !== undefined
}

const finalizer = new FinalizationRegistry<number>(fd => {
  try {
    native().closeFd(fd)
  } catch {
    // Nothing to report to: the object was forgotten without close().
  }
})

/**
 * An open namespace fd: what was checked is what gets joined. Close it with close(); a
 * finalizer closes it too if it is dropped, but that is a safety net, not the plan.
 */
export class PinnedNamespace {
  private open = true
  readonly dev: number
  readonly fd: number
  readonly ino: number
  readonly ownerUid?: number

  constructor(
    readonly ns: NamespaceDesc,
    opened: NsDescription & {fd: number},
    /** What the user named: `pid 123` or the path. */
    readonly source: string,
  ) {
    this.fd = opened.fd
    this.dev = opened.dev
    this.ino = opened.ino
    this.ownerUid = opened.ownerUid
    finalizer.register(this, this.fd, this)
  }

  get isOpen(): boolean {
    return this.open
  }

  /** /proc/<this process>/fd/<fd>: a path other processes (CRIU) can open while we live. */
  get procPath(): string {
    return `/proc/${process.pid}/fd/${this.fd}`
  }

  close(): void {
    if (!this.open) return
    this.open = false
    finalizer.unregister(this)
    native().closeFd(this.fd)
  }
}

const S_IFMT = 0o17_0000
const S_IFDIR = 0o04_0000

/** A path as messages show it: long ones cut, so that one bad argument gives one readable line. */
function shown(path: string): string {
  return path.length > MESSAGE_TOKEN_MAX ? `${path.slice(0, MESSAGE_TOKEN_MAX)}... (${path.length} characters)` : path
}

export class PinError extends Error {
  override name = 'PinError'

  constructor(
    message: string,
    /** The kernel said permission denied: not a bad request, something this process may not do here. */
    readonly denied = false,
  ) {
    super(message)
  }
}

/**
 * A target that could not be pinned, as the commands report it: refused (exit 2) when the
 * request named something that is not a namespace to join, failed (exit 1) when the kernel
 * denied it, which is what needing root means everywhere (restore, checkpoint, ns exec, ns inspect).
 */
export function pinFailure(error: PinError, label?: string): FailedError | RefusedError {
  const message = label ? `${label}: ${error.message}` : error.message
  if (!error.denied) return new RefusedError(message)
  return new FailedError(message, process.geteuid?.() === 0 ? undefined : 'run it as root (sudo)')
}

function typeName(nstype: number): string {
  return namespaceByFlag(nstype)?.name ?? `unknown (0x${nstype.toString(16)})`
}

function openFailure(error: NativeError, what: string): PinError {
  return new PinError(explainOpen(error, what), error.code === 'EACCES' || error.code === 'EPERM')
}

function explainOpen(error: NativeError, what: string): string {
  switch (error.code) {
  case 'ENOENT': {
    return `${what} does not exist`
  }

  case 'EACCES':
  case 'EPERM': {
    // Root is refused too where the target sits outside what this process may see (a sandbox's PID 1).
    return process.geteuid?.() === 0
      ? `${what} cannot be opened: permission denied, even to root here (the process is outside what this sandbox or user namespace lets us open)`
      : `${what} cannot be opened: permission denied`
  }

  case 'ESRCH': {
    return `${what}: no such process`
  }

  case 'ENOTDIR': {
    return `${what}: a part of the path is not a directory`
  }

  case 'ENXIO': {
    return `${what} is a socket or a device without a driver, not a namespace file`
  }

  default: {
    return `${what}: ${error.message}`
  }
  }
}

/**
 * Refuse a PID that no longer names the process a runtime recorded: `startTime` is what the
 * runtime wrote (runc's init_process_start, crun's process-start-time: /proc/PID/stat field 22).
 */
function checkStartTime(ns: NamespaceDesc, pid: number, startTime: number): void {
  const stat = processStat(pid)
  if (!stat || stat.state === 'Z' || stat.state === 'X') {
    throw new PinError(`process ${pid} does not exist (or exited), so its ${ns.name} namespace cannot be joined`)
  }

  if (stat.startTime !== startTime) {
    throw new PinError(`PID ${pid} now names another process (started at ${stat.startTime} clock ticks after boot, not ${startTime} as recorded): the container was restarted or has exited`)
  }
}

/**
 * Open and type-check the namespace `ns` of process `pid`; the fd stays open until close().
 * With `startTime`, the process is checked before the namespace is opened (a clear early
 * message) and again after: the native side opens the namespace through a pidfd and checks
 * that the pidfd's process still lives, and a process that still has the recorded start time
 * afterwards has held the PID all along, so the namespace opened is the recorded process's.
 */
export function pinPid(ns: NamespaceDesc, pid: number, startTime?: number): PinnedNamespace {
  if (startTime !== undefined) checkStartTime(ns, pid, startTime)
  let d
  try {
    d = native().pinPid(pid, ns.procEntry)
  } catch (error) {
    if (!isNativeError(error)) throw error
    if (error.code === 'ESRCH' || (error.code === 'ENOENT' && error.syscall === 'open')) {
      throw new PinError(`process ${pid} does not exist (or exited), so its ${ns.name} namespace cannot be joined`)
    }

    throw openFailure(error, `the ${ns.name} namespace of process ${pid} (/proc/${pid}/ns/${ns.procEntry})`)
  }

  const pinned = new PinnedNamespace(ns, d, `pid ${pid}`)
  if (startTime !== undefined) {
    try {
      checkStartTime(ns, pid, startTime)
    } catch (error) {
      pinned.close()
      throw error
    }
  }

  return pinned
}

/** Open a namespace file and check it is a namespace of type `ns`. */
export function pinPath(ns: NamespaceDesc, path: string): PinnedNamespace {
  let d
  try {
    d = native().pinPath(path)
  } catch (error) {
    if (!isNativeError(error)) throw error
    if (error.code === 'EISDIR') throw new PinError(`${shown(path)} is a directory, not a ${ns.name} namespace file`)
    if (error.code === 'ENAMETOOLONG') throw new PinError(`the path is too long for the kernel (${path.length} characters)`)
    throw openFailure(error, shown(path))
  }

  if (d.nstype !== ns.flag) {
    native().closeFd(d.fd)
    if ((d.mode & S_IFMT) === S_IFDIR) throw new PinError(`${shown(path)} is a directory, not a ${ns.name} namespace file`)
    if (d.nstype === 0) throw new PinError(`${shown(path)} is not a namespace file (expected a ${ns.name} namespace such as /proc/PID/ns/${ns.procEntry})`)
    throw new PinError(`${shown(path)} is a ${typeName(d.nstype)} namespace, not a ${ns.name} namespace`)
  }

  return new PinnedNamespace(ns, d, path)
}

/**
 * Pin every --join-ns target, in order; on the first that cannot be pinned, release the ones
 * already pinned and refuse the request naming the flag value.
 */
export function pinJoins(specs: readonly JoinNsSpec[]): PinnedNamespace[] {
  const pins: PinnedNamespace[] = []
  try {
    for (const spec of specs) {
      try {
        pins.push(spec.target.kind === 'pid' ? pinPid(spec.ns, spec.target.pid, spec.target.startTime) : pinPath(spec.ns, spec.target.path))
      } catch (error) {
        if (error instanceof PinError) throw pinFailure(error, joinLabel(spec))
        throw error
      }
    }

    return pins
  } catch (error) {
    for (const p of pins) p.close()
    throw error
  }
}

/** Inspect a namespace file without keeping it open. */
export function inspectPath(path: string): NsDescription {
  try {
    return native().inspectPath(path)
  } catch (error) {
    if (isNativeError(error)) throw openFailure(error, path)
    throw error
  }
}

export interface SpawnJoinedOptions {
  cwd?: string
  /**
   * Install a seccomp filter (with no_new_privs) that makes io_uring_setup fail with ENOSYS for
   * the program and everything it starts, so that no io_uring ring (which CRIU cannot dump) is made.
   */
  denyIoUring?: boolean
  env?: NodeJS.ProcessEnv
  gid?: number
  groups?: number[]
  /** The namespaces to join; their fds must stay open until spawnJoined returns. */
  namespaces: readonly PinnedNamespace[]
  /** Start the program in a session of its own (setsid), away from our terminal and signals. */
  newSession?: boolean
  /** Three fds for stdin, stdout, stderr; -1 keeps this process's. */
  stdio?: [number, number, number]
  uid?: number
}

export class SpawnJoinedError extends Error {
  override name = 'SpawnJoinedError'

  constructor(
    message: string,
    readonly step: string,
    readonly code: string,
  ) {
    super(message)
  }
}

/** Where to look for `file`: itself when it has a slash, else each PATH entry. */
export function execCandidates(file: string, pathVar: string | undefined): string[] {
  if (file.includes('/')) return [file]
  const dirs = (pathVar ?? '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin').split(':')
  return dirs.map(dir => `${dir === '' ? '.' : dir}/${file}`)
}

/** A failure of the child before exec, in the user's words: which step, about what. */
function spawnFailure(error: NativeError, file: string, options: SpawnJoinedOptions): SpawnJoinedError {
  const strerror = error.message.replace(/^[^:]*: /, '')
  const pinned = error.index === undefined || error.index < 0 ? undefined : options.namespaces[error.index]
  let what: string
  switch (error.syscall) {
  case 'setns': {
    what = `cannot join the ${pinned?.ns.name} namespace of ${pinned?.source}`
    break
  }

  case 'execve': {
    what = `cannot run ${file}`
    break
  }

  case 'setresuid': {
    what = `cannot switch to uid ${options.uid}`
    break
  }

  case 'setresgid': {
    what = `cannot switch to gid ${options.gid}`
    break
  }

  case 'setgroups': {
    what = 'cannot set the supplementary groups'
    break
  }

  case 'chdir': {
    what = `cannot change directory to ${options.cwd}`
    break
  }

  case 'setsid': {
    what = 'cannot start a new session'
    break
  }

  case 'prctl(PR_SET_NO_NEW_PRIVS)':
  case 'seccomp': {
    what = error.code === 'ENOSYS' ? 'cannot deny io_uring: no seccomp filter for this architecture or kernel' : 'cannot deny io_uring (seccomp filter)'
    break
  }

  default: {
    what = 'cannot prepare the child process'
  }
  }

  return new SpawnJoinedError(`${what}: ${strerror} (${error.syscall})`, error.syscall, error.code)
}

/**
 * Start `file` with `args` inside the given namespaces, optionally as uid/gid. The join and
 * credential switch happen in the forked child, never in this (multithreaded) process.
 * Returns the PID once the program has been exec'd; a failure before that is thrown.
 */
export function spawnJoined(file: string, args: readonly string[], options: SpawnJoinedOptions): number {
  const env = options.env ?? process.env
  for (const pinned of options.namespaces) {
    if (!pinned.isOpen) throw new Error(`the ${pinned.ns.name} namespace of ${pinned.source} was already released`)
  }

  try {
    return native().spawnJoined({
      argv: [file, ...args],
      candidates: execCandidates(file, env.PATH),
      cwd: options.cwd,
      denyIoUring: options.denyIoUring,
      env: envStrings(env),
      gid: options.gid,
      groups: options.groups,
      joins: options.namespaces.map(p => ({fd: p.fd, flag: p.ns.flag})),
      newSession: options.newSession,
      stdio: options.stdio ?? [0, 1, 2],
      uid: options.uid,
    })
  } catch (error) {
    if (!isNativeError(error)) throw error
    throw spawnFailure(error, file, options)
  }
}

const envStrings = (env: NodeJS.ProcessEnv) => Object.entries(env).flatMap(([k, v]) => (v === undefined ? [] : [`${k}=${v}`]))

/** The fds startProgram places at 3, 4, ...: an fd of ours, or a new pipe for the child to write. */
export const NEW_PIPE = 'pipe' as const
export type StartFd = number | typeof NEW_PIPE

export interface StartOptions {
  env: NodeJS.ProcessEnv
  /** Placed at 3, 4, ... in this order; each NEW_PIPE's read end comes back in `pipes`. */
  fds: readonly StartFd[]
  /** A session and process group of its own (setsid). */
  newSession?: boolean
  /** stderr on a new pipe (its read end comes back as `stderr`); otherwise /dev/null. */
  stderrPipe?: boolean
}

/** A program that could not be exec'd (ENOENT, EACCES, ...): nothing was left running or open. */
export class StartError extends Error {
  override name = 'StartError'

  constructor(
    message: string,
    readonly code: string,
    readonly errno: number,
  ) {
    super(message)
  }
}

/**
 * Start `file` without forking this process (posix_spawn): stdin and stdout on /dev/null,
 * stderr on a pipe or /dev/null, `fds` at 3, 4, ..., no other fd of ours, every signal at its
 * default and none blocked. Returns the PID and the read ends of the new pipes (close-on-exec,
 * ours to close). Watch its end with watchExit().
 */
export function startProgram(file: string, args: readonly string[], options: StartOptions): {pid: number; pipes: number[]; stderr?: number} {
  try {
    const started = native().startProgram({
      argv: [file, ...args],
      candidates: execCandidates(file, options.env.PATH),
      env: envStrings(options.env),
      fds: options.fds.map(fd => (fd === NEW_PIPE ? -1 : fd)),
      newSession: options.newSession ?? false,
      stderrPipe: options.stderrPipe ?? false,
    })
    return {pid: started.pid, pipes: started.pipes, stderr: started.stderr < 0 ? undefined : started.stderr}
  } catch (error) {
    if (!isNativeError(error)) throw error
    const strerror = error.message.replace(/^[^:]*: /, '').replace(/ \(.*\)$/, '')
    throw new StartError(`cannot run ${file}: ${strerror} (${error.code})`, error.code, error.errno)
  }
}

/** A child's end, with the signal named as Node names it. */
export type ChildExit = {code: null | number; signal: NodeJS.Signals | null}

const signalName = (n: number) => (Object.entries(osConstants.signals).find(([, v]) => v === n)?.[0] ?? `SIG${n}`) as NodeJS.Signals

/** How a child of ours ends, learnt on the event loop (no thread waits); it is reaped then. */
export interface ExitWatch {
  readonly exited: Promise<ChildExit>
  /** Signal it while it has not been reaped (never a reused PID); false once it has. */
  kill(signal: NodeJS.Signals): boolean
  /** Let this process exit while the child runs on. */
  unref(): void
}

export function watchExit(pid: number): ExitWatch {
  let watch: NativeExitWatch | undefined
  const exited = new Promise<ChildExit>(resolve => {
    watch = new (native().ExitWatch)(pid, raw => resolve({code: raw.code, signal: raw.signal === null ? null : signalName(raw.signal)}))
  })
  return {
    exited,
    kill: signal => watch!.kill(osConstants.signals[signal]),
    unref: () => watch!.unref(),
  }
}

/** Wait for a child started by spawnJoined, without blocking the event loop. */
export function waitPid(pid: number): Promise<{code: null | number; signal: null | number}> {
  return native().waitPid(pid)
}

/** One run of the hardware breakpoint probe (x86-64: DR0/DR7 on a traced child). */
export function probeHwBreakpoints(boundMs = 50): {detail: string; works: boolean | null} {
  return native().probeHwBreakpoints(boundMs)
}

/** Whether this process is a child subreaper now. */
export function isChildSubreaper(): boolean {
  return native().getChildSubreaper()
}

/** Make orphaned descendants (a killed CRIU's tasks) children of this process instead of PID 1. */
export function setChildSubreaper(on: boolean): void {
  native().setChildSubreaper(on)
}

/**
 * A SOCK_SEQPACKET socket pair (CRIU's RPC socket), one message per send and receive. `theirs`
 * is for the child's stdio; close it here once the child has it, so that `receive()` ends
 * (null) when the child is gone.
 */
export class MessageSocket {
  private closed = false
  private pending: Promise<unknown> | undefined
  readonly theirs: number
  private readonly ours: number

  constructor() {
    [this.ours, this.theirs] = native().seqpacketPair()
    finalizer.register(this, this.ours, this)
  }

  /** The child has its copy: drop ours. */
  handedOver(): void {
    native().closeFd(this.theirs)
  }

  /** The next message, or null once the other end is closed (or close() was called). */
  receive(): Promise<Buffer | null> {
    if (this.closed) return Promise.resolve(null)
    const next = native().receiveMessage(this.ours)
    this.pending = next.catch(() => {})
    return next
  }

  send(message: Uint8Array): void {
    native().sendMessage(this.ours, Buffer.from(message.buffer, message.byteOffset, message.byteLength))
  }

  /** Wake a pending receive (it gets null), then close. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    finalizer.unregister(this)
    native().shutdownSocket(this.ours)
    await this.pending
    native().closeFd(this.ours)
  }
}
