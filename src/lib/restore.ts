/**
 * Restore a CRIU checkpoint into existing namespaces. Usable without oclif:
 *   planRestore()  pure: the exact CRIU command line for a request and its pinned targets;
 *   runRestore()   effects: check, pin, run CRIU, verify, clean up.
 */
import {mkdtempSync, readFileSync, statSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join, resolve} from 'node:path'

import {hasAdminCapability} from './capabilities.js'
import {findProblems} from './checks.js'
import {CriuIO, CriuRun, formatCommand, supervise} from './criu-run.js'
import {criuEnvironment, criuFailure, CriuVersion, criuVersion, Exit, findCriu, hwBreakpointsWork} from './criu.js'
import {FailedError, InterruptedError, RefusedError} from './errors.js'
import {checkImagesDir} from './images.js'
import {JoinNsSpec, quote} from './join-ns.js'
import {
  LazyPages,
  lazyPagesCommand,
  LazyPagesIO,
  lazyPagesProblems,
  LazyPagesResult,
  lazyPagesSupport,
  planLazyPages,
  settleLazyPages,
  shutdownLazyPages,
  startLazyPages,
} from './lazy-pages.js'
import {NamespaceDesc} from './namespaces.js'
import {isChildSubreaper, PinnedNamespace, pinJoins, probeHwBreakpoints, setChildSubreaper, waitPid} from './native.js'
import {CheckpointNamespaces, hasNamespaceImages, joinConflicts, NamespacePlanRow, planNamespaces, readCheckpointNamespaces} from './plan.js'
import {isRunning, processStat} from './proc.js'

export const MANAGE_CGROUPS_MODES = ['none', 'props', 'soft', 'full', 'strict', 'ignore'] as const
export type ManageCgroupsMode = (typeof MANAGE_CGROUPS_MODES)[number]

export interface RestoreRequest {
  /** Restore even when a join would overwrite the joined namespace's state (see plan.ts). */
  allowOverwrite?: boolean
  allowUserNs?: boolean
  criuPath?: string
  detached: boolean
  dryRun?: boolean
  emptyNs: readonly NamespaceDesc[]
  extUnixSk?: boolean
  fileLocks?: boolean
  imagesDir: string
  joinNs: readonly JoinNsSpec[]
  /** Restore with CRIU's lazy-pages daemon serving the memory (see lazy-pages.ts). */
  lazyPages?: boolean
  logFile?: string
  manageCgroups?: ManageCgroupsMode
  pidfile?: string
  shellJob?: boolean
  tcpEstablished?: boolean
  /** Seconds; CRIU is killed and the restore fails cleanly when it takes longer. */
  timeout?: number
  /** CRIU's log level, 0-4; default 4 so that failures can be explained from the log. */
  verbosity?: number
  /** With lazyPages: wait until every page has arrived (default true). */
  waitPages?: boolean
  workDir?: string
}

/** What a join resolves to once pinned: the path CRIU opens (our fd) and the namespace's identity. */
export interface PlannedJoin {
  readonly criuPath: string
  /** The pinned fd, for when CRIU must inherit it instead of opening criuPath. */
  readonly fd?: number
  readonly ino: number
  readonly spec: JoinNsSpec
}

export interface RestorePlan {
  readonly argv: string[]
  /** fds CRIU inherits as 3, 4, ... (for --inherit-fd). */
  readonly inheritFds: number[]
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
  facts: {
    criu: string
    env?: Record<string, string>
    /** The checkpoint left its net namespace out under this key: a net join becomes --inherit-fd. */
    externalNetKey?: string
    joins: readonly PlannedJoin[]
    workDir: string
  },
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
  if (request.lazyPages) argv.push('--lazy-pages')
  for (const ns of request.emptyNs) argv.push('--empty-ns', ns.name)
  const inheritFds: number[] = []
  for (const join of facts.joins) {
    if (join.spec.ns.name === 'net' && facts.externalNetKey !== undefined && join.fd !== undefined) {
      inheritFds.push(join.fd)
      argv.push('--inherit-fd', `fd[${2 + inheritFds.length}]:${facts.externalNetKey}`)
    } else {
      argv.push('--join-ns', criuJoinArg(join.spec, join.criuPath))
    }
  }

