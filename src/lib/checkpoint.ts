/**
 * Checkpoint a process tree with CRIU, ready for a later `restore -J`. Usable without oclif.
 */
import {readdirSync, readFileSync, rmSync, statSync} from 'node:fs'
import {join, resolve} from 'node:path'

import type {CriuStats} from './image-reader.js'

import {checkpointCapabilityProblems, criuCapabilities, hasAdminCapability, TreeProcess} from './capabilities.js'
import {commandLine} from './cli-names.js'
import {
  CriuIO, criuLimits, CriuRun, formatCommand, readStats, shellQuote, supervise,
} from './criu-run.js'
import {
  criuEnvironment, criuFailure, criuSupports, criuVersion, describeCriu, findCriu, hwBreakpointsWork, judgeCriu, onPath,
} from './criu.js'
import {FailedError, RefusedError} from './errors.js'
import {quote} from './join-ns.js'
import {MANIFEST_FILE, writeManifest} from './manifest.js'
import {NamespaceDesc} from './namespaces.js'
import {probeHwBreakpoints} from './native.js'
import {packageRoot} from './package-root.js'
import {isRunning, processIds, processTree} from './proc.js'
import {checkCriuOutputs, checkFolderEntries, checkOutputFolder} from './trust.js'
import {refuseUndumpable} from './undumpable.js'
import {
  keepWorkDirFor, makeWorkDir, noteCriuRan, noteLogFile, removeWorkDir, shownWorkDir,
} from './work-dir.js'

export const NETWORK_LOCK_METHODS = ['iptables', 'nftables', 'skip'] as const

export interface CheckpointRequest {
  criuPath?: string
  dryRun?: boolean
  extUnixSk?: boolean
  /** Namespaces the tree shares with a holder: left out of the images, joined again at restore. */
  externalNs: readonly NamespaceDesc[]
  fileLocks?: boolean
  /** Write into a folder that is not empty. */
  force?: boolean
  imagesDir: string
  /** How the user runs the launch command (the host's bin and the command), for the io_uring hint. */
  launchCommand?: string
  leaveRunning?: boolean
  /** MiB; CRIU is stopped when its log grows past this (criu-run.ts DEFAULT_LOG_LIMIT_MIB). */
  logLimit?: number
  networkLock?: (typeof NETWORK_LOCK_METHODS)[number]
  pid: number
  shellJob?: boolean
  /** Seconds CRIU's log may stay silent before CRIU is stopped (criu-run.ts DEFAULT_STALL_SECONDS). */
  stallSeconds?: number
  /** Read CRIU's own statistics into the result (loads the image reader: about 25 ms). */
  stats?: boolean
  tcpEstablished?: boolean
  timeout?: number
  verbosity?: number
  workDir?: string
}

export interface ExternalNamespace {
  inode: number
  key: string
  type: string
}

/** Hooks for the shell: besides CRIU's progress, advice said before CRIU starts. */
export interface CheckpointIO extends CriuIO {
  note?: (text: string) => void
}

export interface CheckpointResult {
  /**
   * The CRIU command line. A temporary work folder, which a checkpoint that succeeded removes,
   * is shown as the dry run shows it: `W=$(mktemp -d) && criu ... "$W"`.
   */
  command: string
  /** With request.stats: what CRIU measured (its stats-dump). */
  criuStats?: CriuStats
  criuVersion: string
  durationMs: number
  external: ExternalNamespace[]
  imagesDir: string
  leftRunning: boolean
  /** Absent when it was in the temporary work folder, which a checkpoint that succeeded removes. */
  logFile?: string
  /** The manifest written into the folder (not on --dry-run). */
  manifest?: string
  manifestFiles?: number
  /** With --dry-run: what the real run does that `command` does not. */
  note?: string
  /** Advice about the tree, said before CRIU started (see netnsAdvice). */
  notes: string[]
  pid: number
}

/** The key a namespace left out of the images is known by; restore reads it back from the images. */
export function externalKey(type: string, inode: number): string {
  return `oclif-plugin-criu-${type}-${inode}`
}

