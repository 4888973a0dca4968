import {expect} from 'chai'
import {spawn, spawnSync} from 'node:child_process'
import {existsSync, readdirSync, readFileSync, readlinkSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {native, setChildSubreaper, waitPid} from '../../src/lib/native.js'
import {processStat} from '../../src/lib/proc.js'
import {checkpoint, folderDigest, mycli} from '../support/checkpoint.js'
import {
  alive, cleanup, criuPath, flat, nsInode, requireRoot, startHolder, tempDir, track, waitFor,
} from '../support/system.js'

/** The restored PID from the command's output, tracked for cleanup. */
function restoredPid(stdout: string): number {
  const m = /Restored PID (\d+)/.exec(stdout)
  expect(m, stdout).not.to.equal(null)
  return track(Number(m![1]))
}

/**
 * The real CRIU run directly (to show what the plugin's refusal spares), with this process as
 * subreaper: the task CRIU kills after a failed restore comes here and is reaped, its PID free.
 */
async function criuDirect(args: string[], pid: number): Promise<null | number> {
  setChildSubreaper(true)
  try {
    const r = spawnSync(criuPath(), args, {encoding: 'utf8'})
    await waitFor(`task ${pid} to be gone or ours`, () => !existsSync(`/proc/${pid}`) || processStat(pid)?.ppid === process.pid)
    if (existsSync(`/proc/${pid}`)) await waitPid(pid).catch(() => {})
    return r.status
  } finally {
    setChildSubreaper(false)
  }
}

/** Wait until a process runs `comm` (after its shell's set-up, which exec'd it). */
async function running(pid: number, comm: string): Promise<void> {
  await waitFor(`process ${pid} to run ${comm}`, () => {
    try {
      return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === comm
    } catch {
      return false
    }
  })
}

/**
 * A holder of its own mount namespace (private propagation) in which a tmpfs covers `dir`:
 * what it sees there, no one else does. `files` are written into that tmpfs.
 */
async function mountHolder(dir: string, files: Record<string, string>): Promise<number> {
  const writes = Object.entries(files).map(([name, text]) => `printf %b '${text}' > ${dir}/${name}`).join(' && ')
  const proc = spawn('unshare', ['--mount', '--propagation', 'private', 'sh', '-c', `mount -t tmpfs holder ${dir} && ${writes || 'true'} && exec sleep 100000`], {stdio: 'ignore'})
  const pid = track(proc.pid!)
  await running(pid, 'sleep')
  return pid
}

/** The fds of a process that point at `path`. */
const fdsOn = (pid: number, path: string) => readdirSync(`/proc/${pid}/fd`).filter(fd => {
  try {
    return readlinkSync(`/proc/${pid}/fd/${fd}`) === path
  } catch {
    return false
  }
})

/** A workload alone in a new net namespace, with a veth pair from the host: `eth0` inside, `host` outside. */
async function vethWorkload(host: string): Promise<number> {
  const child = spawn('setsid', ['unshare', '--net', 'sleep', '100000'], {stdio: 'ignore'})
  const pid = track(child.pid!)
  child.once('exit', () => {}) // reaped by Node when CRIU ends it
  await running(pid, 'sleep')
  const add = spawnSync('ip', ['link', 'add', host, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', String(pid)], {encoding: 'utf8'})
  expect(add.status, add.stderr).to.equal(0)
  return pid
}

const reaped = (pid: number) => waitFor(`process ${pid} to be reaped`, () => !existsSync(`/proc/${pid}`))
const links = (pid: number) => spawnSync('nsenter', ['-t', String(pid), '-n', 'ip', '-o', 'link', 'show'], {encoding: 'utf8'}).stdout.split('\n').filter(Boolean).map(l => l.split(':')[1].trim().split('@')[0])
const hostEnd = () => `vh${process.pid % 100_000}`

/** A holder in a new user namespace made by `as` (argv prefix); root writes `map` as its uid_map and gid_map. */
async function userHolder(as: string[], map: string): Promise<number> {
  const proc = spawn(as[0], [...as.slice(1), 'unshare', '--user', 'sh', '-c', 'while [ -z "$(cat /proc/self/uid_map)" ]; do sleep 0.01; done; exec sleep 100000'], {stdio: 'ignore'})
  const pid = track(proc.pid!)
  await waitFor('the holder to enter its user namespace', () => {
    try {
      return nsInode(pid, 'user') !== nsInode('self', 'user')
    } catch {
      return false
    }
  })
  writeFileSync(`/proc/${pid}/uid_map`, map)
  writeFileSync(`/proc/${pid}/setgroups`, 'deny\n')
  writeFileSync(`/proc/${pid}/gid_map`, map)
  await running(pid, 'sleep')
  return pid
}

describe('the join matrix rows that were open (real CRIU, real namespaces)', function () {
  this.timeout(180_000)

  before(requireRoot)

  afterEach(cleanup)

  describe('-J mnt: into a holder\'s mount namespace', () => {
    it('the restored task is in the holder\'s mount namespace and sees its private mounts; the risk is said before CRIU starts', async () => {
      const dir = tempDir('criu-mnt-')
      const ckpt = await checkpoint()
      const holder = await mountHolder(dir, {marker: 'only the holder sees this'})
      expect(existsSync(join(dir, 'marker')), 'the tmpfs is the holder\'s alone').to.equal(false)
      const r = mycli(['restore', '-D', ckpt.dir, '-J', `mnt:${holder}`])
      expect(r.code, r.stderr).to.equal(0)
      const pid = restoredPid(r.stdout)
      expect(nsInode(pid, 'mnt')).to.equal(nsInode(holder, 'mnt'))
      expect(nsInode(pid, 'mnt')).not.to.equal(nsInode('self', 'mnt'))
      expect(readFileSync(`/proc/${pid}/root${dir}/marker`, 'utf8')).to.equal('only the holder sees this')
      expect(flat(r.stderr)).to.include(`--join-ns "mnt:${holder}": risky: the restored tree sees the target's mounts`)
      expect(r.stdout).to.include(`mnt   joined pid ${holder} (inode ${nsInode(holder, 'mnt')}): verified`)
    })

    it('the risk is real: a file the task had open is opened again by its path in the target, so another file of the same size there is taken without a word', async () => {
      const dir = tempDir('criu-mnt-')
      const data = join(dir, 'data')
      writeFileSync(data, 'checkpointed data\n')
      const ckpt = await checkpoint({python: `import time\nf = open(${JSON.stringify(data)})\nwhile True:\n    time.sleep(1)`})
      // Same path, same size, other bytes, in the holder's tmpfs.
      const holder = await mountHolder(dir, {data: 'HOLDER-OWNED-DATA\\n'})
      const r = mycli(['restore', '-D', ckpt.dir, '-J', `mnt:${holder}`])
      expect(r.code, r.stderr).to.equal(0)
      const pid = restoredPid(r.stdout)
      expect(flat(r.stderr)).to.include('risky: the restored tree sees the target\'s mounts')
      const [fd] = fdsOn(pid, data)
      expect(fd, 'the restored task has the data file open').not.to.equal(undefined)
      expect(readFileSync(`/proc/${pid}/fd/${fd}`, 'utf8'), 'it now reads the holder\'s file, not its own').to.equal('HOLDER-OWNED-DATA\n')
      expect(readFileSync(data, 'utf8'), 'its own file is still there on the host').to.equal('checkpointed data\n')
    })

    it('the risk is real: a file the task had open that the target lacks fails the restore (exit 1, CRIU names it, nothing left)', async () => {
      const dir = tempDir('criu-mnt-')
      const data = join(dir, 'data')
      writeFileSync(data, 'checkpointed data\n')
      const ckpt = await checkpoint({python: `import time\nf = open(${JSON.stringify(data)})\nwhile True:\n    time.sleep(1)`})
      const holder = await mountHolder(dir, {})
      const r = mycli(['restore', '-D', ckpt.dir, '-J', `mnt:${holder}`])
      expect(r.code, r.stderr).to.equal(1)
      expect(flat(r.stderr)).to.include(data.slice(1))
      expect(alive(ckpt.pid), 'nothing restored is left').to.equal(false)
    })
  })

  describe('-J net and a checkpoint whose own net namespace has a veth device', () => {
    afterEach(() => {
      spawnSync('ip', ['link', 'del', hostEnd()]) // gone with the workload's namespace already, normally
    })

    it('refused before CRIU starts (exit 2), with and without --allow-overwrite, naming the device and the way that works; CRIU itself fails it', async () => {
      const pid = await vethWorkload(hostEnd())
      const dir = join(tempDir(), 'ckpt')
      const c = mycli(['checkpoint', String(pid), '-D', dir, '--network-lock', 'skip'])
      expect(c.code, c.stderr).to.equal(0)
      await reaped(pid)
      expect(existsSync(`/sys/class/net/${hostEnd()}`), 'the peer went with the workload\'s namespace').to.equal(false)
      const holder = await startHolder(['net'])
      const before = {digest: folderDigest(dir), links: links(holder.pid)}
      for (const extra of [[], ['--allow-overwrite']]) {
        const work = tempDir()
        const r = mycli(['restore', '-D', dir, '-J', `net:${holder.pid}`, '-W', work, ...extra])
        expect(r.code, `${extra.join(' ')}: ${r.stderr}`).to.equal(2)
        const err = flat(r.stderr)
        expect(err).to.include(`--join-ns "net:${holder.pid}": the checkpoint's own net namespace has the veth device eth0, whose other end was outside the checkpoint; CRIU cannot recreate it in a joined namespace ("Unknown peer net namespace"), with or without --allow-overwrite`)
        expect(err).to.include('Hint: checkpoint the process again with mycli checkpoint PID -D DIR --external-ns net, which leaves its network namespace (veth included) out of the images, and restore that with -J net')
        expect(err, 'overwriting is not offered: it cannot work').not.to.include('allow-overwrite to restore anyway')
        expect(r.stderr, 'no stack trace').not.to.match(/\n\s+at .+:\d+:\d+/)
        expect(readdirSync(work), 'CRIU never started').to.deep.equal([])
        expect(alive(pid)).to.equal(false)
        expect(folderDigest(dir), 'the checkpoint is untouched').to.equal(before.digest)
        expect(links(holder.pid)).to.deep.equal(before.links)
      }

      // The refusal costs nothing: the real CRIU, told to do it anyway, fails after it started.
      const work = tempDir()
      const status = await criuDirect(['restore', '-D', dir, '-W', work, '-o', 'direct.log', '-v4', '-d', '--join-ns', `net:/proc/${holder.pid}/ns/net`], pid)
      expect(status).to.equal(1)
      expect(readFileSync(join(work, 'direct.log'), 'utf8')).to.include('Unknown peer net namespace')
      expect(links(holder.pid)).to.deep.equal(before.links)
    })

    it('the way that works: checkpointed with --external-ns net, the same workload restores into the holder\'s net namespace', async () => {
      const pid = await vethWorkload(hostEnd())
      const dir = join(tempDir(), 'ckpt')
      const c = mycli(['checkpoint', String(pid), '-D', dir, '--external-ns', 'net', '--network-lock', 'skip'])
      expect(c.code, c.stderr).to.equal(0)
      await reaped(pid)
      const holder = await startHolder(['net'])
      const r = mycli(['restore', '-D', dir, '-J', `net:${holder.pid}`])
      expect(r.code, r.stderr).to.equal(0)
      expect(restoredPid(r.stdout)).to.equal(pid)
      expect(nsInode(pid, 'net')).to.equal(nsInode(holder.pid, 'net'))
      expect(links(holder.pid)).to.deep.equal(['lo'])
    })
  })

  describe('-J user: a user namespace a non-root user owns (what CRIU users report as EPERM with join-ns)', () => {
    it('owned by uid 1000, with the identity map root wrote: it works, the restored task is in it and is root there', async () => {
      const ckpt = await checkpoint()
      const holder = await userHolder(['setpriv', '--reuid=1000', '--regid=1000', '--clear-groups'], '0 0 65536\n')
      expect(native().inspectPath(`/proc/${holder}/ns/user`).ownerUid, 'owner of the namespace').to.equal(1000)
      const r = mycli(['restore', '-D', ckpt.dir, '-J', `user:${holder}`, '--allow-user-ns'])
      expect(r.code, r.stderr).to.equal(0)
      const pid = restoredPid(r.stdout)
      expect(nsInode(pid, 'user')).to.equal(nsInode(holder, 'user'))
      expect(readFileSync(`/proc/${pid}/status`, 'utf8')).to.match(/^Uid:\s+0\s+0\s+0\s+0$/m)
    })

    it('root\'s own, but not mapping the host\'s root ("0 100000 65536"): refused before CRIU starts, which CRIU 4.2.1 fails too', async () => {
      const ckpt = await checkpoint()
      const holder = await userHolder(['env'], '0 100000 65536\n')
      const work = tempDir()
      const r = mycli(['restore', '-D', ckpt.dir, '-J', `user:${holder}`, '--allow-user-ns', '-W', work])
      expect(r.code, r.stderr).to.equal(2)
      expect(flat(r.stderr)).to.include(`--join-ns "user:${holder}": that user namespace does not map the host's uid 0 (its uid_map is "0 100000 65536")`)
      expect(readdirSync(work), 'CRIU never started').to.deep.equal([])
      const status = await criuDirect(['restore', '-D', ckpt.dir, '-W', work, '-o', 'direct.log', '-v4', '-d', '-J', `user:/proc/${holder}/ns/user`], ckpt.pid)
      expect(status).to.equal(1)
      expect(readFileSync(join(work, 'direct.log'), 'utf8')).to.include('Unable to open tty-info.img: Permission denied')
    })
  })
})
