/**
 * What `ns inspect` shows: the namespaces of a process, or of namespace files.
 */
import {existsSync, readdirSync, readFileSync, statSync} from 'node:fs'

import {
  describeContainer, HostResolver, isContainerId, resolveContainer, ResolvedContainer,
} from './containers.js'
import {RefusedError} from './errors.js'
import {quote} from './join-ns.js'
import {namespaceByFlag, NAMESPACES} from './namespaces.js'
import {inspectPath, PinError, pinFailure, pinPid} from './native.js'
import {isKernelThread} from './proc.js'

export interface NamespaceInfo {
  /** Every process in this namespace (with --holders), by PID. */
  holders?: {comm: string; pid: number}[]
  /** How many processes are in it (with --holders). */
  holderCount?: number
  inode: number
  /** Inode of the user namespace that owns it, when visible. */
  ownerUserNs?: number
  /** For a user namespace: the UID that created it. */
  ownerUid?: number
  /** Whether it is also the namespace of the process asking. */
  sameAsCaller: boolean
  type: string
}

export interface InspectedTarget {
  /** When the target was a container: how it was found. */
  container?: ResolvedContainer
  namespaces: NamespaceInfo[]
  /** `pid 123` or the path. */
  target: string
}

export interface HolderOptions {
  holders?: boolean
  /** Count kernel threads among the holders (they sit in the initial namespaces). */
  kernelThreads?: boolean
}

/** Every process in the namespace of this type with this inode. */
function holdersOf(procEntry: string, inode: number, kernelThreads: boolean): {comm: string; pid: number}[] {
  const found: {comm: string; pid: number}[] = []
  for (const name of readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue
    if (!kernelThreads && isKernelThread(Number(name))) continue
    try {
      if (statSync(`/proc/${name}/ns/${procEntry}`).ino === inode) {
        found.push({comm: readFileSync(`/proc/${name}/comm`, 'utf8').trim(), pid: Number(name)})
      }
    } catch {
      // gone, or not ours to look at
    }
  }

  return found.sort((a, b) => a.pid - b.pid)
}

function describe(path: string, options: HolderOptions): NamespaceInfo {
  const d = inspectPath(path)
  const ns = namespaceByFlag(d.nstype)
  if (!ns) throw new RefusedError(`${quote(path)} is not a namespace file`)
  const info: NamespaceInfo = {inode: d.ino, ownerUid: d.ownerUid, ownerUserNs: d.ownerIno, sameAsCaller: statSync(`/proc/self/ns/${ns.procEntry}`).ino === d.ino, type: ns.name}
  if (options.holders) {
    info.holders = holdersOf(ns.procEntry, d.ino, Boolean(options.kernelThreads))
    info.holderCount = info.holders.length
  }

  return info
}

/** A PID (every namespace type of that process) or a namespace file. */
export function inspectTarget(arg: string, options: HolderOptions = {}): InspectedTarget {
  if (/^\d+$/.test(arg)) {
    const pid = Number(arg)
    try {
      statSync(`/proc/${pid}/ns`)
    } catch {
      throw new RefusedError(`process ${pid} does not exist`)
    }

    try {
      return {namespaces: NAMESPACES.map(ns => describe(`/proc/${pid}/ns/${ns.procEntry}`, options)), target: `pid ${pid}`}
    } catch (error) {
      if (error instanceof PinError) throw pinFailure(error)
      throw error
    }
  }

  try {
    return {namespaces: [describe(arg, options)], target: arg}
  } catch (error) {
    if (error instanceof PinError) throw pinFailure(error)
    throw error
  }
}

/**
 * A container's namespaces: the files the host named, else its init's, each opened only
 * after the init was checked against the start time its runtime recorded.
 */
export async function inspectContainer(id: string, options: HolderOptions & {host?: HostResolver; prefix?: string} = {}): Promise<InspectedTarget> {
  const container = await resolveContainer({id, label: `${quote(id)} (not a PID or a path, so a container ID)`, token: id, types: NAMESPACES}, options)
  const namespaces: NamespaceInfo[] = []
  try {
    for (const ns of NAMESPACES) {
      const path = container.namespaces?.[ns.name]
      if (path !== undefined) {
        namespaces.push(describe(path, options))
      } else if (container.initPid !== undefined) {
        const pin = pinPid(ns, container.initPid, container.initStartTime)
        try {
          namespaces.push(describe(pin.procPath, options))
        } finally {
          pin.close()
        }
      }
    }
  } catch (error) {
    if (error instanceof PinError) throw pinFailure(error, describeContainer(container))
    throw error
  }

  return {container, namespaces, target: describeContainer(container)}
}

/** A PID, a namespace file, or (when it is neither) a container ID or a unique start of one. */
export async function inspectAny(arg: string, options: HolderOptions & {host?: HostResolver} = {}): Promise<InspectedTarget> {
  if (/^\d+$/.test(arg) || arg.includes('/') || existsSync(arg) || !isContainerId(arg)) return inspectTarget(arg, options)
  return inspectContainer(arg, options)
}
