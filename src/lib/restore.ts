/**
 * Restore a CRIU checkpoint into existing namespaces. Usable without oclif:
 *   planRestore()  pure: the exact CRIU command line for a request and its pinned targets;
 *   runRestore()   effects: check, pin, run CRIU, verify, clean up.
 */
import {ChildProcess, spawn} from 'node:child_process'
import {existsSync, mkdtempSync, readFileSync, statSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join, resolve} from 'node:path'

import {findProblems} from './checks.js'
import {criuEnvironment, criuErrorLines, CriuVersion, criuVersion, findCriu, hintFor, hwBreakpointsWork} from './criu.js'
import {FailedError, InterruptedError, RefusedError} from './errors.js'
import {checkImagesDir} from './images.js'
import {formatJoinNs, JoinNsSpec} from './join-ns.js'
import {NamespaceDesc} from './namespaces.js'
import {PinError, PinnedNamespace, pinPath, pinPid, probeHwBreakpoints} from './native.js'

export const MANAGE_CGROUPS_MODES = ['none', 'props', 'soft', 'full', 'strict', 'ignore'] as const
export type ManageCgroupsMode = (typeof MANAGE_CGROUPS_MODES)[number]

export interface RestoreRequest {
  allowUserNs?: boolean
  criuPath?: string
  detached: boolean
  dryRun?: boolean
  emptyNs: readonly NamespaceDesc[]
  extUnixSk?: boolean
  fileLocks?: boolean
  imagesDir: string
  joinNs: readonly JoinNsSpec[]
  logFile?: string
  manageCgroups?: ManageCgroupsMode
  pidfile?: string
  shellJob?: boolean
  tcpEstablished?: boolean
  /** Seconds; CRIU is killed and the restore fails cleanly when it takes longer. */
  timeout?: number
  /** CRIU's log level, 0-4; default 4 so that failures can be explained from the log. */
  verbosity?: number
  workDir?: string
}

/** What a join resolves to once pinned: the path CRIU opens (our fd) and the namespace's identity. */
export interface PlannedJoin {
  readonly criuPath: string
  readonly ino: number
  readonly spec: JoinNsSpec
}

export interface RestorePlan {
  readonly argv: string[]
  readonly criu: string
  readonly env: Record<string, string>
  readonly joins: readonly PlannedJoin[]
  readonly logFile: string
  readonly pidfile: string
  readonly workDir: string
}

/** CRIU's own syntax: `user:PATH,UID,GID`; CRIU splits at the first comma, so no comma in PATH. */
export function criuJoinArg(spec: JoinNsSpec, path: string): string {
  if (path.includes(',')) throw new Error(`CRIU cannot take a --join-ns path with a comma: ${path}`)
  let text = `${spec.ns.name}:${path}`
  if (spec.uid !== undefined) text += `,${spec.uid}`
  if (spec.gid !== undefined) text += `,${spec.gid}`
  return text
}

/** The exact CRIU command line. Pure. */
export function planRestore(
  request: RestoreRequest,
  facts: {criu: string; env?: Record<string, string>; joins: readonly PlannedJoin[]; workDir: string},
): RestorePlan {
  const {workDir} = facts
  const logFile = request.logFile ? resolve(request.logFile) : join(workDir, 'restore.log')
  const pidfile = request.pidfile ? resolve(request.pidfile) : join(workDir, 'restore.pid')
  const argv = ['restore', '--images-dir', resolve(request.imagesDir), '--work-dir', workDir, '--log-file', logFile]
  argv.push(`-v${request.verbosity ?? 4}`, '--pidfile', pidfile)
  if (request.detached) argv.push('--restore-detached')
  if (request.shellJob) argv.push('--shell-job')
  if (request.tcpEstablished) argv.push('--tcp-established')
  if (request.extUnixSk) argv.push('--ext-unix-sk')
  if (request.fileLocks) argv.push('--file-locks')
  if (request.manageCgroups) argv.push(`--manage-cgroups=${request.manageCgroups}`)
  for (const ns of request.emptyNs) argv.push('--empty-ns', ns.name)
  for (const join of facts.joins) argv.push('--join-ns', criuJoinArg(join.spec, join.criuPath))
  return {argv, criu: facts.criu, env: facts.env ?? {}, joins: facts.joins, logFile, pidfile, workDir}
}

/** Shell-quoted command line, for --dry-run and messages. */
export function formatCommand(criu: string, argv: readonly string[], env: Record<string, string> = {}): string {
  const q = (s: string) => (/^[\w./:=,+@%-]+$/.test(s) ? s : `'${s.replaceAll("'", String.raw`'\''`)}'`)
  return [...Object.entries(env).map(([k, v]) => `${k}=${q(v)}`), q(criu), ...argv.map((a) => q(a))].join(' ')
}

export interface JoinedNamespace {
  inode: number
  joined: true
  source: string
  type: string
}

