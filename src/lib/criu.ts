/**
 * Finding CRIU, knowing its version, and the environment it needs on this machine.
 */
import {execFile} from 'node:child_process'
import {accessSync, constants, existsSync, readFileSync, realpathSync, statSync} from 'node:fs'
import {homedir} from 'node:os'
import {delimiter, join} from 'node:path'

import {CapabilityNeed, capabilityForFailure, criuCapabilities, missingCapabilities} from './capabilities.js'
import {commandLine} from './cli-names.js'
import {FailedError} from './errors.js'
import {readOwnFile, writeOwnFile} from './trust.js'

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
    return !statSync(path).isDirectory()
  } catch {
    return false
  }
}

/** The first executable `name` in PATH's folders, as execvp finds a bare name. */
function onPathNamed(name: string, env: NodeJS.ProcessEnv): string | undefined {
  return (env.PATH ?? '').split(delimiter).filter(Boolean).map(dir => join(dir, name)).find(path => executable(path))
}

/** Where the CRIU that runs was found: the flag, the environment, or PATH. */
export type CriuSource = '--criu-path' | 'CRIU_PATH' | 'PATH'

export interface FoundCriu {
  path: string
  source: CriuSource
}

/** Where distributions put CRIU; not searched (only PATH is), but named when CRIU is there and not on PATH. */
export const SBIN_DIRS = ['/usr/local/sbin', '/usr/sbin', '/sbin']

/** "CRIU at /usr/sbin/criu (found on PATH)", with the version when known: every message about a CRIU says which one. */
export function describeCriu(found: FoundCriu, version?: {text: string}): string {
  const where = found.source === 'PATH' ? 'found on PATH' : `from ${found.source}`
  return `CRIU ${version ? `${version.text} ` : ''}at ${found.path} (${where})`
}

/**
 * The one search order, the same in help and README: --criu-path, else $CRIU_PATH, else `criu`
 * on $PATH. Nothing else is searched: a CRIU in /usr/sbin that is not on PATH is only named in
 * the hint, so that which binary runs never depends on what else the machine has.
 */
export function findCriu(flag: string | undefined, env: NodeJS.ProcessEnv = process.env, sbinDirs: readonly string[] = SBIN_DIRS): FoundCriu {
  const given = flag || env.CRIU_PATH
  if (given) {
    const source = flag ? '--criu-path' : 'CRIU_PATH'
    // A bare name is looked up on PATH, as a shell would run it.
    const path = given.includes('/') ? given : onPathNamed(given, env)
    if (path === undefined) throw new FailedError(`CRIU not found: no ${given} on PATH (${source})`, 'give the path of a CRIU binary, or install CRIU')
    if (existsSync(path) && statSync(path).isDirectory()) throw new FailedError(`${path} (${source}) is a folder, not a CRIU binary`, 'give the path of the criu binary itself')
    if (!executable(path)) {
      throw new FailedError(`CRIU not found at ${path} (${source})`, 'point it at a CRIU binary, or install CRIU')
    }

    return {path, source}
  }

  const onPath = onPathNamed('criu', env)
  if (onPath) return {path: onPath, source: 'PATH'}

  const elsewhere = sbinDirs.map(dir => join(dir, 'criu')).find(path => executable(path))
  throw new FailedError(
    `CRIU not found on PATH (needs ${formatVersion(MIN_CRIU)} or newer; ${formatVersion(CRIU_DETECTS_BREAKPOINTS)} or newer recommended)`,
    elsewhere
      ? `${elsewhere} exists but is not on PATH: pass --criu-path ${elsewhere} or set CRIU_PATH (\`${commandLine('criu check')}\` says whether it works here)`
      : 'install CRIU, or pass --criu-path, or set CRIU_PATH',
  )
}

/**
 * The plugin's cache folder: $XDG_CACHE_HOME or ~/.cache, not the shared temp folder (another
 * user could plant answers there for root to read).
 */
export function cacheDir(env: NodeJS.ProcessEnv = process.env): string {
  return join(env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'oclif-plugin-criu')
}