/** name@version of this plugin, recorded in the manifest. */
function pluginId(): string {
  const pkg = JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as {name: string; version: string}
  return `${pkg.name}@${pkg.version}`
}

/** The exact CRIU command line. Pure. */
export function planCheckpoint(request: CheckpointRequest, facts: {external: ExternalNamespace[]; logFile: string; workDir: string}): string[] {
  const argv = ['dump', '--tree', String(request.pid), '--images-dir', resolve(request.imagesDir), '--work-dir', facts.workDir, '--log-file', facts.logFile]
  argv.push(`-v${request.verbosity ?? 4}`)
  if (request.leaveRunning) argv.push('--leave-running')
  if (request.tcpEstablished) argv.push('--tcp-established')
  if (request.shellJob) argv.push('--shell-job')
  if (request.extUnixSk) argv.push('--ext-unix-sk')
  if (request.fileLocks) argv.push('--file-locks')
  if (request.networkLock) argv.push('--network-lock', request.networkLock)
  for (const e of facts.external) argv.push('--external', `${e.type}[${e.inode}]:${e.key}`)
  return argv
}

/** Which of the requested namespaces the tree has apart from CRIU's (ours); the others are the host's. */
function externalNamespaces(request: CheckpointRequest): ExternalNamespace[] {
  return request.externalNs.map(ns => {
    const inode = statSync(`/proc/${request.pid}/ns/${ns.procEntry}`).ino
    if (inode === statSync(`/proc/self/ns/${ns.procEntry}`).ino) {
      throw new RefusedError(`--external-ns ${ns.name}: process ${request.pid} shares this ${ns.name} namespace with the host, which CRIU never puts into the images; leave --external-ns out`)
    }

    return {inode, key: externalKey(ns.name, inode), type: ns.name}
  })
}

/** What the real run does that the command --dry-run prints does not. */
export const SHOWN_CHECKPOINT_NOTE = 'Run as root. The real run also scans the tree for objects CRIU cannot dump first, and writes the manifest restore checks the images against (oclif-plugin-criu.manifest.json) once CRIU has finished.'

/** Which --network-lock methods work here; undefined: not known (CRIU was not asked). */
export interface NetworkLocks {
  /** iptables-restore is on PATH: CRIU's default lock runs it. */
  iptables: boolean
  /** `criu check --feature network_lock_nftables` passed. */
  nftables?: boolean
}

/** The network-lock methods that work, by what is known of this machine. Pure. */
function workingLocks(locks: NetworkLocks): string[] {
  return [...(locks.iptables ? ['iptables'] : []), ...(locks.nftables ? ['nftables'] : []), 'skip']
}

/**
 * What to say before CRIU starts about a tree in a network namespace of its own (a pod's, a
 * container's; not CRIU's): CRIU dumps that namespace unless --external-ns net, and locks it
 * while it dumps, by default with iptables-restore. Measured with CRIU 4.2.1 here: without
 * iptables the dump fails after the tree was frozen ("Locking network failed"), also with
 * --external-ns net; and a checkpoint that carries the namespace is refused by `restore -J net`
 * (it would overwrite the joined namespace's network). After a dump that ends the tree, CRIU
 * leaves the lock in place (it unlocks only on failure or with --leave-running), so that peers
 * see no reset; a restore into that namespace unlocks it. Returns the notes to show, and the
 * lock problem that makes CRIU fail, as an error. Pure.
 */
