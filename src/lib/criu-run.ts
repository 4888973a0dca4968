/**
 * Running one CRIU process, for every command that starts CRIU: start it, stop it on a signal
 * or a timeout, and say why it was stopped. What to do with the result is the caller's.
 */
import {
  closeSync, ftruncateSync, openSync, readSync, statSync, writeSync,
} from 'node:fs'
import {Socket} from 'node:net'
import {resolve, sep} from 'node:path'
import {Readable} from 'node:stream'

import type {CriuStats} from './image-reader.js'

import {commandLine} from './cli-names.js'
import {Exit} from './criu.js'
import {FailedError, InterruptedError} from './errors.js'
import {
  ExitWatch, MessageSocket, NEW_PIPE, StartError, StartFd, startProgram, watchExit,
} from './native.js'
import {isRunning} from './proc.js'

/** Hooks for the shell: progress display and signal handling live with the caller. */
export interface CriuIO {
  /** Called when CRIU starts and ends (spinner). */
  progress?: (state: 'start' | 'stop', text: string) => void
  /** Register a handler for SIGINT/SIGTERM for the time CRIU runs; returns the unregister function. */
  onSignal?: (handler: (signal: NodeJS.Signals) => void) => () => void
}

/**
 * CRIU's log may not grow past this many MiB (flag --log-limit, env CRIU_LOG_LIMIT). A
 * checkpoint or restore of 1 GiB logs a few MiB at -v4; a CRIU 4.2.1 restore of an emptied
 * pages image loops and logs about 40 MB a second until the disk is full.
 */
export const DEFAULT_LOG_LIMIT_MIB = 256
/**
 * CRIU is stopped when its log has not grown for this many seconds (flag --stall-timeout, env
 * CRIU_STALL_TIMEOUT): a CRIU that waits forever (CRIU < 4.2 waiting for a task to trap on
 * VMs without debug registers) writes nothing. A 1 GiB restore takes a few seconds.
 */
export const DEFAULT_STALL_SECONDS = 300

/** The limits restore and checkpoint run CRIU with, from their requests (defaults filled in). */
export const criuLimits = (request: {logLimit?: number; stallSeconds?: number}) => ({
  logLimitMib: request.logLimit ?? DEFAULT_LOG_LIMIT_MIB,
  stallSeconds: request.stallSeconds ?? DEFAULT_STALL_SECONDS,
})
const LOG_POLL_MS = 200

/** Shell-quoted command line, for --dry-run and messages. */
export const shellQuote = (s: string) => (/^[\w./:=,+@%-]+$/.test(s) ? s : `'${s.replaceAll("'", String.raw`'\''`)}'`)

/**
 * A folder a command line names through a shell variable rather than by path: a dry run's new
 * work folder, which the printed command makes itself (`W=$(mktemp -d)`) and then uses as "$W".
 */
export interface ShellFolder {
  /** The variable, without the `$`. */
  readonly name: string
  /** How the folder appears in argv: arguments equal to it or under it are written with the variable. */
  readonly path: string
}

export function formatCommand(criu: string, argv: readonly string[], env: Record<string, string> = {}, folder?: ShellFolder): string {
  const word = (a: string) => {
    if (!folder || !(a === folder.path || a.startsWith(`${folder.path}/`))) return shellQuote(a)
    const rest = a.slice(folder.path.length)
    return `"$${folder.name}"${rest ? shellQuote(rest) : ''}`
  }

  return [...Object.entries(env).map(([k, v]) => `${k}=${shellQuote(v)}`), shellQuote(criu), ...argv.map(a => word(a))].join(' ')
}

/**
 * What CRIU measured in one run (its stats-dump or stats-restore, in the work folder), read once
 * CRIU has finished and before the folder is removed. The image reader (protobufjs, about 25 ms
 * to load) is loaded only here, for the callers that asked (--json).
 */
export async function readStats(workDir: string, action: 'dump' | 'restore'): Promise<CriuStats | undefined> {
  const {readCriuStats} = await import('./image-reader.js')
  return readCriuStats(workDir, action)
}

/** How long a finished CRIU's stderr may take to drain before its exit is reported without the rest. */
const STDERR_DRAIN_MS = 100

