/**
 * Lazy restore (`restore --lazy-pages`): CRIU's lazy-pages daemon serves the tree's memory from
 * the images through userfaultfd while the restored tree already runs.
 *
 * Lifecycle, from CRIU 4.2's criu/uffd.c and crtools.c: every CRIU action chdir()s to its
 * --work-dir; the daemon binds `lazy-pages.socket` there (a relative name) and writes one byte
 * to --status-fd once it listens; `restore --lazy-pages` with the same --work-dir connects to it
 * and hands over each task's userfaultfd. Once restored, the daemon pushes every remaining page
 * and exits 0 when all have been delivered. Until then the tree depends on it: should the
 * daemon die, the kernel drops the userfaultfd and the tree's next fault on a missing page gets
 * a zero-filled page instead of its memory. So a daemon that fails, or a run that is
 * interrupted, ends the restored tree first and then the daemon.
 *
 *   lazyPagesSupport()    whether lazy pages can work here (criu check); also for the doctor
 *   lazyPagesProblems()   pure checks of a request's lazy-pages options
 *   planLazyPages()       pure: the daemon's command line
 *   LazyPages             effects: start, wait until ready, follow progress, settle or stop
 */
import {execFile} from 'node:child_process'
import {closeSync, existsSync, openSync, readdirSync, readFileSync, readSync, rmSync} from 'node:fs'
import {join, resolve} from 'node:path'

import type {PagemapEntry} from './image-schema.js'

import {checkpointPids} from './checkpoint-pids.js'
import {
  CriuIO, CriuRun, formatCommand, ShellFolder, supervise,
} from './criu-run.js'
import {binaryKey, criuErrorLines, CriuVersion, Exit, formatVersion, readCache, versionAtLeast, writeCache} from './criu.js'
import {FailedError, InterruptedError} from './errors.js'
import {imageRecords} from './images.js'
import {quote} from './join-ns.js'
import {descendsFromThisProcess} from './proc.js'

/** The socket CRIU's daemon binds in its --work-dir (criu/uffd.c LAZY_PAGES_SOCK_NAME). */
export const LAZY_PAGES_SOCKET = 'lazy-pages.socket'
/** Lazy restore with --status-fd and forked children (uffd-noncoop) as used here; tested with 4.2.1. */
export const MIN_LAZY_CRIU = {major: 3, minor: 14, sublevel: 0}
/** Pagemap entries count pages of this size (x86_64 and the usual arm64 kernels). */
export const PAGE_SIZE = 4096
/** The daemon logs every copy at level 4 ("uffd_copy: 0xADDR/LEN"): the progress is read from there. */
const DAEMON_VERBOSITY = 4
const COPY_LINE = /uffd_copy: 0x[\da-f]+\/(\d+)/g

const SUPPORT_CACHE = 'lazy-pages-support.json'

function bootId(): string {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
  } catch {
    return 'unknown'
  }
}

export interface LazyPagesSupport {
  supported: boolean
  /** Why not, in the user's words, when not supported. */
  reason?: string
}

/**
 * Whether lazy pages can work with this CRIU on this kernel: CRIU new enough, and
 * `criu check --feature uffd-noncoop` passing (userfaultfd with fork/remap events, needed for
 * any tree that forks or remaps). For the restore and for the doctor.
 */
