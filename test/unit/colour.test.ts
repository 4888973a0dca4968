import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import {resolve} from 'node:path'

import {mayColour} from '../../src/lib/colour.js'

const COLOUR = resolve(__dirname, '../../src/lib/colour.js')

/**
 * In a fresh Node with this env and argv, stdout and stderr piped: chalk's own levels, what
 * colour.ts decided, and whether it loaded chalk to decide.
 */
function decide(env: Record<string, string>, argv: string[]) {
  const script = `
    const c = require(${JSON.stringify(COLOUR)})
    const ours = {out: c.stdoutColours().green('x') !== 'x', err: c.stderrColours().green('x') !== 'x'}
    const loaded = Object.keys(require.cache).some(k => k.includes('/node_modules/chalk/'))
    const chalk = require('chalk')
    process.stdout.write(JSON.stringify({loaded, ours, chalk: {out: chalk.default.level, err: chalk.chalkStderr.level}}))`
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !['AGENT_NAME', 'FORCE_COLOR', 'NO_COLOR', 'TF_BUILD'].includes(k)))
  const r = spawnSync(process.execPath, ['-e', script, '--', ...argv], {encoding: 'utf8', env: {...clean, ...env}})
  expect(r.status, r.stderr).to.equal(0)
  return JSON.parse(r.stdout) as {chalk: {err: number; out: number}; loaded: boolean; ours: {err: boolean; out: boolean}}
}

describe('colour: chalk is loaded only where it could colour', () => {
  it('agrees with chalk\'s own detection in pipes, for FORCE_COLOR, --color flags, NO_COLOR and Azure Pipelines', function () {
    this.timeout(60_000)
    const cases: Array<[Record<string, string>, string[]]> = [
      [{}, []],
      [{FORCE_COLOR: '1'}, []],
      [{FORCE_COLOR: '0'}, []],
      [{FORCE_COLOR: ''}, []],
      [{FORCE_COLOR: '3'}, ['--no-color']],
      [{}, ['--color']],
      [{}, ['--color=256']],
      [{}, ['--colors']],
      [{}, ['--no-color']],
      [{}, ['--', '--color']],
      [{AGENT_NAME: 'x', TF_BUILD: 'True'}, []],
      [{FORCE_COLOR: '1', NO_COLOR: '1'}, []],
      [{CI: '1', GITHUB_ACTIONS: 'true'}, []],
    ]
    for (const [env, argv] of cases) {
      const what = JSON.stringify({argv, env})
      const d = decide(env, argv)
      const chalkSays = {err: d.chalk.err > 0 && !env.NO_COLOR, out: d.chalk.out > 0 && !env.NO_COLOR}
      expect(d.ours, what).to.deep.equal(chalkSays)
      // Skipping chalk is only ever a shortcut to the answer chalk would give.
      if (!mayColour(false, env, argv)) expect(d.chalk, what).to.deep.equal({err: 0, out: 0})
    }
  })

  it('a plain pipe, the usual case in scripts: plain text, and chalk is not loaded', () => {
    const d = decide({}, [])
    expect(d).to.deep.include({loaded: false, ours: {err: false, out: false}})
    expect(mayColour(false, {}, [])).to.equal(false)
    expect(mayColour(true, {}, []), 'a terminal: chalk decides').to.equal(true)
  })
})
