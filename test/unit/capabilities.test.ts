import {expect} from 'chai'

import {
  capabilityByName,
  capabilityForFailure,
  checkpointCapabilityProblems,
  criuCapabilities,
  CRIU_CAPABILITIES,
  hasAdminCapability,
  missingCapabilities,
  TreeProcess,
} from '../../src/lib/capabilities.js'
import {hintFor, permissionHint} from '../../src/lib/criu.js'

const ALL = (1n << 41n) - 1n
/** Root on these VMs: every capability but CAP_SYS_RESOURCE (bit 24). */
const VM_ROOT = 0x1_FF_FE_FF_FF_FFn
const cap = (name: string) => capabilityByName(name)!
const without = (set: bigint, ...names: string[]) => names.reduce((s, n) => s & ~(1n << BigInt(cap(n).bit)), set)
const proc = (pid: number, uid: number, gid = uid, capabilities = 0n): TreeProcess => ({capabilities, comm: `p${pid}`, gids: [gid, gid, gid, gid], pid, uids: [uid, uid, uid, uid]})
const status = (eff: string, bnd = eff, inh = '0000000000000000') => `Name:\tnode\nCapInh:\t${inh}\nCapPrm:\t${eff}\nCapEff:\t${eff}\nCapBnd:\t${bnd}\n`

describe('capabilities (pure)', () => {
  it('has one row per capability CRIU uses, with the kernel\'s bit numbers', () => {
    const bits = Object.fromEntries(CRIU_CAPABILITIES.map(c => [c.name, c.bit]))
    expect(bits).to.include({CAP_CHECKPOINT_RESTORE: 40, CAP_DAC_OVERRIDE: 1, CAP_NET_ADMIN: 12, CAP_SETGID: 6, CAP_SETUID: 7})
    expect(bits).to.include({CAP_SYS_ADMIN: 21, CAP_SYS_CHROOT: 18, CAP_SYS_PTRACE: 19, CAP_SYS_RESOURCE: 24})
    for (const c of CRIU_CAPABILITIES) expect(c.breaks, c.name).to.have.length.above(20)
  })

  it('reads the set CRIU will get: a root parent passes its bounding and inheritable sets through execve', () => {
    expect(criuCapabilities(status('000001fffeffffff'), 0)).to.equal(VM_ROOT)
    // our effective set is smaller than the bounding set: CRIU still gets the bounding set
    expect(criuCapabilities(status('0000000000200000', '000001ffffffffff'), 0)).to.equal(ALL)
    expect(criuCapabilities(status('0000000000000000', '000001ffffffffff'), 1000)).to.equal(0n)
    expect(hasAdminCapability(status('0000000000200000'))).to.equal(true)
    expect(hasAdminCapability('nothing')).to.equal(false)
  })

  it('lists what a set lacks; CAP_SYS_ADMIN stands in for CAP_CHECKPOINT_RESTORE', () => {
    expect(missingCapabilities(ALL)).to.deep.equal([])
    expect(missingCapabilities(VM_ROOT).map(c => c.name)).to.deep.equal(['CAP_SYS_RESOURCE'])
    expect(missingCapabilities(without(ALL, 'CAP_CHECKPOINT_RESTORE')).map(c => c.name)).to.deep.equal([])
    expect(missingCapabilities(without(ALL, 'CAP_CHECKPOINT_RESTORE', 'CAP_SYS_ADMIN')).map(c => c.name)).to.deep.equal(['CAP_SYS_ADMIN', 'CAP_CHECKPOINT_RESTORE'])
  })

  it('refuses up front what the kernel will refuse: limits of other users without CAP_SYS_RESOURCE, seizing without CAP_SYS_PTRACE', () => {
    const self = {gid: 0, uid: 0}
    const nginx = [proc(100, 0, 0, VM_ROOT), proc(101, 33, 33, 0n), proc(102, 33, 33, 0n)]
    const [problem, ...rest] = checkpointCapabilityProblems(nginx, VM_ROOT, self)
    expect(rest).to.deep.equal([])
    expect(problem.capability.name).to.equal('CAP_SYS_RESOURCE')
    expect(problem.processes.map(p => p.pid)).to.deep.equal([101, 102])
    // workers as root: nothing to refuse; with the capability: nothing either
    expect(checkpointCapabilityProblems([proc(100, 0), proc(101, 0)], VM_ROOT, self)).to.deep.equal([])
    expect(checkpointCapabilityProblems(nginx, ALL, self)).to.deep.equal([])
    // another group alone is enough (prlimit compares the GIDs too)
    expect(checkpointCapabilityProblems([proc(100, 0, 33)], VM_ROOT, self)[0].processes.map(p => p.pid)).to.deep.equal([100])
    // a saved UID that differs counts
    expect(checkpointCapabilityProblems([{...proc(100, 0), uids: [0, 0, 33, 0]}], VM_ROOT, self)).to.have.length(1)
    // without CAP_SYS_PTRACE: processes of other users, and processes with capabilities CRIU lacks
    const noPtrace = without(ALL, 'CAP_SYS_PTRACE')
    const problems = checkpointCapabilityProblems([proc(100, 0, 0, ALL), proc(101, 0, 0, 0n), proc(102, 33, 0, 0n)], noPtrace, self)
    expect(problems.map(p => [p.capability.name, p.processes.map(q => q.pid)])).to.deep.equal([['CAP_SYS_PTRACE', [100, 102]]])
  })

  it('names the capability a failed CRIU lacked, from its log', () => {
    const rlimit = 'Error (criu/cr-dump.c:389): Can\'t get rlimit 0: Operation not permitted'
    expect(capabilityForFailure(rlimit, [cap('CAP_SYS_RESOURCE')]).map(c => c.name)).to.deep.equal(['CAP_SYS_RESOURCE'])
    expect(capabilityForFailure('Error (criu/files.c:1418): Can\'t change root: Operation not permitted', [cap('CAP_SYS_RESOURCE'), cap('CAP_SYS_CHROOT')]).map(c => c.name)).to.deep.equal(['CAP_SYS_CHROOT'])
    // nothing in the log points at one: the missing ones that break everything, else all missing
    expect(capabilityForFailure('Operation not permitted', [cap('CAP_SYS_RESOURCE'), cap('CAP_SYS_ADMIN')]).map(c => c.name)).to.deep.equal(['CAP_SYS_ADMIN'])
    expect(capabilityForFailure('Operation not permitted', [cap('CAP_NET_ADMIN')]).map(c => c.name)).to.deep.equal(['CAP_NET_ADMIN'])
  })

  it('hints after EPERM: the missing capability when root, "run as root" when not', () => {
    // The lines CRIU 4.2.1 printed here dumping nginx with www-data workers (issue 16).
    const log = [
      'Error (criu/util.c:1534): rlimit: Can\'t setup RLIMIT_NOFILE for self: Operation not permitted',
      'Error (criu/cr-dump.c:389): Can\'t get rlimit 0: Operation not permitted',
    ].join('\n')
    const missing = missingCapabilities(VM_ROOT)
    const hint = hintFor(log, () => ({missing, root: true}))
    expect(hint).to.match(/^permission denied: CRIU runs as root but without CAP_SYS_RESOURCE, which it needs for checkpoint: reading the resource limits/)
    expect(hintFor(log, () => ({missing, root: false}))).to.equal('permission denied: run as root')
    expect(permissionHint(log, {missing: [], root: true})).to.match(/although CRIU runs as root with every capability it uses: a security module/)
    // the harmless line alone is no permission problem
    expect(hintFor(log.split('\n')[0], () => ({missing, root: true}))).to.equal(undefined)
  })
})
