/**
 * Decoding CRIU images with protobufjs. Loading protobufjs costs about 25 ms, so this module
 * is loaded only by the code paths that read images, never on a successful restore.
 */
import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import protobuf from 'protobufjs'

import {InventoryEntry, MESSAGES, PstreeEntry, StatsEntry} from './image-schema.js'
import {IMG_COMMON_MAGIC, IMG_SERVICE_MAGIC} from './images.js'

export class ImageError extends Error {
  override name = 'ImageError'
}

/** Where the records of an image start: after IMG_COMMON_MAGIC (or the service magic) and its own magic. */
function firstRecord(view: DataView): number {
  const first = view.getUint32(0, true)
  return first === IMG_COMMON_MAGIC || first === IMG_SERVICE_MAGIC ? 8 : 4
}

/** The [u32 size][message] records of a CRIU image, as views into `bytes`. */
export function imageRecords(bytes: Uint8Array, file = 'image'): Uint8Array[] {
  if (bytes.length < 4) throw new ImageError(`${file} is too short to be a CRIU image (${bytes.length} bytes)`)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  let offset = firstRecord(view)
  const records: Uint8Array[] = []
  while (offset < bytes.length) {
    if (offset + 4 > bytes.length) throw new ImageError(`${file} ends inside a record header (at byte ${offset})`)
    const size = view.getUint32(offset, true)
    offset += 4
    if (offset + size > bytes.length) throw new ImageError(`${file} ends inside a record (${size} bytes announced at byte ${offset - 4}, ${bytes.length - offset} left)`)
    records.push(bytes.subarray(offset, offset + size))
    offset += size
  }

  return records
}

/**
 * Check that a record is well-formed protobuf without knowing its message: every field has a
 * number above 0 and a known wire type, and every length stays inside the record. Zeroed or
 * random bytes fail this almost always; a flipped bit inside a value does not.
 */
export function checkWireFormat(record: Uint8Array, file: string, index: number): void {
  const reader = protobuf.Reader.create(record)
  try {
    while (reader.pos < reader.len) {
      const tag = reader.uint32()
      if (tag >>> 3 === 0) throw new Error('field number 0')
      reader.skipType(tag & 7)
    }
  } catch (error) {
    throw new ImageError(`${file}: record ${index + 1} does not decode (${(error as Error).message})`)
  }
}

/**
 * Decode every entry of a CRIU image: magic number(s), then [u32 size][message] records.
 * `message` is one of image-schema's MESSAGES.
 */
export function decodeImage<T>(bytes: Uint8Array, message: (typeof MESSAGES)[keyof typeof MESSAGES], file = 'image'): T[] {
  return imageRecords(bytes, file).map((record, i) => decodeRecord<T>(record, message, file, i))
}

export function decodeRecord<T>(record: Uint8Array, message: (typeof MESSAGES)[keyof typeof MESSAGES], file: string, index: number): T {
  try {
    return message.toObject(message.decode(record), {defaults: false, longs: Number}) as T
  } catch (error) {
    throw new ImageError(`${file}: record ${index + 1} does not decode as ${message.name} (${(error as Error).message})`)
  }
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