/**
 * A cache file is believed only when it and its folder are owned by the current user and
 * writable by no one else, and every folder on the way is trusted (trust.ts); anything else is
 * ignored, and the answer is worked out again.
 */
export function readCache<T>(name: string): Record<string, T> {
  try {
    const text = readOwnFile(join(cacheDir(), name))
    return text === undefined ? {} : JSON.parse(text) as Record<string, T>
  } catch {
    return {}
  }
}

/** Written whole (new file, then renamed over the old one): never through a link, never half. */
export function writeCache<T>(name: string, data: Record<string, T>): void {
  try {
    writeOwnFile(join(cacheDir(), name), JSON.stringify(data))
  } catch {
    // an unwritable or untrusted cache only costs the work again next time
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

/** Run `criu --version` (answer cached per binary). */
export async function readCriuVersion(found: FoundCriu): Promise<CriuVersion> {
  const {path} = found
  const key = binaryKey(path)
  const cached = readCache<CriuVersion>('criu-versions.json')
  let version = key ? cached[key] : undefined
  if (!version) {
    const output = await new Promise<string>((resolve, reject) => {
      execFile(path, ['--version'], {timeout: 10_000}, (error, stdout) => {
        if (error) reject(new FailedError(`${describeCriu(found)} does not run: ${error.message.split('\n')[0]}`, wayOut()))
        else resolve(stdout)
      })
    })
    version = parseCriuVersion(output)
    if (!version) {
      // Its first line says what it is (`true (GNU coreutils) 9.1`); the rest would be noise.
      const first = output.trim().split('\n')[0].slice(0, 80)
      throw new FailedError(`${describeCriu(found)} does not look like CRIU: its --version printed ${first === '' ? 'nothing' : JSON.stringify(first)}`, wayOut())
    }

    // Keep the entries of binaries that still exist, so the file does not grow without end.
    const kept = Object.fromEntries(Object.entries(cached).filter(([k]) => existsSync(k.slice(0, k.indexOf(':')))))
    if (key) writeCache('criu-versions.json', {...kept, [key]: version})
  }

  return version
}

/** Run `criu --version` (answer cached per binary) and check it is new enough. */
export async function criuVersion(criu: FoundCriu | string): Promise<CriuVersion> {
  const found: FoundCriu = typeof criu === 'string' ? {path: criu, source: '--criu-path'} : criu
  const version = await readCriuVersion(found)
  if (!versionAtLeast(version, MIN_CRIU)) {
    throw new FailedError(
      `${describeCriu(found, version)} is too old: restore needs CRIU ${formatVersion(MIN_CRIU)} or newer`,
      wayOut(),
    )
  }

  return version
}

/** The kernel's boot id: what makes a cached answer about this kernel stale. */
function bootId(): string | undefined {
  try {
    return readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()
  } catch {
    return undefined
  }
}

/** How to get a CRIU that works, in one line. */
export function wayOut(pointToDoctor = true): string {
  const doctor = pointToDoctor ? `; \`${commandLine('criu check')}\` shows what works here` : ''
  return `use CRIU ${formatVersion(CRIU_DETECTS_BREAKPOINTS)} or newer: pass --criu-path or set CRIU_PATH (Debian family: the criu package of Debian forky or sid, unpacked privately by the plugin's scripts/provision-criu.sh)${doctor}`
}

export interface CriuCheck {
  /** CRIU's own `criu check` passed. */
  ok: boolean
  /** Why not, in one line. */
  reason?: string
}

/** Run CRIU with these arguments; its exit code and everything it printed. */
export function runCriu(path: string, args: readonly string[], timeout = 30_000): Promise<{code: null | number; output: string}> {
  return new Promise(resolve => {
    execFile(path, args, {timeout}, (error, stdout, stderr) => {
      const code = error ? (typeof error.code === 'number' ? error.code : null) : 0
      resolve({code, output: `${stdout}${stderr}`})
    })
  })
}

/** `criu check --feature NAME` passes: this CRIU can use that kernel feature here (needs root). */
export async function criuSupports(path: string, feature: string): Promise<boolean> {
  return (await runCriu(path, ['check', '--feature', feature])).code === 0
}

/** Where a command is on PATH (absolute directories only, as CRIU's execvp would find it), or undefined. */
export function onPath(command: string, env: NodeJS.ProcessEnv = process.env): string | undefined {
  return (env.PATH ?? '').split(delimiter).filter(dir => dir.startsWith('/')).map(dir => join(dir, command)).find(path => existsSync(path))
}

/** What a failed `criu check` means, in one line. Pure: reads CRIU's own words. */
export function explainCheckFailure(output: string): string {
  if (/CRIU needs to have the CAP_SYS_ADMIN or the CAP_CHECKPOINT_RESTORE/.test(output)) {
    return 'it lacks CAP_SYS_ADMIN (or CAP_CHECKPOINT_RESTORE): run it as root with full capabilities'
  }

  const kerndat = /(kerndat_\w+|\w+) failed when initializing kerndat/.exec(output)
  if (kerndat || /Could not initialize kernel features detection/.test(output)) {
    const part = kerndat?.[1].replace(/^kerndat_/, '') ?? ''
    const what = /vdso/i.test(part) ? 'vDSO' : (part || 'kernel feature detection')
    const first = criuErrorLines(output, 10).map(l => l.replace(/^.*?Error \([^)]*\):\s*/, '')).find(l => !/exited, status=/.test(l))
    return `cannot run on this kernel: kerndat (${what}) failed${first ? ` (${first})` : ''}`
  }

  const line = criuErrorLines(output, 10).map(l => l.replace(/^.*?Error \([^)]*\):\s*/, '')).find(l => !/exited, status=/.test(l))
  const plain = output.split('\n').map(l => l.trim()).find(l => l && !l.startsWith('Warn'))
  return `its own \`criu check\` fails: ${line ?? plain ?? 'no output'}`
}