/** A pipe's read end as a stream (libuv polls it on the event loop; no thread waits on it). */
const pipeStream = (fd: number) => new Socket({fd, readable: true, writable: false})

/**
 * One CRIU process: started at construction, stopped (SIGKILL) at most once with a reason.
 * Started without forking this process (startProgram: posix_spawn copies no page tables, where
 * child_process.spawn forks all of Node first): the start call is 7-9x cheaper (bench figure 11).
 */
export class CriuRun {
  readonly exited: Promise<Exit>
  /** With options.rpc: this side of CRIU's RPC socket (criu swrk); close() it once CRIU has exited. */
  readonly rpc: MessageSocket | undefined
  /** CRIU's --status-fd pipe, with options.statusPipe. */
  readonly status: Readable | undefined
  private reason: FailedError | InterruptedError | undefined
  private isSettled = false
  /** Resolves when stop() is called: for what waits beyond CRIU's own exit. */
  readonly whenStopped: Promise<void>
  private stopRequested: () => void = () => {}
  private stderrText = ''
  private readonly stderrStream: Socket | undefined
  private readonly started: {pid: number; watch: ExitWatch} | undefined
  /**
   * CRIU's log, how large supervise() lets it grow (MiB) and how long it may stay silent
   * (seconds; undefined: any time, as for a daemon that waits by design).
   */
  readonly log: {file?: string; limitMib: number; stallSeconds?: number}

  /**
   * CRIU gets /dev/null on fds 0 and 1, a pipe on 2 (read through `stderr`), and
   * plan.inheritFds on 3, 4, .... options.statusPipe: one more pipe after the inherited fds
   * (CRIU's --status-fd, fd 3 + inheritFds.length), read through `status`. options.detached: a
   * session and process group of its own (a terminal's Ctrl-C reaches only this process, which
   * decides), and stderr on /dev/null, so that it can outlive this process (see release()); its
   * log file says what it did. options.rpc: CRIU's RPC socket as the last fd (plan.argv is then
   * `swrk FD`, FD being 3 + inheritFds.length), spoken through `rpc`. A CRIU that cannot be
   * started (no such file, not executable) makes `exited` reject with a FailedError.
   */
  constructor(
    plan: {argv: readonly string[]; criu: string; inheritFds: readonly number[]; logFile?: string; logLimitMib?: number; stallSeconds?: number},
    env: NodeJS.ProcessEnv,
    options: {detached?: boolean; rpc?: boolean; statusPipe?: boolean} = {},
  ) {
    this.log = {file: plan.logFile, limitMib: plan.logLimitMib ?? DEFAULT_LOG_LIMIT_MIB, stallSeconds: plan.stallSeconds}
    this.whenStopped = new Promise<void>(resolve => {
      this.stopRequested = resolve
    })
    this.rpc = options.rpc ? new MessageSocket() : undefined
    const fds: StartFd[] = [...plan.inheritFds, ...(options.statusPipe ? [NEW_PIPE] : []), ...(this.rpc ? [this.rpc.theirs] : [])]
    let started
    try {
      started = startProgram(plan.criu, plan.argv, {env, fds, newSession: options.detached, stderrPipe: !options.detached})
    } catch (error) {
      if (!(error instanceof StartError)) throw error
      this.status = options.statusPipe ? Readable.from([]) : undefined
      this.exited = Promise.reject(new FailedError(`cannot start CRIU (${plan.criu}): ${error.message}`))
      this.exited.catch(() => {}) // the caller learns it where it awaits `exited`
      return
    } finally {
      this.rpc?.handedOver()
    }

    const watch = watchExit(started.pid)
    this.started = {pid: started.pid, watch}
    this.status = options.statusPipe ? pipeStream(started.pipes[0]) : undefined
    const stderr = started.stderr === undefined ? undefined : pipeStream(started.stderr)
    this.stderrStream = stderr
    stderr?.on('data', (chunk: Buffer) => {
      this.stderrText += chunk.toString()
    })
    const drained = new Promise<void>(resolve => {
      if (stderr) stderr.once('close', resolve)
      else resolve()
    })
    // Reported once stderr is read to its end too (a message CRIU printed as it failed belongs to
    // its exit), but not later than a moment after: a task CRIU left behind may hold the pipe.
    this.exited = watch.exited.then(async exit => {
      let timer: NodeJS.Timeout | undefined
      await Promise.race([drained, new Promise(resolve => {
        timer = setTimeout(resolve, STDERR_DRAIN_MS)
      })])
      clearTimeout(timer)
      return exit
    })
  }

