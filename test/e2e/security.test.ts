/**
 * Root never writes through, or believes, what another user planted (issue 17). As root,
 * against files owned by `nobody` in a sticky world-writable folder (as /tmp is), with the
 * real CRIU where a checkpoint or a restore is the point.
 */
import {expect} from 'chai'
import {spawn, spawnSync} from 'node:child_process'
import {
  chmodSync, chownSync, existsSync, lchownSync, linkSync, lstatSync, mkdirSync, readdirSync, readFileSync,
  realpathSync, renameSync, statSync, symlinkSync, writeFileSync,
} from 'node:fs'
import {join} from 'node:path'

import {criuVersion, hwBreakpointsWork} from '../../src/lib/criu.js'
import {checkpoint, folderDigest, mycli} from '../support/checkpoint.js'
import {
  alive, cleanup, criuPath, flat, nsInode, requireRoot, startHolder, tempDir, track, waitFor,
} from '../support/system.js'

const NOBODY = 65_534

/** A folder anyone can write but only the owner of an entry can remove it from: /tmp's mode. */
function stickyFolder(): string {
  const dir = tempDir('security-sticky-')
  chmodSync(dir, 0o1777)
  return dir
}

/** What another user made: a folder of their own that anyone can write, inside `parent`. */
function nobodysFolder(parent: string, name = 'planted'): string {
  const dir = join(parent, name)
  mkdirSync(dir)
  chmodSync(dir, 0o777)
  chownSync(dir, NOBODY, NOBODY)
  return dir
}

function plantLink(path: string, target: string, owner = NOBODY): void {
  symlinkSync(target, path)
  lchownSync(path, owner, owner)
}

/** A file the attacker would like root to overwrite, in root's own folder; and one that must not come to exist. */
function victims(): {absent: string; file: string; content: Buffer} {
  const dir = tempDir('security-victim-')
  const file = join(dir, 'precious')
  const content = Buffer.from('root:x:0:0:root:/root:/bin/bash\n')
  writeFileSync(file, content, {mode: 0o644})
  return {absent: join(dir, 'created-by-root'), content, file}
}

function expectUntouched(v: {absent: string; file: string; content: Buffer}): void {
  expect(readFileSync(v.file).equals(v.content), `${v.file} is byte-identical`).to.equal(true)
  expect(existsSync(v.absent), `${v.absent} was not created`).to.equal(false)
}

async function workload(): Promise<number> {
  const child = spawn('setsid', ['sleep', '100000'], {stdio: 'ignore'})
  const pid = track(child.pid!)
  child.once('exit', () => {})
  await waitFor('the workload to run', () => {
    try {
      return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'sleep'
    } catch {
      return false
    }
  })
  return pid
}

const bootId = () => readFileSync('/proc/sys/kernel/random/boot_id', 'utf8').trim()

/** The hardware breakpoint answer, counting how often the probe had to run. */
function ask(answer: boolean): {calls: number; works: boolean | null} {
  let calls = 0
  const works = hwBreakpointsWork(() => {
    calls++
    return {works: answer}
  })
  return {calls, works}
}

function refused(r: {code: null | number; stderr: string; stdout: string}, ...parts: string[]): void {
  expect(r.code, r.stderr).to.equal(2)
  // oclif breaks a path longer than the line (a long TMPDIR) inside the word: compare without spaces.
  const err = flat(r.stderr).replaceAll(' ', '')
  for (const part of parts) expect(err, flat(r.stderr)).to.include(part.replaceAll(' ', ''))
  expect(r.stderr, 'no stack trace').not.to.match(/\n\s+at .+:\d+:\d+/)
}