export function netnsAdvice(
  request: Pick<CheckpointRequest, 'externalNs' | 'leaveRunning' | 'networkLock' | 'pid'>,
  facts: {locks: NetworkLocks; netInode: number},
): {notes: string[]; problem?: FailedError} {
  const notes: string[] = []
  const external = request.externalNs.some(ns => ns.name === 'net')
  if (!external) {
    notes.push(`process ${request.pid} is in a network namespace of its own (inode ${facts.netInode}), which this checkpoint will contain; to restore it later into a pod's or container's network namespace (${commandLine('restore', '-J net:TARGET')}), checkpoint it with --external-ns net, which leaves the namespace out of the images`)
  }

  const method = request.networkLock ?? 'iptables'
  const working = workingLocks(facts.locks)
  if (working.includes(method)) {
    if (method !== 'skip') notes.push(lockNote(request, external, facts.netInode))
    return {notes}
  }

  const how = request.networkLock ? `with --network-lock ${method}` : 'by default with iptables'
  const why = method === 'iptables' ? 'iptables-restore is not on PATH' : 'this CRIU\'s check says nftables locking is not supported here'
  const others = working.filter(m => m !== 'skip').map(m => `--network-lock ${m} (works here)`)
  const skip = '--network-lock skip (no lock: packets that arrive during the dump are lost to the checkpoint)'
  const addExternal = external ? '' : '; and to restore it later into a pod\'s or container\'s network namespace, add --external-ns net'
  return {
    notes,
    problem: new FailedError(
      `process ${request.pid} is in a network namespace of its own, which CRIU locks while it dumps${external ? ' (also with --external-ns net)' : ''}, ${how}: that cannot work here (${why}). Nothing was frozen`,
      `pass ${[...others, skip].join(', or ')}${method === 'iptables' ? ', or install iptables' : ''}${addExternal}`,
    ),
  }
}

/** How CRIU locks the tree's network namespace, and for how long. Pure. */
function lockNote(request: Pick<CheckpointRequest, 'leaveRunning' | 'networkLock' | 'pid'>, external: boolean, netInode: number): string {
  // With --external-ns net the namespace is left out of the images, but CRIU locks it all the same.
  const which = external ? `the network namespace of process ${request.pid} (inode ${netInode}; left out of the images, but locked all the same)` : 'that network namespace'
  const how = request.networkLock ? `with --network-lock ${request.networkLock}` : 'by default with iptables, which works here'
  if (request.leaveRunning) return `CRIU locks ${which} while it dumps (${how}) and unlocks it when done`
  const until = external
    ? `until a restore into it (${commandLine('restore', '-J net:PID')}, PID a process still in it) unlocks it; a restore elsewhere leaves it locked`
    : 'from then on (the restore recreates the namespace from the images; with --external-ns net the tree could be restored into this one, which unlocks it)'
  return `CRIU locks ${which} while it dumps (${how}) and leaves it locked afterwards, so that peers see no reset: anything else in it gets no packet in or out ${until}`
}

/** What this machine offers for locking a dumped network namespace (effects: PATH, CRIU). */
async function networkLocks(criu: string, request: CheckpointRequest): Promise<NetworkLocks> {
  const iptables = onPath('iptables-restore') !== undefined
  // CRIU is asked only when nftables matters: chosen, or the way out of a missing iptables.
  const ask = request.networkLock === 'nftables' || (!iptables && request.networkLock !== 'skip')
  return {iptables, nftables: ask && hasAdminCapability() ? await criuSupports(criu, 'network_lock_nftables') : undefined}
}

/** The advice for a tree in a network namespace other than ours; a lock that cannot work is refused. */
async function adviseOnNetns(criu: string, request: CheckpointRequest): Promise<string[]> {
  const netInode = statSync(`/proc/${request.pid}/ns/net`).ino
  if (netInode === statSync('/proc/self/ns/net').ino) return []
  const advice = netnsAdvice(request, {locks: await networkLocks(criu, request), netInode})
  if (advice.problem) throw advice.problem
  return advice.notes
}

/** What CRIU writes into the work dir during a dump, besides what it is told by flags. */
const DUMP_WORK_FILES = ['dump.log', 'stats-dump'] as const

/**
 * The folders CRIU will write into as root, checked before anything is created or started:
 * --images-dir and --work-dir must be trusted (trust.ts), and with --force no entry of the
 * images folder may be a link, a hard link or someone else's file. Returns the images folder
 * resolved, and whether it is missing (then prepareImagesDir creates it 0700).
 */
