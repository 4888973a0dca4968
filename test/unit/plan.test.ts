import {expect} from 'chai'

import {parseJoinNs} from '../../src/lib/join-ns.js'
import {namespaceByName} from '../../src/lib/namespaces.js'
import {CheckpointNamespaces, joinConflicts, planNamespaces} from '../../src/lib/plan.js'

const ns = (name: string) => namespaceByName(name)!
const spec = (text: string) => parseJoinNs(text, '/')

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
      remedy: 'checkpoint the process again with --external-ns net (its net namespace, veth included, is then left out of the images), and restore that with -J net',
    }])
  })

  it('a veth pair with both ends in the checkpoint: a conflict --allow-overwrite may override (CRIU creates the pair in the joined namespace)', () => {
    const pair: CheckpointNamespaces = {
      netDevices: [{name: 'lo', type: 1}, {name: 'va', peerOutside: false, type: 2}, {name: 'vb', peerOutside: false, type: 2}],
      own: [{detail: 'devices: lo (loopback), va (veth), vb (veth)', ns: ns('net')}],
    }
    expect(joinConflicts(pair, [spec('net:5')])).to.deep.equal([{
      message: '--join-ns "net:5": the checkpoint\'s own net namespace has veth devices (va, vb); CRIU would create them, with its addresses and routes, in the joined namespace',
      overridable: true,
    }])
  })

  it('finds no conflict for types the checkpoint did not have to itself', () => {
    expect(joinConflicts(ownNetWithVeth, [spec('ipc:5'), spec('time:5')])).to.deep.equal([])
    expect(joinConflicts({netDevices: [], own: []}, [spec('net:5'), spec('uts:5')])).to.deep.equal([])
  })

  it('marks a join of an external net namespace in the plan', () => {
    const rows = planNamespaces({externalNetKey: 'mycli-net-9', netDevices: [], own: []}, {emptyNs: [], joinNs: [spec('net:5')]})
    expect(rows.find(r => r.type === 'net')!.detail).to.equal('process 5 (the checkpoint\'s external net namespace "mycli-net-9")')
  })
})
