/**
 * Who may have changed a path that root writes through or believes. The rules are pure
 * functions over lstat data (uid, gid, mode, nlink), tested by tables; the readers at the end
 * of this file are the only part that touches the file system.
 *
 * The habit followed is OpenSSH's StrictModes: a path is trusted when every folder on the way
 * to it is owned by a trusted user (root, the caller, the user who ran sudo) and writable by
 * no one else (a sticky folder such as /tmp is fine on the way, never as the place written
 * into), and every symbolic link on the way is owned by a trusted user. Then only those users
 * can change what the path names between these checks and CRIU's own open, which is what
 * makes a check of a path (rather than of an open file descriptor) good enough here.
 */
import {
  closeSync, constants, fstatSync, lstatSync, mkdirSync, openSync, readdirSync, readFileSync, readlinkSync, renameSync, rmSync, writeSync,
} from 'node:fs'
import {basename, dirname, isAbsolute, join, resolve, sep} from 'node:path'

import {RefusedError} from './errors.js'
import {quote} from './join-ns.js'

/** What lstat says about a file, as far as trust goes: the type is in the mode's S_IFMT bits. */
export interface FileFacts {
  readonly gid: number
  readonly mode: number
  readonly nlink: number
  readonly uid: number
}

/** The users and groups whose files are believed and whose folders may be written into. */
export interface Trust {
  readonly groups: readonly number[]
  readonly owners: readonly number[]
}

const S_IFMT = 0o17_0000
const S_ISVTX = 0o1000

export type FileKind = 'directory' | 'file' | 'other' | 'symlink'

export function kindOf(mode: number): FileKind {
  switch (mode & S_IFMT) {
  case 0o04_0000: {
    return 'directory'
  }

  case 0o10_0000: {
    return 'file'
  }

  case 0o12_0000: {
    return 'symlink'
  }

  default: {
    return 'other'
  }
  }
}

function modeText(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, '0')
}

/** Root, the caller, and the user who ran sudo (who could be root anyway). */
export function callerTrust(env: NodeJS.ProcessEnv = process.env): Trust {
  const owners = new Set([0, process.geteuid?.() ?? 0])
  const groups = new Set([0, process.getegid?.() ?? 0])
  if (/^\d+$/.test(env.SUDO_UID ?? '')) owners.add(Number(env.SUDO_UID))
  if (/^\d+$/.test(env.SUDO_GID ?? '')) groups.add(Number(env.SUDO_GID))
  return {groups: [...groups], owners: [...owners]}
}

/** Only the current user (root: root): for the plugin's own state, such as its caches. */
export function selfTrust(): Trust {
  return {groups: [process.getegid?.() ?? 0], owners: [process.geteuid?.() ?? 0]}
}

/** Why users other than the trusted ones can write to it; undefined when they cannot. */
export function othersCanWrite(f: FileFacts, trust: Trust): string | undefined {
  if (f.mode & 0o002) return `other users can write to it (mode ${modeText(f.mode)})`
  if (f.mode & 0o020 && !trust.groups.includes(f.gid)) return `group ${f.gid} can write to it (mode ${modeText(f.mode)})`
  return undefined
}

export function ownerProblem(f: FileFacts, trust: Trust): string | undefined {
  if (trust.owners.includes(f.uid)) return undefined
  return `it is owned by uid ${f.uid}, not by ${trust.owners.map(u => (u === 0 ? 'root' : `uid ${u}`)).join(' or ')}`
}

/** A folder on the way to a path: nobody untrusted may rename or replace what is in it. Sticky folders (/tmp) are fine. */
export function passageProblem(f: FileFacts, trust: Trust): string | undefined {
  if (kindOf(f.mode) !== 'directory') return 'it is not a folder'
  return ownerProblem(f, trust) ?? (f.mode & S_ISVTX ? undefined : othersCanWrite(f, trust))
}

/** A folder CRIU or the plugin writes into, or reads a checkpoint from: a sticky bit does not help. */
export function folderProblem(f: FileFacts, trust: Trust): string | undefined {
  if (kindOf(f.mode) !== 'directory') return 'it is not a folder'
  return ownerProblem(f, trust) ?? othersCanWrite(f, trust)
}

/**
 * An entry that exists where root is about to write a file (--force images, a log, a pidfile):
 * opening it for writing would write through a link, into another name of the same file, or
 * into a file someone else owns.
 */
export function writeTargetProblem(f: FileFacts, trust: Trust): string | undefined {
  const kind = kindOf(f.mode)
  if (kind === 'symlink') return 'it is a symbolic link, which CRIU (as root) would write through'
  if (kind === 'file' && f.nlink > 1) return `it is a hard link (the file has ${f.nlink} names), so writing it changes another file`
  if (kind !== 'file' && kind !== 'directory') return 'it is not a regular file'
  return ownerProblem(f, trust) ?? othersCanWrite(f, trust)
}

