import {expect} from 'chai'
import {execFileSync, spawnSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import {readdirSync, readFileSync, statSync} from 'node:fs'
import {join} from 'node:path'

import {cleanup, REPO, requireRoot, tempDir} from '../support/system.js'

/** A digest of every file below a folder. */
function treeDigest(dir: string): string {
  const hash = createHash('sha256')
  const walk = (d: string) => {
    for (const name of readdirSync(d).sort()) {
      const p = join(d, name)
      const st = statSync(p, {throwIfNoEntry: false})
      if (!st) continue
      hash.update(p)
      if (st.isDirectory()) walk(p)
      else if (st.isFile()) hash.update(readFileSync(p))
    }
  }

  walk(dir)
  return hash.digest('hex')
}

describe('scripts/provision-criu.sh', function () {
  this.timeout(600_000)

  before(requireRoot)

  after(cleanup)

  it('provisions a CRIU >= 4.2 that passes `criu check` into a fresh folder, leaving /etc/apt and dpkg alone; then again in under a second', () => {
    const before = {apt: treeDigest('/etc/apt'), dpkg: createHash('sha256').update(readFileSync('/var/lib/dpkg/status')).digest('hex')}
    const dest = join(tempDir('provision-'), 'criu')
    const env = {...process.env, CRIU_PATH: '', CRIU_PROVISION_DIR: dest, PATH: '/usr/bin:/bin'}
    const out = execFileSync('bash', [join(REPO, 'scripts', 'provision-criu.sh')], {encoding: 'utf8', env, stdio: ['ignore', 'pipe', 'pipe']})
    const path = out.trim().split('\n').pop()!
    expect(path).to.equal(join(dest, 'bin', 'criu'))
    const version = execFileSync(path, ['--version'], {encoding: 'utf8'})
    expect(version).to.match(/^Version: (4\.([2-9]|\d\d)|[5-9]\.)/m)
    const check = spawnSync(path, ['check'], {encoding: 'utf8'})
    expect(check.status, check.stderr).to.equal(0)
    expect(`${check.stdout}${check.stderr}`).to.include('Looks good.')
    expect(treeDigest('/etc/apt'), '/etc/apt untouched').to.equal(before.apt)
    expect(createHash('sha256').update(readFileSync('/var/lib/dpkg/status')).digest('hex'), 'dpkg status untouched').to.equal(before.dpkg)
    const t0 = Date.now()
    const again = execFileSync('bash', [join(REPO, 'scripts', 'provision-criu.sh')], {encoding: 'utf8', env}).trim()
    expect(Date.now() - t0).to.be.below(1000)
    expect(again).to.equal(path)
  })

  it('fails with a clear message when it cannot provision (not root, no CRIU on PATH)', () => {
    const r = spawnSync('/usr/bin/setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', '/bin/bash', join(REPO, 'scripts', 'provision-criu.sh')], {
      encoding: 'utf8',
      env: {...process.env, CRIU_PATH: '', CRIU_PROVISION_DIR: join(tempDir('provision-'), 'x'), PATH: '/usr/bin:/bin'},
    })
    expect(r.status).to.equal(1)
    expect(r.stderr.trim()).to.equal('provision-criu: error: provisioning CRIU needs root (apt-get); run as root or set CRIU_PATH to a CRIU >= 4.2')
  })
})