  return {argv, criu: facts.criu, env: facts.env ?? {}, inheritFds, joins: facts.joins, logFile, pidfile, workDir}
}

/** Hooks for the shell: progress display and signal handling live with the caller. */
export interface RestoreIO extends CriuIO, LazyPagesIO {
  /** With --no-restore-detached: the tree is restored and verified, and is now being waited for. */
  restored?: (pid: number, namespaces: JoinedNamespace[]) => void
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
  /** With --lazy-pages: the times, the memory served and the daemon. */
  lazyPages?: LazyPagesResult
  logFile: string
  namespaces: JoinedNamespace[]
  pid: number
  workDir: string
}

export interface DryRunResult {
  command: string
  criuVersion: string
  /** With --lazy-pages: the daemon's command, started before `command`. */
  lazyPagesCommand?: string
  plan: {namespaces: NamespacePlanRow[]; pidfile: string; workDir: string}
}

function readPid(pidfile: string): number | undefined {
  try {
    const pid = Number(readFileSync(pidfile, 'utf8').trim())
    return Number.isInteger(pid) && pid > 0 ? pid : undefined
  } catch {
    return undefined
  }
}

function killProcess(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL')
  } catch {
    // gone already
  }
}

/** Check every joined namespace of the restored task against what was pinned. */
export function verifyJoins(pid: number, pins: readonly PinnedNamespace[]): JoinedNamespace[] {
  return pins.map(pin => {
    const st = statSync(`/proc/${pid}/ns/${pin.ns.procEntry}`)
    if (st.ino !== pin.ino || st.dev !== pin.dev) {
      throw new FailedError(`the restored task ${pid} is in ${pin.ns.name} namespace inode ${st.ino}, not the one joined from ${pin.source} (inode ${pin.ino})`)
    }

    return {
      inode: pin.ino, joined: true, source: pin.source, type: pin.ns.name,
    }
  })
}

const NO_OWN_NAMESPACES: CheckpointNamespaces = {netDevices: [], own: []}

/**
 * The checkpoint's own namespaces, and the joins refused because of them. The images are
 * decoded only when a namespace-state image is there: a plain checkpoint costs nothing.
 */
async function checkpointNamespaces(request: RestoreRequest): Promise<CheckpointNamespaces> {
  let images = NO_OWN_NAMESPACES
  try {
    if (request.dryRun || hasNamespaceImages(request.imagesDir)) images = await readCheckpointNamespaces(request.imagesDir)
  } catch (error) {
    throw new RefusedError(`--images-dir ${quote(request.imagesDir)}: cannot read the checkpoint's namespace images: ${(error as Error).message}`)
  }

  if (images.externalNetKey !== undefined && !request.joinNs.some(j => j.ns.name === 'net')) {
    throw new RefusedError(
      `--images-dir ${quote(request.imagesDir)}: the checkpoint left its net namespace out (external key ${quote(images.externalNetKey)}), so it must join one`,
      'give -J net:PID or -J net:NS_FILE',
    )
  }

  const conflicts = joinConflicts(images, request.joinNs)
  if (conflicts.length > 0 && !request.allowOverwrite) {
    throw new RefusedError(conflicts.map(c => c.message).join('\n'), 'pass --allow-overwrite to restore anyway, or join another namespace')
  }

  return images
}

function isDirectory(path: string): boolean {
  try {
    return statSync(path).isDirectory()
  } catch {
    return false
  }
}

/** Everything before CRIU starts: the same for a real run and a dry run. */
async function prepare(request: RestoreRequest) {
  const problems = [...findProblems(request).filter(p => p.severity === 'error').map(p => p.message), ...lazyPagesProblems(request)]
  if (problems.length > 0) throw new RefusedError(problems.join('\n'))
  if (!request.dryRun && !hasAdminCapability()) {
    throw new FailedError('restore needs root: joining namespaces and running CRIU need CAP_SYS_ADMIN', 'run it as root (sudo)')
  }

  checkImagesDir(request.imagesDir)
  const images = await checkpointNamespaces(request)
  if (request.workDir !== undefined && !isDirectory(request.workDir)) {
    throw new RefusedError(`--work-dir ${quote(request.workDir)}: no such folder`, 'create it first, or leave --work-dir out to use a new temporary folder')
  }

  if (request.timeout !== undefined && !(request.timeout > 0)) throw new RefusedError(`--timeout ${request.timeout}: give a number of seconds above 0`)
  // Targets before CRIU: a refused request never starts a CRIU process, not even --version.
  const pins = pinJoins(request.joinNs)
  try {
    const criu = findCriu(request.criuPath)
    const version: CriuVersion = await criuVersion(criu)
    if (request.lazyPages) {
      const support = await lazyPagesSupport(criu, version)
      if (!support.supported) throw new FailedError(`--lazy-pages cannot work here: ${support.reason}`, 'restore without --lazy-pages')
    }

    return {criu, images, pins, version}
  } catch (error) {
    for (const p of pins) p.close()
    throw error
  }
}

