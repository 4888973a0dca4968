import {expect} from 'chai'
import {randomBytes} from 'node:crypto'
import {writeFileSync} from 'node:fs'
import {join} from 'node:path'
import xxhash from 'xxhash-wasm'

import {digestFile} from '../../src/lib/manifest.js'
import {cleanup, tempDir} from '../support/system.js'

const PIECE = 256 << 10

describe('manifest digests (digestFile)', () => {
  afterEach(cleanup)

  // One XXH64 call over the whole content is the reference the piecewise reading must equal.
  it('equals XXH64 of the whole file for sizes around the 256 KiB pieces and the 4 MiB event-loop turns', async () => {
    const {h64Raw} = await xxhash()
    const dir = tempDir()
    const sizes = [0, 1, 100, PIECE - 1, PIECE, PIECE + 1, (3 * PIECE) + 17, (16 * PIECE) - 1, 16 * PIECE, (16 * PIECE) + 1, (40 * PIECE) + 4095]
    for (const size of sizes) {
      const bytes = randomBytes(size)
      const path = join(dir, `pages-${size}.img`)
      writeFileSync(path, bytes)
      const expected = h64Raw(bytes).toString(16).padStart(16, '0')
      expect(await digestFile(path), `${size} bytes`).to.deep.equal({digest: expected, size})
    }
  })

  it('matches the published XXH64 of the empty input', async () => {
    const path = join(tempDir(), 'empty.img')
    writeFileSync(path, '')
    expect((await digestFile(path)).digest).to.equal('ef46db3751d8e999')
  })

  it('stops reading at the next event-loop turn once cancelled', async () => {
    const path = join(tempDir(), 'pages-1.img')
    writeFileSync(path, randomBytes(64 * PIECE))
    let asked = 0
    const {size} = await digestFile(path, () => ++asked > 1)
    expect(size).to.equal(2 * 16 * PIECE)
  })
})
