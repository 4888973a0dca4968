import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import {mkdirSync, symlinkSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {processStat} from '../../src/lib/proc.js'
import {checkpoint} from '../support/checkpoint.js'
import {provisionRunc, removeContainers, startContainer} from '../support/runc.js'
import {
  addNetns, cleanup, criuPath, flat, nsInode, requireRoot, startHolder, tempDir, track,
} from '../support/system.js'

/**
 * A host CLI that knows its own containers: its criu:resolve-container hook answers from
 * $RHOST_CONTAINERS (JSON: ID -> answer), as a container CLI would from its database.
 */
function resolverHost(): (args: string[], containers: Record<string, object | string>) => {code: null | number; stderr: string; stdout: string} {
  const dir = tempDir('resolver-host-')
  const repo = join(__dirname, '..', '..', '..')
  writeFileSync(join(dir, 'package.json'), JSON.stringify({
    dependencies: {'oclif-plugin-criu': '*'},
    name: 'rhost',
    oclif: {
      bin: 'rhost', dirname: 'rhost', hooks: {'criu:resolve-container': './resolve.js'}, plugins: ['oclif-plugin-criu'], topicSeparator: ' ',
    },
    private: true,
    version: '1.0.0',
  }))
  writeFileSync(join(dir, 'resolve.js'), [
    'module.exports = async function ({id}) {',
    '  const known = JSON.parse(process.env.RHOST_CONTAINERS || "{}")',
    '  if (known[id] === "stopping") this.error(id + " is being stopped", {exit: 2})',
    '  return known[id]',
    '}',
  ].join('\n'))
  writeFileSync(join(dir, 'run.js'), `require(${JSON.stringify(require.resolve('@oclif/core'))}).execute({dir: __dirname})\n`)
  mkdirSync(join(dir, 'node_modules'))
  symlinkSync(repo, join(dir, 'node_modules', 'oclif-plugin-criu'))
  const env = {...process.env, CRIU_PATH: criuPath(), RHOST_CACHE_DIR: join(dir, 'cache'), RHOST_CONFIG_DIR: join(dir, 'config'), RHOST_DATA_DIR: join(dir, 'data')}
  return (args, containers) => {
    const r = spawnSync(process.execPath, [join(dir, 'run.js'), ...args], {encoding: 'utf8', env: {...env, RHOST_CONTAINERS: JSON.stringify(containers)}, timeout: 120_000})
    return {code: r.status, stderr: r.stderr, stdout: r.stdout}
  }
}

describe('a host CLI that answers criu:resolve-container', function () {
  this.timeout(180_000)

  before(() => {
    requireRoot()
    provisionRunc()
  })

  afterEach(async () => {
    await removeContainers()
    await cleanup()
  })

  it('is asked first: its PID answer is joined (ns exec, ns inspect, a real restore)', async () => {
    const rhost = resolverHost()
    const holder = await startHolder(['net', 'uts', 'ipc'], 'hosted-web')
    const known = {web: {pid: holder.pid, runtime: 'rhost-engine', startTime: processStat(holder.pid)!.startTime}}
    const exec = rhost(['ns', 'exec', '--join-container', 'web:uts', '--', 'hostname'], known)
    expect(exec.code, exec.stderr).to.equal(0)
    expect(exec.stdout.trim()).to.equal('hosted-web')
    const inspect = rhost(['ns', 'inspect', 'web', '--json'], known)
    expect(inspect.code, inspect.stderr).to.equal(0)
    const [target] = JSON.parse(inspect.stdout)
    expect(target.container).to.deep.include({id: 'web', initPid: holder.pid, runtime: 'rhost-engine', source: 'host CLI (rhost)'})
    const ckpt = await checkpoint()
    const r = rhost(['restore', '-D', ckpt.dir, '--join-container', 'web', '--json'], known)
    expect(r.code, r.stderr).to.equal(0)
    const out = JSON.parse(r.stdout)
    track(out.pid)
    expect(out.container.source).to.equal('host CLI (rhost)')
    for (const type of ['net', 'uts', 'ipc']) expect(nsInode(out.pid, type), type).to.equal(nsInode(holder.pid, type))
  })

  it('wins over the runtime\'s state folders; namespace files it names are joined for their types', async () => {
    const rhost = resolverHost()
    const id = `crt-${process.pid}-hooked`
    const container = await startContainer(id, 'in-runc')
    const holder = await startHolder(['uts', 'ipc'], 'from-host')
    const netns = addNetns(`crt-hook-${process.pid}`)
    const known = {[id]: {namespaces: {net: netns}, pid: holder.pid, startTime: processStat(holder.pid)!.startTime}}
    const r = rhost(['ns', 'inspect', id, '--json'], known)
    expect(r.code, r.stderr).to.equal(0)
    const inodes = Object.fromEntries(JSON.parse(r.stdout)[0].namespaces.map((n: {inode: number; type: string}) => [n.type, n.inode]))
    expect(inodes.net).to.equal(Number(spawnSync('stat', ['-L', '-c', '%i', netns], {encoding: 'utf8'}).stdout.trim()))
    expect(inodes.uts).to.equal(nsInode(holder.pid, 'uts'))
    expect(inodes.uts).not.to.equal(nsInode(container.pid, 'uts'))
    // The host does not know it: the runtime's state folder answers.
    const fallback = rhost(['ns', 'exec', '--join-container', `${id}:uts`, '--', 'hostname'], {})
    expect(fallback.code, fallback.stderr).to.equal(0)
    expect(fallback.stdout.trim()).to.equal('in-runc')
  })

  it('a stale or malformed answer is refused, exit 2; a host can refuse itself; an unknown ID says the host did not know it', async () => {
    const rhost = resolverHost()
    const holder = await startHolder(['uts'])
    const stale = rhost(['ns', 'exec', '--join-container', 'web:uts', '--', 'hostname'], {web: {pid: holder.pid, startTime: processStat(holder.pid)!.startTime + 1}})
    expect(stale.code).to.equal(2)
    expect(flat(stale.stderr)).to.include(`--join-container "web:uts" (uts:${holder.pid}): PID ${holder.pid} now names another process`)
    const bad = rhost(['ns', 'exec', '--join-container', 'web', '--', 'true'], {web: {pid: 'x'}})
    expect(bad.code).to.equal(2)
    expect(flat(bad.stderr)).to.include('the criu:resolve-container hook of rhost answered pid "x", not a PID')
    const refused = rhost(['ns', 'exec', '--join-container', 'web', '--', 'true'], {web: 'stopping'})
    expect(refused.code).to.equal(2)
    expect(flat(refused.stderr)).to.include('web is being stopped')
    const unknown = rhost(['ns', 'exec', '--join-container', 'nowhere', '--', 'true'], {})
    expect(unknown.code).to.equal(2)
    expect(flat(unknown.stderr)).to.include('--join-container "nowhere": no container "nowhere": the host CLI did not know it, and searched /run/runc')
  })
})