export interface RestoreResult {
  criuVersion: string
  durationMs: number
  logFile: string
  namespaces: JoinedNamespace[]
  pid: number
  workDir: string
}

export interface DryRunResult {
  command: string
  criuVersion: string
  plan: {namespaces: {source: string; type: string}[]; pidfile: string; workDir: string}
}

/** Hooks for the shell: progress display and signal handling live with the caller. */
export interface RestoreIO {
  /** Called when CRIU starts and ends (spinner). */
  progress?: (state: 'start' | 'stop', text: string) => void
  /** Register a handler for SIGINT/SIGTERM for the time CRIU runs; returns the unregister function. */
  onSignal?: (handler: (signal: NodeJS.Signals) => void) => () => void
}

/** Root, or CAP_SYS_ADMIN (setns) in the effective set. */
export function hasAdminCapability(status = readFileSync('/proc/self/status', 'utf8')): boolean {
  const m = /^CapEff:\s*([\da-f]+)$/m.exec(status)
  if (!m) return false
  return (BigInt(`0x${m[1]}`) & (1n << 21n)) !== 0n
}

function pinAll(joins: readonly JoinNsSpec[]): PinnedNamespace[] {
  const pins: PinnedNamespace[] = []
  try {
    for (const spec of joins) {
      try {
        pins.push(spec.target.kind === 'pid' ? pinPid(spec.ns, spec.target.pid) : pinPath(spec.ns, spec.target.path))
      } catch (error) {
        if (error instanceof PinError) throw new RefusedError(`--join-ns ${JSON.stringify(formatJoinNs(spec))}: ${error.message}`)
        throw error
      }
    }

    return pins
  } catch (error) {
    for (const p of pins) p.close()
    throw error
  }
}

function readPid(pidfile: string): number | undefined {
  try {
    const pid = Number(readFileSync(pidfile, 'utf8').trim())
    return Number.isInteger(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}

function killTree(pid: number | undefined): void {
  if (pid === undefined) return
  try {
    process.kill(pid, 'SIGKILL')
  } catch {
    // gone already
  }
}

/** Check every joined namespace of the restored task against what was pinned. */
export function verifyJoins(pid: number, pins: readonly PinnedNamespace[]): JoinedNamespace[] {
  return pins.map((pin) => {
    const st = statSync(`/proc/${pid}/ns/${pin.ns.procEntry}`)
    if (st.ino !== pin.ino || st.dev !== pin.dev) {
      throw new FailedError(
        `the restored task ${pid} is in ${pin.ns.name} namespace inode ${st.ino}, not the one joined from ${pin.source} (inode ${pin.ino})`,
      )
    }

    return {inode: pin.ino, joined: true, source: pin.source, type: pin.ns.name}
  })
}

async function waitForExit(child: ChildProcess): Promise<{code: null | number; signal: NodeJS.Signals | null}> {
  if (child.exitCode !== null || child.signalCode !== null) return {code: child.exitCode, signal: child.signalCode}
  return new Promise((resolveExit) => {
    child.once('exit', (code, signal) => resolveExit({code, signal}))
  })
}

/** Everything before CRIU starts: the same for a real run and a dry run. */
async function prepare(request: RestoreRequest) {
  const problems = findProblems(request).filter((p) => p.severity === 'error')
  if (problems.length > 0) throw new RefusedError(problems.map((p) => p.message).join('\n'))
  checkImagesDir(request.imagesDir)
  if (request.workDir !== undefined && !existsSync(request.workDir)) {
    throw new RefusedError(`--work-dir ${JSON.stringify(request.workDir)}: no such folder`)
  }

  if (request.timeout !== undefined && !(request.timeout > 0)) throw new RefusedError(`--timeout ${request.timeout}: give a number of seconds above 0`)
  if (!request.dryRun && !hasAdminCapability()) {
    throw new FailedError('restore needs root: joining namespaces and running CRIU need CAP_SYS_ADMIN', 'run it as root (sudo)')
  }

  const criu = findCriu(request.criuPath)
  const version: CriuVersion = await criuVersion(criu)
  return {criu, version}
}

/** What restore would do, without running CRIU: the targets are checked and pinned, then released. */
export async function dryRunRestore(request: RestoreRequest): Promise<DryRunResult> {
  const {criu, version} = await prepare(request)
  const pins = pinAll(request.joinNs)
  try {
    const workDir = request.workDir ? resolve(request.workDir) : join(tmpdir(), 'mycli-restore-XXXXXX')
    const plan = planRestore(request, {
      criu,
      env: diffEnv(criuEnvironment(version, () => hwBreakpointsWork(probeHwBreakpoints))),
      joins: pins.map((pin, i) => ({criuPath: pin.procPath, ino: pin.ino, spec: request.joinNs[i]})),
      workDir,
    })
    return {
      command: formatCommand(plan.criu, plan.argv, plan.env),
      criuVersion: version.text,
      plan: {namespaces: pins.map((p) => ({source: p.source, type: p.ns.name})), pidfile: plan.pidfile, workDir},
    }
  } finally {
    for (const p of pins) p.close()
  }
}

/** The variables CRIU gets beyond ours (for display). */
function diffEnv(env: NodeJS.ProcessEnv): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(env)) if (v !== undefined && process.env[k] !== v) out[k] = v
  return out
}

