/**
 * `ns exec`: run a command inside joined namespaces, as nsenter does, with the plugin's
 * grammar, checks and pinning. The join happens in the forked child (native spawnJoined).
 */
import {findProblems} from './checks.js'
import {CriuPluginError, RefusedError} from './errors.js'
import {JoinNsSpec} from './join-ns.js'
import {pinJoins, spawnJoined, SpawnJoinedError, waitPid} from './native.js'

export interface ExecRequest {
  args: readonly string[]
  command: string
  gid?: number
  joinNs: readonly JoinNsSpec[]
  uid?: number
}

/** Exit status conventions of shells (and nsenter): 126 found but not runnable, 127 not found. */
export const EXIT_NOT_RUNNABLE = 126
export const EXIT_NOT_FOUND = 127

/** The exit status to pass on: the command's own, or 128 + signal as shells report it. */
export function exitStatus(status: {code: null | number; signal: null | number}): number {
  return status.code ?? 128 + (status.signal ?? 0)
}

/** UID/GID: the flags, else the user join's UID/GID options. */
export function credentials(request: ExecRequest): {gid?: number; uid?: number} {
  const user = request.joinNs.find(j => j.ns.name === 'user')
  return {gid: request.gid ?? user?.gid, uid: request.uid ?? user?.uid}
}

/** The command could not be started: exit 1 (a join or the credential switch failed), 126 or 127. */
export class ExecFailure extends CriuPluginError {
  override name = 'ExecFailure'
}

/**
 * What to do when the kernel refused a join: without root, the rights to join come from the
 * target's user namespace, which must then be joined too (the child joins it first).
 */
export function joinDeniedHint(request: ExecRequest, euid = process.geteuid?.() ?? 0): string | undefined {
  if (euid === 0 || request.joinNs.some(j => j.ns.name === 'user')) return undefined
  return 'join the target\'s user namespace too (-J user:PID), which gives the rights to join the others, or run it as root (sudo)'
}

/** Run the command joined; resolves to the exit status to leave with. */
export async function runExec(request: ExecRequest): Promise<number> {
  const problems = findProblems({forCriu: false, joinNs: request.joinNs}).filter(p => p.severity === 'error')
  if (problems.length > 0) throw new RefusedError(problems.map(p => p.message).join('\n'))
  const pins = pinJoins(request.joinNs)
  let pid: number
  try {
    pid = spawnJoined(request.command, request.args, {...credentials(request), namespaces: pins})
  } catch (error) {
    if (!(error instanceof SpawnJoinedError)) throw error
    const status = error.step === 'execve' ? (error.code === 'ENOENT' ? EXIT_NOT_FOUND : EXIT_NOT_RUNNABLE) : 1
    const denied = error.step === 'setns' && (error.code === 'EPERM' || error.code === 'EACCES')
    throw new ExecFailure(error.message, status, denied ? joinDeniedHint(request) : undefined)
  } finally {
    for (const p of pins) p.close()
  }

  return exitStatus(await waitPid(pid))
}
