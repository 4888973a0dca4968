import {expect} from 'chai'
import {spawn} from 'node:child_process'
import {
  chmodSync, closeSync, openSync, readdirSync, readFileSync, readlinkSync, writeFileSync,
} from 'node:fs'
import {Socket} from 'node:net'
import {join} from 'node:path'

import {CriuRun} from '../../src/lib/criu-run.js'
import {FailedError} from '../../src/lib/errors.js'
import {
  ExitWatch, isChildSubreaper, MessageSocket, NEW_PIPE, setChildSubreaper, StartError, startProgram, waitPid, watchExit,
} from '../../src/lib/native.js'
import {
  alive, cleanup, criuPath, REPO, requireRoot, tempDir, track, untrack, waitFor,
} from '../support/system.js'

/** This process's open fds, sorted (the one readdir itself opens is gone again by the time we compare). */
const ownFds = () => readdirSync('/proc/self/fd').map(Number).sort((a, b) => a - b)

/**
 * What each open fd of `sleep` process `pid` points at, by number, once it sleeps: posix_spawn
 * returns at exec, while the dynamic loader may still hold ld.so.cache or a library open.
 */
async function fdTargets(pid: number): Promise<Map<number, string>> {
  await waitFor(`sleep ${pid} to sleep`, () => readFileSync(`/proc/${pid}/wchan`, 'utf8').includes('nanosleep'))
  const dir = `/proc/${pid}/fd`
  return new Map(readdirSync(dir).map(fd => [Number(fd), readlinkSync(join(dir, fd))]))
}

/** A field of /proc/PID/status. */
const statusField = (pid: number, name: string) => new RegExp(`^${name}:\\s*(\\S+)`, 'm').exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]

/** Session ID: field 6 of /proc/PID/stat (after the parenthesised name). */
const sessionOf = (pid: number) => Number(readFileSync(`/proc/${pid}/stat`, 'utf8').replace(/^.*\) /s, '').split(' ')[3])

/** The PIDs of this process's children, over all its threads. */
function ownChildren(): number[] {
  return readdirSync('/proc/self/task').flatMap(tid => readFileSync(`/proc/self/task/${tid}/children`, 'utf8').trim().split(' ').filter(Boolean).map(Number))
}

/**
 * Run `body` as a child subreaper: a grandchild orphaned meanwhile becomes our child, to end by
 * PID and reap (PID 1 here does not reap orphans).
 */
async function asSubreaper<T>(body: () => Promise<T>): Promise<T> {
  const was = isChildSubreaper()
  setChildSubreaper(true)
  try {
    return await body()
  } finally {
    setChildSubreaper(was)
  }
}

/** End an orphan that became our child (see asSubreaper) by PID, and reap it. */
async function endOrphan(pid: number): Promise<void> {
  await waitFor(`process ${pid} to become our child`, () => ownChildren().includes(pid))
  process.kill(pid, 'SIGKILL')
  expect(await waitPid(pid)).to.deep.equal({code: null, signal: 9})
  untrack(pid)
}

/** A Node process running `script`; its stdout once it has exited, and how long that took. */
async function runNode(script: string, stdio: ('ignore' | 'inherit' | 'pipe')[]): Promise<{code: null | number; ms: number; out: string}> {
  const start = Date.now()
  const helper = spawn(process.execPath, ['-e', script], {stdio})
  let out = ''
  helper.stdout!.on('data', (chunk: Buffer) => {
    out += chunk.toString()
  })
  const code = await new Promise<null | number>(resolve => {
    helper.once('close', resolve)
  })
  return {code, ms: Date.now() - start, out}
}

/** A started program, tracked for cleanup and watched (so that it is reaped whatever the test does). */
function started(file: string, args: string[], options: Parameters<typeof startProgram>[2]): {pid: number; pipes: number[]; stderr?: number; watch: ExitWatch} {
  const s = startProgram(file, args, options)
  track(s.pid)
  const watch = watchExit(s.pid)
  watch.exited.then(() => untrack(s.pid), () => {})
  return {...s, watch}
}

/** Everything written to a pipe's read end until the writers are gone. */
function readAll(fd: number): Promise<string> {
  const stream = new Socket({fd, readable: true, writable: false})
  let text = ''
  stream.on('data', (chunk: Buffer) => {
    text += chunk.toString()
  })
  return new Promise(resolve => {
    stream.once('close', () => resolve(text))
  })
}

