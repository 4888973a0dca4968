/**
 * The manifest `checkpoint` writes into the checkpoint folder: every file's size and XXH64
 * digest, so that damage done to the folder later (a full disk, an interrupted copy, flipped
 * bits) is found before a restored process runs. XXH64 finds damage; it does not stop someone
 * who changes a file on purpose and rewrites the manifest to match (that needs a signature).
 */
import {closeSync, fstatSync, openSync, readdirSync, readFileSync, readSync, statSync} from 'node:fs'
import {join} from 'node:path'
import xxhash from 'xxhash-wasm'

import {isPagesImage} from './images.js'
import {writeFileNoFollow} from './trust.js'

export const MANIFEST_FILE = 'oclif-plugin-criu.manifest.json'
export const DIGEST_ALGORITHM = 'xxh64'
const FORMAT = 1

export interface ManifestEntry {
  digest: string
  size: number
}

export interface Manifest {
  algorithm: typeof DIGEST_ALGORITHM
  /** Of the manifest itself (see manifestDigest), so that damage to it is told apart from damage to the images. */
  digest: string
  files: Record<string, ManifestEntry>
  format: typeof FORMAT
  /** The plugin (name@version) that wrote it. */
  writtenBy: string
}

/** One thing wrong with one file of a checkpoint. */
export interface Damage {
  file: string
  message: string
}

/** The manifest cannot be used: unreadable, not JSON, or not one this plugin writes. */
export class ManifestError extends Error {
  override name = 'ManifestError'
}

/** Files the manifest covers: what CRIU wrote there; not CRIU's logs, not the manifest itself. */
const covered = (name: string) => name !== MANIFEST_FILE && !name.endsWith('.log')

/**
 * Read and hash in 256 KiB pieces, synchronously on this thread, giving the event loop a turn
 * every 4 MiB: a piece is still in the CPU's cache when it is hashed. 4 MiB chunks read through
 * libuv's thread pool (a round trip per chunk, a second thread copying) took 274 ms of CPU per
 * GiB against 212 ms this way, and that CPU is taken from the CRIU restore the hash runs beside.
 */
const PIECE = 256 << 10
const PIECES_PER_TURN = 16

/** The WASM module, compiled once per process. */
let hasher: ReturnType<typeof xxhash> | undefined
const xxh = () => {
  hasher ??= xxhash()
  return hasher
}

const hex = (digest: bigint) => digest.toString(16).padStart(16, '0')

const nextTurn = () => new Promise<void>(resolve => {
  setImmediate(resolve)
})

/** XXH64 of a file. */
export async function digestFile(path: string, cancelled: () => boolean = () => false): Promise<{digest: string; size: number}> {
  const {create64, h64Raw} = await xxh()
  const fd = openSync(path, 'r')
  try {
    // Most images are a few hundred bytes: one read of the whole file, no piece buffer.
    if (fstatSync(fd).size < PIECE) {
      const bytes = readFileSync(fd)
      return {digest: hex(h64Raw(bytes)), size: bytes.length}
    }

    const hash = create64()
    const piece = Buffer.allocUnsafe(PIECE)
    let size = 0
    for (let n = 1; ; n++) {
      const bytesRead = readSync(fd, piece, 0, PIECE, null)
      if (bytesRead === 0) break
      hash.update(bytesRead === PIECE ? piece : piece.subarray(0, bytesRead))
      size += bytesRead
      if (n % PIECES_PER_TURN === 0) {
        await nextTurn()
        if (cancelled()) break
      }
    }

    return {digest: hex(hash.digest()), size}
  } finally {
    closeSync(fd)
  }
}

// The folder, the manifest and the small images are read synchronously: a restore waits for
// them anyway, and some thirty thread-pool round trips cost more than the reads (8-12 ms a
// restore, measured, against under 1 ms).
function checkpointFiles(dir: string): string[] {
  const entries = readdirSync(dir, {withFileTypes: true})
  return entries.filter(e => e.isFile() && covered(e.name)).map(e => e.name).sort()
}

/** XXH64 of everything in the manifest but its own digest, in a fixed order. */
async function manifestDigest(m: Omit<Manifest, 'digest'>): Promise<string> {
  return (await xxh()).h64ToString(JSON.stringify([m.format, m.algorithm, m.writtenBy, Object.entries(m.files).map(([name, e]) => [name, e.size, e.digest])]))
}

/** Digest every file of the folder and write the manifest there. */
export async function writeManifest(dir: string, writtenBy: string): Promise<Manifest> {
  const files: Record<string, ManifestEntry> = {}
  for (const name of checkpointFiles(dir)) files[name] = await digestFile(join(dir, name))
  const body = {algorithm: DIGEST_ALGORITHM, files, format: FORMAT, writtenBy} as const
  const manifest: Manifest = {...body, digest: await manifestDigest(body)}
  // A new file renamed into place: never written through a link planted in the folder.
  writeFileNoFollow(join(dir, MANIFEST_FILE), JSON.stringify(manifest, null, 2) + '\n', 0o644)
  return manifest
}

