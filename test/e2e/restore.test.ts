import {expect} from 'chai'
import {spawn, spawnSync} from 'node:child_process'
import {existsSync, lstatSync, readdirSync, readFileSync, statSync} from 'node:fs'
import {join} from 'node:path'

import {namespaceByFlag} from '../../src/lib/namespaces.js'
import {inspectPath} from '../../src/lib/native.js'
import {checkpoint, folderDigest, mycli} from '../support/checkpoint.js'
import {addNetns, alive, cleanup, criuPath, nsInode, requireRoot, startHolder, tempDir, track, flat, waitFor} from '../support/system.js'

const ALL = ['cgroup', 'ipc', 'mnt', 'net', 'pid', 'time', 'user', 'uts']

/** The restored PID from the command's output, tracked for cleanup. */
function restoredPid(stdout: string): number {
  const m = /Restored PID (\d+)/.exec(stdout)
  expect(m, stdout).not.to.equal(null)
  return track(Number(m![1]))
}

/** Joined types are the holder's; every other type is what CRIU restored: here, ours. */
function expectNamespaces(pid: number, joined: Record<string, number>): void {
  for (const type of ALL) {
    const actual = nsInode(pid, type)
    if (type in joined) {
      expect(actual, `${type} of the restored task is the holder's`).to.equal(nsInode(joined[type], type))
    } else if (type === 'time') {
      // CRIU (criu/cr-restore.c) always gives the tree a new time namespace unless told to
      // join one, so that CLOCK_MONOTONIC and CLOCK_BOOTTIME go on from the checkpoint.
      expect(actual, 'time: CRIU made a new one').not.to.equal(nsInode('self', type))
    } else {
      expect(actual, `${type} of the restored task was not joined`).to.equal(nsInode('self', type))
    }
  }
}

