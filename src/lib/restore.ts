/**
 * Restore a CRIU checkpoint into existing namespaces. Usable without oclif:
 *   planRestore()     pure: the CRIU command line for a request (what --dry-run shows);
 *   planRpcRestore()  pure: the same request as CRIU's RPC gets it (what the real run sends);
 *   runRestore()      effects: check, pin, run CRIU (`criu swrk`), verify every task at CRIU's
 *                     post-restore stage (before it resumes them), verify the root again, clean up.
 */
import {closeSync, existsSync, openSync, readFileSync, rmSync, statSync, symlinkSync} from 'node:fs'
import {dirname, join, resolve} from 'node:path'

import type {CriuStats} from './image-reader.js'

import {criuCapabilities, hasAdminCapability} from './capabilities.js'
import {checkpointPids, pidsInRestoringNamespace} from './checkpoint-pids.js'
import {findProblems, hintOf, userIdsProblem} from './checks.js'
import {commandLine} from './cli-names.js'
import {encodeRestoreRequest, restoreOverRpc, RpcRestoreOptions} from './criu-rpc.js'
import {
  CriuIO, criuLimits, CriuRun, formatCommand, readStats, shellQuote, supervise,
} from './criu-run.js'
import {criuEnvironment, criuFailure, CriuVersion, criuVersion, describeCriu, Exit, findCriu, hwBreakpointsWork, judgeCriu} from './criu.js'
import {FailedError, InterruptedError, RefusedError} from './errors.js'
import {checkImagesDir} from './images.js'
import {checkBeforeRestore, IntegrityMethod, NO_PAGES_CHECK, pagesVerdict, startPages, verdictLine} from './integrity.js'
import {JoinNsSpec, quote, typedJoinNs} from './join-ns.js'
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
import {PagesCheck} from './manifest.js'
import {NamespaceDesc} from './namespaces.js'
import {isChildSubreaper, PinnedNamespace, pinJoins, probeHwBreakpoints, setChildSubreaper, waitPid} from './native.js'
import {CheckpointNamespaces, conflictHint, hasNamespaceImages, joinConflicts, NamespacePlanRow, planNamespaces, readCheckpointNamespaces} from './plan.js'
import {descendsFromThisProcess, processIds, processStat} from './proc.js'
import {judgeJoins, observeJoins, readRestoredTree, RestoredTree, VerifiedTask} from './restored-tree.js'
import {checkCriuOutputs, writeFileNoFollow} from './trust.js'
import {
  keepWorkDirFor, makeWorkDir, noteCriuRan, noteLogFile, removeWorkDir, shownWorkDir, WorkDir,
} from './work-dir.js'

export const MANAGE_CGROUPS_MODES = ['none', 'props', 'soft', 'full', 'strict', 'ignore'] as const
export type ManageCgroupsMode = (typeof MANAGE_CGROUPS_MODES)[number]

/**
 * A check of the restored tree at CRIU's post-restore stage: every task exists, none has run
 * since the checkpoint. Resolve to let CRIU resume the tree; reject (preferably with a
 * FailedError written for the user) to make CRIU kill it instead. Checks run concurrently,
 * after the joined namespaces of every task were verified; the first rejection is reported.
 */
export type BeforeResumeCheck = (tree: RestoredTree) => Promise<void>

export interface RestoreRequest {
  /** Restore even when a join would overwrite the joined namespace's state (see plan.ts). */
  allowOverwrite?: boolean
  /** Restore from a folder someone other than root or the caller could have written (images.ts). */
  allowUntrustedImages?: boolean
  allowUserNs?: boolean
  /** More checks at the post-restore stage, besides the joined namespaces of every task. */
  beforeResume?: readonly BeforeResumeCheck[]
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
  /** MiB; CRIU is stopped when its log grows past this (criu-run.ts DEFAULT_LOG_LIMIT_MIB). */
  logLimit?: number
  manageCgroups?: ManageCgroupsMode
  pidfile?: string
  shellJob?: boolean
  /** Seconds CRIU's log may stay silent before CRIU is stopped (criu-run.ts DEFAULT_STALL_SECONDS). */
  stallSeconds?: number
  /** Read CRIU's own statistics into the result (loads the image reader: about 25 ms). */
  stats?: boolean
  tcpEstablished?: boolean
  /** Seconds; CRIU is killed and the restore fails cleanly when it takes longer. */
  timeout?: number
  /** CRIU's log level, 0-4; default 4 so that failures can be explained from the log. */
  verbosity?: number
  /** Check the images (manifest, else structure) before and while CRIU reads them; default true. */
  verifyImages?: boolean
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
  const ids = userIds(spec)
  return ids === undefined ? `${spec.ns.name}:${path}` : `${spec.ns.name}:${path},${ids}`
}

/** A user join's IDs as CRIU's extra options take them (`UID[,GID]`); none when none were given. */
function userIds(spec: JoinNsSpec): string | undefined {
  return spec.uid === undefined ? undefined : [spec.uid, ...(spec.gid === undefined ? [] : [spec.gid])].join(',')
}

