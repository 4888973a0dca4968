/**
 * The structure of a checkpoint without a manifest (a plain `criu dump`), checked before CRIU
 * reads it: the images pstree.img says the restore needs are there, every image starts with
 * its magic and its records decode, and the pages images are as long as the pagemaps say.
 * This turns CRIU's late failures (or, for an emptied pages image, its endless loop) into one
 * message naming the file. What it cannot see: a changed value that still decodes, and any
 * damage to page contents that keeps the size (that needs the manifest).
 */
import {Dirent, readdirSync, readFileSync, statSync} from 'node:fs'
import {join} from 'node:path'

import type {Damage} from './manifest.js'

import {checkWireFormat, decodeRecord} from './image-reader.js'
import {
  CoreEntry, FdinfoEntry, FileEntry, FsEntry, MESSAGES, PagemapEntry, PagemapHead, PE_PARENT, PE_PRESENT, PstreeEntry, TASK_DEAD, TaskKobjIdsEntry,
} from './image-schema.js'
import {
  IMAGE_MAGICS, IMG_COMMON_MAGIC, ImageError, imageRecords, isInventoryHeader, RAW_IMAGE_PREFIXES, SINGLE_ENTRY_IMAGES,
} from './images.js'

/** x86-64 and the 4 KiB-page arm64 kernels; pagemap entries count pages of this size. */
export const PAGE_SIZE = 4096

export interface StructureReport {
  damage: Damage[]
  /** Images whose header and records were decoded. */
  decoded: number
  /** pages-N.img whose size was compared with its pagemap. */
  pagesChecked: number
}

const isRaw = (name: string) => RAW_IMAGE_PREFIXES.some(p => name.startsWith(p))

/** Header and records of one image, as bytes; throws ImageError naming what is wrong. */
function checkImage(name: string, bytes: Uint8Array): Uint8Array[] {
  if (bytes.length < 8) throw new ImageError(`${bytes.length} bytes: too short for a CRIU image header`)
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength)
  if (name === 'inventory.img') {
    if (!isInventoryHeader(bytes)) throw new ImageError('wrong magic number: not a CRIU inventory')
  } else {
    const [first, second] = [view.getUint32(0, true), view.getUint32(4, true)]
    if (first !== IMG_COMMON_MAGIC) throw new ImageError(`wrong magic number 0x${first.toString(16)} (a CRIU image starts with 0x${IMG_COMMON_MAGIC.toString(16)})`)
    const expected = IMAGE_MAGICS.find(([pattern]) => pattern.test(name))?.[1]
    if (expected !== undefined && second !== expected) throw new ImageError(`wrong image magic 0x${second.toString(16)} (expected 0x${expected.toString(16)})`)
  }

  const records = imageRecords(bytes, name)
  for (const [i, record] of records.entries()) checkWireFormat(record, name, i)
  if (records.length === 0 && SINGLE_ENTRY_IMAGES.some(p => p.test(name))) throw new ImageError('has no record (CRIU reads its one entry)')
  return records
}

/** CRIU 3.x+ writes the 64-bit nr_pages (field 5); older images only the 32-bit one. */
const nrPages = (e: PagemapEntry) => e.nrPages ?? e.compatNrPages

/** Pages of a pagemap entry that are stored in this checkpoint's pages image. */
const storedPages = (e: PagemapEntry) => {
  const stored = e.flags === undefined ? !e.inParent : (e.flags & PE_PRESENT) !== 0 && (e.flags & PE_PARENT) === 0
  return stored ? nrPages(e) : 0
}

/** What the checks of one folder share: its files, their decoded records, the damage found. */
class Folder {
  readonly damage: Damage[] = []
  readonly names: Set<string>
  readonly records = new Map<string, Uint8Array[]>()

  constructor(readonly dir: string) {
    // A link to a file counts as that file: links inside the folder are allowed (checkImagesDir
    // refuses the ones that lead out of it before this runs).
    const isFile = (e: Dirent) => e.isFile() || (e.isSymbolicLink() && statSync(join(dir, e.name), {throwIfNoEntry: false})?.isFile() === true)
    this.names = new Set(readdirSync(dir, {withFileTypes: true}).filter(e => isFile(e)).map(e => e.name))
  }

  /** Decode a record with its message; a required field missing is damage too. */
  decode<T>(file: string, message: (typeof MESSAGES)[keyof typeof MESSAGES], i = 0): T | undefined {
    const list = this.records.get(file)
    if (!list?.[i]) return undefined
    try {
      return decodeRecord<T>(list[i], message, file, i)
    } catch (error) {
      this.damage.push({file, message: (error as Error).message.replace(`${file}: `, '')})
      return undefined
    }
  }

  /** The records of an image the restore needs; damage when it is missing. */
  need(file: string, why: string): Uint8Array[] | undefined {
    if (!this.names.has(file)) this.damage.push({file, message: `is missing (${why} needs it)`})
    return this.records.get(file)
  }

