import {expect} from 'chai'
import {spawn, spawnSync} from 'node:child_process'
import {chmodSync, existsSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {checkpoint, CliResult, folderDigest, mycli} from '../support/checkpoint.js'
import {
  alive, BIN, cleanup, criuPath, firstChild, flat, requireRoot, tempDir, track, waitFor,
} from '../support/system.js'

/** Root without one capability, made here so the test means the same on every machine. */
function dropping(capability: string, args: string[], env: NodeJS.ProcessEnv = {}): CliResult {
  const r = spawnSync('setpriv', [`--inh-caps=-${capability}`, `--bounding-set=-${capability}`, process.execPath, BIN, ...args], {
    encoding: 'utf8',
    env: {...process.env, CRIU_PATH: criuPath(), ...env},
    timeout: 120_000,
  })
  return {code: r.status, stderr: r.stderr, stdout: r.stdout}
}

/** What Debian 12's CRIU 3.17.1 prints for every command on Linux 6.18 (measured on these machines). */
const KERNDAT_FAILURE = [
  'Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds',
  'Error (criu/vdso.c:613): vdso: Failed to fill self vdso symtable',
  'Error (criu/kerndat.c:1615): kerndat_vdso_fill_symtable failed when initializing kerndat.',
  'Error (criu/crtools.c:260): Could not initialize kernel features detection.',
]

interface UnusableCriu {
  /** A folder to put on PATH that holds it as `criu`. */
  dir: string
  path: string
  /** Debian's own binary, not the stand-in. */
  real: boolean
  version: string
}

/**
 * A CRIU that cannot run on this kernel: the distribution's at /usr/sbin/criu when there is one
 * and its own `criu check` fails here (Debian 12's on these machines), else a stand-in that fails
 * kerndat the same way. Either way the plugin's message is checked on every machine.
 */
function unusableCriu(): UnusableCriu {
  const distro = '/usr/sbin/criu'
  if (existsSync(distro) && spawnSync(distro, ['check']).status !== 0) {
    const version = /Version:\s*(\S+)/.exec(spawnSync(distro, ['--version'], {encoding: 'utf8'}).stdout)![1]
    return {dir: '/usr/sbin', path: distro, real: true, version}
  }

  const dir = tempDir('standin-criu-')
  const path = join(dir, 'criu')
  writeFileSync(path, `#!/bin/sh
[ "$1" = --version ] && { echo "Version: 3.17.1"; exit 0; }
cat >&2 <<'EOF'
${KERNDAT_FAILURE.join('\n')}
EOF
exit 1
`)
  chmodSync(path, 0o755)
  return {dir, path, real: false, version: '3.17.1'}
}

const FEATURES = ['timeNamespaces', 'externalNetNs', 'hwBreakpoints', 'lazyPages', 'dirtyTracking', 'networkLockIptables', 'networkLockNftables']

/** A process tree started by the test: a root-owned parent and, optionally, a child of another user. */
async function startTree(childUid?: number): Promise<{child?: number; root: number}> {
  const script = childUid === undefined
    ? 'exec sleep 100000'
    : `setpriv --reuid=${childUid} --regid=${childUid} --clear-groups sleep 100000 & exec sleep 100000`
  const proc = spawn('setsid', ['sh', '-c', script], {stdio: 'ignore'})
  const root = track(proc.pid!)
  await waitFor('the tree to start', () => {
    try {
      if (readFileSync(`/proc/${root}/comm`, 'utf8').trim() !== 'sleep') return false
      if (childUid === undefined) return true
      const child = firstChild(root)
      return readFileSync(`/proc/${child}/comm`, 'utf8').trim() === 'sleep' && /^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${child}/status`, 'utf8'))![1] === String(childUid)
    } catch {
      return false
    }
  })
  return childUid === undefined ? {root} : {child: track(firstChild(root)), root}
}

const state = (pid: number) => /^State:\s+(\S)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]

function expectOneCleanError(r: CliResult): string {
  expect(r.stderr.match(/Error:/g), 'exactly one error message').to.have.length(1)
  expect(r.stderr, 'no stack trace').not.to.match(/\n\s+at .+:\d+:\d+/)
  return flat(r.stderr)
}

describe('the CRIU this machine has: criu check, and judging it before any work', function () {
  this.timeout(180_000)

  before(requireRoot)

  afterEach(cleanup)

  it('criu check: the provisioned CRIU is usable here, with every feature as a boolean (exit 0)', () => {
    const r = mycli(['criu', 'check', '--json'])
    expect(r.code, r.stderr).to.equal(0)
    const report = JSON.parse(r.stdout)
    expect(report).to.include({path: criuPath(), root: true, source: 'CRIU_PATH', usable: true})
    expect(report.version).to.match(/^(4\.([2-9]|\d\d)|[5-9]\.)/)
    expect(Object.keys(report.features).sort()).to.deep.equal([...FEATURES].sort())
    for (const f of FEATURES) expect(report.features[f], f).to.be.a('boolean')
    expect(report.features.timeNamespaces, 'CRIU 4.2 on this kernel').to.equal(true)
    expect(report.capabilities.missing).to.be.an('array')
    const human = mycli(['criu', 'check'])
    expect(human.code).to.equal(0)
    expect(flat(human.stdout)).to.include(`Usable: CRIU ${report.version} at ${criuPath()} can checkpoint and restore here.`)
    expect(human.stdout).to.match(/time namespaces\s+yes/)
  })

  it('criu check fits 80 columns (a pipe, OCLIF_COLUMNS=80) and uses a wider terminal side by side; marks coloured only where colour is wanted', () => {
    const esc = '\u001B['
    for (const [columns, env] of [[80, {}], [80, {OCLIF_COLUMNS: '80'}], [160, {OCLIF_COLUMNS: '160'}]] as const) {
      const r = mycli(['criu', 'check'], env)
      expect(r.code, r.stderr).to.equal(0)
      for (const line of r.stdout.split('\n')) {
        expect([...line].length, `longer than ${columns}: ${JSON.stringify(line)}`).to.be.at.most(columns)
        expect(line, 'trailing spaces').not.to.match(/ $/)
      }

      expect(r.stdout, 'a pipe is plain').not.to.include(esc)
      // 80: what it affects goes under the result; 160: beside it.
      expect(r.stdout).to.match(columns === 80 ? /time namespaces\s+yes\n\s{20,}restore gives the tree/ : /time namespaces\s+yes\s+restore gives the tree/)
    }

    const forced = mycli(['criu', 'check'], {FORCE_COLOR: '1'}).stdout
    expect(forced.split('\n').some(l => l.startsWith(`${esc}32m✓${esc}39m  time namespaces`)), forced).to.equal(true)
    expect(forced).to.include(`${esc}32mUsable:`)
    expect(mycli(['criu', 'check'], {FORCE_COLOR: '1', NO_COLOR: '1'}).stdout).not.to.include(esc)
    expect(mycli(['criu', 'check', '--json'], {FORCE_COLOR: '1'}).stdout).not.to.include(esc)
  })

  it('criu check: a CRIU that cannot run on this kernel is not usable, with the reason and the way out (exit 1)', () => {
    const bad = unusableCriu()
    const r = mycli(['criu', 'check', '--json', '--criu-path', bad.path])
    expect(r.code, r.stderr).to.equal(1)
    const report = JSON.parse(r.stdout)
    expect(report).to.include({path: bad.path, source: '--criu-path', usable: false, version: bad.version})
    expect(report.reasons.join('\n')).to.match(bad.real ? /criu check: (cannot run on this kernel: kerndat \(.+\) failed|its own `criu check` fails)/ : /criu check: cannot run on this kernel: kerndat \(vDSO\) failed/)
    expect(report.wayOut).to.match(/use CRIU 4\.2 or newer: pass --criu-path or set CRIU_PATH/)
    for (const f of ['timeNamespaces', 'externalNetNs', 'lazyPages']) expect(report.features[f], f).to.equal(false)
    const human = mycli(['criu', 'check', '--criu-path', bad.path])
    expect(human.code).to.equal(1)
    expect(flat(human.stdout)).to.match(/Not usable here: criu check: .*Way out: use CRIU 4\.2 or newer/)
  })

  it('checkpoint refuses that CRIU before any work (found on PATH): exit 1, path, version, what is wrong, the way out; nothing frozen or written', async () => {
    const bad = unusableCriu()
    const {root} = await startTree()
    const images = join(tempDir('ckpt-out-'), 'ck')
    const r = mycli(['checkpoint', String(root), '-D', images], {CRIU_PATH: '', PATH: `${bad.dir}:/usr/bin:/bin`})
    expect(r.code, r.stderr).to.equal(1)
    const err = expectOneCleanError(r)
    expect(err).to.include(`CRIU ${bad.version} at ${bad.path} (found on PATH) `)
    if (!bad.real) expect(err).to.include('cannot run on this kernel: kerndat (vDSO) failed (vdso: Unexpected rt vDSO area bounds)')
    expect(err).to.match(/Hint: use CRIU 4\.2 or newer: pass --criu-path or set CRIU_PATH \(Debian family: /)
    expect(state(root), 'not frozen').to.match(/^[RS]$/)
    expect(existsSync(images), 'no images folder').to.equal(false)
  })

  it('restore refuses that CRIU before any work (from CRIU_PATH): exit 1, the checkpoint untouched, nothing restored', async () => {
    const ckpt = await checkpoint()
    const digest = folderDigest(ckpt.dir)
    const bad = unusableCriu()
    const r = mycli(['restore', '-D', ckpt.dir], {CRIU_PATH: bad.path})
    expect(r.code, r.stderr).to.equal(1)
    const err = expectOneCleanError(r)
    expect(err).to.include(`CRIU ${bad.version} at ${bad.path} (from CRIU_PATH) `)
    expect(err).to.match(/cannot run on this kernel|criu check` fails/)
    expect(folderDigest(ckpt.dir), 'the checkpoint is untouched').to.equal(digest)
    expect(alive(ckpt.pid), 'nothing restored').to.equal(false)
  })

  it('no CRIU at all (an empty PATH): criu check says so and what to do (exit 1)', () => {
    const r = mycli(['criu', 'check', '--json'], {CRIU_PATH: '', PATH: tempDir('empty-path-')})
    expect(r.code, r.stderr).to.equal(1)
    const report = JSON.parse(r.stdout)
    expect(report).to.include({path: null, usable: false, version: null})
    expect(report.reasons[0]).to.match(/^CRIU: CRIU not found on PATH .*(install CRIU|exists but is not on PATH)/)
  })

  it('criu check lists the capabilities CRIU would lack, with what each breaks', () => {
    const r = dropping('sys_resource', ['criu', 'check', '--json'])
    expect(r.code, r.stderr).to.equal(0) // CRIU still works without it, for trees of one user
    const missing = JSON.parse(r.stdout).capabilities.missing as {breaks: string; name: string}[]
    expect(missing.map(m => m.name)).to.include('CAP_SYS_RESOURCE')
    expect(missing.find(m => m.name === 'CAP_SYS_RESOURCE')!.breaks).to.match(/resource limits of processes of other users/)
    const human = dropping('sys_resource', ['criu', 'check'])
    expect(human.stdout).to.match(/capabilities\s+missing CAP_SYS_RESOURCE/)
    // without CAP_SYS_CHROOT no restore can work: not usable
    const chroot = dropping('sys_chroot', ['criu', 'check', '--json'])
    expect(chroot.code).to.equal(1)
    const report = JSON.parse(chroot.stdout)
    expect(report.usable).to.equal(false)
    expect(report.capabilities.missing.map((m: {name: string}) => m.name)).to.include('CAP_SYS_CHROOT')
  })

  it('without CAP_SYS_RESOURCE a tree with a process of another user is refused up front: the capability, the process, what to do; nothing frozen', async () => {
    const {child, root} = await startTree(65_534)
    const images = join(tempDir('ckpt-out-'), 'ck')
    const r = dropping('sys_resource', ['checkpoint', String(root), '-D', images])
    expect(r.code, r.stderr).to.equal(1)
    const err = expectOneCleanError(r)
    expect(err).to.include('checkpoint cannot work here: CRIU would run without CAP_SYS_RESOURCE, which it needs to read the resource limits of processes of another user or group')
    expect(err).to.include(`${child} sleep (uid 65534, gid 65534)`)
    expect(err).not.to.include(`${root} sleep`)
    expect(err).to.match(/Hint: run the checkpoint where root has CAP_SYS_RESOURCE .*or run every process of the tree as the user and group that run CRIU/)
    expect(state(root), 'not frozen').to.match(/^[RS]$/)
    expect(state(child!), 'not frozen').to.match(/^[RS]$/)
    expect(existsSync(images), 'no images folder').to.equal(false)
    // The same root without CAP_SYS_RESOURCE checkpoints a tree of its own user: the refusal is exact.
    const mine = await startTree()
    const ok = dropping('sys_resource', ['checkpoint', String(mine.root), '-D', join(tempDir('ckpt-out-'), 'ck'), '--leave-running'])
    expect(ok.code, ok.stderr).to.equal(0)
  })

  it('after CRIU fails with EPERM as root, the hint names the missing capability (restore without CAP_SYS_CHROOT)', async () => {
    const ckpt = await checkpoint()
    const r = dropping('sys_chroot', ['restore', '-D', ckpt.dir])
    expect(r.code, r.stderr).to.equal(1)
    const err = expectOneCleanError(r)
    expect(err).to.include('Can\'t change root: Operation not permitted')
    expect(err).to.include('Ran: CRIU ')
    expect(err).to.match(/Hint: permission denied: CRIU runs as root but without CAP_SYS_CHROOT, which it needs for restore/)
    await waitFor('nothing restored left', () => !alive(ckpt.pid))
  })
})
