import {expect} from 'chai'
import {spawnSync} from 'node:child_process'

import {REPO} from '../support/system.js'

describe('static checks', function () {
  this.timeout(300_000)

  it('eslint reports no errors', () => {
    const r = spawnSync('npx', ['eslint', '--max-warnings', '0', '.'], {cwd: REPO, encoding: 'utf8'})
    expect(r.status, r.stdout + r.stderr).to.equal(0)
  })

  it('tsc --noEmit (strict) passes', () => {
    const r = spawnSync('npx', ['tsc', '--noEmit', '-p', '.'], {cwd: REPO, encoding: 'utf8'})
    expect(r.status, r.stdout + r.stderr).to.equal(0)
  })

  it('the native module compiles without warnings under -Wall -Wextra', () => {
    const r = spawnSync('npx', ['node-gyp', 'rebuild'], {cwd: REPO, encoding: 'utf8'})
    expect(r.status, r.stderr).to.equal(0)
    expect(`${r.stdout}${r.stderr}`.split('\n').filter(l => /warning:/.test(l))).to.deep.equal([])
  })
})
