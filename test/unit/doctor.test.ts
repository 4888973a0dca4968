import {expect} from 'chai'
// eslint-disable-next-line unicorn/import-style
import {Chalk} from 'chalk'

import {parseCriuVersion} from '../../src/lib/criu.js'
import {buildReport, DOCTOR_CHECKS, DoctorContext, doctorTable, DoctorRow} from '../../src/lib/doctor.js'
import {ioUringPolicy} from '../../src/lib/undumpable.js'

/** Root on these VMs: every capability but CAP_SYS_RESOURCE. */
const VM_ROOT = 0x1_FF_FE_FF_FF_FFn

function facts(over: Partial<DoctorContext> = {}): DoctorContext {
  return {
    breakpoints: () => false,
    capabilities: VM_ROOT,
    check: {ok: true},
    feature: async name => name !== 'mem_dirty_track',
    found: {path: '/opt/criu/bin/criu', source: 'CRIU_PATH'},
    ioUring: ioUringPolicy('0\n'),
    kernel: '6.18.44',
    root: true,
    version: parseCriuVersion('Version: 4.2.1\n'),
    which: command => (command === 'nft' ? '/usr/sbin/nft' : undefined),
    ...over,
  }
}

async function breakpointsRow(version: string): Promise<string> {
  const r = await report(facts({version: parseCriuVersion(`Version: ${version}\n`)}))
  return r.checks.find(c => c.label === 'hardware breakpoints')!.says
}

async function report(ctx: DoctorContext) {
  const rows: DoctorRow[] = await Promise.all(DOCTOR_CHECKS.map(check => check(ctx)))
  return buildReport(ctx, rows, 'the way out')
}

describe('the doctor\'s report (pure, from the facts)', () => {
  it('usable with a working CRIU; every feature a boolean; missing capabilities listed with what they break', async () => {
    const r = await report(facts())
    expect(r).to.include({path: '/opt/criu/bin/criu', root: true, source: 'CRIU_PATH', usable: true, version: '4.2.1'})
    expect(r.wayOut).to.equal(undefined)
    expect(r.features).to.include({dirtyTracking: false, externalNetNs: true, hwBreakpoints: false, lazyPages: true})
    expect(r.features).to.include({networkLockIptables: false, networkLockNftables: true, timeNamespaces: true})
    expect(Object.keys(r.features)).to.have.length(7)
    expect(r.capabilities.missing.map(c => c.name)).to.deep.equal(['CAP_SYS_RESOURCE'])
  })

  it('not usable, with one reason per blocking row, when CRIU fails its own check, is too old, is missing, or we are not root', async () => {
    const failing = await report(facts({check: {ok: false, reason: 'cannot run on this kernel: kerndat (vDSO) failed'}, feature: async () => false}))
    expect(failing).to.include({usable: false, wayOut: 'the way out'})
    expect(failing.reasons).to.deep.equal(['criu check: cannot run on this kernel: kerndat (vDSO) failed'])
    // A CRIU that cannot run says nothing about the kernel: its feature rows are unknown, not "no".
    expect(failing.checks.find(c => c.label === 'time namespaces')).to.include({ok: null, value: 'unknown'})
    expect((await report(facts({version: parseCriuVersion('Version: 3.13\n')}))).reasons).to.deep.equal(['version: too old: needs 3.14 or newer'])
    const missing = await report(facts({check: undefined, findError: 'CRIU not found on PATH', found: undefined, version: undefined}))
    expect(missing).to.include({path: null, usable: false, version: null})
    expect(missing.reasons[0]).to.equal('CRIU: CRIU not found on PATH')
    expect((await report(facts({root: false}))).reasons).to.deep.equal(['root: checkpoint and restore need root (CAP_SYS_ADMIN)'])
    // a capability every restore needs makes it unusable too
    const noChroot = await report(facts({capabilities: VM_ROOT & ~(1n << 18n)}))
    expect(noChroot.usable).to.equal(false)
    expect(noChroot.reasons[0]).to.match(/^capabilities: .*CAP_SYS_CHROOT: restore/)
  })

  it('reports kernel.io_uring_disabled and what it means for checkpointing, without making CRIU unusable', async () => {
    const open = await report(facts())
    const row = open.checks.find(c => c.label === 'io_uring')!
    expect(row).to.include({ok: false, value: 'io_uring_disabled=0'})
    expect(row.says).to.include('CRIU cannot checkpoint')
    expect(row.says).to.include('launch')
    expect(open.usable).to.equal(true)
    const closed = (await report(facts({ioUring: ioUringPolicy('2\n')}))).checks.find(c => c.label === 'io_uring')!
    expect(closed).to.include({ok: true, value: 'io_uring_disabled=2'})
    const old = (await report(facts({ioUring: ioUringPolicy()}))).checks.find(c => c.label === 'io_uring')!
    expect(old.value).to.equal('no setting')
  })

  it('names the CRIU_FAULT=130 work-around only for a CRIU older than 4.2 where breakpoints do not work', async () => {
    expect(await breakpointsRow('4.1.1')).to.match(/CRIU_FAULT=130/)
    expect(await breakpointsRow('4.2.1')).to.match(/works around it by itself/)
  })

  it('renders a table that fits 80 columns and sides by side when wider, marks coloured by what they mean', async () => {
    const r = await report(facts({check: {ok: false, reason: 'its own `criu check` fails: a reason long enough to be wrapped at eighty columns and more'}}))
    const colour = new Chalk({level: 1})
    for (const width of [80, 100, 200]) {
      const lines = doctorTable(r, width, new Chalk({level: 0}))
      for (const line of lines) expect([...line].length, line).to.be.at.most(width)
      expect(lines.join('\n'), 'every row').to.include('network lock: nftables')
    }

    expect(doctorTable(r, 80, new Chalk({level: 0})).join('\n')).to.match(/✗ {2}criu check {16}fails\n {29}its own `criu check` fails:/)
    expect(doctorTable(r, 200, new Chalk({level: 0})).join('\n')).to.match(/✗ {2}criu check {16}fails {2,}its own `criu check` fails:/)
    expect(doctorTable(r, 80, colour).join('\n'), 'blocking: red').to.include('\u001B[31m✗\u001B[39m  criu check')
    const coloured = doctorTable(await report(facts()), 80, colour).join('\n')
    expect(coloured, 'a missing feature: yellow').to.include('\u001B[33m✗\u001B[39m  memory dirty tracking')
    expect(coloured, 'ok: green').to.include('\u001B[32m✓\u001B[39m  time namespaces')
  })
})
