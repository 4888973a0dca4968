/**
 * Running one CRIU process, for every command that starts CRIU: spawn it, stop it on a signal
 * or a timeout, and say why it was stopped. What to do with the result is the caller's.
 */
import {ChildProcess, spawn} from 'node:child_process'

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
  private reason: FailedError | InterruptedError | undefined
  private stderrText = ''
  private readonly child: ChildProcess

  constructor(plan: {argv: readonly string[]; criu: string; inheritFds: readonly number[]}, env: NodeJS.ProcessEnv) {
    this.child = spawn(plan.criu, plan.argv, {env, stdio: ['ignore', 'ignore', 'pipe', ...plan.inheritFds]})
    this.child.stderr!.on('data', (chunk: Buffer) => {
      this.stderrText += chunk.toString()
    })
    this.exited = new Promise((resolveExit, rejectExit) => {
      this.child.once('error', error => rejectExit(new FailedError(`cannot start CRIU (${plan.criu}): ${error.message}`)))
      this.child.once('exit', (code, signal) => resolveExit({code, signal}))
    })
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
