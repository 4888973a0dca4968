/**
 * `node dist/bench/trust.js`: what the ownership checks (src/lib/trust.ts) cost, side by side
 * and interleaved (A, B, A, B, ...), medians of 3 rounds of 2000 calls each:
 *   1. checkImagesDir on a 12-file checkpoint folder: --allow-untrusted-images vs checked
 *   2. a cache read: the old readFileSync + JSON.parse vs readOwnFile (walk, O_NOFOLLOW, fstat) + JSON.parse
 */
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {checkImagesDir, IMG_COMMON_MAGIC, INVENTORY_MAGIC} from '../src/lib/images.js'
import {readOwnFile} from '../src/lib/trust.js'

function micros(f: () => unknown): number {
  const start = process.hrtime.bigint()
  f()
  return Number(process.hrtime.bigint() - start) / 1000
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.floor(s.length / 2)]
}

function sideBySide(name: string, a: [string, () => unknown], b: [string, () => unknown], calls = 2000): void {
  for (let round = 1; round <= 3; round++) {
    const ta: number[] = []
    const tb: number[] = []
    for (let i = 0; i < calls; i++) {
      ta.push(micros(a[1]))
      tb.push(micros(b[1]))
    }

    const [ma, mb] = [median(ta), median(tb)]
    console.log(`${name}, round ${round}: ${a[0]} ${ma.toFixed(1)} us, ${b[0]} ${mb.toFixed(1)} us (${(mb / ma).toFixed(1)}x, +${(mb - ma).toFixed(1)} us)`)
  }
}

const dir = mkdtempSync(join(tmpdir(), 'bench-trust-'))
try {
  const head = Buffer.alloc(8)
  head.writeUInt32LE(IMG_COMMON_MAGIC, 0)
  head.writeUInt32LE(INVENTORY_MAGIC, 4)
  writeFileSync(join(dir, 'inventory.img'), head)
  for (let i = 0; i < 11; i++) writeFileSync(join(dir, `image-${i}.img`), 'x')
  sideBySide(
    'checkImagesDir, 12 files',
    ['unchecked', () => checkImagesDir(dir, '--images-dir', {allowUntrusted: true})],
    ['checked', () => checkImagesDir(dir, '--images-dir')],
  )
  const cache = join(dir, 'cache.json')
  writeFileSync(cache, JSON.stringify({key: true}), {mode: 0o600})
  sideBySide(
    'cache read',
    ['readFileSync', () => JSON.parse(readFileSync(cache, 'utf8'))],
    ['readOwnFile', () => JSON.parse(readOwnFile(cache)!)],
  )
} finally {
  rmSync(dir, {force: true, recursive: true})
}