/**
 * CRIU's own `criu check`, asked once per binary, boot and capability set (about 0.4 s here):
 * the answer is cached in cacheDir(), where other users cannot plant one.
 */
export async function criuCheck(path: string, capabilities: bigint): Promise<CriuCheck> {
  const key = binaryKey(path)
  const boot = bootId()
  const cacheKey = key && boot ? `${key}|${boot}|${capabilities.toString(16)}` : undefined
  const cached = readCache<CriuCheck>('criu-check.json')
  if (cacheKey && cached[cacheKey]) return cached[cacheKey]
  const {code, output} = await runCriu(path, ['check'])
  const answer: CriuCheck = code === 0 ? {ok: true} : {ok: false, reason: explainCheckFailure(output)}
  if (cacheKey) {
    // Answers of earlier boots can never be read again.
    const kept = Object.fromEntries(Object.entries(cached).filter(([k]) => k.includes(`|${boot}|`)))
    writeCache('criu-check.json', {...kept, [cacheKey]: answer})
  }

  return answer
}

/**
 * Judge the CRIU that will run, before any work starts: new enough, and able to run on this
 * kernel with these capabilities (its own `criu check`, cached). A CRIU that cannot becomes one
 * message naming it, what is wrong, and the way out.
 */
export async function judgeCriu(found: FoundCriu, capabilities: bigint): Promise<CriuVersion> {
  const version = await criuVersion(found)
  const check = await criuCheck(found.path, capabilities)
  if (!check.ok) throw new FailedError(`${describeCriu(found, version)} ${check.reason}`, wayOut())
  return version
}

/**
 * Whether hardware breakpoints work here, asked once per boot: the native probe's answer is
 * cached (cacheDir) under the kernel's boot id.
 */
