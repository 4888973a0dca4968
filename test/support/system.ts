/**
 * Real processes and real namespaces for the tests. Everything started here is tracked and
 * ended by PID (never by name) in cleanup(), which the suites call from afterEach.
 */
import {
  ChildProcess, execFileSync, spawn, spawnSync,
} from 'node:child_process'
import {
  existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync,
} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {isRunning} from '../../src/lib/proc.js'

export const REPO = join(__dirname, '..', '..', '..')
export const BIN = join(REPO, 'bin', 'run.js')

/** Fail loudly, never skip, when the machine cannot run the test. */
export function requireRoot(): void {
  if (process.getuid?.() !== 0) throw new Error('this test needs root (namespaces, CRIU); run the suite as root')
}

export function criuPath(): string {
  const path = process.env.CRIU_PATH
  if (!path || !existsSync(path)) {
    throw new Error('CRIU_PATH does not name a CRIU binary: run the tests through `npm test` (it provisions CRIU)')
  }

  return path
}

const started = new Set<number>()
const netnsNames = new Set<string>()
const tempDirs = new Set<string>()

/** Track a PID for cleanup(). */
export function track(pid: number): number {
  started.add(pid)
  return pid
}

/** Stop tracking a PID whose process is gone for good (its number may be reused by someone else's). */
export function untrack(pid: number): void {
  started.delete(pid)
}

/** True while the PID names a process that is not a zombie. */
export const alive = isRunning

/** stderr as one line: oclif wraps warnings and errors and prefixes them with ›. */
export function flat(text: string): string {
  return text.replaceAll(/\s*›\s*/g, ' ').replaceAll(/\s+/g, ' ').trim()
}

export function nsInode(pid: number | 'self', type: string): number {
  return statSync(`/proc/${pid}/ns/${type}`).ino
}

export function nsLink(pid: number | 'self', type: string): string {
  return readlinkSync(`/proc/${pid}/ns/${type}`)
}