/** The pinned targets as CRIU will be told to join them: through this process's fds. */
function plannedJoins(pins: readonly PinnedNamespace[], specs: readonly JoinNsSpec[]): PlannedJoin[] {
  return pins.map((pin, i) => ({criuPath: pin.procPath, fd: pin.fd, ino: pin.ino, spec: specs[i]}))
}

/** What restore would do, without running CRIU: the targets are checked and pinned, then released. */
export async function dryRunRestore(request: RestoreRequest): Promise<DryRunResult> {
  const {criu, images, pins, version} = await prepare(request)
  try {
    const workDir = request.workDir ? resolve(request.workDir) : join(tmpdir(), 'mycli-restore-XXXXXX')
    const plan = planRestore(request, {
      criu,
      env: diffEnv(criuEnvironment(version, () => hwBreakpointsWork(probeHwBreakpoints))),
      externalNetKey: images.externalNetKey,
      joins: plannedJoins(pins, request.joinNs),
      workDir,
    })
    return {
      command: formatCommand(plan.criu, plan.argv, plan.env),
      criuVersion: version.text,
      lazyPagesCommand: request.lazyPages ? lazyPagesCommand(planLazyPages({criu, imagesDir: request.imagesDir, workDir}), plan.env) : undefined,
      plan: {namespaces: planNamespaces(images, request), pidfile: plan.pidfile, workDir},
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

const sleep = (ms: number) =>
  new Promise(r => {
    setTimeout(r, ms)
  })

/**
 * With --no-restore-detached CRIU stays the tree's parent until the tree exits. The PID is
 * read from the pidfile as soon as CRIU writes it, verified, and then the tree is waited for.
 */
async function attachedRestore(
  run: CriuRun,
  plan: RestorePlan,
  pins: PinnedNamespace[],
  io: RestoreIO,
): Promise<{exit: Exit; namespaces?: JoinedNamespace[]; pid?: number}> {
  const state: {exit?: Exit} = {}
  run.exited.then(
    e => {
      state.exit = e
    },
    () => {},
  )
  let pid: number | undefined
  while (state.exit === undefined && (pid = readPid(plan.pidfile)) === undefined) await sleep(20)
  if (pid === undefined || run.stopped) return {exit: await run.exited}
  const namespaces = verifyJoins(pid, pins)
  io.progress?.('stop', `restored as PID ${pid}; waiting for it to exit`)
  io.restored?.(pid, namespaces)
  for (const p of pins) p.close()
  return {exit: await run.exited, namespaces, pid}
}

/** The parent PID of a process; undefined when it is gone or a zombie. */
function parentOf(pid: number): number | undefined {
  return isRunning(pid) ? processStat(pid)?.ppid : undefined
}

let subreaperHolds = 0
let subreaperBefore = false

/**
 * Subreaper while at least one restore runs in this process (restores may run concurrently);
 * afterwards the setting is what it was, so a host that is a subreaper itself stays one.
 */
function holdSubreaper(): void {
  if (subreaperHolds++ > 0) return
  subreaperBefore = isChildSubreaper()
  if (!subreaperBefore) setChildSubreaper(true)
}

function releaseSubreaper(): void {
  if (--subreaperHolds === 0 && !subreaperBefore) setChildSubreaper(false)
}

/**
 * The PIDs the checkpoint recreates; none when pstree.img cannot be read (CRIU said why).
 * Read only after a failure: the image reader's protobufjs would cost every restore 25 ms.
 */
async function pidsToRestore(imagesDir: string): Promise<number[]> {
  try {
    const {checkpointPids} = await import('./image-reader.js')
    return checkpointPids(imagesDir)
  } catch {
    return []
  }
}

/** Whether a process descends from this one. */
function ours(pid: number): boolean {
  let p: number | undefined = pid
  for (let depth = 0; p !== undefined && p > 1 && depth < 64; depth++) {
    p = parentOf(p)
    if (p === process.pid) return true
  }

  return false
}

/**
 * End what a failed restore left: the checkpoint's PIDs that are now our descendants (this
 * process is the subreaper, so a killed CRIU's tasks come to us, not to PID 1). A process
 * that merely has one of those PIDs but is not ours is never touched. Our direct children
 * are reaped, so that their PIDs are free again.
 */
async function endHalfRestored(pids: readonly number[]): Promise<number[]> {
  const victims = pids.filter(pid => ours(pid))
  const children = victims.filter(pid => parentOf(pid) === process.pid)
  for (const pid of victims) killProcess(pid)
  await Promise.all(children.map(pid => waitPid(pid).catch(() => {})))
  // Grandchildren reparent to us as their parents die: reap those too.
  for (const pid of victims.filter(v => !children.includes(v))) {
    await waitPid(pid).catch(() => {})
  }

  return victims
}

/**
 * Restore as the request says. While CRIU runs this process is a child subreaper (see
 * endHalfRestored); a failure at any point leaves no restored or half-restored task behind.
 */
export async function runRestore(request: RestoreRequest, io: RestoreIO = {}): Promise<RestoreResult> {
  const started = Date.now()
  const {criu, images, pins, version} = await prepare(request)
  let release: (() => void) | undefined
  let run: CriuRun | undefined
  let lazy: LazyPages | undefined
  try {
    const workDir = request.workDir ? resolve(request.workDir) : mkdtempSync(join(tmpdir(), 'mycli-restore-'))
    const plan = planRestore(request, {
      criu,
      externalNetKey: images.externalNetKey,
      joins: plannedJoins(pins, request.joinNs),
      workDir,
    })

    const env = criuEnvironment(version, () => hwBreakpointsWork(probeHwBreakpoints))
    holdSubreaper()
    io.progress?.('start', `Restoring ${request.imagesDir} with CRIU ${version.text}`)
    lazy = await startLazyPages(request, {criu, env, workDir}, io)
    run = new CriuRun(plan, env)
    release = supervise(run, request.timeout, io)

    const result = (namespaces: JoinedNamespace[], pid: number, lazyPages?: LazyPagesResult): RestoreResult => ({
      criuVersion: version.text,
      durationMs: Date.now() - started,
      lazyPages,
      logFile: plan.logFile,
      namespaces,
      pid,
      workDir,
    })

    if (!request.detached) {
      const attached = await attachedRestore(run, plan, pins, io)
      if (run.stopped) throw run.stopped
      if (attached.pid === undefined) throw criuFailure('restore', plan.logFile, attached.exit, run.stderr)
      if (attached.exit.code !== 0) {
        throw new FailedError(`CRIU, waiting for the restored tree (PID ${attached.pid}), ended with ${attached.exit.signal ?? `exit code ${attached.exit.code}`}`, undefined, plan.logFile)
      }

      return result(attached.namespaces!, attached.pid)
    }

    const exit = await run.exited
    io.progress?.('stop', exit.code === 0 ? 'done' : 'failed')
    const pid = readPid(plan.pidfile)
    if (run.stopped) throw run.stopped
    if (exit.code !== 0 || pid === undefined) throw criuFailure('restore', plan.logFile, exit, run.stderr)
    const namespaces = verifyJoins(pid, pins)
    return result(namespaces, pid, await settleLazyPages(lazy, request, started, io))
  } catch (error) {
    await shutdownLazyPages(lazy, error)
    if (run) {
      run.stop(error instanceof InterruptedError ? error : new FailedError('restore failed'))
      await run.exited.catch(() => {})
      await endHalfRestored(await pidsToRestore(request.imagesDir))
    }

    throw error
  } finally {
    release?.()
    if (run) releaseSubreaper()
    for (const p of pins) p.close()
  }
}
