import {expect} from 'chai'
import {readdirSync} from 'node:fs'

import {
  flagsOf,
  JOINABLE,
  namespaceByFlag,
  namespaceByName,
  NAMESPACES,
  namespacesIn,
  NamespaceListError,
  parseNamespaceList,
} from '../../src/lib/namespaces.js'

describe('namespace table', () => {
  it('has the eight Linux types with distinct single-bit CLONE_NEW* flags', () => {
    expect(NAMESPACES.map(d => d.name)).to.deep.equal(['cgroup', 'ipc', 'mnt', 'net', 'pid', 'time', 'user', 'uts'])
    const flags = NAMESPACES.map(d => d.flag)
    expect(new Set(flags).size).to.equal(8)
    for (const f of flags) expect(f & (f - 1), `0x${f.toString(16)} is one bit`).to.equal(0)
  })

  it('names a /proc/<pid>/ns entry that exists on this kernel for every type', () => {
    const entries = readdirSync('/proc/self/ns')
    for (const d of NAMESPACES) expect(entries).to.include(d.procEntry)
  })

  it('explains every type it refuses to join', () => {
    for (const d of NAMESPACES.filter(x => !x.joinable)) expect(d.note, d.name).to.be.a('string').and.not.empty
    expect(JOINABLE.map(d => d.name)).to.deep.equal(['ipc', 'mnt', 'net', 'time', 'user', 'uts'])
  })

  it('maps names and flags both ways', () => {
    for (const d of NAMESPACES) {
      expect(namespaceByName(d.name)).to.equal(d)
      expect(namespaceByFlag(d.flag)).to.equal(d)
    }

    expect(namespaceByName('NET')).to.equal(undefined)
    expect(namespaceByFlag(0)).to.equal(undefined)
    expect(namespaceByFlag(0x40_00_00_00 | 0x04_00_00_00)).to.equal(undefined)
  })

  it('turns flag sets into descriptor lists and back', () => {
    for (let mask = 0; mask < 256; mask++) {
      const subset = NAMESPACES.filter((_, i) => mask & (1 << i))
      expect(namespacesIn(flagsOf(subset))).to.deep.equal(subset)
    }

    expect(namespacesIn(0x1)).to.deep.equal([])
  })

  describe('parseNamespaceList', () => {
    it('parses, orders and de-duplicates', () => {
      expect(parseNamespaceList('uts,net,ipc,net').map(d => d.name)).to.deep.equal(['ipc', 'net', 'uts'])
      expect(parseNamespaceList(' net ').map(d => d.name)).to.deep.equal(['net'])
    })

    const bad: [string, string][] = [
      ['netx', 'unknown namespace "netx" (expected one of: cgroup, ipc, mnt, net, pid, time, user, uts)'],
      ['', 'empty namespace name in "" (expected one of: cgroup, ipc, mnt, net, pid, time, user, uts)'],
      ['net,,uts', 'empty namespace name in "net,,uts" (expected one of: cgroup, ipc, mnt, net, pid, time, user, uts)'],
    ]
    for (const [input, message] of bad) {
      it(`refuses ${JSON.stringify(input)}`, () => {
        expect(() => parseNamespaceList(input)).to.throw(NamespaceListError, message)
      })
    }

    it('refuses types outside the allowed list, naming the allowed ones', () => {
      const net = NAMESPACES.filter(d => d.name === 'net')
      expect(() => parseNamespaceList('uts', net)).to.throw('namespace "uts" is not supported here (expected one of: net)')
    })
  })
})
