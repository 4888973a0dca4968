/**
 * Running one CRIU process, for every command that starts CRIU: spawn it, stop it on a signal
 * or a timeout, and say why it was stopped. What to do with the result is the caller's.
 */
import {ChildProcess, spawn, StdioOptions} from 'node:child_process'
import {Readable} from 'node:stream'

import {Exit} from './criu.js'
import {FailedError, InterruptedError} from './errors.js'

/** Hooks for the shell: progress display and signal handling live with the caller. */
export interface CriuIO {
  /** Called when CRIU starts and ends (spinner). */
  progress?: (state: 'start' | 'stop', text: string) => void
  /** Register a handler for SIGINT/SIGTERM for the time CRIU runs; returns the unregister function. */
  onSignal?: (handler: (signal: NodeJS.Signals) => void) => () => void
}

/** Shell-quoted command line, for --dry-run and messages. */
const shellQuote = (s: string) => (/^[\w./:=,+@%-]+$/.test(s) ? s : `'${s.replaceAll("'", String.raw`'\''`)}'`)

export function formatCommand(criu: string, argv: readonly string[], env: Record<string, string> = {}): string {
  return [...Object.entries(env).map(([k, v]) => `${k}=${shellQuote(v)}`), shellQuote(criu), ...argv.map(a => shellQuote(a))].join(' ')
}

/** One CRIU process: started at construction, stopped (SIGKILL) at most once with a reason. */
export class CriuRun {
  readonly exited: Promise<Exit>
  /** CRIU's --status-fd pipe, with options.statusPipe. */
  readonly status: Readable | undefined
  private reason: FailedError | InterruptedError | undefined
  private stderrText = ''
  private readonly child: ChildProcess

  /**
   * options.statusPipe: one more pipe after the inherited fds (CRIU's --status-fd, fd
   * 3 + inheritFds.length), read through `status`. options.detached: a process group of its
   * own (a terminal's Ctrl-C reaches only this process, which decides), and no stderr pipe,
   * so that it can outlive this process (see release()); its log file says what it did.
   */
  constructor(
    plan: {argv: readonly string[]; criu: string; inheritFds: readonly number[]},
    env: NodeJS.ProcessEnv,
    options: {detached?: boolean; statusPipe?: boolean} = {},
  ) {
    const stdio: StdioOptions = ['ignore', 'ignore', options.detached ? 'ignore' : 'pipe', ...plan.inheritFds, ...(options.statusPipe ? ['pipe' as const] : [])]
    this.child = spawn(plan.criu, plan.argv, {detached: options.detached, env, stdio})
    this.status = options.statusPipe ? (this.child.stdio[3 + plan.inheritFds.length] as Readable) : undefined
    this.child.stderr?.on('data', (chunk: Buffer) => {
      this.stderrText += chunk.toString()
    })
    this.exited = new Promise((resolveExit, rejectExit) => {
      this.child.once('error', error => rejectExit(new FailedError(`cannot start CRIU (${plan.criu}): ${error.message}`)))
      this.child.once('exit', (code, signal) => resolveExit({code, signal}))
    })
  }

  get pid(): number | undefined {
    return this.child.pid
  }

  /** Let CRIU run on after this process exits (a detached run only). */
  release(): void {
    this.status?.destroy()
    this.child.unref()
  }

  get stderr(): string {
    return this.stderrText
  }

  /** Why it was stopped, if it was. */
  get stopped(): FailedError | InterruptedError | undefined {
    return this.reason
  }

  stop(reason: FailedError | InterruptedError): void {
    this.reason ??= reason
    this.child.kill('SIGKILL') // CRIU ignores SIGTERM while it waits for a task to trap
  }
}

/** Stop CRIU on SIGINT/SIGTERM and after the timeout; returns the function that undoes both. */
export function supervise(run: CriuRun, timeout: number | undefined, io: CriuIO, aftermath = 'nothing restored is left running'): () => void {
  const unregister = io.onSignal?.(signal => run.stop(new InterruptedError(`interrupted by ${signal}: CRIU was stopped and ${aftermath}`)))
  const timer = timeout === undefined
    ? undefined
    : setTimeout(() => run.stop(new FailedError(`CRIU did not finish within ${timeout} s; it was stopped and ${aftermath}`)), timeout * 1000)
  return () => {
    if (timer) clearTimeout(timer)
    unregister?.()
  }
}