export function hwBreakpointsWork(probe: () => {works: boolean | null}): boolean | null {
  const boot = bootId()
  const cached = readCache<boolean | null>('hw-breakpoints.json')
  if (boot && boot in cached) return cached[boot]
  const {works} = probe()
  if (boot) writeCache('hw-breakpoints.json', {[boot]: works})
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

/** A CRIU that ran and ended badly: which CRIU it was is a fact of its own (--json's `ran`). */
export class CriuFailedError extends FailedError {
  constructor(
    message: string,
    hint: string | undefined,
    logFile: string,
    /** Which CRIU ran: version, path and why that one (describeCriu). */
    ran?: string,
  ) {
    super(message, hint, logFile)
    this.ran = ran
  }
}

/** The error for a CRIU that ended badly: its first error lines (else its stderr), which CRIU ran, its log, a hint. */
export function criuFailure(action: 'dump' | 'restore', logFile: string, exit: Exit, {ran, stderr = ''}: {ran?: string; stderr?: string} = {}): FailedError {
  let log = ''
  try {
    log = readFileSync(logFile, 'utf8')
  } catch {
    // no log: CRIU failed before it could write one
  }

  const lines = criuErrorLines(log)
  const shown = lines.length > 0 ? lines : stderr.trim().split('\n').filter(Boolean).slice(0, 5)
  const detail = shown.map(l => `\n  ${l}`).join('')
  const which = ran ? `\nRan: ${ran}` : ''
  return new CriuFailedError(`CRIU ${action} failed (${exit.signal ?? `exit code ${exit.code}`})${detail}${which}\nLog: ${logFile}`, hintFor(log + stderr), logFile, ran)
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

/** Who runs CRIU, for the permission hint: root or not, and the capabilities it will lack. */
export interface Privileges {
  missing: readonly CapabilityNeed[]
  root: boolean
}

export function currentPrivileges(): Privileges {
  return {missing: missingCapabilities(criuCapabilities()), root: process.geteuid?.() === 0}
}

/** The hint for an EPERM: the capability that is missing when root, "run as root" when not. */
export function permissionHint(log: string, privileges: Privileges): string {
  if (!privileges.root) return 'permission denied: run as root'
  const lacking = capabilityForFailure(log, privileges.missing)
  if (lacking.length === 0) {
    return 'permission denied although CRIU runs as root with every capability it uses: a security module (AppArmor, SELinux, seccomp) or the user namespace forbids it'
  }

  const [first] = lacking
  return `permission denied: CRIU runs as root but without ${lacking.map(c => c.name).join(', ')}, which it needs for ${first.breaks}; run it where root has ${lacking.length > 1 ? 'them' : 'it'} (container or unit: add the capability)`
}

/** A one-line hint for the failures met while testing, keyed by what CRIU's log says. */
export function hintFor(log: string, privileges: () => Privileges = currentPrivileges): string | undefined {
  const relevant = log.split('\n').filter(line => !HARMLESS.test(line)).join('\n')
  const rules: [RegExp, () => string][] = [
    [/Locking network failed|execvp\("ip6?tables-restore"/, () => `CRIU could not lock the network (iptables-restore is missing here): pass --network-lock nftables or --network-lock skip (\`${commandLine('criu:check')}\` shows which works here), or install iptables`],
    [/has unreachable sharing|enable-external-masters/, () => `the process runs in a mount namespace of its own whose mounts are shared with this one (\`ip netns exec\` makes one), which CRIU cannot dump: start the workload with ${commandLine('launch', '-J net:/run/netns/NAME -- CMD')} instead (it joins the network namespace and keeps this mount namespace), then checkpoint it`],
    [/Can't fork for \d+: File exists|PID \d+ is already in use|set_next_pid/i, () => 'a process with one of the checkpoint\'s PIDs already runs here (CRIU recreates every task with its PID); end it and restore again (a --dry-run names the PIDs taken)'],
    [/Consider using --shell-job|session leader .* outside/i, () => `the tree belongs to a shell's session (its session leader is outside the tree): checkpoint it with --shell-job (-j) and restore it with -j; or start it with ${commandLine('launch', '-- CMD')}, which gives it a session of its own`],
    [/No such file or directory.*\.img|Can't open image/i, () => 'the checkpoint is incomplete: an image file is missing'],
    [/Can't open ns file|Failed to setns when join-ns/i, () => 'a namespace to join is gone or not joinable any more'],
    [/Operation not permitted|EPERM/i, () => permissionHint(relevant, privileges())],
    [/Unknown option|unrecognized option|invalid option/i, () => 'this CRIU is too old for an option passed; install CRIU 4.2 or newer'],
  ]
  for (const [pattern, hint] of rules) if (pattern.test(relevant)) return hint()
  return undefined
}