/** A file root reads and believes (an image, a cache): only trusted users may have written it. */
export function readSourceProblem(f: FileFacts, trust: Trust): string | undefined {
  const kind = kindOf(f.mode)
  if (kind !== 'file' && kind !== 'directory') return 'it is not a regular file'
  return ownerProblem(f, trust) ?? othersCanWrite(f, trust)
}

/** What a path component is: its lstat facts, and for a link its target. */
export interface Found {
  facts: FileFacts
  target?: string
}

export interface Walked {
  /** The last component's facts (after following trusted links); undefined when it does not exist. */
  facts?: FileFacts
  /** Which path, and why it is not trusted. */
  problem?: {path: string; reason: string}
  /** The path with every link resolved. */
  resolved: string
}

const MAX_LINKS = 40

/**
 * Walk an absolute path component by component as the kernel would, checking every folder on
 * the way (passageProblem) and the owner of every link followed. The last component itself is
 * not judged: the caller knows whether it is a folder to write into, a file to read, ... Pure
 * but for `look` (lstat and readlink), so it is tested with a table of made-up files.
 */
export function walkPath(path: string, trust: Trust, look: (path: string) => Found | undefined): Walked {
  if (!isAbsolute(path)) throw new Error(`walkPath needs an absolute path: ${path}`)
  const parts = (p: string) => p.split(sep).filter(c => c !== '' && c !== '.')
  let queue = parts(path)
  let current: string = sep
  let links = 0
  const rootFacts = look(sep)
  const rootProblem = rootFacts && passageProblem(rootFacts.facts, trust)
  if (rootProblem) return {problem: {path: sep, reason: rootProblem}, resolved: path}
  while (queue.length > 0) {
    const [name, ...rest] = queue
    if (name === '..') {
      current = dirname(current)
      queue = rest
      continue
    }

    const next = join(current, name)
    const found = look(next)
    if (!found) return {resolved: join(next, ...rest)}
    if (kindOf(found.facts.mode) === 'symlink') {
      const owner = ownerProblem(found.facts, trust)
      if (owner) return {problem: {path: next, reason: `it is a symbolic link and ${owner}`}, resolved: path}
      if (++links > MAX_LINKS) return {problem: {path: next, reason: 'too many levels of symbolic links'}, resolved: path}
      const target = found.target ?? ''
      if (isAbsolute(target)) current = sep
      queue = [...parts(target), ...rest]
      continue
    }

    if (rest.length === 0) return {facts: found.facts, resolved: next}
    const problem = passageProblem(found.facts, trust)
    if (problem) return {problem: {path: next, reason: problem}, resolved: path}
    current = next
    queue = rest
  }

  return {facts: look(current)?.facts, resolved: current}
}

// ---- readers at the edge -------------------------------------------------------------

/** lstat (and readlink for a link); undefined when nothing is there. */
export function lookUp(path: string): Found | undefined {
  const st = lstatSync(path, {throwIfNoEntry: false})
  if (!st) return undefined
  return {facts: st, target: st.isSymbolicLink() ? readlinkSync(path) : undefined}
}

function walk(path: string, trust: Trust): Walked {
  try {
    return walkPath(resolve(path), trust, lookUp)
  } catch (error) {
    return {problem: {path, reason: `it cannot be examined (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`}, resolved: resolve(path)}
  }
}

const WRITE_HINT = 'choose a folder that only you (or root) can write, on a path only you (or root) can change'

/** The message for a path that is not trusted: the flag, the token, which part and why. */
function refusal(flag: string, token: string, problem: {path: string; reason: string}, hint: string): RefusedError {
  const which = resolve(problem.path) === resolve(token) ? '' : ` (${problem.path})`
  return new RefusedError(`${flag} ${quote(token)}${which}: ${problem.reason}`, hint)
}

/**
 * A folder root is about to write into (checkpoint --images-dir, --work-dir): trusted, or
 * created 0700 when missing and `create` is given (unless `dryRun`, which creates nothing).
 * Returns the resolved folder and whether it was missing.
 */
export function checkOutputFolder(dir: string, flag: string, options: {create?: boolean; dryRun?: boolean} = {}): {missing: boolean; resolved: string} {
  const trust = callerTrust()
  const walked = walk(dir, trust)
  if (walked.problem) throw refusal(flag, dir, walked.problem, WRITE_HINT)
  if (walked.facts) {
    const problem = folderProblem(walked.facts, trust)
    if (problem) throw refusal(flag, dir, {path: walked.resolved, reason: problem}, WRITE_HINT)
    return {missing: false, resolved: walked.resolved}
  }

  if (!options.create) throw new RefusedError(`${flag} ${quote(dir)}: no such folder`, 'create it first, or leave the flag out to use a new temporary folder')
  if (options.dryRun) return {missing: true, resolved: walked.resolved}
  mkdirSync(walked.resolved, {mode: 0o700, recursive: true})
  // Made by us under trusted folders; looked at once more in case it raced with another root process.
  const made = lookUp(walked.resolved)
  const problem = made ? folderProblem(made.facts, trust) : 'it could not be created'
  if (problem) throw refusal(flag, dir, {path: walked.resolved, reason: problem}, WRITE_HINT)
  return {missing: true, resolved: walked.resolved}
}