describe('starting a program without forking Node', () => {
  before(requireRoot)

  afterEach(cleanup)

  describe('startProgram (posix_spawn)', () => {
    it('gives the child exactly 0, 1, 2 and the given fds at 3, 4, 5, in order', async () => {
      const ns = openSync('/proc/self/ns/net', 'r')
      const rpc = new MessageSocket()
      try {
        const child = started('sleep', ['100'], {env: process.env, fds: [ns, NEW_PIPE, rpc.theirs], stderrPipe: true})
        const fds = await fdTargets(child.pid)
        expect([...fds.keys()].sort(), JSON.stringify([...fds])).to.deep.equal([0, 1, 2, 3, 4, 5])
        expect(fds.get(0)).to.equal('/dev/null')
        expect(fds.get(1)).to.equal('/dev/null')
        // Each is the very file we hold: the same pipe, namespace or socket inode.
        expect(fds.get(2)).to.equal(readlinkSync(`/proc/self/fd/${child.stderr}`))
        expect(fds.get(3)).to.equal(readlinkSync('/proc/self/ns/net'))
        expect(fds.get(4)).to.equal(readlinkSync(`/proc/self/fd/${child.pipes[0]}`))
        expect(fds.get(5)).to.equal(readlinkSync(`/proc/self/fd/${rpc.theirs}`))
        expect(fds.get(2)).to.match(/^pipe:/)
        expect(fds.get(4)).to.match(/^pipe:/)
        expect(fds.get(4)).not.to.equal(fds.get(2))
        expect(fds.get(5)).to.match(/^socket:/)
        child.watch.kill('SIGKILL')
        await child.watch.exited
        for (const fd of [child.stderr!, ...child.pipes]) closeSync(fd)
      } finally {
        closeSync(ns)
        rpc.handedOver()
        await rpc.close()
      }
    })

    it('places fds whose numbers are themselves targets (3, 4 given as 4, 3) without clobbering one with the other', async () => {
    // Two fds of ours, one namespace each; given in reverse order of their numbers.
      const a = openSync('/proc/self/ns/uts', 'r')
      const b = openSync('/proc/self/ns/ipc', 'r')
      try {
        const child = started('sleep', ['100'], {env: process.env, fds: [b, a]})
        const fds = await fdTargets(child.pid)
        expect(fds.get(3)).to.equal(readlinkSync('/proc/self/ns/ipc'))
        expect(fds.get(4)).to.equal(readlinkSync('/proc/self/ns/uts'))
        expect(fds.get(2)).to.equal('/dev/null')
        child.watch.kill('SIGKILL')
        await child.watch.exited
      } finally {
        closeSync(a)
        closeSync(b)
      }
    })

    it('passes no other fd, not even one of ours without close-on-exec', async () => {
    // A Node process that holds fd 20 without close-on-exec (inherited through its stdio; Node
    // marks inherited fds up to 15 close-on-exec at start-up), and starts sleep with no fds:
    // sleep must have 0, 1, 2 only.
      const script = `const n = require(${JSON.stringify(join(REPO, 'dist/src/lib/native.js'))});
      const flags = require('node:fs').readFileSync('/proc/self/fdinfo/20', 'utf8');
      const s = n.startProgram('sleep', ['100'], {env: process.env, fds: []});
      process.stdout.write(JSON.stringify({pid: s.pid, flags}));`
      await asSubreaper(async () => {
        const helper = await runNode(script, ['ignore', 'pipe', 'inherit', ...Array.from({length: 17}, () => 'ignore' as const), 'pipe'])
        expect(helper.code).to.equal(0)
        const {flags, pid} = JSON.parse(helper.out) as {flags: string; pid: number}
        track(pid)
        // The helper's fd 20 had no close-on-exec (fdinfo flags are octal; O_CLOEXEC is 02000000).
        const fdFlags = Number.parseInt(/^flags:\s*(\d+)/m.exec(flags)![1], 8)
        expect(fdFlags & 0o200_0000, 'the helper held fd 20 without close-on-exec').to.equal(0)
        expect([...(await fdTargets(pid)).keys()].sort()).to.deep.equal([0, 1, 2])
        await endOrphan(pid)
      })
    })

    it('starts the child with every signal at its default and none blocked, though Node ignores SIGPIPE', async () => {
      const sigpipe = 1n << 12n // SIGPIPE is 13: bit 12
      expect(BigInt(`0x${statusField(process.pid, 'SigIgn')}`) & sigpipe, 'this process ignores SIGPIPE').to.equal(sigpipe)
      const child = started('sleep', ['100'], {env: process.env, fds: []})
      expect(statusField(child.pid, 'SigIgn')).to.equal('0000000000000000')
      expect(statusField(child.pid, 'SigBlk')).to.equal('0000000000000000')
      child.watch.kill('SIGKILL')
      await child.watch.exited
    })

    it('starts a new session only when asked', async () => {
      const own = started('sleep', ['100'], {env: process.env, fds: [], newSession: true})
      const shared = started('sleep', ['100'], {env: process.env, fds: []})
      expect(sessionOf(own.pid)).to.equal(own.pid)
      expect(sessionOf(shared.pid)).to.equal(sessionOf(process.pid))
      for (const c of [own, shared]) c.watch.kill('SIGKILL')
      await Promise.all([own.watch.exited, shared.watch.exited])
    })

    it('reports a missing program as ENOENT and leaves no fd open and no process behind', () => {
      const fdsBefore = ownFds()
      const childrenBefore = ownChildren()
      const ns = openSync('/proc/self/ns/net', 'r')
      try {
        expect(() => startProgram('/nonexistent/criu', ['--version'], {env: process.env, fds: [ns, NEW_PIPE], stderrPipe: true}))
        .to.throw(StartError, 'cannot run /nonexistent/criu: No such file or directory (ENOENT)')
        .with.property('errno', 2)
        expect(() => startProgram('no-such-program-here', [], {env: {PATH: '/usr/bin:/bin'}, fds: []})).to.throw(StartError).with.property('code', 'ENOENT')
      } finally {
        closeSync(ns)
      }

      expect(ownFds()).to.deep.equal(fdsBefore)
      expect(ownChildren()).to.deep.equal(childrenBefore)
    })

    it('reports a file that is not executable as EACCES, leaving no fd open', () => {
      const file = join(tempDir(), 'not-executable')
      writeFileSync(file, '#!/bin/sh\n')
      chmodSync(file, 0o644)
      const fdsBefore = ownFds()
      expect(() => startProgram(file, [], {env: process.env, fds: [NEW_PIPE], stderrPipe: true}))
      .to.throw(StartError, `cannot run ${file}: Permission denied (EACCES)`)
      .with.property('errno', 13)
      expect(ownFds()).to.deep.equal(fdsBefore)
    })

    it('reports exit code and stderr, and a SIGKILL as signal SIGKILL; kill() after the reap sends nothing', async () => {
      const failing = started('sh', ['-c', 'echo went wrong >&2; exit 3'], {env: process.env, fds: [], stderrPipe: true})
      const [text, exit] = await Promise.all([readAll(failing.stderr!), failing.watch.exited])
      expect(exit).to.deep.equal({code: 3, signal: null})
      expect(text).to.equal('went wrong\n')

      const killed = started('sleep', ['100'], {env: process.env, fds: []})
      expect(killed.watch.kill('SIGKILL')).to.equal(true)
      expect(await killed.watch.exited).to.deep.equal({code: null, signal: 'SIGKILL'})
      expect(alive(killed.pid)).to.equal(false)
      expect(killed.watch.kill('SIGKILL'), 'the PID is free and may be someone else\'s now').to.equal(false)
    })
  })

  describe('CriuRun on startProgram', () => {
    it('runs the real CRIU (--version) to exit code 0', async () => {
      const run = new CriuRun({argv: ['--version'], criu: criuPath(), inheritFds: []}, process.env)
      track(run.pid!)
      expect(await run.exited).to.deep.equal({code: 0, signal: null})
      untrack(run.pid!)
      expect(run.stderr).to.equal('')
    })

    it('turns a CRIU that cannot be started into a FailedError from `exited`, leaving no fd open', async () => {
      const fdsBefore = ownFds()
      const run = new CriuRun({argv: ['swrk', '4'], criu: '/nonexistent/criu', inheritFds: []}, process.env, {rpc: true, statusPipe: true})
      expect(run.pid).to.equal(undefined)
      const error = await run.exited.then(() => {}, (error_: unknown) => error_)
      expect(error).to.be.instanceOf(FailedError)
      expect((error as Error).message).to.equal('cannot start CRIU (/nonexistent/criu): cannot run /nonexistent/criu: No such file or directory (ENOENT)')
      await run.rpc!.close()
      expect(ownFds()).to.deep.equal(fdsBefore)
    })

    it('stops a run by SIGKILL and reports the signal', async () => {
      const run = new CriuRun({argv: ['100'], criu: '/bin/sleep', inheritFds: []}, process.env)
      track(run.pid!)
      run.stop(new FailedError('test stop'))
      expect(await run.exited).to.deep.equal({code: null, signal: 'SIGKILL'})
      untrack(run.pid!)
      expect(run.stopped?.message).to.equal('test stop')
    })

    it('lets a released detached run outlive this process: nothing keeps the event loop alive', async () => {
    // A Node process starts a detached run (status pipe too, as the lazy-pages daemon has),
    // releases it and must then exit by itself while the run goes on.
      const script = `const {CriuRun} = require(${JSON.stringify(join(REPO, 'dist/src/lib/criu-run.js'))});
      const run = new CriuRun({argv: ['100'], criu: '/bin/sleep', inheritFds: []}, process.env, {detached: true, statusPipe: true});
      run.release();
      process.stdout.write(String(run.pid));`
      await asSubreaper(async () => {
        const helper = await runNode(script, ['ignore', 'pipe', 'inherit'])
        expect(helper.code).to.equal(0)
        expect(helper.ms, 'the helper exited at once').to.be.below(10_000)
        const pid = track(Number(helper.out))
        expect(alive(pid), 'the released run still runs').to.equal(true)
        expect(sessionOf(pid), 'in a session of its own').to.equal(pid)
        await endOrphan(pid)
      })
    })
  })
})
