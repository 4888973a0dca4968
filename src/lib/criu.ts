/**
 * Finding CRIU, knowing its version, and the environment it needs on this machine.
 */
import {execFile} from 'node:child_process'
import {accessSync, constants, existsSync, mkdirSync, readFileSync, realpathSync, statSync, writeFileSync} from 'node:fs'
import {homedir} from 'node:os'
import {delimiter, join} from 'node:path'

import {FailedError} from './errors.js'

/** The oldest CRIU with every option restore passes: 3.14 added time namespaces (--join-ns time). */
export const MIN_CRIU = {major: 3, minor: 14, sublevel: 0}
/** From 4.2 CRIU detects broken hardware breakpoints itself. */
export const CRIU_DETECTS_BREAKPOINTS = {major: 4, minor: 2, sublevel: 0}
/** CRIU's fault-injection switch that stops the parasite by syscall tracing instead of breakpoints. */
export const FI_NO_BREAKPOINTS = '130'

export interface CriuVersion {
  major: number
  minor: number
  sublevel: number
  text: string
}

/** Parse `criu --version` output ("Version: 4.2.1", maybe with a GitID line). */
export function parseCriuVersion(output: string): CriuVersion | undefined {
  const m = /^Version:\s*(\d+)\.(\d+)(?:\.(\d+))?/m.exec(output)
  if (!m) return undefined
  return {
    major: Number(m[1]), minor: Number(m[2]), sublevel: Number(m[3] ?? 0), text: `${m[1]}.${m[2]}${m[3] ? `.${m[3]}` : ''}`,
  }
}

export function versionAtLeast(v: {major: number; minor: number; sublevel: number}, min: {major: number; minor: number; sublevel: number}): boolean {
  if (v.major !== min.major) return v.major > min.major
  if (v.minor !== min.minor) return v.minor > min.minor
  return v.sublevel >= min.sublevel
}

export function formatVersion(v: {major: number; minor: number; sublevel: number}): string {
  return `${v.major}.${v.minor}${v.sublevel ? `.${v.sublevel}` : ''}`
}

function executable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK)
    return true
  } catch {
    return false
  }
}

/** --criu-path, else $CRIU_PATH, else `criu` on $PATH (then /usr/sbin and /sbin, where Debian puts it). */
export function findCriu(flag: string | undefined, env: NodeJS.ProcessEnv = process.env): string {
  const given = flag ?? env.CRIU_PATH
  if (given) {
    if (!executable(given)) {
      throw new FailedError(`CRIU not found at ${given} (${flag ? '--criu-path' : 'CRIU_PATH'})`, 'point it at a CRIU binary, or install CRIU')
    }

    return given
  }

  const dirs = [...(env.PATH ?? '').split(delimiter), '/usr/local/sbin', '/usr/sbin', '/sbin']
  for (const dir of dirs) {
    if (dir && executable(join(dir, 'criu'))) return join(dir, 'criu')
  }

  throw new FailedError(
    `CRIU not found on PATH (needs ${formatVersion(MIN_CRIU)} or newer)`,
    'install CRIU, or pass --criu-path, or set CRIU_PATH',
  )
}

/** Run `criu --version` and check it is new enough. */
/**
 * The plugin's cache folder: $XDG_CACHE_HOME or ~/.cache, not the shared temp folder (another
 * user could plant answers there for root to read).
 */
export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'oclif-plugin-criu')
}

export function readCache<T>(name: string): Record<string, T> {
  try {
    return JSON.parse(readFileSync(join(cacheDir(), name), 'utf8')) as Record<string, T>
  } catch {
    return {}
  }
}

export function writeCache<T>(name: string, data: Record<string, T>): void {
  try {
    mkdirSync(cacheDir(), {mode: 0o700, recursive: true})
    writeFileSync(join(cacheDir(), name), JSON.stringify(data), {mode: 0o600})
  } catch {
    // an unwritable cache only costs the work again next time
  }
}

/** What identifies one CRIU binary: a replaced or upgraded file has another inode, size or mtime. */
export function binaryKey(path: string): string | undefined {
  try {
    const st = statSync(realpathSync(path))
    return `${realpathSync(path)}:${st.ino}:${st.size}:${st.mtimeMs}`
  } catch {
    return undefined
  }
}