export async function lazyPagesSupport(criu: string, version: CriuVersion): Promise<LazyPagesSupport> {
  if (!versionAtLeast(version, MIN_LAZY_CRIU)) {
    return {reason: `CRIU ${version.text} is too old for lazy pages here (needs ${formatVersion(MIN_LAZY_CRIU)} or newer)`, supported: false}
  }

  // A yes is cached per CRIU binary and boot (the kernel cannot change without a reboot): the
  // check costs about 0.55 s here, more than a whole lazy restore of 1 GiB takes to answer.
  const key = `${binaryKey(criu) ?? criu}:${bootId()}`
  if (readCache<boolean>(SUPPORT_CACHE)[key] === true) return {supported: true}
  const check = await new Promise<{code: null | number; output: string}>(done => {
    execFile(criu, ['check', '--feature', 'uffd-noncoop'], {timeout: 30_000}, (error, stdout, stderr) => {
      done({code: error ? (typeof error.code === 'number' ? error.code : null) : 0, output: `${stdout}${stderr}`})
    })
  })
  if (check.code === 0) {
    writeCache(SUPPORT_CACHE, {[key]: true})
    return {supported: true}
  }

  const said = check.output.split('\n').filter(l => l.trim() && !/rlimit: Can't setup RLIMIT_NOFILE/.test(l)).slice(-2).join('; ')
  return {
    reason: `\`criu check --feature uffd-noncoop\` fails here: the kernel gives CRIU no usable userfaultfd${said ? ` (${said.trim()})` : ''}`,
    supported: false,
  }
}

export interface LazyPagesOptions {
  detached: boolean
  lazyPages?: boolean
  /** false: return once restored and leave the daemon to finish (--no-wait-pages). */
  waitPages?: boolean
  workDir?: string
}

/** Lazy-pages options that cannot go together. Pure but for looking for a socket left in --work-dir. */
export function lazyPagesProblems(options: LazyPagesOptions): string[] {
  const problems: string[] = []
  if (!options.lazyPages) {
    if (options.waitPages === false) problems.push('--no-wait-pages: only with --lazy-pages (there are no pages to wait for otherwise)')
    return problems
  }

  if (!options.detached) {
    problems.push('--lazy-pages with --no-restore-detached: not supported; the command would wait for the tree and the pages at once. Leave --no-restore-detached out')
  }

  if (options.workDir !== undefined && existsSync(join(options.workDir, LAZY_PAGES_SOCKET))) {
    problems.push(`--work-dir ${quote(options.workDir)}: it holds a ${LAZY_PAGES_SOCKET} already (another lazy restore uses this folder, or one left it); give another folder, or leave --work-dir out`)
  }

  return problems
}

export interface LazyPagesPlan {
  argv: string[]
  criu: string
  inheritFds: number[]
  logFile: string
  socket: string
}

/** The daemon's command line: the restore's --images-dir and --work-dir, status on fd 3. Pure. */
export function planLazyPages(facts: {criu: string; imagesDir: string; workDir: string}): LazyPagesPlan {
  const logFile = join(facts.workDir, 'lazy-pages.log')
  return {
    argv: ['lazy-pages', '--images-dir', resolve(facts.imagesDir), '--work-dir', facts.workDir, '--log-file', logFile, `-v${DAEMON_VERBOSITY}`, '--status-fd', '3'],
    criu: facts.criu,
    inheritFds: [],
    logFile,
    socket: join(facts.workDir, LAZY_PAGES_SOCKET),
  }
}

export function lazyPagesCommand(plan: LazyPagesPlan, env: Record<string, string> = {}, folder?: ShellFolder): string {
  return formatCommand(plan.criu, plan.argv, env, folder)
}

/** Bytes the daemon will deliver: the pagemap entries CRIU marked lazy, over all tasks. */
export async function lazyBytes(imagesDir: string): Promise<number> {
  const {decodeRecord} = await import('./image-reader.js')
  const {MESSAGES, PE_LAZY} = await import('./image-schema.js')
  let pages = 0
  for (const name of readdirSync(imagesDir).filter(f => /^pagemap-\d+\.img$/.test(f))) {
    try {
      // The first record is the PagemapHead; the rest are entries.
      const bytes = readFileSync(join(imagesDir, name))
      const entries = imageRecords(bytes, name).slice(1).map((record, i) => decodeRecord<PagemapEntry>(record, MESSAGES.pagemap, name, i + 1))
      for (const e of entries) if ((e.flags ?? 0) & PE_LAZY) pages += Number(e.nrPages ?? e.compatNrPages)
    } catch (error) {
      throw new FailedError(`--images-dir ${quote(imagesDir)}: cannot read ${name}: ${(error as Error).message}`)
    }
  }

  return pages * PAGE_SIZE
}

/** Sum of the copy sizes in a piece of the daemon's log; `rest` is an unfinished last line. */
export function countCopied(text: string): {bytes: number; rest: string} {
  const end = text.lastIndexOf('\n')
  const whole = end === -1 ? '' : text.slice(0, end)
  let bytes = 0
  for (const m of whole.matchAll(COPY_LINE)) bytes += Number(m[1])
  return {bytes, rest: end === -1 ? text : text.slice(end + 1)}
}

/** One line for a progress bar: `[#####.....]  40%  25.6 of 64.0 MiB`. Pure. */
const mib = (n: number) => (n / 1024 / 1024).toFixed(1)

export function progressBar(arrived: number, total: number, width = 24): string {
  const part = total > 0 ? Math.min(1, arrived / total) : 1
  const filled = Math.round(part * width)
  const shown = Math.min(arrived, total)
  return `[${'#'.repeat(filled)}${'.'.repeat(width - filled)}] ${String(Math.floor(part * 100)).padStart(3)}%  ${mib(shown)} of ${mib(total)} MiB`
}

export interface LazyPagesIO extends CriuIO {
  /** Bytes delivered so far of the total, a few times a second while the command waits. */
  pages?: (arrived: number, total: number) => void
}

export interface LazyPagesResult {
  /** Bytes of memory the daemon serves (lazy pagemap entries). */
  bytes: number
  /** The daemon's log is absent when it was in the temporary work folder, removed after a waited restore. */
  daemon: {logFile?: string; pid: number}
  /** Milliseconds from the command's start until every page had arrived (undefined with --no-wait-pages). */
  allPagesMs?: number
  /** Milliseconds from the command's start until the tree was restored and verified. */
  restoredMs: number
  /** Whether the command waited for all pages. */
  waited: boolean
}

const sleep = (ms: number) =>
  new Promise(r => {
    setTimeout(r, ms)
  })

/**
 * The daemon of one lazy restore. Stopping it (signal, timeout, failure) first kills the
 * restored tree, so that no restored task ever runs on with zero pages where its memory was.
 */
class DaemonRun extends CriuRun {
  treePids: readonly number[] = []

  override stop(reason: FailedError | InterruptedError): void {
    for (const pid of this.treePids.filter(p => descendsFromThisProcess(p))) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // gone already
      }
    }

    super.stop(reason)
  }
}

