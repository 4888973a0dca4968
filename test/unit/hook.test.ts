import {Command, Config} from '@oclif/core'
import {runCommand} from '@oclif/test'
import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import {writeFileSync} from 'node:fs'
import {join} from 'node:path'

import Restore from '../../src/commands/restore.js'
import hook from '../../src/hooks/prerun.js'
import {BIN, cleanup, REPO, tempDir, flat} from '../support/system.js'

describe('prerun hook', () => {
  let entered: number
  const original = Restore.prototype.run

  beforeEach(() => {
    entered = 0
    Restore.prototype.run = async function (this: Restore) {
      await this.parse(Restore)
      entered++
      return {} as never
    }
  })

  afterEach(async () => {
    Restore.prototype.run = original
    await cleanup()
  })

  const conflicts: [string, string[], string][] = [
    ['the same type joined twice', ['-J', 'net:1', '-J', 'net:/run/netns/b'], '--join-ns "net:/run/netns/b": the net namespace is already joined by "net:1"; give one target per namespace type'],
    ['a type joined and given to --empty-ns', ['-J', 'net:1', '--empty-ns', 'net'], '--join-ns "net:1" and --empty-ns net both decide the net namespace; keep one of them'],
    ['a UID above what CRIU accepts', ['-J', 'user:1:70000:1'], '--join-ns "user:1:70000:1": CRIU accepts a UID up to 65535 when joining a user namespace, not 70000'],
    ['a GID above what CRIU accepts, with a mount join', ['-J', 'user:1:0:70000', '-J', 'mnt:1'], '--join-ns "user:1:0:70000": CRIU accepts a GID up to 65535 when joining a user namespace, not 70000'],
    ['a malformed value', ['-J', 'netx:123'], '--join-ns "netx:123": unknown namespace "netx" (expected one of: ipc, mnt, net, time, user, uts)'],
    ['user extras on a non-user type', ['-J', 'net:1:1000'], '--join-ns "net:1:1000": UID/GID options are accepted only for user (expected net:PID or net:NS_FILE)'],
    ['an unsupported --empty-ns type', ['--empty-ns', 'uts'], '--empty-ns "uts": namespace "uts" is not supported here (expected one of: net); CRIU can create only the net namespace empty'],
  ]
  for (const [what, args, message] of conflicts) {
    it(`stops the command for ${what}, exit 2`, async () => {
      const {error, stderr, stdout} = await runCommand(['restore', '-D', '/tmp', ...args], {root: REPO})
      expect(entered, 'run() entered').to.equal(0)
      expect(error?.oclif?.exit).to.equal(2)
      // The refusal only: no warning about a command that does not run.
      expect(stderr).to.equal(`Error: ${message}\n`)
      expect(stdout).to.equal('')
    })

    it(`stops the command for ${what} with --json: one JSON object on stdout, nothing on stderr, exit 2`, async () => {
      const {error, stderr, stdout} = await runCommand(['restore', '-D', '/tmp', ...args, '--json'], {root: REPO})
      expect(entered, 'run() entered').to.equal(0)
      expect(error?.oclif?.exit).to.equal(2)
      expect(stderr).to.equal('')
      expect(JSON.parse(stdout)).to.deep.equal({error: {exitCode: 2, message}})
    })
  }

  it('refuses a user join as another UID than 0 before run(), with its hint and no warning', async () => {
    const message = '--join-ns "user:1:1000:0": CRIU (4.2.1) cannot restore as UID 1000 in the joined user namespace'
    const hint = 'leave out :UID:GID (-J user:1): the restored tasks keep the IDs they were checkpointed with; `mycli ns exec` and `mycli launch` do run a program as any UID and GID'
    const {error, stderr} = await runCommand(['restore', '-D', '/tmp', '-J', 'user:1:1000:0'], {root: REPO})
    expect(entered, 'run() entered').to.equal(0)
    expect(error?.oclif?.exit).to.equal(2)
    expect(stderr.startsWith(`Error: ${message}`), stderr).to.equal(true)
    expect(stderr.endsWith(`\nHint: ${hint}\n`), stderr).to.equal(true)
    expect(stderr).not.to.include('Warning')
    const json = await runCommand(['restore', '-D', '/tmp', '-J', 'user:1:1000:0', '--json'], {root: REPO})
    expect(json.stderr).to.equal('')
    expect(JSON.parse(json.stdout).error).to.include({exitCode: 2, hint})
  })

  it('reports every problem at once, one per line', async () => {
    const {stderr} = await runCommand(['restore', '-D', '/tmp', '-J', 'net:1', '-J', 'net:2', '-J', 'uts:1', '-J', 'uts:2'], {root: REPO})
    expect(entered).to.equal(0)
    expect(stderr.trimEnd().split('\n')).to.have.length(2)
  })

  it('with --json, puts the user-namespace warning into the command\'s JSON, not on stderr', async () => {
    const {stderr} = await runCommand(['restore', '-D', '/tmp', '-J', 'user:1', '--json'], {root: REPO})
    expect(entered).to.equal(1)
    expect(stderr).to.equal('')
  })

  it('lets a valid command line through to run()', async () => {
    const {error} = await runCommand(['restore', '-D', '/tmp', '-J', 'net:1', '-J', 'uts:1'], {root: REPO})
    expect(error).to.equal(undefined)
    expect(entered).to.equal(1)
  })

  it('warns about a user join without --allow-user-ns and lets it run', async () => {
    const {error, stderr} = await runCommand(['restore', '-D', '/tmp', '-J', 'user:1'], {root: REPO})
    expect(error).to.equal(undefined)
    expect(entered).to.equal(1)
    expect(flat(stderr)).to.include('CRIU calls joining a user namespace dangerous')
    const quiet = await runCommand(['restore', '-D', '/tmp', '-J', 'user:1', '--allow-user-ns'], {root: REPO})
    expect(flat(quiet.stderr)).not.to.include('dangerous')
  })

  it('leaves other commands alone, whatever their argv', async () => {
    class Other extends Command {
      static override flags = {}

      async run() {}
    }

    const config = await Config.load(REPO)
    const context = {
      config, debug() {}, error(message: string) {
        throw new Error(message)
      }, exit() {}, log() {}, warn() {},
    }
    await hook.call(context as never, {
      argv: ['-J', 'net:1', '-J', 'net:1', '--empty-ns', 'uts'], Command: Other as never, config, context: context as never,
    })
  })

  it('decides "not ours" before loading anything: no @oclif/core, nothing of the plugin but the hook file', () => {
    const hookFile = join(REPO, 'dist', 'src', 'hooks', 'prerun.js')
    // What the host gives the hook for one of its own commands, even with argv the checks would refuse.
    const script = `require(${JSON.stringify(hookFile)}).default.call({}, {argv: ['-J', 'net:1', '-J', 'net:1'], Command: class Other {}})
      .then(() => console.log(JSON.stringify(Object.keys(require.cache))))`
    const r = spawnSync(process.execPath, ['-e', script], {encoding: 'utf8'})
    expect(r.status, r.stderr).to.equal(0)
    // Under nyc the child also loads the coverage hooks: look at the plugin's files and oclif only.
    const loaded = (JSON.parse(r.stdout) as string[]).filter(k => k.startsWith(join(REPO, 'dist')) || k.includes('/@oclif/'))
    expect(loaded).to.deep.equal([hookFile])
  })

  // Each in a fresh process: this one has loaded the module for other tests.
  const lazy: [string[], number][] = [[['--help'], 0], [['restore', '--help'], 0], [['--version'], 0], [['restore', '-D', '/tmp', '-J', 'net:1', '-J', 'net:2'], 2]]
  for (const [argv, code] of lazy) {
    it(`mycli ${argv.join(' ')} loads no native module`, () => {
      const probe = join(tempDir(), 'probe.js')
      writeFileSync(probe, "process.on('exit', () => { if (Object.keys(require.cache).some((k) => k.endsWith('.node'))) process.stderr.write('NATIVE LOADED') })")
      const r = spawnSync(process.execPath, ['-r', probe, BIN, ...argv], {encoding: 'utf8'})
      expect(r.status, r.stderr).to.equal(code)
      expect(r.stderr).not.to.include('NATIVE LOADED')
      expect(r.stdout + r.stderr).not.to.equal('')
    })
  }
})