/** Whether the text is an intact manifest this code can check; throws ManifestError saying why not. */
export async function parseManifest(text: string): Promise<Manifest> {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    throw new ManifestError(`${MANIFEST_FILE} is not JSON (${(error as Error).message})`)
  }

  const m = value as Partial<Manifest>
  if (typeof m !== 'object' || m === null || m.format !== FORMAT || m.algorithm !== DIGEST_ALGORITHM || typeof m.files !== 'object' || m.files === null) {
    throw new ManifestError(`${MANIFEST_FILE} is not a manifest of format ${FORMAT} with ${DIGEST_ALGORITHM} digests`)
  }

  for (const [name, entry] of Object.entries(m.files)) {
    if (name.includes('/') || !Number.isSafeInteger(entry?.size) || !/^[\da-f]{16}$/.test(entry?.digest ?? '')) {
      throw new ManifestError(`${MANIFEST_FILE}: the entry for ${JSON.stringify(name)} is not a file name with a size and a ${DIGEST_ALGORITHM} digest`)
    }
  }

  if (typeof m.writtenBy !== 'string' || m.digest !== await manifestDigest(m as Manifest)) {
    throw new ManifestError(`${MANIFEST_FILE} is damaged (its own ${DIGEST_ALGORITHM} digest does not match its content)`)
  }

  return m as Manifest
}

/** The folder's manifest; undefined when it has none (a plain `criu dump`). */
export async function readManifest(dir: string): Promise<Manifest | undefined> {
  let text: string
  try {
    text = readFileSync(join(dir, MANIFEST_FILE), 'utf8')
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === 'ENOENT') return undefined
    throw new ManifestError(`${MANIFEST_FILE} cannot be read (${(error as Error).message})`)
  }

  return parseManifest(text)
}

const mismatch = (file: string, expected: ManifestEntry, actual: ManifestEntry) =>
  actual.size === expected.size
    ? `content differs from the manifest (${DIGEST_ALGORITHM} ${actual.digest}, expected ${expected.digest})`
    : `${actual.size} bytes, the manifest says ${expected.size}`

/**
 * Everything that can be checked quickly: every file listed is there with its size, no image is
 * there that the manifest does not list, and the small files' digests match. The pages images
 * (all but a few KiB of a checkpoint) are left to startPagesCheck unless `pages` is true.
 */
export async function checkManifest(dir: string, manifest: Manifest, pages = false): Promise<Damage[]> {
  const damage: Damage[] = []
  const present = new Set(checkpointFiles(dir))
  for (const name of present) {
    if (!(name in manifest.files) && name.endsWith('.img')) damage.push({file: name, message: 'is not in the manifest (CRIU would read it)'})
  }

  for (const [name, expected] of Object.entries(manifest.files)) {
    if (!present.has(name)) {
      damage.push({file: name, message: `is missing (the manifest lists ${expected.size} bytes)`})
      continue
    }

    const {size} = statSync(join(dir, name))
    if (size !== expected.size) {
      damage.push({file: name, message: `${size} bytes, the manifest says ${expected.size}`})
      continue
    }

    if (isPagesImage(name) && !pages) continue
    const actual = await digestFile(join(dir, name))
    if (actual.digest !== expected.digest || actual.size !== expected.size) damage.push({file: name, message: mismatch(name, expected, actual)})
  }

  return damage
}

export interface PagesCheck {
  /** Stop reading (the restore ended another way); the verdict then rejects as cancelled. */
  cancel(): void
  /** Resolves when every pages image matches the manifest; rejects with the damage found. */
  verdict: Promise<void>
}

export class PagesDamageError extends Error {
  override name = 'PagesDamageError'

  constructor(readonly damage: Damage[]) {
    super(damage.map(d => `${d.file}: ${d.message}`).join('; '))
  }
}

/**
 * Hash the pages images in the background (while CRIU reads them: the page cache serves both),
 * so that the verdict costs little beyond the restore itself.
 */
export function startPagesCheck(dir: string, manifest: Manifest): PagesCheck {
  let cancelled = false
  const verdict = (async () => {
    const damage: Damage[] = []
    for (const [name, expected] of Object.entries(manifest.files)) {
      if (!isPagesImage(name)) continue
      const actual = await digestFile(join(dir, name), () => cancelled)
      if (cancelled) throw new Error('the pages check was cancelled')
      if (actual.digest !== expected.digest || actual.size !== expected.size) damage.push({file: name, message: mismatch(name, expected, actual)})
    }

    if (damage.length > 0) throw new PagesDamageError(damage)
  })()
  verdict.catch(() => {}) // awaited later, or cancelled: never an unhandled rejection
  return {
    cancel() {
      cancelled = true
    },
    verdict,
  }
}