export class LazyPages {
  private arrived = 0
  private exit: Exit | undefined
  private unsupervise: (() => void) | undefined

  private constructor(
    readonly plan: LazyPagesPlan,
    readonly total: number,
    private readonly run: DaemonRun,
  ) {
    run.exited.then(
      e => {
        this.exit = e
      },
      () => {},
    )
  }

  get pid(): number {
    return this.run.pid ?? 0
  }

  /**
   * Start the daemon and wait until it listens. The timeout and signals stop it from now on
   * (and, once restored, the tree with it). A daemon that cannot start is a FailedError, with
   * nothing restored yet.
   */
  static async start(
    facts: {criu: string; env: NodeJS.ProcessEnv; imagesDir: string; timeout?: number; workDir: string},
    io: LazyPagesIO,
  ): Promise<LazyPages> {
    const total = await lazyBytes(facts.imagesDir)
    const plan = planLazyPages(facts)
    const run = new DaemonRun(plan, facts.env, {detached: true, statusPipe: true})
    const lazy = new LazyPages(plan, total, run)
    lazy.unsupervise = supervise(run, facts.timeout, io, {aftermath: 'the restored tree, if any, was ended first'})
    const ready = new Promise<boolean>(done => {
      run.status!.once('data', () => done(true))
      run.status!.once('end', () => done(false))
      run.status!.once('error', () => done(false))
    })
    const started = await Promise.race([ready, run.exited.then(() => false, () => false)])
    if (!started) {
      const interrupted = run.stopped // by a signal or the timeout while starting
      await lazy.shutdown(new FailedError('the lazy-pages daemon did not start'))
      throw interrupted ?? lazy.failure('did not start')
    }

    return lazy
  }

  /** The PIDs the restore recreates: stopping the daemon ends those that are this process's descendants first. */
  restored(pids: readonly number[]): void {
    this.run.treePids = pids
  }

