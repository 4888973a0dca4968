/**
 * Whether a checkpoint folder is intact, for `restore` (before and while CRIU runs) and for
 * `checkpoint verify`: by its manifest when `checkpoint` wrote one, else by its structure.
 */
import {FailedError, RefusedError} from './errors.js'
import {checkImagesDir} from './images.js'
import {quote} from './join-ns.js'
import {
  checkManifest, Damage, Manifest, MANIFEST_FILE, ManifestError, PagesCheck, PagesDamageError, readManifest, startPagesCheck,
} from './manifest.js'

export type IntegrityMethod = 'manifest' | 'skipped' | 'structure'

export interface IntegrityReport {
  damage: Damage[]
  /** Files whose digest (manifest) or header and records (structure) were checked. */
  files: number
  method: IntegrityMethod
  /** pages-N.img not yet hashed: checked while CRIU reads them (restore only). */
  pagesPending: boolean
}

export const SKIP_FLAG = '--no-verify-images'

/** One line per damaged file, for messages. */
export const describeDamage = (damage: readonly Damage[]) => damage.map(d => `  ${d.file}: ${d.message}`).join('\n')

/** The one-line verdict --dry-run and `checkpoint verify` print. */
export function verdictLine(report: IntegrityReport): string {
  if (report.method === 'skipped') return `not checked (${SKIP_FLAG})`
  const what = report.method === 'manifest' ? `${report.files} files match ${MANIFEST_FILE}` : `structure sound (${report.files} images decoded; no manifest, so page contents cannot be checked)`
  if (report.damage.length > 0) return `DAMAGED: ${report.damage.length} file(s)`
  return report.pagesPending ? `${what} (pages images: sizes match; contents are hashed while CRIU reads them)` : what
}

/**
 * Check a folder. With `pages` false, the pages images of a manifest are only compared by size
 * (their digests are left to startPagesCheck). Throws ManifestError for an unusable manifest.
 */
export async function checkIntegrity(dir: string, options: {pages: boolean; structureToo?: boolean}): Promise<IntegrityReport & {manifest?: Manifest}> {
  const manifest = await readManifest(dir)
  if (manifest) {
    const damage = await checkManifest(dir, manifest, options.pages)
    let files = Object.keys(manifest.files).length
    if (options.structureToo) {
      const structure = (await import('./image-check.js')).checkStructure(dir)
      damage.push(...structure.damage.filter(d => !damage.some(m => m.file === d.file)))
      files = Math.max(files, structure.decoded)
    }

    return {damage, files, manifest, method: 'manifest', pagesPending: !options.pages}
  }

  // The image decoder (protobufjs's minimal runtime) only for checkpoints without a manifest
  const structure = (await import('./image-check.js')).checkStructure(dir)
  return {damage: structure.damage, files: structure.decoded, method: 'structure', pagesPending: false}
}

/**
 * restore, before CRIU starts: refuse a damaged checkpoint (exit 2, naming each file). The
 * pages images of a manifest are hashed later, while CRIU runs, unless `pages` (--dry-run).
 */
export async function checkBeforeRestore(dir: string, options: {pages: boolean; verify: boolean}): Promise<IntegrityReport & {manifest?: Manifest}> {
  if (!options.verify) return {damage: [], files: 0, method: 'skipped', pagesPending: false}
  let report
  try {
    report = await checkIntegrity(dir, {pages: options.pages})
  } catch (error) {
    if (error instanceof ManifestError) throw new RefusedError(`--images-dir ${quote(dir)}: ${error.message}`, `restore from an intact copy, or pass ${SKIP_FLAG} to restore without checking`)
    throw error
  }

  if (report.damage.length > 0) {
    const how = report.method === 'manifest' ? `does not match ${MANIFEST_FILE}` : 'is damaged (structure check; it has no manifest)'
    throw new RefusedError(
      `--images-dir ${quote(dir)}: the checkpoint ${how}:\n${describeDamage(report.damage)}`,
      `restore from an intact copy, or pass ${SKIP_FLAG} to restore without checking`,
    )
  }

  return report
}

/** No pages to hash (no manifest, or checked already): the verdict is in. */
export const NO_PAGES_CHECK: PagesCheck = {cancel() {}, verdict: Promise.resolve()}

/** Start hashing the pages images (manifest only), to be awaited with pagesVerdict(). */
export function startPages(dir: string, report: {manifest?: Manifest; pagesPending: boolean}): PagesCheck {
  return report.manifest && report.pagesPending ? startPagesCheck(dir, report.manifest) : NO_PAGES_CHECK
}

/** Await the pages verdict; a mismatch is a failed restore (exit 1: CRIU had started). */
export async function pagesVerdict(dir: string, check: PagesCheck): Promise<void> {
  try {
    await check.verdict
  } catch (error) {
    if (error instanceof PagesDamageError) {
      throw new FailedError(`--images-dir ${quote(dir)}: the checkpoint does not match ${MANIFEST_FILE}, found while CRIU read it; nothing restored is left running:\n${describeDamage(error.damage)}`, 'restore from an intact copy')
    }

    throw error
  }
}

export interface VerifyResult extends IntegrityReport {
  dir: string
  sound: boolean
}

/** `checkpoint verify`: manifest (pages included) and structure; refused when DIR is no checkpoint. */
export async function verifyCheckpoint(dir: string): Promise<VerifyResult> {
  checkImagesDir(dir, 'DIR')
  try {
    const {damage, files, method} = await checkIntegrity(dir, {pages: true, structureToo: true})
    return {damage, dir, files, method, pagesPending: false, sound: damage.length === 0}
  } catch (error) {
    if (error instanceof ManifestError) throw new RefusedError(`DIR ${quote(dir)}: ${error.message}`, `the manifest is damaged; without it only the structure can be checked (move ${MANIFEST_FILE} aside to do that)`)
    throw error
  }
}