export async function runRestore(request: RestoreRequest, io: RestoreIO = {}): Promise<RestoreResult> {
  const started = Date.now()
  const {criu, version} = await prepare(request)
  const pins = pinAll(request.joinNs)
  let child: ChildProcess | undefined
  let unregister: (() => void) | undefined
  let timer: NodeJS.Timeout | undefined
  let restoredPid: number | undefined
  try {
    const workDir = request.workDir ? resolve(request.workDir) : mkdtempSync(join(tmpdir(), 'mycli-restore-'))
    const env = criuEnvironment(version, () => hwBreakpointsWork(probeHwBreakpoints))
    const plan = planRestore(request, {
      criu,
      joins: pins.map((pin, i) => ({criuPath: pin.procPath, ino: pin.ino, spec: request.joinNs[i]})),
      workDir,
    })

    let stopReason: InterruptedError | FailedError | undefined
    io.progress?.('start', `Restoring ${request.imagesDir} with CRIU ${version.text}`)
    child = spawn(plan.criu, plan.argv, {env, stdio: ['ignore', 'ignore', 'pipe']})
    let stderr = ''
    child.stderr!.on('data', (chunk: Buffer) => {
      stderr += chunk.toString()
    })
    const spawnError = new Promise<Error>((resolveError) => {
      child!.once('error', resolveError)
    })
    const stop = (reason: InterruptedError | FailedError) => {
      stopReason ??= reason
      child?.kill('SIGKILL') // CRIU ignores SIGTERM while it waits for a task to trap
      killTree(readPid(plan.pidfile))
    }

    unregister = io.onSignal?.((signal) => stop(new InterruptedError(`interrupted by ${signal}: CRIU was stopped and nothing restored is left running`)))
    if (request.timeout !== undefined) {
      timer = setTimeout(() => stop(new FailedError(`CRIU did not finish within ${request.timeout} s; it was stopped and nothing restored is left running`)), request.timeout * 1000)
    }

    let exit: {code: null | number; signal: NodeJS.Signals | null}
    if (request.detached) {
      const result = await Promise.race([waitForExit(child), spawnError])
      if (result instanceof Error) throw new FailedError(`cannot start CRIU (${plan.criu}): ${result.message}`)
      exit = result
      restoredPid = readPid(plan.pidfile)
    } else {
      // CRIU stays the parent and waits for the tree; the PID appears in the pidfile once restored.
      const exited = waitForExit(child)
      let done = false
      exited.then(() => {
        done = true
      })
      while (!done && (restoredPid = readPid(plan.pidfile)) === undefined) {
        await new Promise((r) => {
          setTimeout(r, 20)
        })
      }

      if (restoredPid !== undefined && !stopReason) {
        const namespaces = verifyJoins(restoredPid, pins)
        io.progress?.('stop', `restored as PID ${restoredPid}; waiting for it to exit`)
        for (const p of pins) p.close()
        const result = {criuVersion: version.text, durationMs: Date.now() - started, logFile: plan.logFile, namespaces, pid: restoredPid, workDir}
        exit = await exited
        if (stopReason) throw stopReason
        if (exit.code !== 0) throw new FailedError(`the restored tree ended with ${exit.signal ?? `exit code ${exit.code}`}`, undefined, plan.logFile)
        return result
      }

      exit = await exited
    }

    io.progress?.('stop', exit.code === 0 ? 'done' : 'failed')
    if (stopReason) throw stopReason
    if (exit.code !== 0 || restoredPid === undefined) {
      killTree(restoredPid)
      let log = ''
      try {
        log = readFileSync(plan.logFile, 'utf8')
      } catch {
        // no log: CRIU failed before it could write one
      }

      const lines = criuErrorLines(log)
      const detail = lines.length > 0 ? `\n${lines.map((l) => `  ${l}`).join('\n')}` : stderr.trim() ? `\n  ${stderr.trim().split('\n').slice(0, 5).join('\n  ')}` : ''
      throw new FailedError(
        `CRIU restore failed (${exit.signal ?? `exit code ${exit.code}`})${detail}\nLog: ${plan.logFile}`,
        hintFor(log + stderr),
        plan.logFile,
      )
    }

    let namespaces
    try {
      namespaces = verifyJoins(restoredPid, pins)
    } catch (error) {
      killTree(restoredPid)
      throw error
    }

    return {criuVersion: version.text, durationMs: Date.now() - started, logFile: plan.logFile, namespaces, pid: restoredPid, workDir}
  } finally {
    if (timer) clearTimeout(timer)
    unregister?.()
    for (const p of pins) p.close()
  }
}