  /**
   * Wait until every page has arrived (daemon exit 0), reporting progress; or, with
   * waitPages false, let the daemon finish alone and return at once.
   */
  async settle(started: number, waitPages: boolean, io: LazyPagesIO): Promise<LazyPagesResult> {
    const restoredMs = Date.now() - started
    const daemon = {logFile: this.plan.logFile, pid: this.pid}
    if (!waitPages) {
      if (this.exit && this.exit.code !== 0) throw this.failure('ended before all pages arrived')
      this.unsupervise?.()
      this.run.release()
      return {bytes: this.total, daemon, restoredMs, waited: false}
    }

    io.pages?.(0, this.total)
    let offset = 0
    let rest = ''
    const follow = () => {
      const chunk = this.readLog(offset)
      offset += chunk.length
      const counted = countCopied(rest + chunk.toString('latin1'))
      rest = counted.rest
      this.arrived += counted.bytes
      io.pages?.(Math.min(this.arrived, this.total), this.total)
    }

    while (this.exit === undefined) {
      await sleep(100)
      follow()
    }

    if (this.run.stopped) throw this.run.stopped
    if (this.exit.code !== 0) throw this.failure('ended before all pages arrived')
    io.pages?.(this.total, this.total)
    this.removeSocket()
    return {allPagesMs: Date.now() - started, bytes: this.total, daemon, restoredMs, waited: true}
  }

  /** Stop the daemon (and, once restored, the tree before it) and wait until it is gone. */
  async shutdown(reason: FailedError | InterruptedError): Promise<void> {
    this.stop(reason)
    await this.run.exited.catch(() => {})
    this.unsupervise?.()
    this.removeSocket()
  }

  private failure(what: string): FailedError {
    let log = ''
    try {
      log = this.readLog(0).toString()
    } catch {
      // no log yet
    }

    const lines = criuErrorLines(log)
    const exit = this.exit ? ` (${this.exit.signal ?? `exit code ${this.exit.code}`})` : ''
    const detail = (lines.length > 0 ? lines : this.run.stderr.trim().split('\n').filter(Boolean).slice(0, 5)).map(l => `\n  ${l}`).join('')
    return new FailedError(
      `the lazy-pages daemon ${what}${exit}; the restored tree, if any, was ended${detail}\nLog: ${this.plan.logFile}`,
      undefined,
      this.plan.logFile,
    )
  }

  private readLog(offset: number): Buffer {
    let fd: number
    try {
      fd = openSync(this.plan.logFile, 'r')
    } catch {
      return Buffer.alloc(0)
    }

    try {
      const chunks: Buffer[] = []
      const buf = Buffer.alloc(1 << 20)
      let n: number
      let at = offset
      while ((n = readSync(fd, buf, 0, buf.length, at)) > 0) {
        chunks.push(Buffer.from(buf.subarray(0, n)))
        at += n
      }

      return Buffer.concat(chunks)
    } finally {
      closeSync(fd)
    }
  }

  /** The daemon never unlinks its socket: a finished one is removed so the folder can serve again. */
  private removeSocket(): void {
    if (this.exit !== undefined) rmSync(this.plan.socket, {force: true})
  }

  private stop(reason: FailedError | InterruptedError): void {
    if (this.exit === undefined) this.run.stop(reason)
  }
}

/** The daemon for a --lazy-pages request, started and listening; undefined without --lazy-pages. */
export async function startLazyPages(
  request: {imagesDir: string; lazyPages?: boolean; timeout?: number},
  facts: {criu: string; env: NodeJS.ProcessEnv; workDir: string},
  io: LazyPagesIO,
): Promise<LazyPages | undefined> {
  if (!request.lazyPages) return undefined
  const lazy = await LazyPages.start({...facts, imagesDir: request.imagesDir, timeout: request.timeout}, io)
  // Known before the restore: a stop at any moment from now on ends those of them that are ours.
  try {
    lazy.restored(checkpointPids(request.imagesDir))
  } catch (error) {
    const failure = new FailedError(`--images-dir ${quote(request.imagesDir)}: cannot read pstree.img: ${(error as Error).message}`)
    await lazy.shutdown(failure)
    throw failure
  }

  return lazy
}

/** Once the tree is restored and verified: wait for the pages, or not (see LazyPages.settle). */
export async function settleLazyPages(
  lazy: LazyPages | undefined,
  request: {imagesDir: string; waitPages?: boolean},
  started: number,
  io: LazyPagesIO,
): Promise<LazyPagesResult | undefined> {
  if (!lazy) return undefined
  return lazy.settle(started, request.waitPages ?? true, io)
}

/** After a failure anywhere in the restore: the tree (if restored) and then the daemon are ended. */
export async function shutdownLazyPages(lazy: LazyPages | undefined, error: unknown): Promise<void> {
  await lazy?.shutdown(error instanceof InterruptedError ? error : new FailedError('restore failed'))
}