/**
 * How the joins reach CRIU, on its command line or over its RPC alike: the net join of a
 * checkpoint that left its net namespace out is an fd CRIU inherits (3, 4, ...) under the
 * external key; every other join is a --join-ns. Pure.
 */
function routeJoins(facts: {externalNetKey?: string; joins: readonly PlannedJoin[]}): {
  inherited: {fd: number; key: string}[]
  inheritFds: number[]
  joins: PlannedJoin[]
} {
  const routed: ReturnType<typeof routeJoins> = {inherited: [], inheritFds: [], joins: []}
  for (const join of facts.joins) {
    if (join.spec.ns.name === 'net' && facts.externalNetKey !== undefined && join.fd !== undefined) {
      routed.inheritFds.push(join.fd)
      routed.inherited.push({fd: 2 + routed.inheritFds.length, key: facts.externalNetKey})
    } else {
      routed.joins.push(join)
    }
  }

  return routed
}

/** Where CRIU logs a restore: --log-file, else restore.log in the work folder. */
const restoreLogFile = (request: RestoreRequest, workDir: string) => (request.logFile ? resolve(request.logFile) : join(workDir, 'restore.log'))

/** The CRIU command line, for a person to run (--dry-run). Pure. */
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
  const logFile = restoreLogFile(request, workDir)
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
  const {inherited, inheritFds, joins} = routeJoins(facts)
  for (const {fd, key} of inherited) argv.push('--inherit-fd', `fd[${fd}]:${key}`)
  for (const join of joins) argv.push('--join-ns', criuJoinArg(join.spec, join.criuPath))

  return {argv, criu: facts.criu, env: facts.env ?? {}, inheritFds, joins: facts.joins, logFile, pidfile, workDir}
}

/**
 * CRIU's RPC takes the log file as a name in the work folder only: a --log-file elsewhere is
 * reached through this link in the work folder, made before CRIU starts and removed after.
 */
export const LOG_LINK = '.restore-log'

export interface RpcRestorePlan {
  /** `swrk FD`: the RPC socket comes after the inherited fds. */
  readonly argv: string[]
  readonly criu: string
  /** fds CRIU inherits as 3, 4, ... (inherit_fd). */
  readonly inheritFds: number[]
  /** Where CRIU's log ends up. */
  readonly logFile: string
  /** With a --log-file outside the work folder: the link's name in the work folder (LOG_LINK). */
  readonly logLink?: string
  readonly options: RpcRestoreOptions
  /** The user's --pidfile, written by this process from CRIU's answer. */
  readonly pidfile?: string
  readonly workDir: string
}

/**
 * The request as CRIU's RPC gets it: the same options as planRestore's command line, with the
 * folders as this process's fds, and every action stage a question on the RPC socket. Pure.
 */
export function planRpcRestore(
  request: RestoreRequest,
  facts: {
    criu: string
    externalNetKey?: string
    /** This process's fds of the images and work folders. */
    imagesDirFd: number
    joins: readonly PlannedJoin[]
    workDir: string
    workDirFd: number
  },
): RpcRestorePlan {
  const {workDir} = facts
  const logFile = restoreLogFile(request, workDir)
  const inWorkDir = dirname(logFile) === workDir
  const {inherited, inheritFds, joins} = routeJoins(facts)

  const options: RpcRestoreOptions = {
    emptyNs: request.emptyNs.reduce((bits, ns) => bits | ns.flag, 0),
    extUnixSk: Boolean(request.extUnixSk),
    fileLocks: Boolean(request.fileLocks),
    imagesDirFd: facts.imagesDirFd,
    inheritFds: inherited,
    joins: joins.map(({criuPath, spec}) => ({extra: userIds(spec), file: criuPath, ns: spec.ns.name})),
    lazyPages: Boolean(request.lazyPages),
    logFile: inWorkDir ? logFile.slice(workDir.length + 1) : LOG_LINK,
    logLevel: request.verbosity ?? 4,
    manageCgroups: request.manageCgroups,
    shellJob: Boolean(request.shellJob),
    tcpEstablished: Boolean(request.tcpEstablished),
    workDirFd: facts.workDirFd,
  }
  return {
    argv: ['swrk', String(3 + inheritFds.length)],
    criu: facts.criu,
    inheritFds,
    logFile,
    ...(inWorkDir ? {} : {logLink: LOG_LINK}),
    options,
    ...(request.pidfile ? {pidfile: resolve(request.pidfile)} : {}),
    workDir,
  }
}

/** Hooks for the shell: progress display and signal handling live with the caller. */
export interface RestoreIO extends CriuIO, LazyPagesIO {
  /** With --no-restore-detached: the tree is restored and verified, and is now being waited for. */
  restored?: (pid: number, namespaces: JoinedNamespace[], tasks: VerifiedTask[]) => void
}

export interface JoinedNamespace {
  inode: number
  joined: true
  source: string
  type: string
}

