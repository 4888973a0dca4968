/**
 * `launch`: start a program so that CRIU can checkpoint it later. It runs in a session of its
 * own, its stdio on files (not our terminal, which CRIU would need --shell-job for), with
 * io_uring denied to its whole tree by a seccomp filter (CRIU cannot dump io_uring rings;
 * libuv in Node.js 22+ then falls back to epoll), optionally inside joined namespaces.
 */
import {closeSync, openSync} from 'node:fs'
import {resolve} from 'node:path'

import {findProblems} from './checks.js'
import {FailedError, RefusedError} from './errors.js'
import {credentials} from './exec.js'
import {formatJoinNs, JoinNsSpec, quote} from './join-ns.js'
import {pinJoins, spawnJoined, SpawnJoinedError} from './native.js'

export interface LaunchRequest {
  args: readonly string[]
  command: string
  cwd?: string
  joinNs: readonly JoinNsSpec[]
  /** Files for the program's stdio; /dev/null when not given. stdout and stderr are appended to. */
  stderr?: string
  stdin?: string
  stdout?: string
}

export interface LaunchResult {
  argv: string[]
  ioUring: 'denied'
  joined: string[]
  pid: number
  stderr: string
  stdin: string
  stdout: string
}

const STREAMS = [
  {flag: 'stdin', mode: 'r'},
  {flag: 'stdout', mode: 'a'},
  {flag: 'stderr', mode: 'a'},
] as const

/** Open the stdio files; on the first that cannot be opened, close the others and refuse naming the flag. */
function openStdio(request: LaunchRequest): {fds: [number, number, number]; paths: [string, string, string]} {
  const fds: number[] = []
  const paths: string[] = []
  try {
    for (const {flag, mode} of STREAMS) {
      const path = request[flag] === undefined ? '/dev/null' : resolve(request[flag])
      try {
        fds.push(openSync(path, mode))
      } catch (error) {
        const reason = (error as NodeJS.ErrnoException).code === 'ENOENT' ? 'no such file or folder' : (error as Error).message
        throw new RefusedError(`--${flag} ${quote(request[flag] ?? path)}: cannot open it: ${reason}`)
      }

      paths.push(path)
    }
  } catch (error) {
    for (const fd of fds) closeSync(fd)
    throw error
  }

  return {fds: fds as [number, number, number], paths: paths as [string, string, string]}
}

/** Start the program; returns once it has been exec'd (a failure before that is thrown, nothing left running). */
export function runLaunch(request: LaunchRequest): LaunchResult {
  const problems = findProblems({forCriu: false, joinNs: request.joinNs}).filter(p => p.severity === 'error')
  if (problems.length > 0) throw new RefusedError(problems.map(p => p.message).join('\n'))
  const stdio = openStdio(request)
  let pid: number
  try {
    const pins = pinJoins(request.joinNs)
    try {
      pid = spawnJoined(request.command, request.args, {
        ...credentials({args: request.args, command: request.command, joinNs: request.joinNs}),
        cwd: request.cwd,
        denyIoUring: true,
        namespaces: pins,
        newSession: true,
        stdio: stdio.fds,
      })
    } finally {
      for (const p of pins) p.close()
    }
  } catch (error) {
    if (!(error instanceof SpawnJoinedError)) throw error
    if (error.step === 'execve' && error.code === 'ENOENT') throw new RefusedError(`${quote(request.command)}: no such command (looked for it on PATH)`)
    if (error.step === 'chdir') throw new RefusedError(`--cwd ${quote(request.cwd ?? '')}: ${error.message}`)
    throw new FailedError(error.message)
  } finally {
    for (const fd of stdio.fds) closeSync(fd)
  }

  return {
    argv: [request.command, ...request.args],
    ioUring: 'denied',
    joined: request.joinNs.map(j => formatJoinNs(j)),
    pid,
    stderr: stdio.paths[2],
    stdin: stdio.paths[0],
    stdout: stdio.paths[1],
  }
}