describe('root never writes through, or believes, what another user planted', function () {
  this.timeout(300_000)

  before(requireRoot)

  afterEach(cleanup)

  describe('checkpoint', () => {
    it('refuses a folder another user owns, full of planted links; CRIU alone would have written through them', async () => {
      const pid = await workload()
      const sticky = stickyFolder()
      const planted = nobodysFolder(sticky)
      const v = victims()
      plantLink(join(planted, 'pstree.img'), v.file)
      plantLink(join(planted, 'inventory.img'), v.absent)
      const r = mycli(['checkpoint', String(pid), '-D', planted, '--force', '--network-lock', 'skip'])
      refused(r, `--images-dir "${planted}": it is owned by uid 65534, not by root`)
      expectUntouched(v)
      expect(alive(pid), 'nothing was dumped').to.equal(true)
      // The same folder given to CRIU directly: this is the attack the checks stop.
      const work = tempDir()
      const dump = spawnSync(criuPath(), ['dump', '-t', String(pid), '-D', planted, '-W', work, '-o', 'dump.log', '--leave-running', '--network-lock', 'skip'], {encoding: 'utf8'})
      expect(dump.status, dump.stderr).to.equal(0)
      expect(readFileSync(v.file).equals(v.content), 'plain CRIU overwrote the link target').to.equal(false)
      expect(existsSync(v.absent), 'plain CRIU created the other link target').to.equal(true)
    })

    it('with --force into a folder of its own: a link, a hard link, another user\'s file, a world-writable file are refused by name, never followed', async () => {
      const pid = await workload()
      const v = victims()
      const cases: [string, (path: string) => void, string][] = [
        ['pstree.img', p => plantLink(p, v.file, 0), `pstree.img (to ${v.file}): it is a symbolic link, which CRIU (as root) would write through`],
        ['inventory.img', p => linkSync(v.file, p), 'inventory.img: it is a hard link (the file has 2 names), so writing it changes another file'],
        ['core-1.img', p => {
          writeFileSync(p, 'x')
          chownSync(p, NOBODY, NOBODY)
        }, 'core-1.img: it is owned by uid 65534, not by root'],
        ['pages-1.img', p => {
          writeFileSync(p, 'x')
          chmodSync(p, 0o666)
        }, 'pages-1.img: other users can write to it (mode 0666)'],
      ]
      for (const [name, plant, message] of cases) {
        const dir = tempDir('security-own-')
        writeFileSync(join(dir, 'an-old-file'), 'x')
        plant(join(dir, name))
        const r = mycli(['checkpoint', String(pid), '-D', dir, '--force', '--network-lock', 'skip'])
        refused(r, `--images-dir "${dir}": ${message}`)
        expectUntouched(v)
        expect(alive(pid), 'nothing was dumped').to.equal(true)
      }
    })

    it('never follows a link another user owns on the way, nor writes under a folder another user owns', async () => {
      const pid = await workload()
      const sticky = stickyFolder()
      const own = tempDir('security-own-')
      plantLink(join(sticky, 'link'), own)
      refused(mycli(['checkpoint', String(pid), '-D', join(sticky, 'link', 'ckpt')]), `(${join(sticky, 'link')}): it is a symbolic link and it is owned by uid 65534, not by root`)
      expect(existsSync(join(own, 'ckpt')), 'nothing was created through the link').to.equal(false)
      const planted = nobodysFolder(sticky)
      refused(mycli(['checkpoint', String(pid), '-D', join(planted, 'ckpt')]), `(${planted}): it is owned by uid 65534, not by root`)
      expect(existsSync(join(planted, 'ckpt'))).to.equal(false)
      expect(alive(pid)).to.equal(true)
    })

    it('--work-dir: refused when others can write it (sticky or not), or when it holds a planted dump.log', async () => {
      const pid = await workload()
      const sticky = stickyFolder()
      const v = victims()
      refused(mycli(['checkpoint', String(pid), '-D', join(tempDir(), 'ckpt'), '-W', sticky]), `--work-dir "${sticky}": other users can write to it (mode 1777)`)
      const work = tempDir('security-work-')
      plantLink(join(work, 'dump.log'), v.file, 0)
      refused(mycli(['checkpoint', String(pid), '-D', join(tempDir(), 'ckpt'), '-W', work]), `--work-dir "${work}": dump.log (to ${v.file}): it is a symbolic link`)
      expectUntouched(v)
      expect(alive(pid)).to.equal(true)
    })

    it('the normal path works: a new folder in a sticky folder is made 0700, and the real CRIU checkpoints and restores through the checks', async () => {
      const pid = await workload()
      const dir = join(stickyFolder(), 'ckpt')
      const c = mycli(['checkpoint', String(pid), '-D', dir, '--network-lock', 'skip'])
      expect(c.code, c.stderr).to.equal(0)
      const st = statSync(dir)
      expect([st.uid, st.mode & 0o7777]).to.deep.equal([0, 0o700])
      await waitFor(`process ${pid} to be reaped`, () => !existsSync(`/proc/${pid}`))
      const holder = await startHolder(['net'])
      const r = mycli(['restore', '-D', dir, '-J', `net:${holder.pid}`])
      expect(r.code, r.stderr).to.equal(0)
      track(pid)
      expect(nsInode(pid, 'net')).to.equal(nsInode(holder.pid, 'net'))
    })
  })

  describe('restore', () => {
    it('refuses an images folder another user owns, also with --dry-run; --allow-untrusted-images restores it anyway', async () => {
      const ckpt = await checkpoint()
      const holder = await startHolder(['net'])
      chownSync(ckpt.dir, NOBODY, NOBODY)
      for (const name of readdirSync(ckpt.dir)) chownSync(join(ckpt.dir, name), NOBODY, NOBODY)
      const digest = folderDigest(ckpt.dir)
      for (const extra of [['--dry-run'], []]) {
        const r = mycli(['restore', '-D', ckpt.dir, '-J', `net:${holder.pid}`, ...extra])
        refused(r, `--images-dir "${ckpt.dir}": it is owned by uid 65534, not by root`, 'copy the checkpoint into a folder only you (or root) can write', '--allow-untrusted-images')
        expect(r.stdout).to.equal('')
      }

      expect(folderDigest(ckpt.dir)).to.equal(digest)
      expect(alive(ckpt.pid), 'nothing was restored').to.equal(false)
      const r = mycli(['restore', '-D', ckpt.dir, '-J', `net:${holder.pid}`, '--allow-untrusted-images'])
      expect(r.code, r.stderr).to.equal(0)
      track(ckpt.pid)
      expect(nsInode(ckpt.pid, 'net')).to.equal(nsInode(holder.pid, 'net'))
    })

    it('refuses an image another user owns or can write, a link out of the folder, a folder others can write; a link inside is fine', async () => {
      const ckpt = await checkpoint()
      const holder = await startHolder(['net'])
      const restore = (...extra: string[]) => mycli(['restore', '-D', ckpt.dir, '-J', `net:${holder.pid}`, ...extra])
      const core = readdirSync(ckpt.dir).find(n => /^core-\d+\.img$/.test(n))!
      const elsewhere = join(tempDir('security-elsewhere-'), core)
      const cases: [string, () => void, () => void, string][] = [
        ['another user\'s image', () => chownSync(join(ckpt.dir, 'pstree.img'), NOBODY, NOBODY), () => chownSync(join(ckpt.dir, 'pstree.img'), 0, 0), 'pstree.img: it is owned by uid 65534, not by root'],
        ['a world-writable image', () => chmodSync(join(ckpt.dir, 'inventory.img'), 0o666), () => chmodSync(join(ckpt.dir, 'inventory.img'), 0o644), 'inventory.img: other users can write to it (mode 0666)'],
        ['a link out of the folder', () => {
          renameSync(join(ckpt.dir, core), elsewhere)
          symlinkSync(elsewhere, join(ckpt.dir, core))
        }, () => {
          spawnSync('rm', [join(ckpt.dir, core)])
          renameSync(elsewhere, join(ckpt.dir, core))
        }, `${core} is a symbolic link out of the folder (to ${elsewhere})`],
        ['a folder others can write', () => chmodSync(ckpt.dir, 0o777), () => chmodSync(ckpt.dir, 0o700), 'other users can write to it (mode 0777)'],
      ]
      for (const [what, make, undo, message] of cases) {
        make()
        const r = restore()
        refused(r, `--images-dir "${ckpt.dir}": ${message}`)
        expect(alive(ckpt.pid), `${what}: nothing was restored`).to.equal(false)
        undo()
      }

      renameSync(join(ckpt.dir, core), join(ckpt.dir, `${core}.real`))
      symlinkSync(`${core}.real`, join(ckpt.dir, core))
      const r = restore()
      expect(r.code, r.stderr).to.equal(0)
      track(ckpt.pid)
      expect(nsInode(ckpt.pid, 'net')).to.equal(nsInode(holder.pid, 'net'))
    })

    it('--log-file, --pidfile, --work-dir: planted links are refused and their targets untouched; folders others can write are refused', async () => {
      const ckpt = await checkpoint()
      const holder = await startHolder(['net'])
      const sticky = stickyFolder()
      const planted = nobodysFolder(sticky)
      const v = victims()
      plantLink(join(planted, 'restore.log'), v.file)
      plantLink(join(planted, 'restore.pid'), v.absent)
      const restore = (...extra: string[]) => mycli(['restore', '-D', ckpt.dir, '-J', `net:${holder.pid}`, ...extra])
      refused(restore('--log-file', join(planted, 'restore.log')), `--log-file "${join(planted, 'restore.log')}" (${planted}): its folder: it is owned by uid 65534, not by root`)
      refused(restore('--pidfile', join(planted, 'restore.pid')), `--pidfile "${join(planted, 'restore.pid')}" (${planted}): its folder: it is owned by uid 65534, not by root`)
      refused(restore('--log-file', join(sticky, 'restore.log')), `(${sticky}): its folder: other users can write to it (mode 1777)`)
      refused(restore('-W', planted), `--work-dir "${planted}": it is owned by uid 65534, not by root`)
      const own = tempDir('security-own-')
      plantLink(join(own, 'restore.pid'), v.absent, 0)
      refused(restore('--pidfile', join(own, 'restore.pid')), `--pidfile "${join(own, 'restore.pid')}": it is a symbolic link`)
      plantLink(join(own, 'restore.log'), v.file, 0)
      refused(restore('-W', own), `--work-dir "${own}": restore.log (to ${v.file}): it is a symbolic link`)
      expectUntouched(v)
      expect(alive(ckpt.pid), 'nothing was restored').to.equal(false)
    })
  })

  describe('caches', () => {
    let saved: string | undefined

    beforeEach(() => {
      saved = process.env.XDG_CACHE_HOME
    })

    afterEach(() => {
      if (saved === undefined) delete process.env.XDG_CACHE_HOME
      else process.env.XDG_CACHE_HOME = saved
    })

    it('a cache in a folder another user owns is ignored, and left as it is', () => {
      const home = nobodysFolder(stickyFolder(), 'cache-home')
      const dir = join(home, 'oclif-plugin-criu')
      mkdirSync(dir)
      chownSync(dir, NOBODY, NOBODY)
      const file = join(dir, 'hw-breakpoints.json')
      const planted = JSON.stringify({[bootId()]: false})
      writeFileSync(file, planted)
      chownSync(file, NOBODY, NOBODY)
      process.env.XDG_CACHE_HOME = home
      expect(ask(true)).to.deep.equal({calls: 1, works: true})
      expect(ask(true)).to.deep.equal({calls: 1, works: true})
      expect(readFileSync(file, 'utf8')).to.equal(planted)
      expect(lstatSync(file).uid).to.equal(NOBODY)
    })

    it('in a folder of its own: another user\'s file, a link, a world-writable folder are ignored and rebuilt, never written through', () => {
      const v = victims()
      const home = tempDir('security-cache-')
      process.env.XDG_CACHE_HOME = home
      const dir = join(home, 'oclif-plugin-criu')
      const file = join(dir, 'hw-breakpoints.json')
      expect(ask(true), 'nothing cached yet').to.deep.equal({calls: 1, works: true})
      expect(ask(false), 'cached').to.deep.equal({calls: 0, works: true})
      expect([statSync(dir).mode & 0o777, statSync(file).mode & 0o777]).to.deep.equal([0o700, 0o600])

      chownSync(file, NOBODY, NOBODY)
      expect(ask(false), 'another user\'s file').to.deep.equal({calls: 1, works: false})
      expect(lstatSync(file).uid, 'replaced by our own').to.equal(0)

      spawnSync('rm', [file])
      plantLink(file, v.file, 0)
      expect(ask(true), 'a link').to.deep.equal({calls: 1, works: true})
      expect(lstatSync(file).isSymbolicLink(), 'the link itself was replaced').to.equal(false)
      expectUntouched(v)

      chmodSync(dir, 0o777)
      expect(ask(false), 'a folder others can write').to.deep.equal({calls: 1, works: false})
      expect(JSON.parse(readFileSync(file, 'utf8'))[bootId()], 'not written there').to.equal(true)
    })

    it('a planted `criu --version` answer in another user\'s cache does not make an old CRIU pass', async () => {
      const home = nobodysFolder(stickyFolder(), 'cache-home')
      const dir = join(home, 'oclif-plugin-criu')
      mkdirSync(dir, {mode: 0o777})
      chownSync(dir, NOBODY, NOBODY)
      const fake = join(tempDir('security-criu-'), 'criu')
      writeFileSync(fake, '#!/bin/sh\necho "Version: 3.11"\n', {mode: 0o755})
      const st = statSync(realpathSync(fake))
      const key = `${realpathSync(fake)}:${st.ino}:${st.size}:${st.mtimeMs}`
      writeFileSync(join(dir, 'criu-versions.json'), JSON.stringify({[key]: {major: 4, minor: 2, sublevel: 1, text: '4.2.1'}}))
      chownSync(join(dir, 'criu-versions.json'), NOBODY, NOBODY)
      process.env.XDG_CACHE_HOME = home
      const error = await criuVersion(fake).then(() => {}, (error_: Error) => error_)
      expect(error?.message).to.include('CRIU 3.11 at')
      // The same planted answer in root's own cache would be believed: the check is what stops it.
      const own = tempDir('security-cache-')
      mkdirSync(join(own, 'oclif-plugin-criu'), {mode: 0o700})
      writeFileSync(join(own, 'oclif-plugin-criu', 'criu-versions.json'), readFileSync(join(dir, 'criu-versions.json')), {mode: 0o600})
      process.env.XDG_CACHE_HOME = own
      expect((await criuVersion(fake)).text).to.equal('4.2.1')
    })
  })
})
