import {expect} from 'chai'

import {commandLine} from '../../src/lib/cli-names.js'
import {parseJoinNs} from '../../src/lib/join-ns.js'
import {namespaceByName} from '../../src/lib/namespaces.js'
import {CheckpointNamespaces, conflictHint, joinConflicts, planNamespaces} from '../../src/lib/plan.js'
import {
  RestoreRequest, shownCommands, takenPidsRefusal, takenPidsWarning,
} from '../../src/lib/restore.js'

const ns = (name: string) => namespaceByName(name)!
const spec = (text: string) => parseJoinNs(text, '/')
// As the CLI that runs the tests names it (other suites in this process may have set the host's names).
const again = () => commandLine('checkpoint', 'PID -D DIR --external-ns net')
const request = (extra: Partial<RestoreRequest>): RestoreRequest => ({detached: true, emptyNs: [], imagesDir: '/ck', joinNs: [], ...extra})

describe('restore plan (pure)', () => {
  const ownNetWithVeth: CheckpointNamespaces = {
    netDevices: [{name: 'lo', type: 1}, {name: 'eth0', peerOutside: true, type: 2}],
    own: [{detail: 'devices: lo (loopback), eth0 (veth)', ns: ns('net')}, {detail: 'hostname "a"', ns: ns('uts')}],
  }

  it('names an action for each of the eight types', () => {
    const rows = planNamespaces(ownNetWithVeth, {emptyNs: [], joinNs: [spec('ipc:/run/x')]})
    expect(rows.map(r => `${r.type}=${r.action}`)).to.deep.equal([
      'cgroup=inherited', 'ipc=joined', 'mnt=inherited', 'net=restored from the images', 'pid=inherited', 'time=new', 'user=inherited', 'uts=restored from the images',
    ])
    expect(planNamespaces({netDevices: [], own: []}, {emptyNs: [ns('net')], joinNs: []}).find(r => r.type === 'net')!.action).to.equal('created empty')
  })

  it('refuses joining net, even with --allow-overwrite, when a veth\'s peer was outside the checkpoint, naming it and what works', () => {
    expect(joinConflicts(ownNetWithVeth, [spec('net:5')])).to.deep.equal([{
      message: '--join-ns "net:5": the checkpoint\'s own net namespace has the veth device eth0, whose other end was outside the checkpoint; CRIU cannot recreate it in a joined namespace ("Unknown peer net namespace"), with or without --allow-overwrite',
      overridable: false,
      remedy: `checkpoint the process again with ${again()}, which leaves its network namespace (veth included) out of the images, and restore that with -J net`,
    }])
    expect(conflictHint(joinConflicts(ownNetWithVeth, [spec('net:5')])), 'no --allow-overwrite offered').not.to.include('allow-overwrite')
  })

  it('a veth pair with both ends in the checkpoint: a conflict --allow-overwrite may override (CRIU creates the pair in the joined namespace)', () => {
    const pair: CheckpointNamespaces = {
      netDevices: [{name: 'lo', type: 1}, {name: 'va', peerOutside: false, type: 2}, {name: 'vb', peerOutside: false, type: 2}],
      own: [{detail: 'devices: lo (loopback), va (veth), vb (veth)', ns: ns('net')}],
    }
    expect(joinConflicts(pair, [spec('net:5')])).to.deep.equal([{
      message: '--join-ns "net:5": the checkpoint\'s own net namespace has veth devices (va, vb); CRIU would create them, with its addresses and routes, in the joined namespace',
      overridable: true,
      remedy: `checkpoint the process again with ${again()}, which leaves its network namespace (veth included) out of the images, and restore that with -J net`,
    }])
  })

  it('the hint names the ways that overwrite nothing first, each once, then --allow-overwrite', () => {
    const ownNet: CheckpointNamespaces = {...ownNetWithVeth, netDevices: [{name: 'lo', type: 1}]}
    const hint = conflictHint(joinConflicts(ownNet, [spec('uts:5'), spec('net:5'), spec('uts:6')]))
    expect(hint).to.equal(`restore without -J uts (the tree gets its own uts namespace back from the images); or checkpoint the process again with ${again()}, which leaves its network namespace (veth included) out of the images, and restore that with -J net; or pass --allow-overwrite to restore anyway, overwriting the joined namespace's state`)
  })

  it('finds no conflict for types the checkpoint did not have to itself', () => {
    expect(joinConflicts(ownNetWithVeth, [spec('ipc:5'), spec('time:5')])).to.deep.equal([])
    expect(joinConflicts({netDevices: [], own: []}, [spec('net:5'), spec('uts:5')])).to.deep.equal([])
  })

  it('marks a join of an external net namespace in the plan', () => {
    const rows = planNamespaces({externalNetKey: 'mycli-net-9', netDevices: [], own: []}, {emptyNs: [], joinNs: [spec('net:5')]})
    expect(rows.find(r => r.type === 'net')!.detail).to.equal('process 5 (the checkpoint\'s external net namespace "mycli-net-9")')
  })

  describe('the commands --dry-run prints for a person to run', () => {
    const facts = {criu: '/c/criu', env: {}, imagesDir: '/ck', ino: [11, 12]}

    it('names each target as given, a PID as /proc/PID/ns/TYPE, and makes its own work folder', () => {
      const {command, lazyPagesCommand} = shownCommands(request({joinNs: [spec('net:42'), spec('user:/run/u:1000:1000')]}), facts)
      expect(command).to.equal('W=$(mktemp -d) && /c/criu restore --images-dir /ck --work-dir "$W" --log-file "$W"/restore.log -v4 --pidfile "$W"/restore.pid --restore-detached --join-ns net:/proc/42/ns/net --join-ns user:/run/u,1000,1000')
      expect(lazyPagesCommand).to.equal(undefined)
    })

    it('hands an external net namespace over as fd 3; with --lazy-pages the daemon is started first in the same folder; --work-dir is used as given', () => {
      const external = shownCommands(request({joinNs: [spec('net:/run/netns/a b')], lazyPages: true}), {...facts, externalNetKey: 'k'})
      expect(external.lazyPagesCommand).to.equal('W=$(mktemp -d); /c/criu lazy-pages --images-dir /ck --work-dir "$W" --log-file "$W"/lazy-pages.log -v4 &')
      expect(external.command).to.equal('/c/criu restore --images-dir /ck --work-dir "$W" --log-file "$W"/restore.log -v4 --pidfile "$W"/restore.pid --restore-detached --lazy-pages --inherit-fd \'fd[3]:k\' 3<\'/run/netns/a b\'')
      const given = shownCommands(request({joinNs: [spec('uts:7')], workDir: '/w'}), facts)
      expect(given.command).to.equal('/c/criu restore --images-dir /ck --work-dir /w --log-file /w/restore.log -v4 --pidfile /w/restore.pid --restore-detached --join-ns uts:/proc/7/ns/uts')
    })
  })

  it('names the checkpoint PIDs taken here, by whom, five at most', () => {
    expect(takenPidsWarning([])).to.equal(undefined)
    expect(takenPidsWarning([{comm: 'sleep', pid: 42}])).to.equal('the checkpoint\'s PID 42 (sleep) is taken here: CRIU recreates every task with its PID, so the restore would be refused; end that process first')
    const seven = [1, 2, 3, 4, 5, 6, 7].map(pid => ({comm: 'w', pid: 100 + pid}))
    expect(takenPidsWarning(seven)).to.equal('the checkpoint\'s PIDs 101 (w), 102 (w), 103 (w), 104 (w), 105 (w) and 2 more are taken here: CRIU recreates every task with its PID, so the restore would be refused; end those processes first')
  })

  it('refuses a restore whose PIDs are taken (exit 2), naming them and the way out', () => {
    expect(takenPidsRefusal([])).to.equal(undefined)
    const refusal = takenPidsRefusal([{comm: 'sleep', pid: 42}, {comm: 'sleep', pid: 43}])!
    expect(refusal.exitCode).to.equal(2)
    expect(refusal.message).to.equal('the checkpoint\'s PIDs 42 (sleep), 43 (sleep) are taken here: CRIU recreates every task with its PID, and cannot while another process holds it')
    expect(refusal.hint).to.match(/^end those processes first, and restore again \(after `(\S+ )?checkpoint --leave-running`/)
  })

  it('names a zombie as one, with the parent that must reap it; killing it is not offered', () => {
    const zombie = {comm: 'sleep', pid: 4210, zombieOf: 4208}
    const refusal = takenPidsRefusal([zombie])!
    expect(refusal.message).to.equal('the checkpoint\'s PID 4210 (sleep, a zombie PID 4208 has not reaped) is taken here: CRIU recreates every task with its PID, and cannot while another process holds it')
    expect(refusal.hint).to.equal('a zombie cannot be killed: it goes once its parent (PID 4208) reaps it or ends, and restore again')
    expect(takenPidsWarning([{comm: 'sleep', pid: 42}, zombie])).to.equal('the checkpoint\'s PIDs 42 (sleep), 4210 (sleep, a zombie PID 4208 has not reaped) are taken here: CRIU recreates every task with its PID, so the restore would be refused; end that process first; a zombie cannot be killed: it goes once its parent (PID 4208) reaps it or ends')
  })
})
