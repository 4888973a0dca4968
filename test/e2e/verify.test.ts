import {expect} from 'chai'
import {spawn, spawnSync} from 'node:child_process'
import {existsSync, readdirSync, readFileSync} from 'node:fs'
import {basename, join} from 'node:path'

import {FailedError, InterruptedError} from '../../src/lib/errors.js'
import {parseJoinNs} from '../../src/lib/join-ns.js'
import {isChildSubreaper, setChildSubreaper, waitPid} from '../../src/lib/native.js'
import {RestoreRequest, runRestore} from '../../src/lib/restore.js'
import {RestoredTree} from '../../src/lib/restored-tree.js'
import {mycli} from '../support/checkpoint.js'
import {
  alive, cleanup, criuPath, flat, keptWorkDir, nsInode, pluginFolders, REPO, requireRoot, startHolder, tempDir, track, waitFor,
} from '../support/system.js'

/**
 * A tree that shows whether any of its code ran: every process (and one extra thread) appends
 * a line to `log` every 10 ms. The parent forks two children; all are in one session.
 */
const TICKING_TREE = `
import os, sys, threading, time
log = open(sys.argv[1], "a", buffering=1)
def tick(tag):
    while True:
        log.write(tag + "\\n")
        time.sleep(0.01)
kids = []
for i in range(sys.argv[3] == "tree" and 2 or 0):
    pid = os.fork()
    if pid == 0:
        if i == 1:
            threading.Thread(target=tick, args=("thread",), daemon=True).start()
        tick("child%d" % i)
    kids.append(pid)
open(sys.argv[2], "w").write(" ".join(map(str, kids)))
tick("parent")
`

interface TreeCheckpoint {
  dir: string
  log: string
  /** The parent first, then its children by PID. */
  pids: number[]
}

const lines = (file: string) => readFileSync(file, 'utf8').split('\n').filter(Boolean).length
const sleep = (ms: number) => new Promise(r => {
  setTimeout(r, ms)
})

/** Gone entirely: not running, not a zombie, the PID free for the next restore. */
const gone = (pid: number) => !existsSync(`/proc/${pid}`)

/**
 * Start the ticking workload (a tree of three processes, or the parent alone), checkpoint it
 * with the real CRIU (which ends it), and reap every process of it. While it runs this test
 * process is a child subreaper, so the children come to it, not to PID 1 (which does not reap
 * here), when CRIU ends the tree.
 */
async function checkpointTicking(shape: 'single' | 'tree'): Promise<TreeCheckpoint> {
  const dir = tempDir('criu-ckpt-')
  const work = tempDir('criu-tick-')
  const log = join(work, 'ticks.log')
  const ready = join(work, 'ready')
  setChildSubreaper(true)
  try {
    const child = spawn('setsid', ['python3', '-c', TICKING_TREE, log, ready, shape], {stdio: 'ignore'})
    const parent = track(child.pid!)
    const exited = new Promise(resolve => {
      child.once('exit', resolve)
    })
    await waitFor('the workload to start', () => existsSync(ready) && (shape === 'single' || readFileSync(ready, 'utf8').includes(' ')))
    const kids = readFileSync(ready, 'utf8').split(' ').filter(Boolean).map(Number)
    for (const kid of kids) track(kid)
    await waitFor('every process to tick', () => lines(log) > 10)
    const dump = spawnSync(criuPath(), ['dump', '-t', String(parent), '-D', dir, '-o', 'dump.log', '-v4'], {encoding: 'utf8'})
    if (dump.status !== 0) throw new Error(`criu dump failed (${dump.status}): ${dump.stderr}`)
    await exited
    await Promise.all(kids.map(kid => waitPid(kid).catch(() => {})))
    return {dir, log, pids: [parent, ...kids.sort((a, b) => a - b)]}
  } finally {
    setChildSubreaper(false)
  }
}

/**
 * A stand-in CRIU that joins another namespace than the one it is given: it rewrites the
 * restore request's join_ns entries to the decoy's namespace for each type in `swap`, then
 * runs the real CRIU (test/fixtures/swapping-criu.py). That is what a CRIU bug or a race in
 * between would do. The environment for mycli: CRIU_PATH is the stand-in.
 */
const swappingCriu = (swap: Record<string, number>): NodeJS.ProcessEnv => ({
  CRIU_PATH: join(REPO, 'test', 'fixtures', 'swapping-criu.py'),
  REAL_CRIU: criuPath(),
  SWAP_JOINS: JSON.stringify(Object.fromEntries(Object.entries(swap).map(([type, pid]) => [type, `/proc/${pid}/ns/${type}`]))),
})

