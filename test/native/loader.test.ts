import {expect} from 'chai'
import {mkdirSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {nativeBinary, probeHwBreakpoints} from '../../src/lib/native.js'
import {tempDir} from '../support/system.js'

/** An empty file at root/parts..., with its folders; its path. */
function place(root: string, ...parts: string[]): string {
  mkdirSync(join(root, ...parts.slice(0, -1)), {recursive: true})
  writeFileSync(join(root, ...parts), '')
  return join(root, ...parts)
}

describe('the native loader', () => {
  it('picks a build from source (build/Release) before the prebuild for this CPU, as node-gyp-build does', () => {
    const root = tempDir()
    const prebuild = place(root, 'prebuilds', `${process.platform}-${process.arch}`, 'oclif-plugin-criu.node')
    expect(nativeBinary(root)).to.equal(prebuild)
    // node-gyp names it after binding.gyp's target; prebuildify after the package.
    place(root, 'build', 'Release', 'obj.target', 'criu_ns', 'ns_linux.o')
    expect(nativeBinary(root), 'no .node file in build/Release yet').to.equal(prebuild)
    const built = place(root, 'build', 'Release', 'criu_ns.node')
    expect(nativeBinary(root)).to.equal(built)
  })

  it('finds nothing where neither is (node-gyp-build then says what is missing)', () => {
    const root = tempDir()
    place(root, 'prebuilds', 'linux-s390x', 'oclif-plugin-criu.node')
    expect(nativeBinary(root)).to.equal(undefined)
  })

  it('is what this process loaded', () => {
    probeHwBreakpoints()
    const file = nativeBinary()!
    expect(require.cache[file], file).to.not.equal(undefined)
  })
})
