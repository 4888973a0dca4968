/**
 * restore --lazy-pages with the real CRIU: a Python workload holding known data is checkpointed,
 * restored lazily into a holder's net namespace, and its memory is checksummed afterwards. The
 * failure cases hold the daemon (SIGSTOP) once the restore has begun, so that the tree is
 * restored with its pages still missing; then the daemon is killed, or the command interrupted
 * or timed out. (Stopping the daemon before the restore has finished blocks the restore itself:
 * the restorer faults on lazy pages too. So the daemon is stopped the moment the restore CRIU
 * has exited, with 256 MiB still to deliver.)
 */
import {expect} from 'chai'
import {ChildProcess, spawn, spawnSync} from 'node:child_process'
import {chmodSync, existsSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync} from 'node:fs'
import {dirname, join} from 'node:path'

import {folderDigest, mycli} from '../support/checkpoint.js'
import {
  alive, BIN, cleanup, criuPath, flat, keptWorkDir, nsInode, requireRoot, startHolder, tempDir, track, waitFor,
} from '../support/system.js'

/** Holds MiB of known data (block i is sha256(i) repeated); answers "checksum?" through files. */
const HOLDER_PY = `
import hashlib, os, sys, time
mib, out = int(sys.argv[1]), sys.argv[2]
buf = bytearray(mib << 20)
for i in range(mib):
    buf[i << 20:(i + 1) << 20] = hashlib.sha256(str(i).encode()).digest() * (1 << 15)
def answer(path):
    open(path + ".tmp", "w").write(hashlib.sha256(buf).hexdigest())
    os.rename(path + ".tmp", path)
answer(out + "/before")
while True:
    time.sleep(0.02)
    if os.path.exists(out + "/ask"):
        os.unlink(out + "/ask")
        answer(out + "/after")
`

interface MemoryCheckpoint {
  before: string
  dir: string
  out: string
  pid: number
}

/** Start the workload, wait until its data is in place, checkpoint it with CRIU. */
async function checkpointMemory(mib: number): Promise<MemoryCheckpoint> {
  const dir = tempDir('criu-lazy-ckpt-')
  const out = tempDir('criu-lazy-out-')
  const child = spawn('setsid', ['python3', '-c', HOLDER_PY, String(mib), out], {stdio: 'ignore'})
  const pid = track(child.pid!)
  const exited = new Promise(resolve => {
    child.once('exit', resolve)
  })
  await waitFor('the workload to fill its memory', () => existsSync(join(out, 'before')), 60_000)
  const dump = spawnSync(criuPath(), ['dump', '-t', String(pid), '-D', dir, '-o', 'dump.log', '-v4'], {encoding: 'utf8'})
  if (dump.status !== 0) throw new Error(`criu dump failed (${dump.status}): ${dump.stderr}`)
  await exited
  const before = readFileSync(join(out, 'before'), 'utf8')
  // The dump log is CRIU's, written at dump time; the digest below covers the rest unchanged.
  return {before, dir, out, pid}
}

/** The restored workload's checksum of its memory, asked after the restore. */
async function checksumAfter(ckpt: MemoryCheckpoint): Promise<string> {
  writeFileSync(join(ckpt.out, 'ask.tmp'), '')
  renameSync(join(ckpt.out, 'ask.tmp'), join(ckpt.out, 'ask'))
  await waitFor('the restored workload to checksum its memory', () => existsSync(join(ckpt.out, 'after')), 60_000)
  return readFileSync(join(ckpt.out, 'after'), 'utf8')
}

function cmdline(pid: number): string {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8')
  } catch {
    return ''
  }
}

/** Direct children of a process, over all its threads. */
function childrenOf(pid: number): number[] {
  const kids: number[] = []
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    try {
      kids.push(...readFileSync(`/proc/${pid}/task/${task}/children`, 'utf8').trim().split(' ').filter(Boolean).map(Number))
    } catch {
      // thread gone
    }
  }

  return kids
}

