import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import {readdirSync} from 'node:fs'
import {join} from 'node:path'

import {REPO} from '../support/system.js'

const COMMANDS = join(REPO, 'dist', 'src', 'commands')

describe('bundles (scripts/bundle.mjs)', () => {
  const files = readdirSync(COMMANDS, {recursive: true}).map(String).filter(f => f.endsWith('.js')).sort()

  it('cover every command', () => {
    expect(files).to.deep.equal(['checkpoint.js', 'checkpoint/verify.js', 'criu/check.js', 'launch.js', 'ns/exec.js', 'ns/inspect.js', 'restore.js'])
  })

  for (const file of files) {
    it(`${file} loads as one file of ours, and its command class`, () => {
      const path = join(COMMANDS, file)
      const script = `const c = require(${JSON.stringify(path)}).default
        console.log(JSON.stringify({run: typeof c.run, ours: Object.keys(require.cache).filter(k => k.startsWith(${JSON.stringify(join(REPO, 'dist') + '/')}))}))`
      const r = spawnSync(process.execPath, ['-e', script], {cwd: REPO, encoding: 'utf8'})
      expect(r.status, r.stderr).to.equal(0)
      expect(JSON.parse(r.stdout)).to.deep.equal({ours: [path], run: 'function'})
    })
  }

  it('the prerun hook\'s checks load as one file of ours besides the hook', () => {
    const hook = join(REPO, 'dist', 'src', 'hooks', 'prerun.js')
    const checks = join(REPO, 'dist', 'src', 'lib', 'prerun-checks.js')
    const script = `const Restore = require(${JSON.stringify(join(COMMANDS, 'restore.js'))}).default
      const before = new Set(Object.keys(require.cache))
      const config = {bin: 'mycli', topicSeparator: ' ', scopedEnvVar: () => 'X'}
      require(${JSON.stringify(hook)}).default.call({config}, {argv: ['-D', '/tmp', '-J', 'net:1'], Command: Restore, config})
        .then(() => console.log(JSON.stringify(Object.keys(require.cache).filter(k => !before.has(k) && k.startsWith(${JSON.stringify(join(REPO, 'dist') + '/')})))))`
    const r = spawnSync(process.execPath, ['-e', script], {cwd: REPO, encoding: 'utf8'})
    expect(r.status, r.stderr).to.equal(0)
    expect(JSON.parse(r.stdout)).to.deep.equal([hook, checks])
  })
})