/** The first entry of a folder root would write through (writeTargetProblem), as a refusal. */
export function checkFolderEntries(dir: string, flag: string, names?: readonly string[]): void {
  const trust = callerTrust()
  for (const name of names ?? readdirSync(dir).sort()) {
    const found = lookUp(join(dir, name))
    const problem = found && writeTargetProblem(found.facts, trust)
    if (problem) {
      const shown = found.target === undefined ? '' : ` (to ${found.target})`
      throw new RefusedError(`${flag} ${quote(dir)}: ${name}${shown}: ${problem}`, 'remove it, or use a new folder')
    }
  }
}

/**
 * A file root is about to write (--log-file, --pidfile, a manifest): its folder must be
 * trusted and not writable by others even if sticky, and the file, when already there, must be
 * a regular file with one name, owned by a trusted user. For other engineers' writers too.
 */
export function checkOutputFile(path: string, flag: string, example = 'out'): void {
  const trust = callerTrust()
  const folder = dirname(resolve(path))
  const walked = walk(folder, trust)
  if (walked.problem) throw refusal(flag, path, walked.problem, WRITE_HINT)
  if (!walked.facts) throw new RefusedError(`${flag} ${quote(path)}: the folder ${folder} does not exist`, 'create it first')
  const problem = folderProblem(walked.facts, trust)
  if (problem) throw refusal(flag, path, {path: walked.resolved, reason: `its folder: ${problem}`}, WRITE_HINT)
  const found = lookUp(join(walked.resolved, basename(path)))
  const isFolder = found !== undefined && kindOf(found.facts.mode) === 'directory'
  const existing = found && (isFolder ? 'it is a folder, not a file' : writeTargetProblem(found.facts, trust))
  if (existing) throw refusal(flag, path, {path: resolve(path), reason: existing}, isFolder ? `name a file in it, e.g. ${join(resolve(path), example)}` : 'remove it, or choose another file')
}

/** The paths CRIU writes besides the images: checked before CRIU starts. */
export function checkCriuOutputs(paths: {logFile?: string; pidfile?: string; workDir?: string}, writtenInWorkDir: readonly string[]): void {
  if (paths.workDir !== undefined) {
    const {resolved} = checkOutputFolder(paths.workDir, '--work-dir')
    checkFolderEntries(resolved, '--work-dir', writtenInWorkDir)
  }

  if (paths.logFile !== undefined) checkOutputFile(paths.logFile, '--log-file', 'criu.log')
  if (paths.pidfile !== undefined) checkOutputFile(paths.pidfile, '--pidfile', 'restored.pid')
}

/**
 * Write a whole file without following a link at its name: a new file next to it (O_EXCL,
 * O_NOFOLLOW), then renamed over it. Readers see the old or the new content, never half.
 */
export function writeFileNoFollow(path: string, data: string | Uint8Array, mode = 0o600): void {
  const temp = join(dirname(path), `.${basename(path)}.${process.pid}.${Math.random().toString(36).slice(2)}.tmp`)
  const fd = openSync(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, mode)
  let open = true
  try {
    const bytes = typeof data === 'string' ? Buffer.from(data) : data
    let written = 0
    while (written < bytes.length) written += writeSync(fd, bytes, written)
    closeSync(fd)
    open = false
    renameSync(temp, path)
  } catch (error) {
    if (open) closeSync(fd)
    rmSync(temp, {force: true})
    throw error
  }
}

/** Whether the plugin's own state folder is trusted: owned by the current user, writable by no one else. */
export function ownFolder(dir: string): boolean {
  const walked = walk(dir, callerTrust())
  return !walked.problem && walked.facts !== undefined && folderProblem(walked.facts, selfTrust()) === undefined
}

/**
 * Read a file of the plugin's own state, or undefined when it is missing or someone else
 * could have written it (the folder or the file). Checked on the open fd, never through a link.
 */
export function readOwnFile(path: string): string | undefined {
  if (!ownFolder(dirname(path))) return undefined
  let fd: number
  try {
    fd = openSync(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK)
  } catch {
    return undefined
  }

  try {
    const st = fstatSync(fd)
    if (kindOf(st.mode) !== 'file' || readSourceProblem(st, selfTrust())) return undefined
    return readFileSync(fd, 'utf8')
  } finally {
    closeSync(fd)
  }
}

/** Write a file of the plugin's own state into a folder made 0700 when missing; false when the folder is not trusted. */
export function writeOwnFile(path: string, data: string): boolean {
  mkdirSync(dirname(path), {mode: 0o700, recursive: true})
  if (!ownFolder(dirname(path))) return false
  writeFileNoFollow(path, data, 0o600)
  return true
}
