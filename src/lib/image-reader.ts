/**
 * Decoding CRIU images with protobufjs. Loading protobufjs costs about 25 ms, so this module
 * is loaded only by the code paths that read images, never on a successful restore.
 */
import {readFileSync} from 'node:fs'
import {join} from 'node:path'

import {InventoryEntry, MESSAGES, PstreeEntry, StatsEntry} from './image-schema.js'
import {IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC} from './images.js'

export class ImageError extends Error {
  override name = 'ImageError'
}

/**
 * Decode every entry of a CRIU image: magic number(s), then [u32 size][message] records.
 * `message` is one of image-schema's MESSAGES.
 */
export function decodeImage<T>(bytes: Uint8Array, message: (typeof MESSAGES)[keyof typeof MESSAGES], file = 'image'): T[] {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (bytes.length < 4) throw new ImageError(`${file} is too short to be a CRIU image`)
  const first = view.getUint32(0, true)
  let offset = first === IMG_COMMON_MAGIC || first === IMG_SERVICE_MAGIC ? 8 : 4
  const entries: T[] = []
  while (offset < bytes.length) {
    if (offset + 4 > bytes.length) throw new ImageError(`${file} ends inside a record header`)
    const size = view.getUint32(offset, true)
    offset += 4
    if (offset + size > bytes.length) throw new ImageError(`${file} ends inside a record (${size} bytes announced)`)
    entries.push(message.toObject(message.decode(bytes.subarray(offset, offset + size)), {defaults: false, longs: Number}) as T)
    offset += size
  }

  return entries
}

export function readImage<T>(dir: string, name: string, message: (typeof MESSAGES)[keyof typeof MESSAGES]): T[] {
  return decodeImage<T>(readFileSync(join(dir, name)), message, name)
}

/** Every PID and TID the checkpoint will recreate (pstree.img). */
export function checkpointPids(dir: string): number[] {
  const tree = readImage<PstreeEntry>(dir, 'pstree.img', MESSAGES.pstree)
  return [...new Set(tree.flatMap(e => [e.pid, ...(e.threads ?? [])]))]
}

export function readInventory(dir: string): InventoryEntry {
  const [inventory] = readImage<InventoryEntry>(dir, 'inventory.img', MESSAGES.inventory)
  if (!inventory) throw new ImageError('inventory.img has no entry')
  return inventory
}

/** CRIU's own statistics of one dump or restore, times in milliseconds. */
export type CriuStats = Record<string, number>

const ms = (us: number) => Math.round(us) / 1000

/**
 * What CRIU measured (its stats-dump or stats-restore in the work dir), as plain numbers with
 * their units in the names; undefined when CRIU wrote none.
 */
export function readCriuStats(workDir: string, action: 'dump' | 'restore'): CriuStats | undefined {
  let entries: StatsEntry[]
  try {
    entries = readImage<StatsEntry>(workDir, `stats-${action}`, MESSAGES.stats)
  } catch {
    return undefined
  }

  const dump = entries[0]?.dump
  const restore = entries[0]?.restore
  if (action === 'dump' && dump) {
    return {
      freezingMs: ms(dump.freezingTime),
      frozenMs: ms(dump.frozenTime),
      memdumpMs: ms(dump.memdumpTime),
      memwriteMs: ms(dump.memwriteTime),
      pagesLazy: dump.pagesLazy,
      pagesScanned: dump.pagesScanned,
      pagesSkippedParent: dump.pagesSkippedParent,
      pagesWritten: dump.pagesWritten,
    }
  }

  if (action === 'restore' && restore) {
    return {
      forkingMs: ms(restore.forkingTime),
      pagesCompared: restore.pagesCompared,
      pagesRestored: restore.pagesRestored ?? 0,
      pagesSkippedCow: restore.pagesSkippedCow,
      restoreMs: ms(restore.restoreTime),
    }
  }

  return undefined
}
