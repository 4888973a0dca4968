/**
 * What can be told about a checkpoint folder before CRIU reads it. Decoding the images
 * themselves (protobufjs, slow to load) lives in image-reader.ts, loaded only when needed.
 */
import {closeSync, openSync, readSync, statSync} from 'node:fs'
import {join} from 'node:path'

import {commandLine} from './cli-names.js'
import {RefusedError} from './errors.js'
import {quote} from './join-ns.js'

/**
 * criu/include/magic.h. Images start with IMG_COMMON_MAGIC and then their own magic, except
 * inventory.img, which CRIU writes with its own magic first (seen with CRIU 4.2.1).
 */
export const IMG_COMMON_MAGIC = 0x54_56_43_19
export const IMG_SERVICE_MAGIC = 0x55_10_59_40
export const INVENTORY_MAGIC = 0x58_31_31_16

/** Whether the first bytes of a file are those of CRIU's inventory.img. */
export function isInventoryHeader(head: Uint8Array): boolean {
  if (head.length < 8) return false
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength)
  const first = view.getUint32(0, true)
  return first === INVENTORY_MAGIC || (first === IMG_COMMON_MAGIC && view.getUint32(4, true) === INVENTORY_MAGIC)
}

/** Refuse a folder that is not a CRIU checkpoint, naming the flag and what is wrong. */
export function checkImagesDir(dir: string, flag = '--images-dir'): void {
  let st
  try {
    st = statSync(dir)
  } catch {
    throw new RefusedError(`${flag} ${quote(dir)}: no such folder`, `give the folder \`criu dump -D\` (or \`${commandLine('checkpoint', '-D')}\`) wrote`)
  }

  if (!st.isDirectory()) throw new RefusedError(`${flag} ${quote(dir)}: not a folder`)
  const inventory = join(dir, 'inventory.img')
  let fd: number
  try {
    fd = openSync(inventory, 'r')
  } catch {
    throw new RefusedError(`${flag} ${quote(dir)}: not a CRIU checkpoint (it has no inventory.img)`, `give the folder \`criu dump -D\` (or \`${commandLine('checkpoint', '-D')}\`) wrote`)
  }

  const head = new Uint8Array(8)
  try {
    readSync(fd, head, 0, 8, 0)
  } catch {
    throw new RefusedError(`${flag} ${quote(dir)}: inventory.img cannot be read`)
  } finally {
    closeSync(fd)
  }

  if (!isInventoryHeader(head)) {
    throw new RefusedError(`${flag} ${quote(dir)}: inventory.img is not a CRIU image (wrong magic number)`)
  }
}
