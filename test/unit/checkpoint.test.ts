import {expect} from 'chai'

import {netnsAdvice} from '../../src/lib/checkpoint.js'
import {namespaceByName} from '../../src/lib/namespaces.js'

const net = namespaceByName('net')!
const advise = (request: {externalNs?: typeof net[]; leaveRunning?: boolean; networkLock?: 'iptables' | 'nftables' | 'skip'}, locks: {iptables: boolean; nftables?: boolean}) =>
  netnsAdvice({externalNs: [], pid: 7, ...request}, {locks, netInode: 99})

describe('checkpoint advice for a tree in a network namespace of its own (pure)', () => {
  it('says to leave the namespace out for a pod restore, and that the default lock works where iptables is', () => {
    const {notes, problem} = advise({}, {iptables: true})
    expect(problem).to.equal(undefined)
    expect(notes).to.have.length(2)
    expect(notes[0]).to.include('process 7 is in a network namespace of its own (inode 99)').and.include('checkpoint it with --external-ns net')
    expect(notes[1]).to.equal('CRIU locks that network namespace while it dumps (by default with iptables, which works here) and leaves it locked afterwards, so that peers see no reset: anything else in it gets no packet in or out from then on (the restore recreates the namespace from the images; with --external-ns net the tree could be restored into this one, which unlocks it)')
  })

  it('with --leave-running: CRIU unlocks when done, and says so', () => {
    expect(advise({leaveRunning: true}, {iptables: true}).notes[1]).to.equal('CRIU locks that network namespace while it dumps (by default with iptables, which works here) and unlocks it when done')
  })

  it('with --external-ns net: the namespace left out is still locked, and stays locked until a restore into it (any lock but skip)', () => {
    const locked = 'CRIU locks the network namespace of process 7 (inode 99; left out of the images, but locked all the same) while it dumps'
    const until = 'and leaves it locked afterwards, so that peers see no reset: anything else in it gets no packet in or out until a restore into it (restore -J net:PID, PID a process still in it) unlocks it; a restore elsewhere leaves it locked'
    expect(advise({externalNs: [net]}, {iptables: true})).to.deep.equal({notes: [`${locked} (by default with iptables, which works here) ${until}`]})
    expect(advise({externalNs: [net], networkLock: 'nftables'}, {iptables: false, nftables: true})).to.deep.equal({notes: [`${locked} (with --network-lock nftables) ${until}`]})
  })

  it('says nothing when --external-ns net and --network-lock skip were given (nothing is locked)', () => {
    expect(advise({externalNs: [net], networkLock: 'skip'}, {iptables: false})).to.deep.equal({notes: []})
  })

  it('refuses a lock that cannot work here, naming the ones that do (nftables only when CRIU said so)', () => {
    const withNft = advise({}, {iptables: false, nftables: true}).problem!
    expect(withNft.exitCode).to.equal(1)
    expect(withNft.message).to.equal([
      'process 7 is in a network namespace of its own, which CRIU locks while it dumps, by default with iptables:',
      'that cannot work here (iptables-restore is not on PATH). Nothing was frozen',
    ].join(' '))
    expect(withNft.hint).to.match(/^pass --network-lock nftables \(works here\), or --network-lock skip .*, or install iptables; and to restore it later/)
    expect(withNft.hint).to.match(/into a pod's or container's network namespace, add --external-ns net$/)
    const without = advise({externalNs: [net]}, {iptables: false, nftables: false}).problem!
    expect(without.message).to.include('which CRIU locks while it dumps (also with --external-ns net), by default with iptables')
    expect(without.hint).to.match(/^pass --network-lock skip \(no lock: .*\), or install iptables$/)
    const nft = advise({externalNs: [net], networkLock: 'nftables'}, {iptables: true, nftables: false}).problem!
    expect(nft.message).to.include('with --network-lock nftables: that cannot work here (this CRIU\'s check says nftables locking is not supported here)')
    expect(nft.hint).to.match(/^pass --network-lock iptables \(works here\), or --network-lock skip/)
  })
})