/** This process's children (CRIU, or a task of the tree, if one were left behind). */
const ourChildren = () => readdirSync(`/proc/${process.pid}/task`).flatMap(tid =>
  readFileSync(`/proc/${process.pid}/task/${tid}/children`, 'utf8').trim().split(' ').filter(Boolean).map(Number))

const commandLines = (pids: number[]) => pids.map(pid => `${pid}: ${readFileSync(`/proc/${pid}/cmdline`, 'utf8').replaceAll('\0', ' ')}`)

/** A library request (no oclif) for the checkpoint in `dir`, joining `joins`. */
const request = (dir: string, joins: string[], more: Partial<RestoreRequest> = {}): RestoreRequest => ({
  criuPath: criuPath(), detached: true, emptyNs: [], imagesDir: dir, joinNs: joins.map(j => parseJoinNs(j, process.cwd())), ...more,
})

describe('restore verifies every task before it runs (real CRIU, post-restore stage)', function () {
  this.timeout(180_000)

  before(requireRoot)

  afterEach(cleanup)

  it('a tree of three processes (one with two threads) restored with -J net -J uts: every task verified, --json per task', async () => {
    const ckpt = await checkpointTicking('tree')
    const holder = await startHolder(['net', 'uts'])
    const r = mycli(['restore', '-D', ckpt.dir, '-J', `net:${holder.pid}`, '-J', `uts:/proc/${holder.pid}/ns/uts`, '--json'])
    expect(r.code, r.stderr).to.equal(0)
    const out = JSON.parse(r.stdout)
    for (const pid of ckpt.pids) track(pid)
    const net = nsInode(holder.pid, 'net')
    const uts = nsInode(holder.pid, 'uts')
    expect(out.tasks.map((t: {pid: number}) => t.pid)).to.deep.equal(ckpt.pids)
    for (const task of out.tasks) {
      expect(task.namespaces).to.deep.equal([
        {inode: net, source: `pid ${holder.pid}`, type: 'net'},
        {inode: uts, source: `/proc/${holder.pid}/ns/uts`, type: 'uts'},
      ])
    }

    expect(out.tasks[2].threads, 'the second child\'s extra thread was checked too').to.have.length(1)
    for (const pid of ckpt.pids) {
      expect(nsInode(pid, 'net'), `net of ${pid}`).to.equal(net)
      expect(nsInode(pid, 'uts'), `uts of ${pid}`).to.equal(uts)
    }

    const before = lines(ckpt.log)
    await waitFor('the restored tree to tick again', () => lines(ckpt.log) > before + 10)
  })

  it('the text output names every verified task', async () => {
    const ckpt = await checkpointTicking('tree')
    const holder = await startHolder(['net'])
    const r = mycli(['restore', '-D', ckpt.dir, '-J', `net:${holder.pid}`])
    expect(r.code, r.stderr).to.equal(0)
    for (const pid of ckpt.pids) track(pid)
    expect(r.stdout).to.include(`every task verified before it was resumed: PID ${ckpt.pids.join(', ')} (3 processes, 4 threads)`)
  })

  for (const swapped of ['net', 'uts'] as const) {
    it(`a CRIU that joins another ${swapped} namespace: exit 1 before resume, the task named, nothing left, no tick after the checkpoint`, async () => {
      const ckpt = await checkpointTicking('tree')
      const holder = await startHolder(['net', 'uts'])
      const decoy = await startHolder(['net', 'uts'], 'decoy')
      const ticks = lines(ckpt.log)
      const work = tempDir()
      const r = mycli(
        ['restore', '-D', ckpt.dir, '-J', `net:${holder.pid}`, '-J', `uts:${holder.pid}`, '-W', work],
        swappingCriu({[swapped]: decoy.pid}),
      )
      expect(r.code, r.stderr).to.equal(1)
      const err = flat(r.stderr)
      expect(err).to.include(`task ${ckpt.pids[0]} of the restored tree is in ${swapped} namespace inode ${nsInode(decoy.pid, swapped)}, not the one pinned from pid ${holder.pid} (inode ${nsInode(holder.pid, swapped)}); it was stopped before it ran`)
      expect(err).to.include('nothing was resumed, and the tree was ended')
      // Which CRIU ran, as for any failure once CRIU started ("Ran: CRIU 4.2.1 at PATH (from CRIU_PATH)").
      expect(err).to.match(/Ran: CRIU \d+\.\d+\.\d+ at \S+ \(from CRIU_PATH\)/)
      expect(r.stderr, 'no stack trace').not.to.match(/\n\s+at .+:\d+:\d+/)
      for (const pid of ckpt.pids) expect(gone(pid), `task ${pid} is gone`).to.equal(true)
      await sleep(200)
      expect(lines(ckpt.log), 'no process of the tree ran after the checkpoint').to.equal(ticks)
      expect(readFileSync(join(work, 'restore.log'), 'utf8')).to.include('Aborting restore due to post-restore script ret code')
      // The decoy's hostname was not touched either (the checkpoint had no UTS namespace of its own).
      expect(spawnSync('nsenter', ['-t', String(decoy.pid), '-u', 'hostname'], {encoding: 'utf8'}).stdout.trim()).to.equal('decoy')
    })
  }

  it('the same stand-in CRIU with the right targets restores (the stand-in itself is sound)', async () => {
    const ckpt = await checkpointTicking('single')
    const holder = await startHolder(['net'])
    const r = mycli(['restore', '-D', ckpt.dir, '-J', `net:${holder.pid}`], swappingCriu({}))
    expect(r.code, r.stderr).to.equal(0)
    track(ckpt.pids[0])
    expect(nsInode(ckpt.pids[0], 'net')).to.equal(nsInode(holder.pid, 'net'))
  })

  it('the gate is a question on CRIU\'s RPC socket: asked at post-restore, before resume; nothing of it on disk', async () => {
    const ckpt = await checkpointTicking('single')
    const holder = await startHolder(['net'])
    const work = tempDir()
    const before = pluginFolders()
    const r = mycli(['restore', '-D', ckpt.dir, '-J', `net:${holder.pid}`, '-W', work])
    expect(r.code, r.stderr).to.equal(0)
    track(ckpt.pids[0])
    const log = readFileSync(join(work, 'restore.log'), 'utf8').split('\n')
    const stage = log.findIndex(l => l.includes('Running post-restore scripts'))
    expect(stage, 'CRIU ran its post-restore stage').to.be.above(-1)
    expect(log[stage + 1], 'and asked this process over RPC').to.match(/\bRPC$/)
    expect(log.findIndex(l => l.includes('Restore finished successfully. Tasks resumed.')), 'resumed after the answer').to.be.above(stage)
    expect(log.join('\n'), 'no action script was run').not.to.match(/Running \S+ scripts\n\S*\s+\[\//)
    expect(pluginFolders(), 'no folder of the plugin left in the temp folder').to.deep.equal(before)
    expect(readdirSync(work).sort(), 'the work folder holds CRIU\'s own files only').to.deep.equal(['restore.log', 'stats-restore'])
    expect(alive(ckpt.pids[0])).to.equal(true)
  })

  describe('more checks at the same stage (RestoreRequest.beforeResume, the library API)', () => {
    it('a check gets the frozen tree (every PID and thread) after the joins were verified; resolving resumes it', async () => {
      const ckpt = await checkpointTicking('tree')
      const holder = await startHolder(['net'])
      const ticks = lines(ckpt.log)
      const seen: {ticks: number; tree: RestoredTree}[] = []
      const result = await runRestore(request(ckpt.dir, [`net:${holder.pid}`], {
        beforeResume: [async tree => {
          seen.push({ticks: lines(ckpt.log), tree})
        }],
      }))
      for (const pid of ckpt.pids) track(pid)
      expect(seen).to.have.length(1)
      expect(seen[0].tree.root).to.equal(ckpt.pids[0])
      expect(seen[0].tree.processes.map(p => p.pid)).to.deep.equal(ckpt.pids)
      expect(seen[0].tree.processes[2].tids).to.have.length(2)
      expect(seen[0].ticks, 'the tree had not run when the check saw it').to.equal(ticks)
      expect(result.tasks.map(t => t.pid)).to.deep.equal(ckpt.pids)
      expect(isChildSubreaper(), 'the subreaper setting is back').to.equal(false)
      // The detached root came to this process (the subreaper during the restore): end and reap it.
      process.kill(ckpt.pids[0], 'SIGKILL')
      await waitPid(ckpt.pids[0])
    })

    it('a check that rejects: its error, the tree never ran and is gone, only the work folder with CRIU\'s log kept', async () => {
      const ckpt = await checkpointTicking('tree')
      const ticks = lines(ckpt.log)
      const foldersBefore = pluginFolders()
      const refused = await runRestore(request(ckpt.dir, [], {
        beforeResume: [async tree => {
          throw new FailedError(`page images do not match (checked ${tree.processes.length} processes)`)
        }],
      })).then(() => {}, (error: Error) => error)
      expect(refused).to.be.instanceOf(FailedError)
      // The check's own words first; the library adds where CRIU's log was kept.
      expect(refused!.message.split('\n')[0]).to.equal('page images do not match (checked 3 processes)')
      expect(refused!.message).to.match(/\nLog: \S+\/restore\.log$/)
      for (const pid of ckpt.pids) expect(gone(pid), `task ${pid} is gone`).to.equal(true)
      await sleep(200)
      expect(lines(ckpt.log)).to.equal(ticks)
      const kept = keptWorkDir(refused!.message)
      expect(kept, 'the work folder named in the error').to.be.a('string')
      expect(pluginFolders()).to.deep.equal([...foldersBefore, basename(kept!)].sort())
    })

    it('--timeout while a check is still running (CRIU waiting for the answer): exit 1, CRIU and the tree gone, the work folder kept with the log', async () => {
      const ckpt = await checkpointTicking('single')
      const holder = await startHolder(['uts'])
      const ticks = lines(ckpt.log)
      const foldersBefore = pluginFolders()
      let checking = false
      const started = Date.now()
      const error = await runRestore(request(ckpt.dir, [`uts:${holder.pid}`], {
        beforeResume: [() => {
          checking = true
          return new Promise(() => {}) // never settles: only the timeout ends the restore
        }],
        timeout: 8,
      })).then(() => {}, (error_: Error) => error_)
      expect(checking, 'the restore reached the post-restore stage').to.equal(true)
      expect(error).to.be.instanceOf(FailedError)
      expect(error!.message).to.include('CRIU did not finish within 8 s; it was stopped and nothing restored is left running')
      expect(Date.now() - started).to.be.below(30_000)
      const running = () => ourChildren().filter(pid => pid !== holder.proc.pid && alive(pid))
      await waitFor('our killed children to be gone', () => running().length === 0, 3000).catch(() => {})
      expect(commandLines(running()), 'no CRIU, no task left as our child').to.deep.equal([])
      expect(gone(ckpt.pids[0])).to.equal(true)
      const kept = keptWorkDir(error!.message)
      expect(kept, 'the work folder named in the error').to.be.a('string')
      expect(pluginFolders(), 'only the work folder with CRIU\'s log kept').to.deep.equal([...foldersBefore, basename(kept!)].sort())
      await sleep(200)
      expect(lines(ckpt.log), 'the workload ran no code after the checkpoint').to.equal(ticks)
    })

    it('interrupted while a check is still running: CRIU and the tree are gone', async () => {
      const ckpt = await checkpointTicking('single')
      const holder = await startHolder(['uts'])
      const ticks = lines(ckpt.log)
      let interrupt: ((signal: NodeJS.Signals) => void) | undefined
      let checking = false
      const run = runRestore(request(ckpt.dir, [`uts:${holder.pid}`], {
        beforeResume: [() => {
          checking = true
          return new Promise(() => {}) // never settles: only the interruption ends the restore
        }],
      }), {
        onSignal(handler) {
          interrupt = handler
          return () => {}
        },
      })
      const error = run.then(() => {}, (error_: Error) => error_)
      const running = () => ourChildren().filter(pid => pid !== holder.proc.pid && alive(pid))
      let criu: number[]
      try {
        await waitFor('the check to start', () => checking, 30_000)
        criu = running()
      } finally {
        interrupt!('SIGINT') // also when waiting failed: a restore held forever would hang the suite
      }

      expect(criu, 'CRIU, waiting for the answer, is our only child').to.have.length(1)
      expect(await error).to.be.instanceOf(InterruptedError)
      // A killed process can still be on its way out for a moment (state R/D, empty cmdline) on a busy machine.
      await waitFor('our killed children to be gone', () => running().length === 0, 3000).catch(() => {})
      expect(commandLines(running()), 'no CRIU, no task left as our child').to.deep.equal([])
      expect(gone(ckpt.pids[0])).to.equal(true)
      await sleep(200)
      expect(lines(ckpt.log)).to.equal(ticks)
    })
  })
})
