/**
 * What can be told about a checkpoint folder before CRIU reads it. Decoding the images
 * themselves (protobufjs, slow to load) lives in image-reader.ts, loaded only when needed.
 */
import {
  closeSync, lstatSync, openSync, readdirSync, readSync, realpathSync, statSync,
} from 'node:fs'
import {isAbsolute, join, relative, resolve} from 'node:path'

import {commandLine} from './cli-names.js'
import {RefusedError} from './errors.js'
import {quote} from './join-ns.js'
import {
  callerTrust, folderProblem, lookUp, ownerProblem, readSourceProblem, walkPath,
} from './trust.js'

/**
 * criu/include/magic.h. Images start with IMG_COMMON_MAGIC and then their own magic, except
 * inventory.img, which CRIU writes with its own magic first (seen with CRIU 4.2.1).
 */
export const IMG_COMMON_MAGIC = 0x54_56_43_19
export const IMG_SERVICE_MAGIC = 0x55_10_59_40
export const INVENTORY_MAGIC = 0x58_31_31_16

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
 * The second magic word of the images a process checkpoint holds, by file name (criu/include/
 * magic.h; timens seen in CRIU 4.2.1's images). Images not named here must still start with
 * IMG_COMMON_MAGIC; raw images (RAW_IMAGE_PREFIXES) have no header at all.
 */
export const IMAGE_MAGICS: ReadonlyArray<readonly [RegExp, number]> = [
  [/^core-\d+\.img$/, 0x55_05_38_47],
  [/^fdinfo-\d+\.img$/, 0x56_21_37_32],
  [/^files\.img$/, 0x56_30_31_38],
  [/^fs-\d+\.img$/, 0x51_40_39_12],
  [/^ids-\d+\.img$/, 0x54_43_20_30],
  [/^mm-\d+\.img$/, 0x57_49_28_20],
  [/^pagemap-\d+\.img$/, 0x56_08_40_25],
  [/^pstree\.img$/, 0x50_27_30_30],
  [/^seccomp\.img$/, 0x64_41_30_49],
  [/^timens-\d+\.img$/, 0x43_11_44_33],
  [/^utsns-\d+\.img$/, 0x54_47_32_03],
  [/^netns-\d+\.img$/, 0x55_93_37_52],
  [/^netdev-\d+\.img$/, 0x57_37_39_51],
  [/^creds-\d+\.img$/, 0x54_02_35_47],
  [/^tty-info\.img$/, 0x59_45_30_36],
  [/^mountpoints-\d+\.img$/, 0x55_56_39_28],
]

/** Images CRIU reads exactly one entry from: with none it fails or, for fs-PID.img, crashes. */
export const SINGLE_ENTRY_IMAGES = [
  /^core-\d+\.img$/, /^ids-\d+\.img$/, /^fs-\d+\.img$/, /^mm-\d+\.img$/, /^inventory\.img$/, /^seccomp\.img$/, /^timens-\d+\.img$/, /^utsns-\d+\.img$/,
]

/** Images CRIU writes without any header: memory pages, ip/iptables/nft dumps, tarballs. */
export const RAW_IMAGE_PREFIXES = ['pages-', 'ifaddr-', 'route-', 'route6-', 'rule-', 'iptables-', 'ip6tables-', 'nftables-', 'netns-ct-', 'netns-exp-', 'tmpfs-']

/** pages-N.img: the memory pages, by far the largest files of a checkpoint. */
export const isPagesImage = (name: string) => /^pages-\d+\.img$/.test(name)

/** Whether the first bytes of a file are those of CRIU's inventory.img. */
export function isInventoryHeader(head: Uint8Array): boolean {
  if (head.length < 8) return false
  const view = new DataView(head.buffer, head.byteOffset, head.byteLength)
  const first = view.getUint32(0, true)
  return first === INVENTORY_MAGIC || (first === IMG_COMMON_MAGIC && view.getUint32(4, true) === INVENTORY_MAGIC)
}

export const UNTRUSTED_IMAGES_HINT = 'copy the checkpoint into a folder only you (or root) can write (cp -rL DIR NEW), look at it, and restore from there; or pass --allow-untrusted-images to accept the risk'

/**
 * Why a checkpoint folder cannot be believed: CRIU restores, as root, whatever its images say
 * (credentials, memory, files to open), so whoever can change them can run code as root. The
 * folder, every folder on the way to it, and every entry in it must be owned by root or the
 * caller and writable by no one else; a link in it must stay inside it.
 */
export function untrustedImages(dir: string): string | undefined {
  const trust = callerTrust()
  const walked = walkPath(resolve(dir), trust, lookUp)
  if (walked.problem) return `the path goes through ${walked.problem.path}, and ${walked.problem.reason}`
  const folder = walked.facts && folderProblem(walked.facts, trust)
  if (folder) return folder
  const real = realpathSync(dir)
  for (const name of readdirSync(real).sort()) {
    const path = join(real, name)
    const found = lookUp(path)
    if (!found) continue
    let {facts} = found
    if (found.target !== undefined) {
      const owner = ownerProblem(facts, trust)
      if (owner) return `${name} is a symbolic link and ${owner}`
      let to: string
      try {
        to = realpathSync.native(path)
      } catch {
        return `${name} is a symbolic link to ${found.target}, which does not exist`
      }

      const inside = relative(real, to)
      if (inside === '' || inside.startsWith('..') || isAbsolute(inside)) return `${name} is a symbolic link out of the folder (to ${found.target})`
      facts = lstatSync(to)
    }

    const problem = readSourceProblem(facts, trust)
    if (problem) return `${name}: ${problem}`
  }

  return undefined
}

/**
 * Refuse a folder that is not a CRIU checkpoint, or (unless allowUntrusted) one that someone
 * other than root or the caller could have written; naming the flag and what is wrong.
 */
export function checkImagesDir(dir: string, flag = '--images-dir', options: {allowUntrusted?: boolean} = {}): void {
  let st
  try {
    st = statSync(dir)
  } catch {
    throw new RefusedError(`${flag} ${quote(dir)}: no such folder`, `give the folder \`criu dump -D\` (or \`${commandLine('checkpoint', '-D')}\`) wrote`)
  }

  if (!st.isDirectory()) throw new RefusedError(`${flag} ${quote(dir)}: not a folder`)
  const inventory = join(dir, 'inventory.img')
  const notCheckpoint = () => new RefusedError(`${flag} ${quote(dir)}: not a CRIU checkpoint (it has no inventory.img)`, `give the folder \`criu dump -D\` (or \`${commandLine('checkpoint', '-D')}\`) wrote`)
  // A folder that is no checkpoint at all (restore -D /etc) is told so first, not what its files
  // would mean in a checkpoint. Looked up, not opened: the folder is not trusted yet (an
  // inventory.img that is a FIFO would block an open).
  if (!present(inventory)) throw notCheckpoint()
  if (!options.allowUntrusted) {
    let untrusted: string | undefined
    try {
      untrusted = untrustedImages(dir)
    } catch (error) {
      untrusted = `it cannot be examined (${(error as NodeJS.ErrnoException).code ?? (error as Error).message})`
    }

    if (untrusted) throw new RefusedError(`${flag} ${quote(dir)}: ${untrusted}; someone other than root could have changed the checkpoint, and CRIU restores it as root`, UNTRUSTED_IMAGES_HINT)
  }

  let fd: number
  try {
    fd = openSync(inventory, 'r')
  } catch {
    throw notCheckpoint()
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

/** Whether a directory entry is there (a dangling link is), without following or opening it. */
function present(path: string): boolean {
  try {
    lstatSync(path)
    return true
  } catch (error) {
    // Only "there is none" says no; any other error is for the checks that follow to tell.
    return (error as NodeJS.ErrnoException).code !== 'ENOENT'
  }
}
