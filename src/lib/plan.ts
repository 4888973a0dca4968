/**
 * What a restore will do to each namespace type, from the checkpoint's own images and the
 * request: joined, restored from the images, created empty, new, or inherited.
 *
 * readCheckpointNamespaces() reads the images (effects: the image decoder); planNamespaces() and
 * joinConflicts() are pure.
 */
import {existsSync, readdirSync} from 'node:fs'
import {join} from 'node:path'

import type {NetDeviceEntry, TaskKobjIdsEntry} from './image-schema.js'

import {commandLine} from './cli-names.js'
import {formatTarget, joinLabel, JoinNsSpec, quote} from './join-ns.js'
import {NamespaceDesc, namespaceByName, NAMESPACES} from './namespaces.js'

/** The image file that holds a namespace's state, by type, for the namespace with CRIU id `id`. */
const STATE_IMAGE: Partial<Record<string, (id: number) => string>> = {
  ipc: id => `ipcns-var-${id}.img`,
  mnt: id => `mntns-${id}.img`,
  net: id => `netns-${id}.img`,
  user: id => `userns-${id}.img`,
  uts: id => `utsns-${id}.img`,
}

export interface NetDevice {
  name: string
  peerOutside?: boolean
  type: number
}

/** What the images say about the root task's namespaces. */
export interface CheckpointNamespaces {
  /** Types whose namespace the tree had to itself, so CRIU restores it from the images. */
  own: {detail?: string; ns: NamespaceDesc}[]
  /**
   * Network devices of the tree's own net namespace (for the veth check). `peerOutside`: a veth
   * whose other end was in a net namespace the checkpoint does not hold (a container's eth0).
   */
  netDevices: NetDevice[]
  /** Set when the checkpoint left its net namespace out (checkpoint --external-ns net). */
  externalNetKey?: string
}

/** Cheap check (no decoding): whether any namespace-state image is in the folder. */
export function hasNamespaceImages(dir: string): boolean {
  return readdirSync(dir).some(f => /^(ipcns-var|mntns|netns|userns|utsns)-\d+\.img$/.test(f))
}

/** Read the root task's namespace ids and the state images they point to. */
export async function readCheckpointNamespaces(dir: string): Promise<CheckpointNamespaces> {
  const {readImage} = await import('./image-reader.js')
  const {MESSAGES, ND_TYPE} = await import('./image-schema.js')
  // The tree's root task is pstree.img's first entry; its namespace ids are in ids-<pid>.img.
  // (inventory.img's root_ids are those of CRIU itself at dump time.)
  const [root] = readImage<{pid: number}>(dir, 'pstree.img', MESSAGES.pstree)
  if (!root) throw new Error('pstree.img has no entry')
  const [ids = {}] = readImage<TaskKobjIdsEntry>(dir, `ids-${root.pid}.img`, MESSAGES.ids)
  const idOf: Record<string, number | undefined> = {
    ipc: ids.ipcNsId,
    mnt: ids.mntNsId,
    net: ids.netNsId,
    user: ids.userNsId,
    uts: ids.utsNsId,
  }
  const result: CheckpointNamespaces = {netDevices: [], own: []}
  for (const [name, image] of Object.entries(STATE_IMAGE)) {
    const id = idOf[name]
    if (id === undefined || !image || !existsSync(join(dir, image(id)))) continue
    const ns = namespaceByName(name)!
    let detail: string | undefined
    if (name === 'uts') {
      const [uts] = readImage<{nodename: string}>(dir, image(id), MESSAGES.utsns)
      detail = `hostname ${quote(uts?.nodename ?? '')}`
    }

    if (name === 'net') {
      const [netns] = readImage<{extKey?: string}>(dir, image(id), MESSAGES.netns)
      if (netns?.extKey) {
        result.externalNetKey = netns.extKey
        continue
      }

      const entries = existsSync(join(dir, `netdev-${id}.img`)) ? readImage<NetDeviceEntry>(dir, `netdev-${id}.img`, MESSAGES.netdev) : []
      // CRIU records the peer's namespace only when it dumped that namespace too.
      const dumped = (nsid?: number) => nsid !== undefined && existsSync(join(dir, `netns-${nsid}.img`))
      const devices = entries.map(({name, peerNsid, type}): NetDevice => (type === ND_TYPE.VETH ? {name, peerOutside: !dumped(peerNsid), type} : {name, type}))
      result.netDevices = devices
      const names = Object.fromEntries(Object.entries(ND_TYPE).map(([k, v]) => [v, k.toLowerCase()]))
      detail = `devices: ${devices.map(d => `${d.name} (${names[d.type] ?? d.type})`).join(', ') || 'none'}`
    }

    result.own.push({detail, ns})
  }

  return result
}

export type NamespaceAction = 'created empty' | 'inherited' | 'joined' | 'new' | 'restored from the images'

export interface NamespacePlanRow {
  action: NamespaceAction
  detail: string
  type: string
}