function checkOutputPaths(request: CheckpointRequest): {missing: boolean; resolved: string} {
  const images = checkOutputFolder(request.imagesDir, '--images-dir', {create: true, dryRun: true})
  if (!images.missing) {
    const entries = readdirSync(images.resolved)
    if (entries.length > 0 && !request.force) {
      throw new RefusedError(`--images-dir ${quote(request.imagesDir)}: the folder is not empty (${entries.length} files); a checkpoint there would mix with what is there`, 'use a new folder, or pass --force')
    }

    checkFolderEntries(images.resolved, '--images-dir')
  }

  checkCriuOutputs({workDir: request.workDir}, DUMP_WORK_FILES)
  return images
}

/** Create the images folder (0700) when it is missing. Returns whether we created it. */
function prepareImagesDir(request: CheckpointRequest, images: {missing: boolean}): boolean {
  if (!images.missing || request.dryRun) return images.missing
  checkOutputFolder(request.imagesDir, '--images-dir', {create: true})
  return true
}

/** Processes for a message: "1235 nginx (uid 33, gid 33)", at most five. */
function listProcesses(ps: readonly TreeProcess[]): string {
  const more = ps.length > 5 ? ` and ${ps.length - 5} more` : ''
  return ps.slice(0, 5).map(p => `${p.pid} ${p.comm} (uid ${p.uids[0]}, gid ${p.gids[0]})`).join(', ') + more
}

/**
 * A tree CRIU cannot dump with the capabilities it will have (processes of other users without
 * CAP_SYS_RESOURCE, ...): said now, with the processes, instead of after CRIU froze the tree.
 */
function refuseMissingCapabilities(pids: readonly number[]): void {
  const tree = pids.map(p => processIds(p)).filter(p => p !== undefined)
  const problems = checkpointCapabilityProblems(tree, criuCapabilities(), {gid: process.getgid!(), uid: process.getuid!()})
  if (problems.length === 0) return
  throw new FailedError(
    problems.map(p => `checkpoint cannot work here: CRIU would run without ${p.capability.name}, which it needs ${p.why}: ${listProcesses(p.processes)}`).join('\n'),
    `run the checkpoint where root has ${problems.map(p => p.capability.name).join(' and ')} (a container or unit: add it), or ${problems.map(p => p.otherwise).join('; and ')}. Nothing was frozen`,
  )
}

/**
 * What a message says once a stopped CRIU has ended: CRIU lets go of the tree (its hold is
 * ptrace's, which ends with it; seen at post-dump, its last stage, in test/e2e/faults.test.ts),
 * and runCheckpoint removes a folder it made. Pure.
 */
function stoppedDumpAftermath(imagesDir: string, created: boolean): string {
  return created
    ? `no checkpoint was written (the folder made for it, ${quote(imagesDir)}, was removed); the process tree runs on`
    : `the images in ${quote(imagesDir)} are incomplete: do not restore them; the process tree runs on`
}

/** Everything refused before CRIU is looked for; returns the namespaces to leave out. */
function checkRequest(request: CheckpointRequest): ExternalNamespace[] {
  if (!Number.isInteger(request.pid) || request.pid < 1) throw new RefusedError(`PID ${quote(String(request.pid))} is not a whole number above 0`)
  if (!request.dryRun && !hasAdminCapability()) throw new FailedError('checkpoint needs root: CRIU needs CAP_SYS_ADMIN to dump a process tree', 'run it as root (sudo)')
  if (!isRunning(request.pid)) throw new RefusedError(`process ${request.pid} does not exist`)
  const tree = processTree(request.pid)
  if (tree.includes(process.pid)) {
    // CRIU would freeze the very process that waits for it (and it holds io_uring rings on Node 22+).
    throw new RefusedError(`process ${request.pid}'s tree holds this command itself (PID ${process.pid}): a process cannot be checkpointed by a command running inside it`, `give the PID of the workload, not of this shell or one of its parents (\`${commandLine('launch')}\` starts a workload in a session of its own)`)
  }

  const external = externalNamespaces(request)
  if (request.workDir !== undefined && !statSync(request.workDir, {throwIfNoEntry: false})?.isDirectory()) {
    throw new RefusedError(`--work-dir ${quote(request.workDir)}: no such folder`, 'create it first, or leave --work-dir out to use a new temporary folder')
  }

  if (!request.dryRun || hasAdminCapability()) refuseMissingCapabilities(tree)

  return external
}

