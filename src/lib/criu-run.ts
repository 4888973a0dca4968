/**
 * Running one CRIU process, for every command that starts CRIU: start it, stop it on a signal
 * or a timeout, and say why it was stopped. What to do with the result is the caller's.
 */
import {statSync} from 'node:fs'
import {Socket} from 'node:net'
import {Readable} from 'node:stream'

import type {CriuStats} from './image-reader.js'

import {commandLine} from './cli-names.js'
import {Exit} from './criu.js'
import {FailedError, InterruptedError} from './errors.js'
import {
  ExitWatch, MessageSocket, NEW_PIPE, StartError, StartFd, startProgram, watchExit,
} from './native.js'

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
  }

  stop(reason: FailedError | InterruptedError): void {
    this.reason ??= reason
    this.stopRequested()
    this.started?.watch.kill('SIGKILL') // CRIU ignores SIGTERM while it waits for a task to trap
  }
}

/** Poll CRIU's log: stop CRIU when it grows past the limit or stays silent past the stall limit. */
function watchLog(run: CriuRun, aftermath: string): NodeJS.Timeout | undefined {
  const {file, limitMib} = run.log
  if (file === undefined) return undefined
  let last = {at: Date.now(), size: -1}
  return setInterval(() => {
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

    if (size <= limitMib * 1024 * 1024) return
    run.stop(new FailedError(
      `CRIU's log grew past ${limitMib} MiB (${(size / 1024 / 1024).toFixed(0)} MiB in ${file}); CRIU was stopped and ${aftermath}`,
      `CRIU was most likely looping (a damaged checkpoint can do that; \`${commandLine('checkpoint:verify')}\` checks one); if its log is really that large, raise --log-limit`,
      file,
    ))
  }, LOG_POLL_MS)
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
 */
export function supervise(run: CriuRun, timeout: number | undefined, io: CriuIO, aftermath = 'nothing restored is left running'): () => void {
  const unregister = io.onSignal?.(signal => run.stop(new InterruptedError(`interrupted by ${signal}: CRIU was stopped and ${aftermath}`)))
  const timer = timeout === undefined
    ? undefined
    : setTimeout(() => run.stop(new FailedError(`CRIU did not finish within ${timeout} s; it was stopped and ${aftermath}`)), timeout * 1000)
  const watch = watchLog(run, aftermath)
  watch?.unref()
  return () => {
    if (timer) clearTimeout(timer)
    if (watch) clearInterval(watch)
    unregister?.()
  }
}