/** One row per namespace type, in table order. Pure. */
export function planNamespaces(
  images: CheckpointNamespaces,
  request: {emptyNs: readonly NamespaceDesc[]; joinNs: readonly JoinNsSpec[]},
): NamespacePlanRow[] {
  return NAMESPACES.map((ns): NamespacePlanRow => {
    const join = request.joinNs.find(j => j.ns === ns)
    if (join) {
      const how = ns.name === 'net' && images.externalNetKey ? ` (the checkpoint's external net namespace ${quote(images.externalNetKey)})` : ''
      return {action: 'joined', detail: `${join.target.kind === 'pid' ? 'process ' : ''}${formatTarget(join.target)}${join.from ? ` (${join.from})` : ''}${how}`, type: ns.name}
    }

    if (request.emptyNs.includes(ns)) return {action: 'created empty', detail: 'loopback only', type: ns.name}
    const own = images.own.find(o => o.ns === ns)
    if (own) return {action: 'restored from the images', detail: own.detail ?? 'the tree had its own', type: ns.name}
    if (ns.name === 'time') return {action: 'new', detail: 'CRIU makes one so that the monotonic clocks go on from the checkpoint', type: ns.name}
    return {action: 'inherited', detail: 'the namespace CRIU runs in', type: ns.name}
  })
}

export interface JoinConflict {
  message: string
  /** Refused unless the user passes --allow-overwrite; false: refused always (CRIU cannot do it). */
  overridable: boolean
  /** The way that works without overwriting anything, for the hint. */
  remedy: string
}

/**
 * The hint for refused joins: the ways that overwrite nothing first, then --allow-overwrite
 * when every conflict can be overridden. Pure.
 */
export function conflictHint(conflicts: readonly JoinConflict[]): string {
  const remedies = [...new Set(conflicts.map(c => c.remedy))]
  const overwrite = conflicts.every(c => c.overridable) ? ['pass --allow-overwrite to restore anyway, overwriting the joined namespace\'s state'] : []
  return [...remedies, ...overwrite].join('; or ')
}

/** ND_TYPE.VETH (image-schema.ts, not imported here: it builds the protobuf schema). */
const VETH = 2

/**
 * Joins that would change the joined namespace, or that CRIU fails on. Pure. The UTS and IPC
 * cases were measured with CRIU 4.2.1 here: a checkpoint with its own UTS namespace, restored
 * with -J uts, set the holder's hostname to the checkpoint's; one with its own IPC namespace,
 * restored with -J ipc, set the holder's kernel.msgmax and added its SysV shm segment there.
 * Net, measured the same way: a veth pair with both ends in the checkpoint's namespace is
 * created in the joined one; a veth whose peer was outside the checkpoint (a container's eth0)
 * makes CRIU fail ("Unknown peer net namespace", then "Can't restore link: -95") after it has
 * started, so that join is refused even with --allow-overwrite.
 */
export function joinConflicts(images: CheckpointNamespaces, joins: readonly JoinNsSpec[]): JoinConflict[] {
  const conflicts: JoinConflict[] = []
  for (const spec of joins) {
    const own = images.own.find(o => o.ns === spec.ns)
    if (!own) continue
    const head = joinLabel(spec)
    const without = `restore without -J ${spec.ns.name} (the tree gets its own ${spec.ns.name} namespace back from the images)`
    switch (spec.ns.name) {
    case 'uts': {
      conflicts.push({message: `${head}: the checkpoint has its own UTS namespace (${own.detail}); CRIU would set the joined namespace's hostname and domain name to the checkpoint's`, overridable: true, remedy: without})
      break
    }

    case 'ipc': {
      conflicts.push({message: `${head}: the checkpoint has its own IPC namespace; CRIU would write its IPC sysctls and SysV objects (shared memory, queues, semaphores) into the joined namespace`, overridable: true, remedy: without})
      break
    }

    case 'net': {
      const veth = images.netDevices.filter(d => d.type === VETH)
      const cut = veth.filter(d => d.peerOutside)
      // A checkpoint without the namespace is what a pod restore needs: it joins, it does not overwrite.
      const remedy = `checkpoint the process again with ${commandLine('checkpoint', 'PID -D DIR --external-ns net')}, which leaves its network namespace (veth included) out of the images, and restore that with -J net`
      if (cut.length > 0) {
        const names = cut.map(d => d.name).join(', ')
        conflicts.push({
          message: `${head}: the checkpoint's own net namespace has the veth device ${names}, whose other end was outside the checkpoint; CRIU cannot recreate it in a joined namespace ("Unknown peer net namespace"), with or without --allow-overwrite`,
          overridable: false,
          remedy,
        })
      } else {
        conflicts.push({
          message: veth.length > 0
            ? `${head}: the checkpoint's own net namespace has veth devices (${veth.map(d => d.name).join(', ')}); CRIU would create them, with its addresses and routes, in the joined namespace`
            : `${head}: the checkpoint has its own net namespace (${own.detail}); CRIU would restore its devices, addresses and routes into the joined namespace`,
          overridable: true,
          remedy,
        })
      }

      break
    }

    default: {
      conflicts.push({message: `${head}: the checkpoint has its own ${spec.ns.name} namespace; CRIU would restore its state into the joined namespace`, overridable: true, remedy: without})
    }
    }
  }

  return conflicts
}
