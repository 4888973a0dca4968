import {expect} from 'chai'
import fc from 'fast-check'

import {FailedError} from '../../src/lib/errors.js'
import {namespaceByName} from '../../src/lib/namespaces.js'
import {judgeJoins, Observation, PinnedIdentity, RestoredTree} from '../../src/lib/restored-tree.js'

const net = namespaceByName('net')!
const uts = namespaceByName('uts')!
const DEV = 4

const PINS: PinnedIdentity[] = [
  {dev: DEV, ino: 4_026_532_001, ns: net, source: 'pid 77'},
  {dev: DEV, ino: 4_026_532_002, ns: uts, source: '/run/uts/blue'},
]

/** Root 100 with a child 101 that has a second thread 102. */
const TREE: RestoredTree = {processes: [{pid: 100, tids: [100]}, {pid: 101, tids: [101, 102]}], root: 100}

/** What the kernel would show when every thread is where it was asked to be. */
function allRight(tree: RestoredTree): Observation[] {
  return tree.processes.flatMap(({pid, tids}) => tids.flatMap(tid => PINS.map(pin => ({dev: pin.dev, ino: pin.ino, ns: pin.ns, pid, tid}))))
}

function message(fn: () => unknown): string {
  try {
    fn()
  } catch (error) {
    expect(error).to.be.instanceOf(FailedError)
    return (error as Error).message
  }

  throw new Error('expected a FailedError')
}

describe('the post-restore check of every task', () => {
  describe('judgeJoins: every task of the restored tree against the pinned targets (pure)', () => {
    it('all threads in the pinned namespaces: one entry per process, threads listed, every pin', () => {
      expect(judgeJoins(TREE, allRight(TREE), PINS)).to.deep.equal([
        {namespaces: [{inode: 4_026_532_001, source: 'pid 77', type: 'net'}, {inode: 4_026_532_002, source: '/run/uts/blue', type: 'uts'}], pid: 100, threads: []},
        {namespaces: [{inode: 4_026_532_001, source: 'pid 77', type: 'net'}, {inode: 4_026_532_002, source: '/run/uts/blue', type: 'uts'}], pid: 101, threads: [102]},
      ])
    })

    const WRONG: [string, (o: Observation) => Observation, string][] = [
      ['another inode in the root',
        o => (o.pid === 100 && o.ns === net ? {...o, ino: 4_026_531_840} : o),
        'task 100 of the restored tree is in net namespace inode 4026531840, not the one pinned from pid 77 (inode 4026532001); it was stopped before it ran'],
      ['another inode in a child',
        o => (o.pid === 101 && o.ns === uts ? {...o, ino: 4_026_531_838} : o),
        'task 101 of the restored tree is in uts namespace inode 4026531838, not the one pinned from /run/uts/blue (inode 4026532002); it was stopped before it ran'],
      ['only a second thread elsewhere',
        o => (o.tid === 102 && o.ns === net ? {...o, ino: 4_026_531_840} : o),
        'task 101 (thread 102) of the restored tree is in net namespace inode 4026531840, not the one pinned from pid 77 (inode 4026532001); it was stopped before it ran'],
      ['the same inode on another device',
        o => (o.pid === 101 && o.ns === net ? {...o, dev: 9} : o),
        'task 101 of the restored tree is in net namespace inode 4026532001, not the one pinned from pid 77 (inode 4026532001) (device 9, pinned device 4); it was stopped before it ran'],
    ]
    for (const [what, change, expected] of WRONG) {
      it(`refuses ${what}, naming task, type, inode found and inode pinned`, () => {
        expect(message(() => judgeJoins(TREE, allRight(TREE).map(o => change(o)), PINS))).to.equal(expected)
      })
    }

    it('a zombie (no namespaces left, runs no code) is not a mismatch', () => {
      const seen = allRight(TREE).map(o => (o.pid === 101 ? {ns: o.ns, pid: o.pid, tid: o.tid} : o))
      expect(judgeJoins(TREE, seen, PINS)).to.have.length(2)
    })

    it('property: any one wrong inode anywhere in any tree is refused, and names that task', () => {
      const tree = fc.array(fc.integer({max: 6, min: 1}), {maxLength: 8, minLength: 1}).map((threads): RestoredTree => {
        let next = 1000
        const processes = threads.map(n => {
          const pid = next
          next += n
          return {pid, tids: Array.from({length: n}, (_, i) => pid + i)}
        })
        return {processes, root: processes[0].pid}
      })
      fc.assert(fc.property(tree, fc.nat(), fc.integer({max: 4_026_539_999, min: 4_026_531_000}), (t, pick, ino) => {
        const seen = allRight(t)
        const victim = seen[pick % seen.length]
        const pin = PINS.find(p => p.ns === victim.ns)!
        fc.pre(ino !== pin.ino)
        const text = message(() => judgeJoins(t, seen.map(o => (o === victim ? {...o, ino} : o)), PINS))
        expect(text).to.match(new RegExp(`^task ${victim.pid}\\b`))
        expect(text).to.include(`${victim.ns.name} namespace inode ${ino}, not the one pinned from ${pin.source} (inode ${pin.ino})`)
      }))
    })
  })
})
