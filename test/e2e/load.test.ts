import {expect} from 'chai'

import {namespaceByName} from '../../src/lib/namespaces.js'
import {isChildSubreaper, setChildSubreaper} from '../../src/lib/native.js'
import {runRestore} from '../../src/lib/restore.js'
import {Checkpoint, checkpoint} from '../support/checkpoint.js'
import {alive, cleanup, fdCount, nsInode, requireRoot, startHolder, track} from '../support/system.js'

describe('load: 16 restores into one net namespace, 4 at a time (library, in this process)', function () {
  this.timeout(300_000)

  before(requireRoot)

  after(cleanup)

  it('all succeed, all land in that namespace, no fd growth in the parent', async () => {
    const holder = await startHolder(['net'])
    const checkpoints: Checkpoint[] = []
    for (let i = 0; i < 16; i++) checkpoints.push(await checkpoint())
    const net = namespaceByName('net')!
    const restoreOne = (c: Checkpoint) =>
      runRestore({detached: true, emptyNs: [], imagesDir: c.dir, joinNs: [{ns: net, target: {kind: 'pid', pid: holder.pid}}]})

    // one warm-up restore loads the native module and caches the breakpoint probe
    const warm = await restoreOne(checkpoints.shift()!)
    track(warm.pid)
    const fdsBefore = fdCount()
    const pids: number[] = []
    const queue = [...checkpoints]
    const worker = async () => {
      for (let c = queue.shift(); c; c = queue.shift()) {
        const result = await restoreOne(c)
        pids.push(track(result.pid))
        expect(result.pid).to.equal(c.pid)
      }
    }

    await Promise.all([worker(), worker(), worker(), worker()])
    expect(pids).to.have.length(15)
    for (const pid of [warm.pid, ...pids]) {
      expect(alive(pid)).to.equal(true)
      expect(nsInode(pid, 'net')).to.equal(nsInode(holder.pid, 'net'))
    }

    expect(fdCount(), 'open fds of this process').to.equal(fdsBefore)
  })

  it('leaves the host process\'s own subreaper setting as it found it', async () => {
    const net = namespaceByName('net')!
    const holder = await startHolder(['net'])
    for (const hostIsSubreaper of [true, false]) {
      setChildSubreaper(hostIsSubreaper)
      const c = await checkpoint()
      const result = await runRestore({detached: true, emptyNs: [], imagesDir: c.dir, joinNs: [{ns: net, target: {kind: 'pid', pid: holder.pid}}]})
      track(result.pid)
      expect(isChildSubreaper()).to.equal(hostIsSubreaper)
    }
  })
})