  get pid(): number | undefined {
    return this.started?.pid
  }

  /** Let CRIU run on after this process exits (a detached run only): nothing of ours waits for it. */
  release(): void {
    this.status?.destroy()
    this.stderrStream?.destroy()
    this.started?.watch.unref()
  }

  get stderr(): string {
    return this.stderrText
  }

  /** Why it was stopped, if it was. */
  get stopped(): FailedError | InterruptedError | undefined {
    return this.reason
  }

  /** CRIU's work is done and it now waits by design (for the tree, with --no-restore-detached): silence is fine. */
  settled(): void {
    this.log.stallSeconds = undefined
    this.isSettled = true
  }

  /** Whether settled() was called: a stop now ends what CRIU left, not CRIU. */
  get hasSettled(): boolean {
    return this.isSettled
  }

  stop(reason: FailedError | InterruptedError): void {
    this.reason ??= reason
    this.stopRequested()
    this.started?.watch.kill('SIGKILL') // CRIU ignores SIGTERM while it waits for a task to trap
  }
}

/**
 * What is kept of a log CRIU was stopped for (a looping CRIU 4.2.1 logs about 40 MB a second,
 * so the log holds the limit and more): its start, which says what CRIU was restoring, and its
 * end, which says where it looped, with a marker line between. At most 1 MiB and 4 MiB, and at
 * most a quarter and a half of the limit, so that a stopped log is always cut.
 */
export function logCutSizes(limitMib: number): {headBytes: number; tailBytes: number} {
  const limit = limitMib * 1024 * 1024
  return {headBytes: Math.floor(Math.min(1024 * 1024, limit / 4)), tailBytes: Math.floor(Math.min(4 * 1024 * 1024, limit / 2))}
}

/** The line that stands for what was cut out of a log. */
export const logCutMarker = (bytes: number) => `\n[oclif-plugin-criu: ${bytes} bytes of CRIU's log cut out here; CRIU was stopped at --log-limit]\n`

/**
 * Cut a log down to its first headBytes and last tailBytes, at line ends, with logCutMarker
 * between; in place (the same file). Nothing is cut from a log no longer than both. Returns the
 * bytes cut out. Call it once the writer has exited.
 */
export function cutLog(file: string, headBytes: number, tailBytes: number): number {
  const fd = openSync(file, 'r+')
  try {
    const {size} = statSync(file)
    if (size <= headBytes + tailBytes) return 0
    const head = Buffer.alloc(headBytes)
    readSync(fd, head, 0, headBytes, 0)
    const tail = Buffer.alloc(tailBytes)
    readSync(fd, tail, 0, tailBytes, size - tailBytes)
    // Whole lines: the head up to its last line end, the tail from after its first.
    const headEnd = head.lastIndexOf(0x0A) + 1 || headBytes
    const tailStart = tail.indexOf(0x0A) + 1 || 0
    const kept = tail.subarray(tailStart)
    const cut = size - headEnd - kept.length
    const marker = Buffer.from(logCutMarker(cut).slice(1)) // the head ends with a line end already
    writeSync(fd, marker, 0, marker.length, headEnd)
    writeSync(fd, kept, 0, kept.length, headEnd + marker.length)
    ftruncateSync(fd, headEnd + marker.length + kept.length)
    return cut
  } finally {
    closeSync(fd)
  }
}

/** Whether the process has exited (gone, or a zombie not yet reaped): it writes nothing more. */
function hasExited(pid: number | undefined): boolean {
  return pid === undefined || !isRunning(pid)
}

const mib = (bytes: number) => `${Number((bytes / 1024 / 1024).toFixed(2))} MiB`

/**
 * Poll CRIU's log: stop CRIU when it grows past the limit or stays silent past the stall limit.
 * A log stopped at the limit inside workDir (the run's work folder, temporary or --work-dir) is
 * cut by `cut` (cutLog), which supervise's release runs: not when CRIU exits, as the restored
 * tasks write to the same log from CRIU's restorer code (a looping restore keeps writing) until
 * the caller has ended them. A log outside it (the user's own --log-file) is left whole.
 */