/** Run the CLI in the background, collecting its output. */
function startCli(args: string[]): {child: ChildProcess; done: Promise<{code: null | number; stderr: string; stdout: string}>} {
  const child = spawn(process.execPath, [BIN, ...args], {env: {...process.env, CRIU_PATH: criuPath()}, stdio: ['ignore', 'pipe', 'pipe']})
  track(child.pid!)
  let stdout = ''
  let stderr = ''
  child.stdout!.on('data', d => {
    stdout += d
  })
  child.stderr!.on('data', d => {
    stderr += d
  })
  const done = new Promise<{code: null | number; stderr: string; stdout: string}>(resolve => {
    child.once('close', code => resolve({code, stderr, stdout}))
  })
  return {child, done}
}

/**
 * Stop the daemon the moment the restore CRIU has exited: the tree then runs with most of its
 * lazy pages missing. Returns the daemon's PID, checked still holding pages.
 */
async function holdDaemon(cli: ChildProcess, treePid: number): Promise<number> {
  let daemon: number | undefined
  let restore: number | undefined
  await waitFor('the lazy-pages daemon and the restore', () => {
    const kids = childrenOf(cli.pid!)
    daemon = kids.find(k => cmdline(k).includes('\u0000lazy-pages\u0000'))
    // The restore is CRIU's RPC worker (`criu swrk FD`, retitled "restore --rpc" once it serves).
    restore = kids.find(k => k !== daemon && /\bswrk\b|restore --rpc/.test(cmdline(k)))
    return daemon !== undefined && restore !== undefined
  }, 60_000)
  track(daemon!)
  await waitFor('the restore CRIU to exit', () => !alive(restore!), 60_000)
  process.kill(daemon!, 'SIGSTOP')
  expect(alive(daemon!), 'the daemon was still delivering pages when stopped').to.equal(true)
  const log = readFileSync(`/proc/${daemon}/cwd/lazy-pages.log`, 'utf8')
  expect(log, 'not every page had arrived when the daemon was stopped').not.to.match(/UFFD transferred pages/)
  expect(alive(treePid), 'the tree was restored').to.equal(true)
  return daemon!
}