  /** Every entry of an image, decoded; those that do not decode are damage. */
  decodeAll<T>(file: string, message: (typeof MESSAGES)[keyof typeof MESSAGES]): T[] {
    return (this.records.get(file) ?? []).map((_, i) => this.decode<T>(file, message, i)).filter(e => e !== undefined)
  }
}

/** pages-N.img must be exactly as long as the pagemap's stored pages. Returns whether it was compared. */
function checkPagemap(folder: Folder, pid: number, why: string): boolean {
  const pagemapFile = `pagemap-${pid}.img`
  const pagemap = folder.need(pagemapFile, why)
  if (!pagemap) return false
  const head = folder.decode<PagemapHead>(pagemapFile, MESSAGES.pagemapHead)
  if (!head) {
    if (pagemap.length === 0) folder.damage.push({file: pagemapFile, message: 'has no header record'})
    return false
  }

  let pages = 0
  for (let j = 1; j < pagemap.length; j++) {
    const entry = folder.decode<PagemapEntry>(pagemapFile, MESSAGES.pagemap, j)
    if (entry) pages += storedPages(entry)
  }

  const pagesFile = `pages-${head.pagesId}.img`
  if (!folder.names.has(pagesFile)) {
    if (pages > 0) folder.damage.push({file: pagesFile, message: `is missing (${pagemapFile} lists ${pages} pages in it)`})
    return false
  }

  const {size} = statSync(join(folder.dir, pagesFile))
  if (size !== pages * PAGE_SIZE) {
    folder.damage.push({file: pagesFile, message: `${size} bytes, but ${pagemapFile} lists ${pages} pages of ${PAGE_SIZE} bytes (${pages * PAGE_SIZE} bytes)`})
  }

  return true
}

/**
 * Every file a task's fds, cwd and root name must be in files.img: this finds a files.img cut
 * short at a record boundary (its records then still decode), as long as a lost entry was in use.
 */
function checkFileReferences(folder: Folder, users: ReadonlyArray<readonly [string, number]>): void {
  if (!folder.records.has('files.img')) return
  const ids = new Set(folder.decodeAll<FileEntry>('files.img', MESSAGES.file).map(f => f.id))
  const lost = users.find(([, id]) => !ids.has(id))
  if (lost) folder.damage.push({file: 'files.img', message: `has no entry for file id ${lost[1]}, which ${lost[0]} uses (cut short?)`})
}

/** The images one task of pstree.img needs. Returns whether its pages image was compared. */
function checkTask(folder: Folder, task: PstreeEntry): boolean {
  const why = `task ${task.pid} in pstree.img`
  for (const tid of task.threads?.length ? task.threads : [task.pid]) folder.need(`core-${tid}.img`, why)
  folder.need(`ids-${task.pid}.img`, why)
  const state = folder.decode<CoreEntry>(`core-${task.pid}.img`, MESSAGES.core)?.tc?.taskState
  if (state === TASK_DEAD) return false // a zombie has no memory or files
  const filesId = folder.decode<TaskKobjIdsEntry>(`ids-${task.pid}.img`, MESSAGES.ids)?.filesId
  const fdinfo = `fdinfo-${filesId}.img`
  if (filesId !== undefined) folder.need(fdinfo, `${why} (files id ${filesId})`)
  folder.need(`fs-${task.pid}.img`, why)
  const fs = folder.decode<FsEntry>(`fs-${task.pid}.img`, MESSAGES.fs)
  checkFileReferences(folder, [
    ...folder.decodeAll<FdinfoEntry>(fdinfo, MESSAGES.fdinfo).map(e => [`fd ${e.fd} in ${fdinfo}`, e.id] as const),
    ...(fs ? [[`the cwd in fs-${task.pid}.img`, fs.cwdId] as const, [`the root in fs-${task.pid}.img`, fs.rootId] as const] : []),
  ])
  folder.need(`mm-${task.pid}.img`, why)
  return checkPagemap(folder, task.pid, why)
}

/** Check a checkpoint folder's structure. Effects: reads the images (not the pages images). */
export function checkStructure(dir: string): StructureReport {
  const folder = new Folder(dir)
  for (const name of [...folder.names].sort()) {
    if (!name.endsWith('.img') || isRaw(name)) continue
    try {
      folder.records.set(name, checkImage(name, readFileSync(join(dir, name))))
    } catch (error) {
      folder.damage.push({file: name, message: (error as Error).message.replace(`${name}: `, '').replace(`${name} `, '')})
    }
  }

  folder.need('inventory.img', 'every checkpoint')
  const tree = folder.need('pstree.img', 'every checkpoint')
  if (tree?.length === 0) folder.damage.push({file: 'pstree.img', message: 'has no task'})
  let pagesChecked = 0
  for (const [i] of (tree ?? []).entries()) {
    const task = folder.decode<PstreeEntry>('pstree.img', MESSAGES.pstree, i)
    if (task && checkTask(folder, task)) pagesChecked++
  }

  // One message per file: the first thing found wrong with it.
  const seen = new Set<string>()
  return {damage: folder.damage.filter(d => !seen.has(d.file) && seen.add(d.file)), decoded: folder.records.size, pagesChecked}
}