export async function waitFor(what: string, check: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms
  while (!check()) {
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`)
    await new Promise(r => {
      setTimeout(r, 10)
    })
  }
}

/** A `sleep` of our own in its own session (what CRIU can checkpoint without --shell-job), tracked; its PID once it runs. */
export async function startSleeper(): Promise<number> {
  const child = spawn('setsid', ['sleep', '100000'], {stdio: 'ignore'})
  const pid = track(child.pid!)
  await waitFor('the sleeper to start', () => {
    try {
      return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'sleep'
    } catch {
      return false
    }
  })
  return pid
}

/** The first child of a process (for `unshare --fork`, whose child is in the new pid/time ns). */
export function firstChild(pid: number): number {
  const text = readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim()
  if (!text) throw new Error(`process ${pid} has no child`)
  return Number(text.split(' ')[0])
}

export interface Holder {
  /** The process whose /proc/<pid>/ns/* are the namespaces to join. */
  pid: number
  proc: ChildProcess
}

/**
 * A process that sits in new namespaces of the given types (unshare's names: net, uts, ipc,
 * mount, time, cgroup, user). Its hostname is `hostname` when it has a uts namespace. With
 * user, the test writes an identity uid_map/gid_map for 0..65535 from the outside.
 */
export async function startHolder(types: readonly string[], hostname = 'holder'): Promise<Holder> {
  const args = types.map(t => `--${t}`)
  const needsFork = types.includes('time') || types.includes('pid')
  if (needsFork) args.push('--fork')
  const script = types.includes('uts') ? `hostname ${hostname}; exec sleep 100000` : 'exec sleep 100000'
  // With a user namespace the child waits for its maps before doing anything that needs them.
  const body = types.includes('user') ? `while [ "$(cat /proc/self/uid_map | wc -l)" = 0 ]; do sleep 0.01; done; ${script}` : script
  const proc = spawn('unshare', [...args, 'sh', '-c', body], {detached: true, stdio: 'ignore'})
  track(proc.pid!)
  if (types.includes('user')) {
    const mapped = proc.pid!
    await waitFor('the holder to enter its user namespace', () => {
      try {
        return nsInode(mapped, 'user') !== nsInode('self', 'user')
      } catch {
        return false
      }
    })
    writeFileSync(`/proc/${mapped}/uid_map`, '0 0 65536\n')
    writeFileSync(`/proc/${mapped}/setgroups`, 'deny\n')
    writeFileSync(`/proc/${mapped}/gid_map`, '0 0 65536\n')
  }

  let pid = proc.pid!
  if (needsFork) {
    await waitFor('unshare --fork to start its child', () => {
      try {
        firstChild(proc.pid!)
        return true
      } catch {
        return false
      }
    })
    pid = track(firstChild(proc.pid!))
  }

  // Ready when sleep runs (after hostname was set).
  await waitFor('the holder to be ready', () => {
    try {
      return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'sleep'
    } catch {
      return false
    }
  })
  return {pid, proc}
}

/** `ip netns add NAME`: a net namespace bind-mounted at /run/netns/NAME. */
export function addNetns(name: string): string {
  execFileSync('ip', ['netns', 'add', name])
  netnsNames.add(name)
  return `/run/netns/${name}`
}

export function tempDir(prefix = 'criu-test-'): string {
  const dir = mkdtempSync(join(tmpdir(), prefix))
  tempDirs.add(dir)
  return dir
}

/** The plugin's folders in the temp folder (work folders, and whatever else it makes there), sorted. */
export const pluginFolders = () => readdirSync(tmpdir()).filter(f => f.startsWith('oclif-plugin-criu-')).sort()

/**
 * The temporary work folder a failed run kept and named in its message (`Log: DIR/x.log`), or
 * undefined; cleanup() removes it. oclif breaks a path longer than the terminal inside it, so the
 * path is read from the message without its line breaks.
 */
export function keptWorkDir(stderr: string): string | undefined {
  // Non-greedy and colon-free: a message may name two logs (a daemon's and CRIU's).
  const m = /Log:([^:]*?\/oclif-plugin-criu-(?:restore|checkpoint)-[A-Za-z\d]{6})\/[\w.-]+\.log/.exec(stderr.replaceAll(/[\s›]/g, ''))
  if (!m || !m[1].startsWith(`${tmpdir()}/`)) return undefined
  tempDirs.add(m[1])
  return m[1]
}

export function killPid(pid: number): void {
  try {
    process.kill(pid, 'SIGKILL')
  } catch {
    // already gone
  }
}

/** End every process, namespace and folder the test made. */
export async function cleanup(): Promise<void> {
  for (const pid of started) killPid(pid)
  for (const pid of started) {
    await waitFor(`process ${pid} to die`, () => !alive(pid)).catch(() => {})
  }

  started.clear()
  for (const name of netnsNames) spawnSync('ip', ['netns', 'del', name])
  netnsNames.clear()
  for (const dir of tempDirs) rmSync(dir, {force: true, recursive: true})
  tempDirs.clear()
  forgetFailedWorkDirs()
}

/**
 * A failed restore or checkpoint keeps its temporary work folder with CRIU's log, by design;
 * tests that make restores fail on purpose leave those. They are removed here (only folders of
 * the plugin that hold a log: a run that succeeded removes its folder itself, and the host-CLI
 * and fault tests check that explicitly).
 */
function forgetFailedWorkDirs(): void {
  const names = readdirSync(tmpdir()).filter(name => /^oclif-plugin-criu-(?:restore|checkpoint)-[A-Za-z\d]{6}$/.test(name))
  if (names.length === 0) return
  const busy = foldersInUse()
  for (const name of names) {
    const dir = join(tmpdir(), name)
    // A run of another process (a second suite, a benchmark) still works there: not ours to remove.
    if (busy.has(dir)) continue
    try {
      if (readdirSync(dir).some(f => f.endsWith('.log'))) rmSync(dir, {force: true, recursive: true})
    } catch {
      // gone meanwhile
    }
  }
}

/** Every folder some process has as its cwd or holds open (CRIU works in its work folder; the plugin holds it open). */
function foldersInUse(): Set<string> {
  const used = new Set<string>()
  const note = (link: string) => {
    try {
      used.add(readlinkSync(link))
    } catch {
      // gone, or not ours to read
    }
  }

  for (const pid of readdirSync('/proc').filter(p => /^\d+$/.test(p))) {
    note(`/proc/${pid}/cwd`)
    try {
      for (const fd of readdirSync(`/proc/${pid}/fd`)) note(`/proc/${pid}/fd/${fd}`)
    } catch {
      // gone meanwhile
    }
  }

  return used
}

/** The open fds of this process, as a count. */
export function fdCount(pid: number = process.pid): number {
  return readdirSync(`/proc/${pid}/fd`).length
}
