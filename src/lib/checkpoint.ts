/**
 * Checkpoint a process tree with CRIU, ready for a later `restore -J`. Usable without oclif.
 */
import {mkdirSync, readdirSync, rmSync, statSync} from 'node:fs'
import {join, resolve} from 'node:path'

import {hasAdminCapability} from './capabilities.js'
import {CriuIO, CriuRun, formatCommand, supervise} from './criu-run.js'
import {criuEnvironment, criuFailure, criuVersion, findCriu, hwBreakpointsWork} from './criu.js'
import {FailedError, RefusedError} from './errors.js'
import {quote} from './join-ns.js'
import {NamespaceDesc} from './namespaces.js'
import {probeHwBreakpoints} from './native.js'
import {isRunning} from './proc.js'
import {keepWorkDirFor, makeWorkDir, plannedWorkDir, removeWorkDir, WorkDir} from './work-dir.js'

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
  leaveRunning?: boolean
  networkLock?: (typeof NETWORK_LOCK_METHODS)[number]
  pid: number
  shellJob?: boolean
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

export interface CheckpointResult {
  command: string
  criuVersion: string
  durationMs: number
  external: ExternalNamespace[]
  imagesDir: string
  leftRunning: boolean
  /** Absent when it was in the temporary work folder, which a checkpoint that succeeded removes. */
  logFile?: string
  pid: number
}

/** The key a namespace left out of the images is known by; restore reads it back from the images. */
export function externalKey(type: string, inode: number): string {
  return `oclif-plugin-criu-${type}-${inode}`
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

/** Refuse a folder with files in it unless --force; create it when missing. Returns whether we created it. */
function prepareImagesDir(dir: string, force: boolean | undefined, dryRun: boolean | undefined): boolean {
  let entries: string[]
  try {
    if (!statSync(dir).isDirectory()) throw new RefusedError(`--images-dir ${quote(dir)}: not a folder`)
    entries = readdirSync(dir)
  } catch (error) {
    if (error instanceof RefusedError) throw error
    if (!dryRun) mkdirSync(dir, {recursive: true})
    return true
  }

  if (entries.length > 0 && !force) {
    throw new RefusedError(`--images-dir ${quote(dir)}: the folder is not empty (${entries.length} files); a checkpoint there would mix with what is there`, 'use a new folder, or pass --force')
  }

  return false
}

/** Everything refused before CRIU is looked for; returns the namespaces to leave out. */
function checkRequest(request: CheckpointRequest): ExternalNamespace[] {
  if (!Number.isInteger(request.pid) || request.pid < 1) throw new RefusedError(`PID ${quote(String(request.pid))} is not a whole number above 0`)
  if (!request.dryRun && !hasAdminCapability()) throw new FailedError('checkpoint needs root: CRIU needs CAP_SYS_ADMIN to dump a process tree', 'run it as root (sudo)')
  if (!isRunning(request.pid)) throw new RefusedError(`process ${request.pid} does not exist`)
  const external = externalNamespaces(request)
  if (request.workDir !== undefined && !statSync(request.workDir, {throwIfNoEntry: false})?.isDirectory()) {
    throw new RefusedError(`--work-dir ${quote(request.workDir)}: no such folder`)
  }

  return external
}

export async function runCheckpoint(request: CheckpointRequest, io: CriuIO = {}): Promise<CheckpointResult> {
  const started = Date.now()
  const external = checkRequest(request)

  const criu = findCriu(request.criuPath)
  const version = await criuVersion(criu)
  const created = prepareImagesDir(request.imagesDir, request.force, request.dryRun)
  const work: WorkDir = request.dryRun ? {path: plannedWorkDir('checkpoint', request.workDir), temporary: false} : makeWorkDir('checkpoint', request.workDir)
  const workDir = work.path
  const logFile = join(workDir, 'dump.log')
  const argv = planCheckpoint(request, {external, logFile, workDir})
  const env = criuEnvironment(version, () => hwBreakpointsWork(probeHwBreakpoints))
  const result = {
    command: formatCommand(criu, argv),
    criuVersion: version.text,
    durationMs: 0,
    external,
    imagesDir: resolve(request.imagesDir),
    leftRunning: Boolean(request.leaveRunning),
    logFile,
    pid: request.pid,
  }
  if (request.dryRun) return result

  io.progress?.('start', `Checkpointing process ${request.pid} with CRIU ${version.text}`)
  const run = new CriuRun({argv, criu, inheritFds: []}, env)
  const release = supervise(run, request.timeout, io, 'the checkpoint is incomplete')
  try {
    const exit = await run.exited
    io.progress?.('stop', exit.code === 0 ? 'done' : 'failed')
    if (run.stopped) throw run.stopped
    if (exit.code !== 0) throw criuFailure('dump', logFile, exit)

    removeWorkDir(work)
    return {...result, durationMs: Date.now() - started, logFile: work.temporary ? undefined : logFile}
  } catch (error) {
    // An incomplete checkpoint must not pass for one: remove the folder we made for it.
    if (created) rmSync(request.imagesDir, {force: true, recursive: true})
    keepWorkDirFor(error, work, logFile)
    throw error
  } finally {
    release()
  }
}
