import {expect} from 'chai'
import {execFileSync, spawnSync} from 'node:child_process'
import {
  existsSync, mkdirSync, readdirSync, writeFileSync,
} from 'node:fs'
import {join} from 'node:path'

import {checkpoint} from '../support/checkpoint.js'
import {
  cleanup, criuPath, REPO, requireRoot, startHolder, tempDir,
} from '../support/system.js'

const HOST = join(REPO, 'examples', 'mycli')

/** A host CLI with its own data, cache and config folders, as a fresh user would have. */
function host(): (args: string[]) => {code: null | number; stderr: string; stdout: string} {
  const home = tempDir('mycli-home-')
  const env = {
    ...process.env,
    CRIU_PATH: criuPath(),
    MYCLI_CACHE_DIR: join(home, 'cache'),
    MYCLI_CONFIG_DIR: join(home, 'config'),
    MYCLI_DATA_DIR: join(home, 'data'),
  }
  return args => {
    const r = spawnSync(process.execPath, [join(HOST, 'bin', 'run.js'), ...args], {encoding: 'utf8', env, timeout: 300_000})
    return {code: r.status, stderr: r.stderr, stdout: r.stdout}
  }
}

let tarball: string

describe('the plugin in a host CLI (examples/mycli)', function () {
  this.timeout(600_000)

  before(() => {
    requireRoot()
    if (!existsSync(join(HOST, 'node_modules'))) execFileSync('npm', ['ci', '--no-audit', '--no-fund'], {cwd: HOST, stdio: 'ignore'})
    // The tarball users get: prebuilt native module inside, no build on install.
    const out = tempDir('mycli-pack-')
    execFileSync('npm', ['pack', '--ignore-scripts', '--pack-destination', out], {cwd: REPO, stdio: 'ignore'})
    tarball = join(out, readdirSync(out).find(f => f.endsWith('.tgz'))!)
  })

  after(cleanup)

  it('the tarball ships the prebuilt module and the manifest, not the sources', () => {
    const list = execFileSync('tar', ['-tzf', tarball], {encoding: 'utf8'}).split('\n')
    expect(list).to.include('package/prebuilds/linux-x64/oclif-plugin-criu.node')
    expect(list).to.include('package/oclif.manifest.json')
    expect(list).to.include('package/dist/src/commands/restore.js')
    expect(list.some(f => f.startsWith('package/src/') || f.startsWith('package/test/'))).to.equal(false)
  })

  it('plugins link: restore --help shows -J, --join-ns; host commands are left alone', () => {
    const mycli = host()
    const link = mycli(['plugins', 'link', REPO, '--no-install'])
    expect(link.code, link.stderr).to.equal(0)
    const help = mycli(['restore', '--help'])
    expect(help.code, help.stderr).to.equal(0)
    expect(help.stdout).to.include('-J, --join-ns=NS:PID|NS_FILE[:UID[:GID]]')
    // The host's own command takes -J too; the plugin's hook must not judge it.
    const hello = mycli(['hello', '-J', 'netx:1', '-J', 'netx:1'])
    expect(hello.code, hello.stderr).to.equal(0)
    expect(hello.stdout.trim()).to.equal('hello netx:1 netx:1')
    const bad = mycli(['restore', '-D', '/tmp', '-J', 'netx:1'])
    expect(bad.code).to.equal(2)
  })

  it('plugins install file:<tarball> (install scripts blocked): the native module loads and a restore works', async () => {
    const mycli = host()
    const install = mycli(['plugins', 'install', `file:${tarball}`])
    expect(install.code, install.stderr).to.equal(0)
    const help = mycli(['restore', '--help'])
    expect(help.stdout).to.include('-J, --join-ns=NS:PID|NS_FILE[:UID[:GID]]')
    const ckpt = await checkpoint()
    const holder = await startHolder(['net'])
    const r = mycli(['restore', '-D', ckpt.dir, '-J', `net:${holder.pid}`, '--json'])
    expect(r.code, r.stderr).to.equal(0)
    const out = JSON.parse(r.stdout)
    process.kill(out.pid, 'SIGKILL')
    expect(out.namespaces[0].type).to.equal('net')
  })

  it('npm install --ignore-scripts in a scratch project: the library and its native module load', () => {
    const scratch = tempDir('scratch-')
    mkdirSync(join(scratch, 'app'))
    writeFileSync(join(scratch, 'app', 'package.json'), '{"name": "scratch", "version": "1.0.0", "private": true}')
    execFileSync('npm', ['install', '--ignore-scripts', '--no-audit', '--no-fund', tarball], {cwd: join(scratch, 'app'), stdio: 'ignore'})
    expect(existsSync(join(scratch, 'app', 'node_modules', 'oclif-plugin-criu', 'build')), 'nothing was compiled').to.equal(false)
    const script = "const p = require('oclif-plugin-criu'); const d = p.inspectPath('/proc/self/ns/net'); console.log(p.namespaceByFlag(d.nstype).name)"
    const r = spawnSync(process.execPath, ['-e', script], {cwd: join(scratch, 'app'), encoding: 'utf8'})
    expect(r.stdout.trim(), r.stderr).to.equal('net')
  })
})
