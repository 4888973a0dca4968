/**
 * The scan against the running kernel and the real CRIU: a process holding each kind of
 * anonymous-inode object, as /proc shows it here. What the scan lets through, CRIU dumps;
 * what it refuses, CRIU fails on.
 */
import {expect} from 'chai'
import {spawn, spawnSync} from 'node:child_process'
import {existsSync, readFileSync} from 'node:fs'
import {join} from 'node:path'

import {scanTree} from '../../src/lib/undumpable.js'
import {mycli} from '../support/checkpoint.js'
import {
  alive, cleanup, criuPath, flat, REPO, requireRoot, tempDir, track, waitFor,
} from '../support/system.js'

const FIXTURE = join(REPO, 'test', 'fixtures', 'kernel-objects.py')
const DUMPABLE = 'eventfd,epoll,signalfd,inotify,timerfd,pidfd,memfd'

/** A Python process holding `kinds`; with `asChild`, it is the child of a shell that is the tree's root. */
async function holding(kinds: string, asChild = false): Promise<{pid: number; root: number}> {
  const ready = join(tempDir('objects-'), 'ready')
  const argv = asChild ? ['sh', '-c', `python3 ${FIXTURE} ${kinds} ${ready} & wait`] : ['python3', FIXTURE, kinds, ready]
  const child = spawn('setsid', argv, {stdio: 'ignore'})
  const root = track(child.pid!)
  child.once('exit', () => {})
  await waitFor('the objects to be made', () => existsSync(ready) && readFileSync(ready, 'utf8') === 'ready', 15_000)
  const pid = asChild ? Number(readFileSync(`/proc/${root}/task/${root}/children`, 'utf8').trim().split(' ')[0]) : root
  track(pid)
  return {pid, root}
}

/** CRIU itself, with --leave-running: exit status and its error lines. */
function criuDump(pid: number): {errors: string; status: null | number} {
  const dir = tempDir('criu-raw-')
  const r = spawnSync(criuPath(), ['dump', '-t', String(pid), '-D', dir, '--leave-running', '-o', 'dump.log', '-v4'], {encoding: 'utf8'})
  const log = readFileSync(join(dir, 'dump.log'), 'utf8')
  return {errors: log.split('\n').filter(l => l.includes('Error') && !l.includes('rlimit')).join('\n'), status: r.status}
}

describe('the scan for objects CRIU cannot dump (this kernel, real CRIU)', function () {
  this.timeout(120_000)

  before(requireRoot)

  afterEach(cleanup)

  it(`lets through the anonymous-inode kinds CRIU dumps (${DUMPABLE}); CRIU dumps them`, async () => {
    const {pid} = await holding(DUMPABLE)
    expect(scanTree(pid)).to.deep.equal([])
    const r = mycli(['checkpoint', String(pid), '-D', join(tempDir(), 'ckpt'), '--leave-running'])
    expect(r.code, r.stderr).to.equal(0)
    expect(alive(pid)).to.equal(true)
  })

  for (const [kind, what, criuSays] of [
    // one ring, two fds: Python's mmap keeps a dup of the fd it maps
    ['io_uring', 'an io_uring ring (fds ', 'Unknown shit 600 (anon_inode:[io_uring])'],
    ['userfaultfd', 'a userfaultfd (fd ', 'anon_inode:[userfaultfd]'],
  ]) {
    it(`refuses ${kind} (exit 2, nothing frozen), which CRIU itself fails on`, async () => {
      const {pid} = await holding(`eventfd,${kind}`)
      const r = mycli(['checkpoint', String(pid), '-D', join(tempDir(), 'ckpt')])
      expect(r.code, r.stderr).to.equal(2)
      expect(flat(r.stderr)).to.include(`process ${pid} (python3`)
      expect(flat(r.stderr)).to.include(what)
      expect(alive(pid)).to.equal(true)
      const raw = criuDump(pid)
      expect(raw.status, 'CRIU fails too').to.equal(1)
      expect(raw.errors).to.include(criuSays)
    })
  }

  it('finds a ring in a child of the tree\'s root (children of every thread)', async () => {
    const {pid, root} = await holding('io_uring', true)
    expect(pid).not.to.equal(root)
    const found = scanTree(root)
    expect(found.map(o => ({kind: o.kind, pid: o.pid}))).to.deep.equal([{kind: '[io_uring]', pid}])
    expect(found[0].fds.length).to.be.greaterThan(0)
    expect(found[0].mappings).to.equal(1)
    const r = mycli(['checkpoint', String(root), '-D', join(tempDir(), 'ckpt'), '--dry-run'])
    expect(r.code).to.equal(2)
    expect(flat(r.stderr)).to.include(`process ${pid} (python3`)
  })
})