/** Run `criu --version` (answer cached per binary) and check it is new enough. */
export async function criuVersion(path: string): Promise<CriuVersion> {
  const key = binaryKey(path)
  const cached = readCache<CriuVersion>('criu-versions.json')
  let version = key ? cached[key] : undefined
  if (!version) {
    const output = await new Promise<string>((resolve, reject) => {
      execFile(path, ['--version'], {timeout: 10_000}, (error, stdout) => {
        if (error) reject(new FailedError(`cannot run ${path} --version: ${error.message.split('\n')[0]}`))
        else resolve(stdout)
      })
    })
    version = parseCriuVersion(output)
    if (!version) throw new FailedError(`${path} does not look like CRIU: its --version printed ${JSON.stringify(output.trim().slice(0, 80))}`)
    // Keep the entries of binaries that still exist, so the file does not grow without end.
    const kept = Object.fromEntries(Object.entries(cached).filter(([k]) => existsSync(k.slice(0, k.indexOf(':')))))
    if (key) writeCache('criu-versions.json', {...kept, [key]: version})
  }

  if (!versionAtLeast(version, MIN_CRIU)) {
    throw new FailedError(
      `CRIU ${version.text} at ${path} is too old: restore needs CRIU ${formatVersion(MIN_CRIU)} or newer`,
      'install a newer CRIU (scripts/provision-criu.sh fetches 4.2) or pass --criu-path',
    )
  }

  return version
}

/**
 * Whether hardware breakpoints work here, asked once per boot: the native probe's answer is
 * cached (cacheDir) under the kernel's boot id.
 */
export function hwBreakpointsWork(probe: () => {works: boolean | null}): boolean | null {
  let bootId = 'unknown'
  try {
    bootId = readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
  } catch {
    // no /proc: the probe runs every time
  }

  const cached = readCache<boolean | null>('hw-breakpoints.json')
  if (bootId !== 'unknown' && bootId in cached) return cached[bootId]
  const {works} = probe()
  if (bootId !== 'unknown') writeCache('hw-breakpoints.json', {[bootId]: works})
  return works
}

/**
 * The environment CRIU runs with. A CRIU older than 4.2 hangs forever ("Waiting for PID to
 * trap") where hardware breakpoints do not work; CRIU_FAULT=130 makes it use syscall tracing.
 * Only then, and only for such a CRIU, is it set.
 */
export function criuEnvironment(version: CriuVersion, breakpointsWork: () => boolean | null, env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  if (versionAtLeast(version, CRIU_DETECTS_BREAKPOINTS) || env.CRIU_FAULT) return {...env}
  return breakpointsWork() === false ? {...env, CRIU_FAULT: FI_NO_BREAKPOINTS} : {...env}
}

export type Exit = {code: null | number; signal: NodeJS.Signals | null}

/** The error for a CRIU that ended badly: its first error lines (else its stderr), its log, a hint. */
export function criuFailure(action: 'dump' | 'restore', logFile: string, exit: Exit, stderr = ''): FailedError {
  let log = ''
  try {
    log = readFileSync(logFile, 'utf8')
  } catch {
    // no log: CRIU failed before it could write one
  }

  const lines = criuErrorLines(log)
  const shown = lines.length > 0 ? lines : stderr.trim().split('\n').filter(Boolean).slice(0, 5)
  const detail = shown.map(l => `\n  ${l}`).join('')
  return new FailedError(`CRIU ${action} failed (${exit.signal ?? `exit code ${exit.code}`})${detail}\nLog: ${logFile}`, hintFor(log + stderr), logFile)
}

/** An error CRIU prints on every run on these machines, and that changes nothing. */
const HARMLESS = /rlimit: Can't setup RLIMIT_NOFILE/

/** CRIU's error lines from its log, without the harmless ones it prints on every run here. */
export function criuErrorLines(log: string, max = 5): string[] {
  return log
  .split('\n')
  .filter(line => /\bError \(/.test(line) && !/rlimit: Can't setup RLIMIT_NOFILE/.test(line))
  .slice(0, max)
  .map(line => line.replace(/^\(\s*[\d.]+\)\s*/, '').trim())
}

/** A one-line hint for the failures met while testing, keyed by what CRIU's log says. */
export function hintFor(log: string): string | undefined {
  const relevant = log.split('\n').filter(line => !HARMLESS.test(line)).join('\n')
  const rules: [RegExp, string][] = [
    [/Locking network failed|execvp\("ip6?tables-restore"/, 'CRIU could not lock the network (iptables is missing here): pass --network-lock skip, or install iptables'],
    [/Can't fork for \d+: File exists|PID \d+ is already in use|set_next_pid/i, 'a process with one of the checkpoint\'s PIDs already runs here; end it, or restore in a new PID namespace'],
    [/No such file or directory.*\.img|Can't open image/i, 'the checkpoint is incomplete: an image file is missing'],
    [/Can't open ns file|Failed to setns when join-ns/i, 'a namespace to join is gone or not joinable any more'],
    [/Operation not permitted|EPERM/i, 'permission denied: run as root'],
    [/Unknown option|unrecognized option|invalid option/i, 'this CRIU is too old for an option passed; install CRIU 4.2 or newer'],
  ]
  for (const [pattern, hint] of rules) if (pattern.test(relevant)) return hint
  return undefined
}