describe('restore --lazy-pages (real CRIU, real userfaultfd)', function () {
  this.timeout(240_000)

  before(requireRoot)

  afterEach(cleanup)

  it('restores 128 MiB into a joined netns, waits for every page, and the memory checksums equal', async () => {
    const ckpt = await checkpointMemory(128)
    const digest = folderDigest(ckpt.dir)
    const holder = await startHolder(['net'])
    // Its own work dir, so that the daemon's log stays for the test to read (a temporary one goes after success).
    const work = tempDir('criu-lazy-work-')
    const r = mycli(['restore', '-D', ckpt.dir, '-J', `net:${holder.pid}`, '--lazy-pages', '--json', '-W', work])
    expect(r.code, r.stderr).to.equal(0)
    const result = JSON.parse(r.stdout)
    const pid = track(result.pid)
    expect(pid).to.equal(ckpt.pid)
    expect(nsInode(pid, 'net')).to.equal(nsInode(holder.pid, 'net'))
    expect(result.namespaces).to.deep.equal([{inode: nsInode(holder.pid, 'net'), joined: true, source: `pid ${holder.pid}`, type: 'net'}])
    const lazy = result.lazyPages
    expect(lazy.waited).to.equal(true)
    expect(lazy.bytes).to.be.at.least(128 << 20).and.below(160 << 20)
    expect(lazy.restoredMs).to.be.above(0).and.at.most(lazy.allPagesMs)
    expect(alive(lazy.daemon.pid), 'the daemon exited once all pages were delivered').to.equal(false)
    expect(readFileSync(lazy.daemon.logFile, 'utf8')).to.match(/UFFD transferred pages: \((\d+)\/\1\)/)
    expect(r.stderr, 'no progress bar in a pipe').to.equal('')
    expect(await checksumAfter(ckpt)).to.equal(ckpt.before)
    expect(folderDigest(ckpt.dir), 'the images are unchanged').to.equal(digest)
  })

  it('--no-wait-pages returns once restored; the daemon finishes alone and the memory arrives', async () => {
    const ckpt = await checkpointMemory(64)
    const digest = folderDigest(ckpt.dir)
    const r = mycli(['restore', '-D', ckpt.dir, '--lazy-pages', '--no-wait-pages'])
    expect(r.code, r.stderr).to.equal(0)
    const m = /the daemon \(PID (\d+)\) is still delivering [\d.]+ MiB; log: (\S+)\./.exec(r.stdout)
    expect(m, r.stdout).not.to.equal(null)
    const daemon = track(Number(m![1]))
    track(ckpt.pid)
    expect(await checksumAfter(ckpt)).to.equal(ckpt.before)
    await waitFor('the daemon to exit by itself', () => !alive(daemon), 60_000)
    expect(readFileSync(m![2], 'utf8')).to.match(/UFFD transferred pages: \((\d+)\/\1\)/)
    expect(folderDigest(ckpt.dir)).to.equal(digest)
    // The daemon's folder outlives the command (its socket and log were there); the test removes it.
    rmSync(dirname(m![2]), {force: true, recursive: true})
  })

  it('a daemon killed before all pages arrived: the tree is ended, exit 1, images unchanged', async () => {
    const ckpt = await checkpointMemory(256)
    const digest = folderDigest(ckpt.dir)
    const cli = startCli(['restore', '-D', ckpt.dir, '--lazy-pages'])
    const daemon = await holdDaemon(cli.child, ckpt.pid)
    process.kill(daemon, 'SIGKILL')
    const r = await cli.done
    expect(r.code, r.stderr).to.equal(1)
    expect(flat(r.stderr)).to.include('the lazy-pages daemon ended before all pages arrived (SIGKILL); the restored tree, if any, was ended')
    expect(keptWorkDir(r.stderr), 'the failed restore keeps its folder and names its log').to.match(/oclif-plugin-criu-restore-/)
    expect(alive(ckpt.pid), 'the restored tree is gone').to.equal(false)
    expect(folderDigest(ckpt.dir)).to.equal(digest)
  })

  it('SIGINT while pages arrive: tree and daemon ended, exit 130, images unchanged', async () => {
    const ckpt = await checkpointMemory(256)
    const digest = folderDigest(ckpt.dir)
    const cli = startCli(['restore', '-D', ckpt.dir, '--lazy-pages'])
    const daemon = await holdDaemon(cli.child, ckpt.pid)
    cli.child.kill('SIGINT')
    const r = await cli.done
    expect(r.code, r.stderr).to.equal(130)
    expect(flat(r.stderr)).to.include('interrupted by SIGINT')
    expect(keptWorkDir(r.stderr), 'the interrupted restore keeps its folder and names its log').to.match(/oclif-plugin-criu-restore-/)
    expect(alive(ckpt.pid)).to.equal(false)
    expect(alive(daemon)).to.equal(false)
    expect(folderDigest(ckpt.dir)).to.equal(digest)
  })

  it('--timeout while pages arrive: tree and daemon ended, exit 1', async () => {
    const ckpt = await checkpointMemory(256)
    const digest = folderDigest(ckpt.dir)
    const cli = startCli(['restore', '-D', ckpt.dir, '--lazy-pages', '--timeout', '8'])
    const daemon = await holdDaemon(cli.child, ckpt.pid)
    const r = await cli.done
    expect(r.code, r.stderr).to.equal(1)
    expect(flat(r.stderr)).to.include('CRIU did not finish within 8 s; it was stopped and the restored tree, if any, was ended first')
    expect(keptWorkDir(r.stderr), 'the stopped restore keeps its folder and names its log').to.match(/oclif-plugin-criu-restore-/)
    expect(alive(ckpt.pid)).to.equal(false)
    expect(alive(daemon)).to.equal(false)
    expect(folderDigest(ckpt.dir)).to.equal(digest)
  })

  it('a daemon that cannot start: exit 1 with its error, no restore run', async () => {
    const ckpt = await checkpointMemory(8)
    // A copy whose pstree.img ends inside its first record: the daemon reads it first and fails
    // before it listens, so the restore never runs.
    const broken = tempDir('criu-lazy-broken-')
    for (const f of readdirSync(ckpt.dir)) writeFileSync(join(broken, f), readFileSync(join(ckpt.dir, f)).subarray(0, f === 'pstree.img' ? 12 : undefined))
    const work = tempDir('criu-lazy-work-')
    // --no-verify-images: the damage is for the daemon to meet (the structure check would refuse it first).
    const r = mycli(['restore', '-D', broken, '--lazy-pages', '--no-verify-images', '-W', work])
    expect(r.code, r.stderr).to.equal(1)
    expect(flat(r.stderr)).to.include('the lazy-pages daemon did not start')
    expect(existsSync(join(work, 'restore.log')), 'the restore did not run').to.equal(false)
    expect(alive(ckpt.pid)).to.equal(false)
  })

  it('refuses before anything starts: a --work-dir with a lazy-pages.socket, --no-wait-pages alone, --no-restore-detached', async () => {
    const ckpt = await checkpointMemory(8)
    const work = tempDir('criu-lazy-work-')
    writeFileSync(join(work, 'lazy-pages.socket'), '')
    const cases: [string[], string][] = [
      [['--lazy-pages', '-W', work], `--work-dir ${JSON.stringify(work)}: it holds a lazy-pages.socket already`],
      [['--no-wait-pages'], '--no-wait-pages: only with --lazy-pages'],
      [['--lazy-pages', '--no-restore-detached'], '--lazy-pages with --no-restore-detached: not supported'],
    ]
    for (const [args, message] of cases) {
      const r = mycli(['restore', '-D', ckpt.dir, ...args])
      expect(r.code, r.stderr).to.equal(2)
      expect(flat(r.stderr)).to.include(message)
    }

    expect(readdirSync(work)).to.deep.equal(['lazy-pages.socket'])
    expect(alive(ckpt.pid)).to.equal(false)
  })

  it('says when lazy pages cannot work here, before anything starts (a CRIU whose check fails)', () => {
    // A CRIU that reports 4.2.1 and fails `criu check --feature uffd-noncoop` the way CRIU does on a
    // kernel without userfaultfd; every call is logged, so the test sees that nothing else ran.
    const dir = tempDir('criu-lazy-fake-')
    const calls = join(dir, 'calls')
    const fake = join(dir, 'criu')
    writeFileSync(fake, `#!/bin/sh\necho "$*" >> ${calls}\ncase "$1" in\n--version) echo "Version: 4.2.1";;\ncheck) if [ "$2" = --feature ]; then echo "Error (criu/uffd.c:263): uffd: Lazy pages are not available: Function not implemented" >&2; exit 1; fi; echo "Looks good.";;\n*) exit 3;;\nesac\n`)
    chmodSync(fake, 0o755)
    const images = tempDir('criu-lazy-img-')
    writeFileSync(join(images, 'inventory.img'), Buffer.from([0x16, 0x31, 0x31, 0x58, 0, 0, 0, 0]))
    // --no-verify-images: the folder is a stand-in; what is tested is the lazy-pages check.
    const r = spawnSync(process.execPath, [BIN, 'restore', '-D', images, '--lazy-pages', '--no-verify-images', '--criu-path', fake], {encoding: 'utf8', env: {...process.env, XDG_CACHE_HOME: dir}})
    expect(r.status, r.stderr).to.equal(1)
    expect(flat(r.stderr)).to.include('--lazy-pages cannot work here: `criu check --feature uffd-noncoop` fails here')
    expect(flat(r.stderr)).to.include('Lazy pages are not available: Function not implemented')
    // CRIU was asked its version and its checks, and never asked to restore.
    const asked = readFileSync(calls, 'utf8').trim().split('\n')
    expect(asked).to.include('check --feature uffd-noncoop')
    expect(asked.filter(c => !c.startsWith('check') && c !== '--version'), 'nothing but --version and checks').to.deep.equal([])
  })
})