describe('restore (real CRIU, real namespaces)', function () {
  this.timeout(120_000)

  before(requireRoot)

  afterEach(cleanup)

  it('joins a net namespace by PID; the restored task is the checkpointed one', async () => {
    const ckpt = await checkpoint()
    const holder = await startHolder(['net'])
    const r = mycli(['restore', '-D', ckpt.dir, '-J', `net:${holder.pid}`])
    expect(r.code, r.stderr).to.equal(0)
    const pid = restoredPid(r.stdout)
    expect(pid).to.equal(ckpt.pid)
    expect(alive(pid)).to.equal(true)
    expect(readFileSync(`/proc/${pid}/cmdline`, 'utf8')).to.equal('sleep\u0000100000\u0000')
    expectNamespaces(pid, {net: holder.pid})
    expect(r.stdout).to.include(`net   joined pid ${holder.pid} (inode ${nsInode(holder.pid, 'net')}): verified`)
  })

  it('joins uts by path and ipc by PID; the holder keeps its hostname', async () => {
    const ckpt = await checkpoint()
    const holder = await startHolder(['uts', 'ipc'], 'holder-host')
    const r = mycli(['restore', '-D', ckpt.dir, '-J', `uts:/proc/${holder.pid}/ns/uts`, '-J', `ipc:${holder.pid}`])
    expect(r.code, r.stderr).to.equal(0)
    const pid = restoredPid(r.stdout)
    expectNamespaces(pid, {ipc: holder.pid, uts: holder.pid})
    const hostname = spawnSync('nsenter', ['-t', String(pid), '-u', 'hostname'], {encoding: 'utf8'}).stdout.trim()
    expect(hostname).to.equal('holder-host')
  })

  it('joins a time namespace', async () => {
    const ckpt = await checkpoint()
    const holder = await startHolder(['time'])
    const r = mycli(['restore', '-D', ckpt.dir, '-J', `time:${holder.pid}`])
    expect(r.code, r.stderr).to.equal(0)
    expectNamespaces(restoredPid(r.stdout), {time: holder.pid})
  })

  it('joins a named net namespace (/run/netns/NAME)', async () => {
    const ckpt = await checkpoint()
    const path = addNetns(`crt-e2e-${process.pid}`)
    const r = mycli(['restore', '-D', ckpt.dir, '-J', `net:${path}`])
    expect(r.code, r.stderr).to.equal(0)
    const pid = restoredPid(r.stdout)
    expect(nsInode(pid, 'net')).to.equal(Number(spawnSync('stat', ['-L', '-c', '%i', path], {encoding: 'utf8'}).stdout.trim()))
    expect(nsInode(pid, 'net')).not.to.equal(nsInode('self', 'net'))
  })

  it('joins a user namespace with -J user:PID:0:0; the restored task keeps the checkpoint\'s credentials', async () => {
    const ckpt = await checkpoint()
    const holder = await startHolder(['user'])
    const r = mycli(['restore', '-D', ckpt.dir, '-J', `user:${holder.pid}:0:0`, '--allow-user-ns'])
    expect(r.code, r.stderr).to.equal(0)
    expect(r.stderr, 'no warning with --allow-user-ns').not.to.include('dangerous')
    const pid = restoredPid(r.stdout)
    expectNamespaces(pid, {user: holder.pid})
    const status = readFileSync(`/proc/${pid}/status`, 'utf8')
    expect(status).to.match(/^Uid:\s+0\s/m)
  })

  it('-J user:PID:1000:1000 is refused before CRIU starts: CRIU 4.2.1 would switch UID before GID and fail', async () => {
    const ckpt = await checkpoint()
    const holder = await startHolder(['user'])
    const work = tempDir()
    const r = mycli(['restore', '-D', ckpt.dir, '-J', `user:${holder.pid}:1000:1000`, '--allow-user-ns', '-W', work])
    expect(r.code, r.stderr).to.equal(2)
    expect(flat(r.stderr)).to.include(`Error: --join-ns "user:${holder.pid}:1000:1000": CRIU (4.2.1) cannot restore as UID 1000 in the joined user namespace`)
    expect(flat(r.stderr)).to.include(`Hint: leave out :UID:GID (-J user:${holder.pid}): the restored tasks keep the IDs they were checkpointed with; \`mycli ns exec\` and \`mycli launch\` do run a program as any UID and GID`)
    expect(readdirSync(work), 'nothing written').to.deep.equal([])
    expect(alive(ckpt.pid), 'the checkpointed process is not restored').to.equal(false)
  })

  it('a refused user join prints its refusal only, no user-namespace warning; a file that is no user namespace is said first', async () => {
    const ckpt = await checkpoint()
    const holder = await startHolder(['user', 'net'])
    const cases: [string[], string][] = [
      [['-J', `user:${holder.pid}:1000:0`], `Error: --join-ns "user:${holder.pid}:1000:0": CRIU (4.2.1) cannot restore as UID 1000`],
      [['-J', `user:${holder.pid}:1000:0`, '--allow-user-ns'], `Error: --join-ns "user:${holder.pid}:1000:0": CRIU (4.2.1) cannot restore as UID 1000`],
      [['-J', `user:/proc/${holder.pid}/ns/user:1000`], `Error: --join-ns "user:/proc/${holder.pid}/ns/user:1000": CRIU (4.2.1) cannot restore as UID 1000`],
      [['-J', `user:/proc/${holder.pid}/ns/net:1000`], `Error: --join-ns "user:/proc/${holder.pid}/ns/net:1000": /proc/${holder.pid}/ns/net is a net namespace, not a user namespace`],
      [['-J', `user:${holder.pid}:70000`], `Error: --join-ns "user:${holder.pid}:70000": CRIU accepts a UID up to 65535 when joining a user namespace, not 70000`],
    ]
    for (const [args, said] of cases) {
      const r = mycli(['restore', '-D', ckpt.dir, ...args])
      expect(r.code, r.stderr).to.equal(2)
      expect(r.stderr.startsWith(said), r.stderr).to.equal(true)
      expect(r.stderr, args.join(' ')).not.to.match(/Warning|dangerous/)
      expect(r.stderr.match(/^Error:/gm), 'one error').to.have.length(1)
    }

    expect(alive(ckpt.pid), 'the checkpointed process is not restored').to.equal(false)
  })

  it('warns about joining a user namespace without --allow-user-ns, and still restores', async () => {
    const ckpt = await checkpoint()
    const holder = await startHolder(['user'])
    const r = mycli(['restore', '-D', ckpt.dir, '-J', `user:${holder.pid}`])
    expect(r.code, r.stderr).to.equal(0)
    expect(flat(r.stderr)).to.include('CRIU calls joining a user namespace dangerous')
    expectNamespaces(restoredPid(r.stdout), {user: holder.pid})
  })

  it('joins net, uts, ipc and time of one holder at once', async () => {
    const ckpt = await checkpoint()
    const holder = await startHolder(['net', 'uts', 'ipc', 'time'])
    const r = mycli(['restore', '-D', ckpt.dir, ...['net', 'uts', 'ipc', 'time'].flatMap(t => ['-J', `${t}:${holder.pid}`])])
    expect(r.code, r.stderr).to.equal(0)
    const pid = restoredPid(r.stdout)
    expectNamespaces(pid, {
      ipc: holder.pid, net: holder.pid, time: holder.pid, uts: holder.pid,
    })
  })

  it('a TCP echo server restored into a net namespace answers from inside it', async () => {
    const ckpt = await checkpoint('echo-server')
    const holder = await startHolder(['net'])
    spawnSync('nsenter', ['-t', String(holder.pid), '-n', 'ip', 'link', 'set', 'lo', 'up'])
    const r = mycli(['restore', '-D', ckpt.dir, '-J', `net:${holder.pid}`])
    expect(r.code, r.stderr).to.equal(0)
    const pid = restoredPid(r.stdout)
    expectNamespaces(pid, {net: holder.pid})
    const client = `import socket; s = socket.create_connection(("127.0.0.1", ${ckpt.port}), timeout=5); s.sendall(b"hi"); print(s.recv(100).decode())`
    const inside = spawnSync('nsenter', ['-t', String(holder.pid), '-n', 'python3', '-c', client], {encoding: 'utf8'})
    expect(inside.stdout.trim(), inside.stderr).to.equal('echo:hi')
    // and it is not listening on the host any more
    const outside = spawnSync('python3', ['-c', client], {encoding: 'utf8'})
    expect(outside.status).not.to.equal(0)
  })

  it('--log-file outside the work folder and --pidfile: CRIU logs there, the PID is written, the work folder holds only CRIU\'s files', async () => {
    const ckpt = await checkpoint()
    const holder = await startHolder(['net'])
    const out = tempDir()
    const work = tempDir()
    const r = mycli(['restore', '-D', ckpt.dir, '-J', `net:${holder.pid}`, '--log-file', join(out, 'my.log'), '--pidfile', join(out, 'my.pid'), '-W', work, '--json'])
    expect(r.code, r.stderr).to.equal(0)
    const result = JSON.parse(r.stdout)
    track(result.pid)
    expect(result.logFile).to.equal(join(out, 'my.log'))
    expect(lstatSync(join(out, 'my.log')).isFile(), 'a regular file, not a link').to.equal(true)
    expect(readFileSync(join(out, 'my.log'), 'utf8')).to.include('Restore finished successfully')
    expect(readFileSync(join(out, 'my.pid'), 'utf8')).to.equal(`${result.pid}\n`)
    expect(readdirSync(work), 'no link or log of ours left in the work folder').to.deep.equal(['stats-restore'])
    expect(nsInode(result.pid, 'net')).to.equal(nsInode(holder.pid, 'net'))
  })

  it('leaves the images folder byte-identical without --work-dir', async () => {
    const ckpt = await checkpoint()
    const holder = await startHolder(['net'])
    const before = folderDigest(ckpt.dir)
    const r = mycli(['restore', '-D', ckpt.dir, '-J', `net:${holder.pid}`])
    expect(r.code, r.stderr).to.equal(0)
    restoredPid(r.stdout)
    expect(folderDigest(ckpt.dir)).to.equal(before)
    expect(existsSync(join(ckpt.dir, 'restore.log'))).to.equal(false)
  })

  it('--json prints the documented object', async () => {
    const ckpt = await checkpoint()
    const holder = await startHolder(['net', 'uts'])
    const work = tempDir()
    const r = mycli(['restore', '-D', ckpt.dir, '-J', `net:${holder.pid}`, '-J', `uts:${holder.pid}`, '-W', work, '--json'])
    expect(r.code, r.stderr).to.equal(0)
    const out = JSON.parse(r.stdout)
    track(out.pid)
    expect(out).to.have.all.keys('dryRun', 'pid', 'criuStats', 'criuVersion', 'durationMs', 'workDir', 'logFile', 'namespaces', 'tasks')
    expect(out.dryRun).to.equal(false)
    // CRIU's own statistics, from its stats-restore: the pages it restored are the pages images' pages.
    const pages = readdirSync(ckpt.dir).filter(f => /^pages-\d+\.img$/.test(f)).reduce((n, f) => n + statSync(join(ckpt.dir, f)).size, 0) / 4096
    expect(out.criuStats).to.have.all.keys('forkingMs', 'pagesCompared', 'pagesRestored', 'pagesSkippedCow', 'restoreMs')
    expect(out.criuStats.pagesRestored).to.be.above(0).and.equal(pages)
    expect(out.criuStats.restoreMs).to.be.above(0).and.below(out.durationMs)
    expect(out.pid).to.equal(ckpt.pid)
    expect(out.workDir).to.equal(work)
    expect(out.logFile).to.equal(join(work, 'restore.log'))
    expect(existsSync(out.logFile)).to.equal(true)
    expect(out.criuVersion).to.match(/^\d+\.\d+/)
    expect(out.namespaces).to.deep.equal([
      {
        inode: nsInode(holder.pid, 'net'), joined: true, source: `pid ${holder.pid}`, type: 'net',
      },
      {
        inode: nsInode(holder.pid, 'uts'), joined: true, source: `pid ${holder.pid}`, type: 'uts',
      },
    ])
  })

  it('--dry-run checks the targets and restores nothing; the command it prints runs as printed and restores into the targets', async () => {
    const ckpt = await checkpoint()
    const holder = await startHolder(['net', 'uts'])
    const r = mycli(['restore', '-D', ckpt.dir, '-J', `net:${holder.pid}`, '-J', `uts:/proc/${holder.pid}/ns/uts`, '--dry-run'])
    expect(r.code, r.stderr).to.equal(0)
    expect(alive(ckpt.pid)).to.equal(false)
    const lines = r.stdout.split('\n')
    const command = lines[lines.indexOf('Command:') + 1].trim()
    const workFolder = String.raw`--work-dir "\$W" --log-file "\$W"/restore\.log -v4 --pidfile "\$W"/restore\.pid`
    expect(command).to.match(new RegExp(String.raw`^W=\$\(mktemp -d\) && \S+criu restore --images-dir \S+ ${workFolder} --restore-detached `))
    expect(command, 'no placeholder').not.to.match(/X{6}|<|>/)
    expect(command, 'no descriptor of a process that has exited').not.to.match(/\/proc\/\d+\/fd\//)
    expect(command, 'the gate is the real run\'s own').not.to.include('--action-script')
    expect(flat(r.stdout)).to.include('The real run opens and type-checks each -J target first and gives CRIU its own descriptor of it')
    // Every target is there and is a namespace of the type it is joined as.
    const joins = [...command.matchAll(/--join-ns (\w+):([^\s,]+)/g)].map(m => ({path: m[2], type: m[1]}))
    expect(joins).to.deep.equal([{path: `/proc/${holder.pid}/ns/net`, type: 'net'}, {path: `/proc/${holder.pid}/ns/uts`, type: 'uts'}])
    for (const {path, type} of joins) expect(namespaceByFlag(inspectPath(path).nstype)?.name, path).to.equal(type)

    // As a person would run it: in a shell, as root.
    const tmp = tempDir()
    const run = spawnSync('sh', ['-c', command], {encoding: 'utf8', env: {...process.env, TMPDIR: tmp}})
    expect(run.status, run.stderr).to.equal(0)
    track(ckpt.pid)
    expect(alive(ckpt.pid)).to.equal(true)
    expectNamespaces(ckpt.pid, {net: holder.pid, uts: holder.pid})
  })

  it('a user namespace a non-root user made (mapping only itself): refused before CRIU starts, with the reason (CRIU 4.2.1 itself fails it)', async () => {
    const ckpt = await checkpoint()
    // nobody's own user namespace, mapping only itself (what an unprivileged user can make)
    const proc = spawn('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'unshare', '--user', '--map-root-user', 'sleep', '100000'], {stdio: 'ignore'})
    const holder = track(proc.pid!)
    await waitFor('the holder to enter its user namespace', () => {
      try {
        return nsInode(holder, 'user') !== nsInode('self', 'user') && readFileSync(`/proc/${holder}/uid_map`, 'utf8').trim() !== ''
      } catch {
        return false
      }
    })
    const work = tempDir()
    const r = mycli(['restore', '-D', ckpt.dir, '-J', `user:${holder}:0:0`, '--allow-user-ns', '-W', work])
    expect(r.code, r.stderr).to.equal(2)
    expect(flat(r.stderr)).to.include(`--join-ns "user:${holder}:0:0": that user namespace does not map the host's uid 0 (its uid_map is "0 65534 1"); CRIU restores the tasks with the credentials of the images (root)`)
    expect(flat(r.stderr)).to.include('Hint: join a user namespace whose uid_map and gid_map root wrote to map the host\'s root')
    expect(existsSync(join(work, 'restore.log')), 'CRIU never started').to.equal(false)
    expect(alive(ckpt.pid)).to.equal(false)
    // The refusal costs nothing: CRIU 4.2.1 run directly fails this join, with and without IDs.
    for (const ids of ['', ',0,0']) {
      const direct = spawnSync(criuPath(), ['restore', '-D', ckpt.dir, '-W', work, '-o', 'direct.log', '-v4', '-d', '-J', `user:/proc/${holder}/ns/user${ids}`], {encoding: 'utf8'})
      expect(direct.status, `criu restore -J user:...${ids}`).to.equal(1)
      const log = readFileSync(join(work, 'direct.log'), 'utf8')
      // Measured: without IDs setuid fails (EINVAL); with 0,0 the task cannot read the images (EACCES) or fails earlier.
      const expected = ids ? /Error \(.*(Permission denied|Operation not permitted|Invalid argument)/ : /setuid failed while joining userns: Invalid argument/
      expect(log).to.match(expected)
      expect(alive(ckpt.pid)).to.equal(false)
    }
  })
})