function watchLog(run: CriuRun, aftermath: string, workDir: string | undefined): {cut: () => void; timer: NodeJS.Timeout} | undefined {
  const {file, limitMib} = run.log
  if (file === undefined) return undefined
  let last = {at: Date.now(), size: -1}
  let pendingCut = false
  const cut = () => {
    if (!pendingCut || !hasExited(run.pid)) return
    pendingCut = false
    const {headBytes, tailBytes} = logCutSizes(limitMib)
    try {
      cutLog(file, headBytes, tailBytes)
    } catch {
      // Gone or unreadable meanwhile: there is nothing to keep small.
    }
  }

  const timer = setInterval(() => {
    const size = fileSize(file)
    if (size === undefined) return // a pipe or terminal: nothing to measure
    if (size !== last.size) last = {at: Date.now(), size}
    const {stallSeconds} = run.log
    if (stallSeconds !== undefined && Date.now() - last.at > stallSeconds * 1000) {
      run.stop(new FailedError(
        `CRIU wrote nothing to its log for ${stallSeconds} s (--stall-timeout); it was stopped and ${aftermath}`,
        `CRIU was most likely stuck: see ${file}; if it was only slow, raise --stall-timeout`,
        file,
      ))
    }

    if (size <= limitMib * 1024 * 1024 || run.stopped) return
    let what = ''
    if (workDir !== undefined) {
      const inWorkDir = resolve(file).startsWith(resolve(workDir) + sep)
      const {headBytes, tailBytes} = logCutSizes(limitMib)
      what = inWorkDir
        ? `. The log was cut to its first ${mib(headBytes)} and its last ${mib(tailBytes)}, a marker line between them saying how much was cut out`
        : '. The log was left whole: it is your --log-file, outside the work folder'
      pendingCut = inWorkDir
    }

    run.stop(new FailedError(
      `CRIU's log grew past ${limitMib} MiB (${(size / 1024 / 1024).toFixed(0)} MiB in ${file}); CRIU was stopped and ${aftermath}${what}`,
      `CRIU was most likely looping (a damaged checkpoint can do that; \`${commandLine('checkpoint:verify')}\` checks one); if its log is really that large, raise --log-limit`,
      file,
    ))
  }, LOG_POLL_MS)
  return {cut, timer}
}

/** How big a file is now: 0 while it does not exist, undefined when it is not a regular file. */
function fileSize(path: string): number | undefined {
  const st = statSync(path, {throwIfNoEntry: false})
  if (!st) return 0
  return st.isFile() ? st.size : undefined
}

/**
 * Stop CRIU on SIGINT/SIGTERM, after the timeout, when its log grows past the run's log limit
 * (a looping CRIU must not fill the disk) and when its log stays silent past the run's stall
 * limit (a stuck CRIU must end without --timeout); returns the function that undoes them.
 * aftermath: what the messages say is the state once CRIU was stopped. workDir: the run's work
 * folder; a log in it that was stopped at the limit is cut (watchLog) by the returned function:
 * call it once CRIU and every task it restored have ended.
 */
export function supervise(
  run: CriuRun,
  timeout: number | undefined,
  io: CriuIO,
  {aftermath = 'nothing restored is left running', workDir}: {aftermath?: string; workDir?: string} = {},
): () => void {
  // Once settled (an attached restore waiting for its tree), CRIU has already finished.
  const stopped = () => (run.hasSettled ? `CRIU had finished, and ${aftermath}` : `CRIU was stopped and ${aftermath}`)
  const unregister = io.onSignal?.(signal => run.stop(new InterruptedError(`interrupted by ${signal}: ${stopped()}`)))
  const late = () => (run.hasSettled
    ? new FailedError(`the command did not end within ${timeout} s (--timeout): ${stopped()}`)
    : new FailedError(`CRIU did not finish within ${timeout} s; it was stopped and ${aftermath}`))
  const timer = timeout === undefined ? undefined : setTimeout(() => run.stop(late()), timeout * 1000)
  const watch = watchLog(run, aftermath, workDir)
  watch?.timer.unref()
  return () => {
    if (timer) clearTimeout(timer)
    if (watch) clearInterval(watch.timer)
    watch?.cut()
    unregister?.()
  }
}
