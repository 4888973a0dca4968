import {expect} from 'chai'
import {execFileSync} from 'node:child_process'
import {readFileSync, symlinkSync} from 'node:fs'
import {join} from 'node:path'

import {cleanup, REPO, tempDir} from '../support/system.js'

/**
 * A scratch copy of what `oclif manifest`/`oclif readme` read. node_modules is linked, not
 * copied: copying (and removing) it costs minutes on a loaded machine.
 */
function scratchCopy(files: string[]): string {
  const scratch = tempDir('oclif-plugin-criu-docs-')
  execFileSync('cp', ['-a', ...files.map(f => join(REPO, f)), scratch])
  symlinkSync(join(REPO, 'node_modules'), join(scratch, 'node_modules'))
  return scratch
}

describe('generated files', function () {
  this.timeout(120_000)

  after(cleanup)

  it('oclif.manifest.json describes the commands as they are built', () => {
    const manifest = JSON.parse(readFileSync(join(REPO, 'oclif.manifest.json'), 'utf8'))
    // Regenerate from dist/ in a scratch copy and compare.
    const scratch = scratchCopy(['package.json', 'dist', 'tsconfig.json'])
    execFileSync('npx', ['oclif', 'manifest'], {cwd: scratch, env: {...process.env, OCLIF_SKIP_NEW_VERSION_CHECK: 'true'}, stdio: 'ignore'})
    const fresh = JSON.parse(readFileSync(join(scratch, 'oclif.manifest.json'), 'utf8'))
    expect(manifest.commands).to.deep.equal(fresh.commands)
    expect(Object.keys(manifest.commands)).to.include('restore')
    expect(manifest.commands.restore.flags['join-ns'].char).to.equal('J')
  })

  it('the command reference in README.md is what `oclif readme` generates', () => {
    const scratch = scratchCopy(['package.json', 'dist', 'tsconfig.json', 'README.md', 'oclif.manifest.json'])
    execFileSync('npx', ['oclif', 'readme'], {cwd: scratch, env: {...process.env, OCLIF_SKIP_NEW_VERSION_CHECK: 'true'}, stdio: 'ignore'})
    const committed = readFileSync(join(REPO, 'README.md'), 'utf8')
    expect(committed, 'README.md is stale: run `npm run readme` and commit it').to.equal(readFileSync(join(scratch, 'README.md'), 'utf8'))
  })
})