export interface RestoreResult {
  /** With request.stats: what CRIU measured (its stats-restore), when it wrote one. */
  criuStats?: CriuStats
  criuVersion: string
  durationMs: number
  /** With --lazy-pages: the times, the memory served and the daemon. */
  lazyPages?: LazyPagesResult
  /** Absent when it was in the temporary work folder, which a restore that succeeded removes. */
  logFile?: string
  namespaces: JoinedNamespace[]
  pid: number
  /** Every process of the tree, verified at CRIU's post-restore stage, before it was resumed. */
  tasks: VerifiedTask[]
  /** With --no-restore-detached: how the restored root ended (its exit code, or the signal that ended it). */
  treeExit?: {code: null | number; signal: null | number}
  /** The user's --work-dir; absent when a temporary one was used (and removed). */
  workDir?: string
}

export interface DryRunResult {
  /** A command a person can run as root (see shownCommands), without the real run's pinning and checks. */
  command: string
  criuVersion: string
  integrity: {files: number; method: IntegrityMethod; verdict: string}
  /** With --lazy-pages: the daemon's command, run before `command` in the same shell. */
  lazyPagesCommand?: string
  /** What the real run does that the command cannot. */
  note: string
  /** workDir: the user's --work-dir; absent when the run would make a temporary one. */
  plan: {namespaces: NamespacePlanRow[]; workDir?: string}
  /** What would make the real run fail that only a look at the images here tells: PIDs taken. */
  warnings?: string[]
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

/** What CRIU and the plugin write into the work dir during a restore, besides --log-file and --pidfile. */
const RESTORE_WORK_FILES = ['restore.log', LOG_LINK, 'stats-restore'] as const

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
  const impossible = conflicts.filter(c => !c.overridable)
  if (impossible.length > 0) throw new RefusedError(impossible.map(c => c.message).join('\n'), impossible.map(c => c.remedy).join('\n'))
  if (conflicts.length > 0 && !request.allowOverwrite) {
    throw new RefusedError(conflicts.map(c => c.message).join('\n'), conflictHint(conflicts))
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

/** One line of /proc/PID/uid_map or gid_map: `count` IDs from `inside` in the namespace are `outside` in its parent. */
export interface IdMapRange {
  count: number
  inside: number
  outside: number
}

/** What is known of a pinned user namespace before CRIU starts. */
export interface UserJoinFacts {
  ns: NamespaceDesc
  /** Its maps, read through a process in it; absent when no such process is known. */
  maps?: {gid: readonly IdMapRange[]; uid: readonly IdMapRange[]}
  ownerUid?: number
}

/** The lines of a uid_map or gid_map file. Pure. */
export function parseIdMap(text: string): IdMapRange[] {
  return text.split('\n').map(l => l.trim().split(/\s+/).map(Number)).filter(f => f.length === 3 && f.every(n => Number.isInteger(n)))
  .map(([inside, outside, count]) => ({count, inside, outside}))
}

const mapsRoot = (map: readonly IdMapRange[]) => map.some(r => r.outside <= 0 && r.outside + r.count > 0)
const formatMap = (map: readonly IdMapRange[]) => quote(map.map(r => `${r.inside} ${r.outside} ${r.count}`).join(', ') || 'empty')

/**
 * A user namespace that does not map the host's root cannot be joined by CRIU 4.2.1: the
 * restored tasks keep root's credentials from the images (or take the UID/GID given, which are
 * then another user to the host). Measured here: map "0 65534 1" (what an unprivileged
 * `unshare --map-root-user` makes), without UID/GID CRIU's switch of its own uid fails with
 * EINVAL, with :0:0 the task cannot read the images; map "0 100000 65536" written by root into
 * a namespace root owns fails the same way ("Unable to open tty-info.img: Permission denied"),
 * with and without :0:0; while a namespace that uid 1000 owns, with the identity map written by
 * root, restores (uid 0, inode equal). So the maps decide, not the owner. When the maps cannot
 * be read (no process of that namespace is known), a namespace owned by another user than root
 * is refused, as such a namespace maps root only if root wrote its map. Refused early with the
 * reason instead of CRIU's late error. Pure.
 */
export function userJoinRefusal(joins: readonly UserJoinFacts[], specs: readonly JoinNsSpec[]): string | undefined {
  for (const [i, join] of joins.entries()) {
    if (join.ns.name !== 'user') continue
    const head = `--join-ns ${quote(typedJoinNs(specs[i]))}`
    const why = 'CRIU restores the tasks with the credentials of the images (root), which mean another user or none there, so they could not read the checkpoint\'s images or switch user at all'
    if (join.maps) {
      const {gid, uid} = join.maps
      if (!mapsRoot(uid)) return `${head}: that user namespace does not map the host's uid 0 (its uid_map is ${formatMap(uid)}); ${why}`
      if (!mapsRoot(gid)) return `${head}: that user namespace does not map the host's gid 0 (its gid_map is ${formatMap(gid)}); ${why}`
    } else if (join.ownerUid !== undefined && join.ownerUid !== 0) {
      return `${head}: that user namespace is owned by uid ${join.ownerUid}, not root, and no process of it is known to read its uid_map from; ${why}`
    }
  }

  return undefined
}

/** userIdsProblem (checks.ts) for every user join, as the refusal it is. Pure. */
export function userIdsRefusal(specs: readonly JoinNsSpec[]): RefusedError | undefined {
  const bad = specs.map(s => userIdsProblem(s)).find(p => p !== undefined)
  return bad && new RefusedError(bad.message, bad.hint)
}

/**
 * The maps of a pinned user namespace, read through the process the user named (`user:PID`
 * or `user:/proc/PID/ns/user`), if that process is still in the pinned namespace. Effects.
 */
function userMapsOf(spec: JoinNsSpec, pin: PinnedNamespace): UserJoinFacts['maps'] {
  const pid = spec.target.kind === 'pid' ? String(spec.target.pid) : /^\/proc\/(\d+)\/ns\/user$/.exec(spec.target.path)?.[1]
  if (pid === undefined) return undefined
  const inPinned = () => {
    const st = statSync(`/proc/${pid}/ns/user`)
    return st.ino === pin.ino && st.dev === pin.dev
  }

  try {
    if (!inPinned()) return undefined
    const maps = {gid: parseIdMap(readFileSync(`/proc/${pid}/gid_map`, 'utf8')), uid: parseIdMap(readFileSync(`/proc/${pid}/uid_map`, 'utf8'))}
    return inPinned() ? maps : undefined // the same process still, not a new one with its PID
  } catch {
    return undefined
  }
}

/** Everything before CRIU starts: the same for a real run and a dry run. */
async function prepare(request: RestoreRequest) {
  const errors = findProblems(request).filter(p => p.severity === 'error')
  const problems = [...errors.map(p => p.message), ...lazyPagesProblems(request)]
  if (problems.length > 0) throw new RefusedError(problems.join('\n'), hintOf(errors))
  if (!request.dryRun && !hasAdminCapability()) {
    throw new FailedError('restore needs root: joining namespaces and running CRIU need CAP_SYS_ADMIN', 'run it as root (sudo)')
  }

  checkImagesDir(request.imagesDir, '--images-dir', {allowUntrusted: request.allowUntrustedImages})
  // A damaged checkpoint is refused here, before CRIU reads it (a dry run hashes the pages too).
  const integrity = await checkBeforeRestore(request.imagesDir, {pages: Boolean(request.dryRun), verify: request.verifyImages !== false})
  const images = await checkpointNamespaces(request)
  if (request.workDir !== undefined && !isDirectory(request.workDir)) {
    throw new RefusedError(`--work-dir ${quote(request.workDir)}: no such folder`, 'create it first, or leave --work-dir out to use a new temporary folder')
  }

  checkCriuOutputs(request, RESTORE_WORK_FILES)

  if (request.timeout !== undefined && !(request.timeout > 0)) throw new RefusedError(`--timeout ${request.timeout}: give a number of seconds above 0`)
  // Targets before CRIU: a refused request never starts a CRIU process, not even --version.
  const pins = pinJoins(request.joinNs)
  try {
    const users = pins.map((pin, i) => (pin.ns.name === 'user' ? {maps: userMapsOf(request.joinNs[i], pin), ns: pin.ns, ownerUid: pin.ownerUid} : pin))
    // After pinning: a target that is not a user namespace is the first thing to say.
    const ids = userIdsRefusal(request.joinNs)
    if (ids) throw ids
    const refusal = userJoinRefusal(users, request.joinNs)
    if (refusal) throw new RefusedError(refusal, 'join a user namespace whose uid_map and gid_map root wrote to map the host\'s root (e.g. "0 0 65536"), or restore without -J user')
    const found = findCriu(request.criuPath)
    // A CRIU that cannot run here is said before the work starts (a dry run without root: the version only).
    const version: CriuVersion = request.dryRun && !hasAdminCapability() ? await criuVersion(found) : await judgeCriu(found, criuCapabilities())
    if (request.lazyPages) {
      const support = await lazyPagesSupport(found.path, version)
      if (!support.supported) throw new FailedError(`--lazy-pages cannot work here: ${support.reason}`, 'restore without --lazy-pages')
    }

    // Last, once the command line and this machine are known to be fine: refused before CRIU
    // starts, which would fail on them once begun ("File exists"); a dry run warns instead.
    const taken = request.dryRun ? undefined : takenPidsRefusal(takenPids(request.imagesDir))
    if (taken) throw taken

    return {criu: found.path, images, integrity, pins, ran: describeCriu(found, version), version}
  } catch (error) {
    for (const p of pins) p.close()
    throw error
  }
}

/** The pinned targets as CRIU will be told to join them: through this process's fds. */
function plannedJoins(pins: readonly PinnedNamespace[], specs: readonly JoinNsSpec[]): PlannedJoin[] {
  return pins.map((pin, i) => ({criuPath: pin.procPath, fd: pin.fd, ino: pin.ino, spec: specs[i]}))
}

/** Where a target is for a person typing the command: the path given, or /proc/PID/ns/TYPE. Pure. */
export function targetPath(spec: JoinNsSpec): string {
  return spec.target.kind === 'pid' ? `/proc/${spec.target.pid}/ns/${spec.ns.procEntry}` : spec.target.path
}

/**
 * What the printed command cannot do, said next to it. The real run passes CRIU this process's
 * own descriptors of the pinned targets and gates the resume on checks run by this process;
 * neither exists once the dry run has exited.
 */
export const SHOWN_COMMAND_NOTE = 'Run as root. The real run opens and type-checks each -J target first and gives CRIU its own descriptor of it, so that a target that exits, or a PID reused in between, cannot redirect the join; and it checks every restored task before CRIU resumes it (at CRIU\'s post-restore stage). The command above does neither.'

/**
 * The commands a person can run to do what restore would do: the -J targets as given (a PID as
 * /proc/PID/ns/TYPE), a work folder the command makes itself, an external net namespace handed
 * over as fd 3 by the shell. Pure.
 */
export function shownCommands(
  request: RestoreRequest,
  facts: {criu: string; env: Record<string, string>; externalNetKey?: string; imagesDir: string; ino: readonly number[]},
): {command: string; lazyPagesCommand?: string} {
  const work = shownWorkDir(request.workDir)
  // Shown fds count from 3, as CRIU gets them (CriuRun passes inheritFds as 3, 4, ...).
  const joins = request.joinNs.map((spec, i): PlannedJoin => ({criuPath: targetPath(spec), fd: 3 + i, ino: facts.ino[i], spec}))
  const plan = planRestore(request, {criu: facts.criu, env: facts.env, externalNetKey: facts.externalNetKey, joins, workDir: work.path})
  const redirects = plan.inheritFds.map((fd, i) => `${3 + i}<${shellQuote(joins.find(j => j.fd === fd)!.criuPath)}`)
  const restore = [formatCommand(plan.criu, plan.argv, plan.env, work.folder), ...redirects].join(' ')
  if (!request.lazyPages) return {command: work.setup ? `${work.setup} && ${restore}` : restore}
  // The daemon runs in the background in the same folder: the folder is made first, in this shell.
  const lazy = planLazyPages({criu: facts.criu, imagesDir: request.imagesDir, workDir: work.path})
  const daemon = `${lazyPagesCommand({...lazy, argv: withoutStatusFd(lazy.argv)}, plan.env, work.folder)} &`
  return {command: restore, lazyPagesCommand: work.setup ? `${work.setup}; ${daemon}` : daemon}
}

/** The daemon's argv without --status-fd, which only this process reads. */
function withoutStatusFd(argv: readonly string[]): string[] {
  const i = argv.indexOf('--status-fd')
  return i === -1 ? [...argv] : [...argv.slice(0, i), ...argv.slice(i + 2)]
}

/** Most taken PIDs a warning names. */
const TAKEN_SHOWN = 5

/** A process here holding one of the checkpoint's PIDs; a zombie names the parent that has not reaped it. */
export interface TakenPid {
  comm: string
  pid: number
  zombieOf?: number
}

/** Which of the checkpoint's PIDs processes here hold, by PID and name (the first five). Pure. */
function takenPidsText(taken: readonly TakenPid[]): string {
  const one = (t: TakenPid) => `${t.pid} (${t.comm}${t.zombieOf === undefined ? '' : `, a zombie PID ${t.zombieOf} has not reaped`})`
  const shown = taken.slice(0, TAKEN_SHOWN).map(t => one(t)).join(', ')
  const more = taken.length > TAKEN_SHOWN ? ` and ${taken.length - TAKEN_SHOWN} more` : ''
  return taken.length === 1 ? `the checkpoint's PID ${shown} is taken here` : `the checkpoint's PIDs ${shown}${more} are taken here`
}

/** What frees them: live processes end; a zombie goes only when its parent reaps it or ends. Pure. */
function takenPidsWayOut(taken: readonly TakenPid[]): string {
  const live = taken.filter(t => t.zombieOf === undefined)
  const parents = [...new Set(taken.flatMap(t => (t.zombieOf === undefined ? [] : [t.zombieOf])))]
  return [
    ...(live.length > 0 ? [`end ${live.length === 1 ? 'that process' : 'those processes'} first`] : []),
    ...(parents.length > 0 ? [`a zombie cannot be killed: it goes once its parent (PID ${parents.join(', ')}) reaps it or ends`] : []),
  ].join('; ')
}

/** What a dry run says of checkpoint PIDs that processes here hold: the restore would be refused. Pure. */
export function takenPidsWarning(taken: readonly TakenPid[]): string | undefined {
  if (taken.length === 0) return undefined
  return `${takenPidsText(taken)}: CRIU recreates every task with its PID, so the restore would be refused; ${takenPidsWayOut(taken)}`
}

/** The refusal of a restore whose PIDs processes here hold, before CRIU starts. Pure. */
export function takenPidsRefusal(taken: readonly TakenPid[]): RefusedError | undefined {
  if (taken.length === 0) return undefined
  const leftRunning = taken.some(t => t.zombieOf === undefined)
    ? ` (after \`${commandLine('checkpoint', '--leave-running')}\`, the checkpointed tree itself still runs and holds them)`
    : ''
  return new RefusedError(
    `${takenPidsText(taken)}: CRIU recreates every task with its PID, and cannot while another process holds it`,
    `${takenPidsWayOut(taken)}, and restore again${leftRunning}`,
  )
}

/**
 * The checkpoint's PIDs that a process (or a zombie) holds here, with its name; none when the
 * tree gets a PID namespace of its own, or pstree.img cannot be read (the structure check or
 * CRIU says why). A few reads of /proc per task.
 */
function takenPids(imagesDir: string): TakenPid[] {
  return pidsToRestore(imagesDir, 'in this PID namespace').flatMap(pid => {
    const held = processIds(pid)
    if (!held) return []
    const stat = processStat(pid)
    return [{comm: held.comm, pid, ...(stat?.state === 'Z' ? {zombieOf: stat.ppid} : {})}]
  })
}

/** What restore would do, without running CRIU: the targets are checked and pinned, then released. */
export async function dryRunRestore(request: RestoreRequest): Promise<DryRunResult> {
  const {criu, images, integrity, pins, version} = await prepare(request)
  try {
    const taken = takenPidsWarning(takenPids(request.imagesDir))
    const env = diffEnv(criuEnvironment(version, () => hwBreakpointsWork(probeHwBreakpoints)))
    const shown = shownCommands(request, {criu, env, externalNetKey: images.externalNetKey, imagesDir: request.imagesDir, ino: pins.map(p => p.ino)})
    return {
      ...shown,
      criuVersion: version.text,
      integrity: {files: integrity.files, method: integrity.method, verdict: verdictLine(integrity)},
      note: SHOWN_COMMAND_NOTE,
      ...(taken ? {warnings: [taken]} : {}),
      plan: {namespaces: planNamespaces(images, request), ...(request.workDir ? {workDir: resolve(request.workDir)} : {})},
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
 * The PIDs the checkpoint recreates (all of them, or those CRIU recreates in this PID namespace);
 * none when pstree.img cannot be read (the structure check or CRIU says why).
 */
function pidsToRestore(imagesDir: string, which: 'all' | 'in this PID namespace' = 'all'): number[] {
  try {
    return which === 'all' ? checkpointPids(imagesDir) : pidsInRestoringNamespace(imagesDir)
  } catch {
    return []
  }
}

/**
 * End what a failed restore left: the checkpoint's PIDs that are now our descendants (this
 * process is the subreaper, so a killed CRIU's tasks come to us, not to PID 1), running or
 * already zombies (a CRIU that killed the tree itself, as after a failed post-restore check,
 * leaves them unreaped). A process that merely has one of those PIDs but is not ours is never
 * touched. Each is reaped once it is our child, so that the PIDs are free again.
 */
async function endHalfRestored(pids: readonly number[]): Promise<number[]> {
  const victims = pids.filter(pid => descendsFromThisProcess(pid))
  for (const pid of victims) killProcess(pid)
  // A task becomes our child when its parent dies: reap in rounds until none is left.
  let left = victims
  const deadline = Date.now() + 5000
  while (left.length > 0 && Date.now() < deadline) {
    const children = left.filter(pid => processStat(pid)?.ppid === process.pid)
    await Promise.all(children.map(pid => waitPid(pid).catch(() => {})))
    left = left.filter(pid => processStat(pid) !== undefined)
    if (left.length > 0) await sleep(5)
  }

  return victims
}

/** Whether the restore needs the post-restore gate: something to verify before the tree runs. */
function gated(pins: readonly PinnedNamespace[], checks: readonly BeforeResumeCheck[]): boolean {
  return pins.length > 0 || checks.length > 0
}

/**
 * The checks at CRIU's post-restore stage: every task's joined namespaces, then the request's
 * own checks, concurrently. CRIU asks at each of its action stages (over its RPC socket); only
 * post-restore has anything to check, and there a refusal makes CRIU kill the tree.
 */
class TreeCheck {
  /** The root PID CRIU named at post-restore, once it asked. */
  askedFor?: number
  /** Why the tree was not resumed, once a check said no. */
  refusal?: Error
  /** Filled in at the post-restore stage, once every task passed. */
  tasks: VerifiedTask[] = []
  private readonly judge?: (root: number) => Promise<void>

  constructor(request: RestoreRequest, pins: readonly PinnedNamespace[], private readonly criuVersion: string, own: readonly BeforeResumeCheck[] = []) {
    const checks = [...(request.beforeResume ?? []), ...own]
    if (!gated(pins, checks)) return
    this.judge = async root => {
      const tree = readRestoredTree(root)
      this.tasks = judgeJoins(tree, observeJoins(tree, pins.map(p => p.ns)), pins)
      await Promise.all(checks.map(check => check(tree)))
    }
  }

  /** The answer to one of CRIU's action stages: false stops the restore there. */
  async atStage(stage: string, root: number | undefined): Promise<boolean> {
    if (stage !== 'post-restore' || !this.judge || this.askedFor !== undefined) return true
    this.askedFor = root ?? 0
    if (!(root !== undefined && Number.isInteger(root) && root > 0)) {
      this.refusal = new Error(`CRIU's post-restore stage named no root PID (${root})`)
      return false
    }

    try {
      await this.judge(root)
      return true
    } catch (error) {
      this.refusal = error as Error
      return false
    }
  }

  /**
   * After CRIU has exited: why a check stopped the tree, as the error the user sees; and a CRIU
   * that restored without asking at post-restore verified nothing, which is a failure too.
   */
  afterCriu(restored: boolean): void {
    const error = this.refusal
    if (error instanceof FailedError || error instanceof InterruptedError) throw error
    if (error) throw new FailedError(`a check before the restored tree was resumed failed: ${error.message}`)
    if (this.judge && this.askedFor === undefined && restored) {
      throw new FailedError(`CRIU ${this.criuVersion} ended without running its post-restore stage, so the restored tree could not be verified before it ran; it was ended`)
    }
  }
}

/**
 * The pages images are hashed while CRIU reads them; the verdict is one of the checks at CRIU's
 * post-restore stage, so that a damaged checkpoint is never resumed. None without a manifest.
 */
function pagesChecks(dir: string, integrity: {manifest?: unknown; pagesPending: boolean}, current: () => PagesCheck): BeforeResumeCheck[] {
  return integrity.manifest && integrity.pagesPending ? [() => pagesVerdict(dir, current())] : []
}

/** Open a folder for CRIU's RPC, which takes folders as this process's fds. */
const openFolder = (path: string) => openSync(path, 'r')

/**
 * With --no-restore-detached: the restored root is this process's child once CRIU has exited
 * (this process is the subreaper); wait for it, or for a stop (signal, --timeout).
 */
async function waitForTree(run: CriuRun, pid: number): Promise<{code: null | number; signal: null | number}> {
  run.settled() // the tree may run for long, and CRIU's log no longer grows: the stall limit is off
  const ended = waitPid(pid)
  ended.catch(() => {}) // a stop reaps the tree elsewhere (endHalfRestored)
  const outcome = await Promise.race([ended, run.whenStopped])
  if (run.stopped || outcome === undefined) throw run.stopped ?? new FailedError('restore stopped')
  return outcome
}

/**
 * A --log-file outside the work folder, reached through a link in it (CRIU's RPC takes a name
 * in the work folder only); returns the link's path, to remove once CRIU is done.
 */
function linkLogFile(plan: RpcRestorePlan): string | undefined {
  if (!plan.logLink) return undefined
  const link = join(plan.workDir, plan.logLink)
  rmSync(link, {force: true})
  symlinkSync(plan.logFile, link)
  return link
}

/**
 * The restore over CRIU's RPC, to its end: every action stage answered by `check`, then CRIU's
 * answer and exit. A stop (signal, --timeout, log limit) ends the wait, also while a check is
 * still running; the restored root's PID only when CRIU said the restore succeeded.
 */
async function converse(run: CriuRun, plan: RpcRestorePlan, check: TreeCheck): Promise<{exit: Exit; pid?: number}> {
  const conversation = restoreOverRpc(run.rpc!, encodeRestoreRequest(plan.options), (stage, root) => check.atStage(stage, root))
  conversation.catch(() => {}) // once CRIU was stopped, what the conversation does next is moot
  const stopped = {ended: true as const}
  const answer = await Promise.race([conversation, run.whenStopped.then(() => stopped)]).catch((error: Error) => {
    if (run.stopped) return stopped
    throw error
  })
  const exit = await run.exited
  const pid = answer.ended || !answer.response.success ? undefined : answer.response.restoredPid
  return {exit, pid: pid !== undefined && pid > 0 ? pid : undefined}
}

/**
 * The result once the tree runs: CRIU's statistics read from the work folder (with --json),
 * then the folder removed, unless a lazy-pages daemon still delivering (--no-wait-pages) has
 * its socket and log there.
 */
async function restoreResult(
  request: RestoreRequest,
  done: {logFile: string; namespaces: JoinedNamespace[]; pid: number; started: number; tasks: VerifiedTask[]; version: string; work: WorkDir},
  extra: Pick<RestoreResult, 'lazyPages' | 'treeExit'>,
): Promise<RestoreResult> {
  const {work} = done
  const criuStats = request.stats ? await readStats(work.path, 'restore') : undefined
  const daemonRuns = extra.lazyPages !== undefined && !extra.lazyPages.waited
  if (!daemonRuns) removeWorkDir(work)
  const removed = work.temporary && !daemonRuns
  return {
    criuStats,
    criuVersion: done.version,
    durationMs: Date.now() - done.started,
    lazyPages: extra.lazyPages && removed ? {...extra.lazyPages, daemon: {pid: extra.lazyPages.daemon.pid}} : extra.lazyPages,
    logFile: existsSync(done.logFile) ? done.logFile : undefined,
    namespaces: done.namespaces,
    pid: done.pid,
    tasks: done.tasks,
    ...(extra.treeExit ? {treeExit: extra.treeExit} : {}),
    workDir: work.temporary ? undefined : work.path,
  }
}

/**
 * After a failure at any point: the lazy-pages daemon and CRIU stopped, every task of the
 * checkpoint that is now this process's descendant ended and reaped, the work folder kept when
 * it holds CRIU's log, and the error told which CRIU ran and where its log is.
 */
async function undoRestore(
  error: unknown,
  state: {imagesDir: string; lazy?: LazyPages; logFile: string; ran: string; run?: CriuRun; work: WorkDir},
): Promise<void> {
  const {run} = state
  await shutdownLazyPages(state.lazy, error)
  if (run) {
    run.stop(error instanceof InterruptedError ? error : new FailedError('restore failed'))
    await run.exited.catch(() => {})
    await endHalfRestored(pidsToRestore(state.imagesDir))
    noteCriuRan(error, state.ran)
  }

  keepWorkDirFor(error, state.work, state.logFile)
  if (run) noteLogFile(error, state.logFile)
}

const stopProgress = (io: RestoreIO, pid: number | undefined) => io.progress?.('stop', pid === undefined ? 'failed' : 'done')

/**
 * Restore as the request says, over CRIU's RPC (`criu swrk`). While CRIU runs this process is
 * a child subreaper (see endHalfRestored); a failure at any point leaves no restored or
 * half-restored task behind.
 */
export async function runRestore(request: RestoreRequest, io: RestoreIO = {}): Promise<RestoreResult> {
  const started = Date.now()
  const {criu, images, integrity, pins, ran, version} = await prepare(request)
  let release: (() => void) | undefined
  let run: CriuRun | undefined
  let pagesCheck = NO_PAGES_CHECK
  let check: TreeCheck | undefined
  const work = makeWorkDir('restore', request.workDir)
  const workDir = work.path
  let logFile = join(workDir, 'restore.log')
  let logLink: string | undefined
  let lazy: LazyPages | undefined
  const folders: number[] = []
  try {
    check = new TreeCheck(request, pins, version.text, pagesChecks(request.imagesDir, integrity, () => pagesCheck))
    folders.push(openFolder(request.imagesDir), openFolder(workDir))
    const plan = planRpcRestore(request, {
      criu,
      externalNetKey: images.externalNetKey,
      imagesDirFd: folders[0],
      joins: plannedJoins(pins, request.joinNs),
      workDir,
      workDirFd: folders[1],
    })
    logFile = plan.logFile
    logLink = linkLogFile(plan)

    const env = criuEnvironment(version, () => hwBreakpointsWork(probeHwBreakpoints))
    holdSubreaper()
    io.progress?.('start', `Restoring ${request.imagesDir} with CRIU ${version.text}`)
    pagesCheck = startPages(request.imagesDir, integrity)
    lazy = await startLazyPages(request, {criu, env, workDir}, io)
    run = new CriuRun({...plan, ...criuLimits(request)}, env, {rpc: true})
    release = supervise(run, request.timeout, io, {workDir})
    const {exit, pid} = await converse(run, plan, check)
    // An attached restore's spinner stops below, with what it waits for.
    if (pid === undefined || request.detached) stopProgress(io, pid)
    if (run.stopped) throw run.stopped
    check.afterCriu(pid !== undefined)
    if (pid === undefined) {
      // Damage explains a failed CRIU better than its log does.
      await pagesVerdict(request.imagesDir, pagesCheck)
      throw criuFailure('restore', plan.logFile, exit, {ran, stderr: run.stderr})
    }

    if (plan.pidfile) writeFileNoFollow(plan.pidfile, `${pid}\n`, 0o644)
    const namespaces = verifyJoins(pid, pins)
    const done = {logFile: plan.logFile, namespaces, pid, started, tasks: check.tasks, version: version.text, work}
    if (!request.detached) {
      io.progress?.('stop', `restored as PID ${pid}; waiting for it to exit`)
      io.restored?.(pid, namespaces, check.tasks)
      for (const p of pins) p.close()
      return await restoreResult(request, done, {treeExit: await waitForTree(run, pid)})
    }

    return await restoreResult(request, done, {lazyPages: await settleLazyPages(lazy, request, started, io)})
  } catch (error) {
    await undoRestore(error, {imagesDir: request.imagesDir, lazy, logFile, ran, run, work})
    throw error
  } finally {
    pagesCheck.cancel()
    release?.()
    await run?.rpc?.close()
    for (const fd of folders) closeSync(fd)
    if (logLink) rmSync(logLink, {force: true})
    if (run) releaseSubreaper()
    for (const p of pins) p.close()
  }
}