export async function runCheckpoint(request: CheckpointRequest, io: CheckpointIO = {}): Promise<CheckpointResult> {
  const started = Date.now()
  const external = checkRequest(request)
  refuseUndumpable(request.pid, request.launchCommand ?? 'launch')
  const images = checkOutputPaths(request)

  const found = findCriu(request.criuPath)
  // A CRIU that cannot run here is said before the work starts (a dry run without root: the version only).
  const version = request.dryRun && !hasAdminCapability() ? await criuVersion(found) : await judgeCriu(found, criuCapabilities())
  const criu = found.path
  const notes = await adviseOnNetns(criu, request)
  for (const note of notes) io.note?.(note)

  const created = prepareImagesDir(request, images)
  const env = criuEnvironment(version, () => hwBreakpointsWork(probeHwBreakpoints))
  const base = {
    criuVersion: version.text,
    notes,
    durationMs: 0,
    external,
    imagesDir: resolve(request.imagesDir),
    leftRunning: Boolean(request.leaveRunning),
    pid: request.pid,
  }
  // A command a person can run: the work folder is one it makes itself, unless --work-dir.
  const shown = shownWorkDir(request.workDir)
  const shownArgv = planCheckpoint(request, {external, logFile: join(shown.path, 'dump.log'), workDir: shown.path})
  const shownCommand = (mkdir: boolean) => [
    // CRIU writes into a folder that is there: the real run makes it (0700) when missing.
    ...(mkdir ? [`mkdir -m 0700 ${shellQuote(images.resolved)}`] : []), ...(shown.setup ? [shown.setup] : []), formatCommand(criu, shownArgv, {}, shown.folder),
  ].join(' && ')
  if (request.dryRun) {
    return {...base, command: shownCommand(images.missing), logFile: shown.folder ? undefined : join(shown.path, 'dump.log'), note: SHOWN_CHECKPOINT_NOTE}
  }

  const work = makeWorkDir('checkpoint', request.workDir)
  const workDir = work.path
  const logFile = join(workDir, 'dump.log')
  const argv = planCheckpoint(request, {external, logFile, workDir})
  const result = {...base, command: formatCommand(criu, argv), logFile}

  io.progress?.('start', `Checkpointing process ${request.pid} with CRIU ${version.text}`)
  const run = new CriuRun({argv, criu, inheritFds: [], logFile, ...criuLimits(request)}, env)
  const ran = describeCriu(found, version)
  const release = supervise(run, request.timeout, io, {aftermath: stoppedDumpAftermath(request.imagesDir, created), workDir})
  try {
    const exit = await run.exited
    io.progress?.('stop', exit.code === 0 ? 'done' : 'failed')
    if (run.stopped) throw run.stopped
    if (exit.code !== 0) throw criuFailure('dump', logFile, exit, {ran, stderr: run.stderr})
    // Before success is reported, so that every checkpoint we report carries one; the folder was
    // checked by checkOutputPaths, and the manifest is written without following links.
    const manifest = await writeManifest(result.imagesDir, pluginId())
    const criuStats = request.stats ? await readStats(workDir, 'dump') : undefined
    removeWorkDir(work)
    return {
      ...result,
      // The temporary folder is gone: the command names it as the dry run does.
      command: work.temporary ? shownCommand(false) : result.command,
      criuStats,
      durationMs: Date.now() - started,
      logFile: work.temporary ? undefined : logFile,
      manifest: join(result.imagesDir, MANIFEST_FILE),
      manifestFiles: Object.keys(manifest.files).length,
    }
  } catch (error) {
    // An incomplete checkpoint must not pass for one: remove the folder we made for it.
    if (created) rmSync(request.imagesDir, {force: true, recursive: true})
    noteCriuRan(error, ran)
    keepWorkDirFor(error, work, logFile)
    noteLogFile(error, logFile)
    throw error
  } finally {
    release()
  }
}
