import {expect} from 'chai'
import {spawn, spawnSync} from 'node:child_process'
import {existsSync, readdirSync, readFileSync, statSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {processStat} from '../../src/lib/proc.js'
import {mycli} from '../support/checkpoint.js'
import {addNetns, alive, cleanup, criuPath, nsInode, requireRoot, startHolder, tempDir, track, waitFor, flat} from '../support/system.js'

/** A single-process workload started through `argv` (exec chain, no fork): its PID is the spawned one. */
async function workload(argv: string[]): Promise<number> {
  const child = spawn('setsid', argv, {stdio: 'ignore'})
  const pid = track(child.pid!)
  child.once('exit', () => {}) // reaped by Node when CRIU ends it
  await waitFor('the workload to run sleep', () => {
    try {
      return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'sleep'
    } catch {
      return false
    }
  })
  return pid
}

async function reaped(pid: number): Promise<void> {
  await waitFor(`process ${pid} to be reaped`, () => !existsSync(`/proc/${pid}`))
}

/** The plan rows restore --dry-run prints: type -> "action: detail". */
function planOf(stdout: string): Record<string, string> {
  const rows: Record<string, string> = {}
  let last: string | undefined
  for (const line of stdout.split('\n')) {
    const m = /^ {2}(\w+)\s+(joined|restored from the images|created empty|new|inherited)\s+(.*)$/.exec(line)
    // A detail wrapped to the terminal goes on under its column.
    const more = /^ {36}(\S.*)$/.exec(line)
    if (m) rows[last = m[1]] = `${m[2]}: ${m[3]}`
    else if (more && last) rows[last] += ` ${more[1]}`
    else last = undefined
  }

  return rows
}

describe('checkpoint, ns inspect, ns exec and the restore plan (real CRIU)', function () {
  this.timeout(180_000)

  before(requireRoot)

  afterEach(cleanup)

  describe('checkpoint', () => {
    it('round trip with the plugin alone: checkpoint a host process, restore it into a holder\'s net namespace', async () => {
      const pid = await workload(['sleep', '100000'])
      const dir = join(tempDir(), 'ckpt')
      const c = mycli(['checkpoint', String(pid), '-D', dir])
      expect(c.code, c.stderr).to.equal(0)
      expect(c.stdout).to.include(`Checkpointed process ${pid} into ${dir}`)
      expect(c.stdout, 'CRIU\'s statistics are for --json').not.to.include('pages')
      await reaped(pid)
      const holder = await startHolder(['net'])
      const r = mycli(['restore', '-D', dir, '-J', `net:${holder.pid}`])
      expect(r.code, r.stderr).to.equal(0)
      track(pid)
      expect(nsInode(pid, 'net')).to.equal(nsInode(holder.pid, 'net'))
    })

    it('a process in a pod\'s network namespace: checkpoint says up front to use --external-ns net and which --network-lock works; restore\'s refusal leads there first', async () => {
      const pod = await startHolder(['net'])
      const pid = await workload(['nsenter', '-t', String(pod.pid), '-n', 'sleep', '100000'])
      const dir = join(tempDir(), 'ckpt')
      const nftables = spawnSync(criuPath(), ['check', '--feature', 'network_lock_nftables']).status === 0
      const works = nftables ? 'nftables' : 'skip'
      // CRIU's default lock runs iptables-restore: a PATH without it is a machine without iptables.
      const noIptables = (process.env.PATH ?? '').split(':').filter(d => d && !existsSync(join(d, 'iptables-restore'))).join(':')
      const missing = mycli(['checkpoint', String(pid), '-D', dir, '--dry-run'], {PATH: noIptables})
      expect(missing.code, missing.stderr).to.equal(1)
      expect(flat(missing.stderr)).to.include(`process ${pid} is in a network namespace of its own, which CRIU locks while it dumps, by default with iptables`)
      expect(flat(missing.stderr)).to.include('that cannot work here (iptables-restore is not on PATH). Nothing was frozen')
      expect(flat(missing.stderr)).to.include(`Hint: pass ${nftables ? '--network-lock nftables (works here), or ' : ''}--network-lock skip`)
      expect(flat(missing.stderr)).to.include('add --external-ns net')
      expect(processStat(pid)?.state, 'nothing was frozen').to.equal('S')
      expect(existsSync(dir)).to.equal(false)
      // With a lock that works: the advice before anything runs, and a command that runs as printed.
      const dry = mycli(['checkpoint', String(pid), '-D', dir, '--dry-run', '--network-lock', works], {PATH: noIptables})
      expect(dry.code, dry.stderr).to.equal(0)
      expect(flat(dry.stderr)).to.include(`Warning: process ${pid} is in a network namespace of its own (inode ${nsInode(pod.pid, 'net')}), which this checkpoint will contain`)
      expect(flat(dry.stderr)).to.include('to restore it later into a pod\'s or container\'s network namespace (mycli restore -J net:TARGET), checkpoint it with --external-ns net')
      expect(dry.stdout).to.match(/ && W=\$\(mktemp -d\) && \S+ dump --tree \d+ /)
      expect(dry.stdout).not.to.match(/X{6}/)
      const command = dry.stdout.split('\n')[0]
      expect(command).to.include(`mkdir -m 0700 ${dir} && `)
      const run = spawnSync('sh', ['-c', command], {encoding: 'utf8', env: {...process.env, PATH: noIptables, TMPDIR: tempDir()}})
      expect(run.status, run.stderr).to.equal(0)
      expect(existsSync(join(dir, 'inventory.img'))).to.equal(true)
      await reaped(pid)
      // That checkpoint carries the pod's namespace: restore names the way that overwrites nothing first.
      const target = await startHolder(['net'])
      const refused = mycli(['restore', '-D', dir, '-J', `net:${target.pid}`])
      expect(refused.code).to.equal(2)
      const hint = flat(refused.stderr).split('Hint: ')[1]
      expect(hint).to.match(/^checkpoint the process again with mycli checkpoint PID -D DIR --external-ns net, /)
      expect(hint).to.include('which leaves its network namespace (veth included) out')
      expect(hint).to.match(/, and restore that with -J net; or pass --allow-overwrite/)
      // Following it: the advice is not repeated, and the restore joins the target.
      const again = await workload(['nsenter', '-t', String(pod.pid), '-n', 'sleep', '100000'])
      const dir2 = join(tempDir(), 'ckpt')
      const c = mycli(['checkpoint', String(again), '-D', dir2, '--external-ns', 'net', '--network-lock', works, '--json'], {PATH: noIptables})
      expect(c.code, c.stderr).to.equal(0)
      expect(c.stderr).to.equal('')
      const out = JSON.parse(c.stdout)
      // Only the lock is noted: the pod's namespace stays locked after the dump (CRIU's way), until a restore into it.
      if (works === 'skip') expect(out.notes).to.deep.equal([])
      else expect(out.notes).to.deep.equal([`CRIU locks the network namespace of process ${again} (inode ${nsInode(pod.pid, 'net')}; left out of the images, but locked all the same) while it dumps (with --network-lock ${works}) and leaves it locked afterwards, so that peers see no reset: anything else in it gets no packet in or out until a restore into it (mycli restore -J net:PID, PID a process still in it) unlocks it; a restore elsewhere leaves it locked`])
      // CRIU's own statistics, from its stats-dump: the pages it wrote are the pages images' pages.
      const pages = readdirSync(dir2).filter(f => /^pages-\d+\.img$/.test(f)).reduce((n, f) => n + statSync(join(dir2, f)).size, 0) / 4096
      expect(out.criuStats.pagesWritten).to.be.above(0).and.equal(pages)
      expect(out.criuStats.pagesScanned).to.be.at.least(out.criuStats.pagesWritten)
      expect(out.criuStats.frozenMs).to.be.above(out.criuStats.freezingMs).and.below(out.durationMs)
      await reaped(again)
      const r = mycli(['restore', '-D', dir2, '-J', `net:${target.pid}`])
      expect(r.code, r.stderr).to.equal(0)
      track(again)
      expect(nsInode(again, 'net')).to.equal(nsInode(target.pid, 'net'))
    })

    it('--external-ns net leaves the pod\'s net namespace out; restore -J net puts the tree back into one', async () => {
      const pod = await startHolder(['net'])
      const pid = await workload(['nsenter', '-t', String(pod.pid), '-n', 'sleep', '100000'])
      expect(nsInode(pid, 'net')).to.equal(nsInode(pod.pid, 'net'))
      const dir = join(tempDir(), 'ckpt')
      const c = mycli(['checkpoint', String(pid), '-D', dir, '--external-ns', 'net', '--network-lock', 'skip', '--json'])
      expect(c.code, c.stderr).to.equal(0)
      const out = JSON.parse(c.stdout)
      expect(out.external).to.deep.equal([{inode: nsInode(pod.pid, 'net'), key: `oclif-plugin-criu-net-${nsInode(pod.pid, 'net')}`, type: 'net'}])
      await reaped(pid)
      // without a net join the restore is refused: the images have no net namespace to restore
      const refused = mycli(['restore', '-D', dir])
      expect(refused.code).to.equal(2)
      expect(flat(refused.stderr)).to.include('the checkpoint left its net namespace out')
      const other = await startHolder(['net'])
      const plan = mycli(['restore', '-D', dir, '-J', `net:${other.pid}`, '--dry-run'])
      expect(plan.stdout).to.include('--inherit-fd \'fd[3]:oclif-plugin-criu-net-')
      const r = mycli(['restore', '-D', dir, '-J', `net:${other.pid}`])
      expect(r.code, r.stderr).to.equal(0)
      track(pid)
      expect(nsInode(pid, 'net')).to.equal(nsInode(other.pid, 'net'))
    })

    it('refuses a tree that holds the command itself (this test process, its ancestor): exit 2, nothing written, nothing frozen', () => {
      const dir = join(tempDir(), 'ckpt')
      const c = mycli(['checkpoint', String(process.pid), '-D', dir])
      expect(c.code, c.stderr).to.equal(2)
      expect(flat(c.stderr)).to.match(new RegExp(`^Error: process ${process.pid}'s tree holds this command itself \\(PID \\d+\\): a process cannot be checkpointed by a command running inside it Hint: give the PID of the workload`))
      expect(existsSync(dir), 'no images folder').to.equal(false)
    })

    it('--leave-running keeps the process', async () => {
      const pid = await workload(['sleep', '100000'])
      const dir = join(tempDir(), 'ckpt')
      const c = mycli(['checkpoint', String(pid), '-D', dir, '--leave-running'])
      expect(c.code, c.stderr).to.equal(0)
      expect(alive(pid)).to.equal(true)
      expect(readdirSync(dir)).to.include('inventory.img')
    })

    it('refuses a folder that is not empty unless --force, a missing PID, a host namespace to leave out', async () => {
      const pid = await workload(['sleep', '100000'])
      const dir = tempDir()
      writeFileSync(join(dir, 'something'), 'x')
      const full = mycli(['checkpoint', String(pid), '-D', dir])
      expect(full.code).to.equal(2)
      expect(flat(full.stderr)).to.include('the folder is not empty (1 files)')
      expect(alive(pid)).to.equal(true)
      const host = mycli(['checkpoint', String(pid), '-D', join(dir, 'new'), '--external-ns', 'net'])
      expect(host.code).to.equal(2)
      expect(flat(host.stderr)).to.include(`process ${pid} shares this net namespace with the host`)
      expect(existsSync(join(dir, 'new'))).to.equal(false)
      const uts = mycli(['checkpoint', String(pid), '-D', join(dir, 'new'), '--external-ns', 'uts'])
      expect(uts.code).to.equal(2)
      expect(flat(uts.stderr)).to.include('--external-ns "uts": namespace "uts" is not supported here (expected one of: net)')
      const dead = spawnSync('true').pid!
      const missing = mycli(['checkpoint', String(dead), '-D', join(dir, 'new')])
      expect(missing.code).to.equal(2)
      expect(flat(missing.stderr)).to.include(`process ${dead} does not exist`)
      const forced = mycli(['checkpoint', String(pid), '-D', dir, '--force'])
      expect(forced.code, forced.stderr).to.equal(0)
    })
  })

  describe('colour where it carries meaning', () => {
    it('restore\'s verified, checkpoint verify\'s verdict, warnings: coloured with FORCE_COLOR, plain with NO_COLOR, in pipes and in --json', async () => {
      const esc = '\u001B['
      const pid = await workload(['sleep', '100000'])
      const dir = join(tempDir(), 'ckpt')
      expect(mycli(['checkpoint', String(pid), '-D', dir]).code).to.equal(0)
      await reaped(pid)
      const holder = await startHolder(['net'])
      const verify = (env: NodeJS.ProcessEnv, ...extra: string[]) => mycli(['checkpoint', 'verify', dir, ...extra], env).stdout
      expect(verify({FORCE_COLOR: '1'})).to.include(`${esc}32m`).and.include('files match')
      expect(verify({})).not.to.include(esc)
      expect(verify({FORCE_COLOR: '1', NO_COLOR: '1'})).not.to.include(esc)
      expect(verify({FORCE_COLOR: '1'}, '--json')).not.to.include(esc)
      const r = mycli(['restore', '-D', dir, '-J', `net:${holder.pid}`], {FORCE_COLOR: '1'})
      expect(r.code, r.stderr).to.equal(0)
      track(pid)
      expect(r.stdout).to.include(`(inode ${nsInode(holder.pid, 'net')}): ${esc}32mverified${esc}39m`)
      // Warnings, one line each like the errors, through the same variables: a process in a network namespace of its own.
      const own = await workload(['unshare', '--net', 'sleep', '100000'])
      const warn = (env: NodeJS.ProcessEnv, ...extra: string[]) => mycli(['checkpoint', String(own), '-D', join(tempDir(), 'c'), '--dry-run', '--network-lock', 'skip', ...extra], env)
      expect(warn({FORCE_COLOR: '1'}).stderr).to.include(`${esc}33mWarning:${esc}39m process`)
      const plain = warn({}).stderr
      expect(plain).to.include('Warning: process').and.not.include(esc)
      expect(plain.split('\n').filter(line => line.includes('network namespace of its own')), 'one unwrapped line').to.have.length(1).and.to.satisfy((lines: string[]) => lines[0].startsWith('Warning: process'))
      expect(warn({FORCE_COLOR: '1', NO_COLOR: '1'}).stderr).to.include('Warning: process').and.not.include(esc)
      const json = warn({FORCE_COLOR: '1'}, '--json')
      expect(json.stderr, 'with --json the advice is in the object').to.equal('')
      expect(json.stdout).not.to.include(esc)
      expect(JSON.parse(json.stdout).notes[0]).to.include('checkpoint it with --external-ns net')
    })
  })

  describe('restore --dry-run plans from the images', () => {
    it('a plain checkpoint: every type inherited, time new, the joins shown', async () => {
      const pid = await workload(['sleep', '100000'])
      const dir = join(tempDir(), 'ckpt')
      expect(mycli(['checkpoint', String(pid), '-D', dir]).code).to.equal(0)
      const holder = await startHolder(['net'])
      const r = mycli(['restore', '-D', dir, '-J', `net:${holder.pid}`, '--dry-run'])
      expect(r.code, r.stderr).to.equal(0)
      expect(planOf(r.stdout)).to.deep.equal({
        cgroup: 'inherited: the namespace CRIU runs in',
        ipc: 'inherited: the namespace CRIU runs in',
        mnt: 'inherited: the namespace CRIU runs in',
        net: `joined: process ${holder.pid}`,
        pid: 'inherited: the namespace CRIU runs in',
        time: 'new: CRIU makes one so that the monotonic clocks go on from the checkpoint',
        user: 'inherited: the namespace CRIU runs in',
        uts: 'inherited: the namespace CRIU runs in',
      })
      await reaped(pid)
      expect(existsSync(`/proc/${pid}`), 'nothing restored').to.equal(false)
    })

    it('a checkpoint with its own net namespace: restored from the images, with its devices', async () => {
      const pid = await workload(['unshare', '--net', 'sleep', '100000'])
      const dir = join(tempDir(), 'ckpt')
      const c = mycli(['checkpoint', String(pid), '-D', dir, '--network-lock', 'skip'])
      expect(c.code, c.stderr).to.equal(0)
      const r = mycli(['restore', '-D', dir, '--dry-run'])
      expect(r.code, r.stderr).to.equal(0)
      const plan = planOf(r.stdout)
      expect(plan.net).to.equal('restored from the images: devices: lo (loopback)')
      expect(plan.uts).to.equal('inherited: the namespace CRIU runs in')
      // joining net would put the images' devices and addresses into the holder's namespace
      const holder = await startHolder(['net'])
      const joined = mycli(['restore', '-D', dir, '-J', `net:${holder.pid}`, '--dry-run'])
      expect(joined.code).to.equal(2)
      expect(flat(joined.stderr)).to.include('the checkpoint has its own net namespace (devices: lo (loopback)); CRIU would restore its devices, addresses and routes into the joined namespace')
    })

    it('a checkpoint with its own UTS namespace: refused joins, and what --allow-overwrite really does', async () => {
      const pid = await workload(['unshare', '--uts', 'sh', '-c', 'hostname ckpt-host; exec sleep 100000'])
      const dir = join(tempDir(), 'ckpt')
      expect(mycli(['checkpoint', String(pid), '-D', dir]).code).to.equal(0)
      await reaped(pid)
      const r = mycli(['restore', '-D', dir, '--dry-run'])
      expect(planOf(r.stdout).uts).to.equal('restored from the images: hostname "ckpt-host"')
      const holder = await startHolder(['uts'], 'pod-host')
      const refused = mycli(['restore', '-D', dir, '-J', `uts:${holder.pid}`])
      expect(refused.code).to.equal(2)
      expect(flat(refused.stderr)).to.include('the checkpoint has its own UTS namespace (hostname "ckpt-host"); CRIU would set the joined namespace\'s hostname and domain name to the checkpoint\'s Hint: restore without -J uts (the tree gets its own uts namespace back from the images); or pass --allow-overwrite')
      expect(existsSync(`/proc/${pid}`)).to.equal(false)
      const hostname = () => spawnSync('nsenter', ['-t', String(holder.pid), '-u', 'hostname'], {encoding: 'utf8'}).stdout.trim()
      expect(hostname()).to.equal('pod-host')
      // The refusal is warranted: with the override, CRIU rewrites the holder's hostname.
      const forced = mycli(['restore', '-D', dir, '-J', `uts:${holder.pid}`, '--allow-overwrite'])
      expect(forced.code, forced.stderr).to.equal(0)
      track(pid)
      expect(nsInode(pid, 'uts')).to.equal(nsInode(holder.pid, 'uts'))
      expect(hostname()).to.equal('ckpt-host')
    })

    it('a checkpoint with its own IPC namespace: -J ipc refused; with --allow-overwrite CRIU writes its sysctls and shm into the holder', async () => {
      const pid = await workload(['unshare', '--ipc', 'sh', '-c', 'echo 12345 > /proc/sys/kernel/msgmax; ipcmk -M 4096 >/dev/null; exec sleep 100000'])
      const dir = join(tempDir(), 'ckpt')
      expect(mycli(['checkpoint', String(pid), '-D', dir]).code).to.equal(0)
      await reaped(pid)
      expect(planOf(mycli(['restore', '-D', dir, '--dry-run']).stdout).ipc).to.equal('restored from the images: the tree had its own')
      const holder = await startHolder(['ipc'])
      const inHolder = (cmd: string) => spawnSync('nsenter', ['-t', String(holder.pid), '-i', 'sh', '-c', cmd], {encoding: 'utf8'}).stdout.trim()
      const before = {msgmax: inHolder('cat /proc/sys/kernel/msgmax'), shm: inHolder('ipcs -m | grep -c 0x || true')}
      expect(before).to.deep.equal({msgmax: '8192', shm: '0'})
      const refused = mycli(['restore', '-D', dir, '-J', `ipc:${holder.pid}`])
      expect(refused.code).to.equal(2)
      expect(flat(refused.stderr)).to.include('the checkpoint has its own IPC namespace; CRIU would write its IPC sysctls and SysV objects')
      expect(inHolder('cat /proc/sys/kernel/msgmax')).to.equal('8192')
      const forced = mycli(['restore', '-D', dir, '-J', `ipc:${holder.pid}`, '--allow-overwrite'])
      expect(forced.code, forced.stderr).to.equal(0)
      track(pid)
      expect(nsInode(pid, 'ipc')).to.equal(nsInode(holder.pid, 'ipc'))
      expect({msgmax: inHolder('cat /proc/sys/kernel/msgmax'), shm: inHolder('ipcs -m | grep -c 0x || true')}).to.deep.equal({msgmax: '12345', shm: '1'})
    })
  })

  interface Inspected {
    namespaces: {holderCount: number; holders: {pid: number}[]; type: string}[]
  }
  const netOf = (r: Inspected) => r.namespaces.find(n => n.type === 'net')!

  describe('ns inspect', () => {
    it('shows which namespaces of a process differ from ours, with inodes and holders (--json)', async () => {
      const holder = await startHolder(['net', 'uts'])
      const r = mycli(['ns', 'inspect', String(holder.pid), '--holders', '--json'])
      expect(r.code, r.stderr).to.equal(0)
      const [result] = JSON.parse(r.stdout)
      expect(result.target).to.equal(`pid ${holder.pid}`)
      for (const ns of result.namespaces) {
        expect(ns.inode, ns.type).to.equal(nsInode(holder.pid, ns.type))
        expect(ns.sameAsCaller, ns.type).to.equal(!['net', 'uts'].includes(ns.type))
      }

      const net = result.namespaces.find((n: {type: string}) => n.type === 'net')
      expect(net.holders).to.deep.equal([{comm: 'sleep', pid: holder.pid}])
      expect(net.ownerUserNs).to.equal(nsInode('self', 'user'))
    })

    it('a /run/netns file, and a table for people', () => {
      const path = addNetns(`crt-inspect-${process.pid}`)
      const r = mycli(['ns', 'inspect', path])
      expect(r.code, r.stderr).to.equal(0)
      expect(r.stdout).to.match(new RegExp(`^${path}:\\n\\s*type\\s+inode\\s+owner user ns\\s+yours`))
      expect(r.stdout).to.match(/net\s+\d+\s+\d+\s+differs/)
    })

    it('--holders: all of them in JSON, kernel threads only when asked, a table within 80 columns', () => {
      const json = (args: string[]) => JSON.parse(mycli(['ns', 'inspect', String(process.pid), '--holders', '--json', ...args]).stdout)[0]
      const plain = netOf(json([]))
      expect(plain.holders.length, 'nothing cut in JSON').to.equal(plain.holderCount)
      expect(plain.holders.length).to.be.greaterThan(5)
      expect(plain.holders.map(h => h.pid), 'kthreadd is a kernel thread').not.to.include(2)
      expect(plain.holders.map(h => h.pid)).to.include(process.pid)
      const withKernel = netOf(json(['--kernel-threads']))
      expect(withKernel.holders.map(h => h.pid)).to.include(2)
      expect(withKernel.holderCount).to.be.greaterThan(plain.holderCount)

      const table = mycli(['ns', 'inspect', String(process.pid), '--holders'])
      expect(table.code, table.stderr).to.equal(0)
      for (const line of table.stdout.split('\n')) {
        expect(line.length, line).to.be.at.most(80)
        expect(line, 'trailing spaces').not.to.match(/ $/)
      }

      expect(flat(table.stdout), 'wrapped lines joined: the count may break across them').to.match(/\(\+\d+ more\)/)
      expect(table.stdout, 'entries as comm(pid)').to.match(/\S+\(\d+\), \S+\(\d+\)/)
    })

    it('colours "differs" only where colour is wanted: FORCE_COLOR yes, NO_COLOR and pipes no, --json never', async () => {
      const holder = await startHolder(['net'])
      const esc = '\u001B['
      expect(mycli(['ns', 'inspect', String(holder.pid)]).stdout, 'a pipe').not.to.include(esc)
      const forced = mycli(['ns', 'inspect', String(holder.pid)], {FORCE_COLOR: '1'}).stdout
      const netLine = forced.split('\n').find(l => l.startsWith('net '))
      expect(netLine).to.include(`${esc}33mdiffers`)
      expect(forced, '"same" stays plain').to.match(/uts\s+\d+\s+\d+\s+same/)
      expect(mycli(['ns', 'inspect', String(holder.pid)], {FORCE_COLOR: '1', NO_COLOR: '1'}).stdout).not.to.include(esc)
      expect(mycli(['ns', 'inspect', String(holder.pid), '--json'], {FORCE_COLOR: '1'}).stdout).not.to.include(esc)
    })

    it('refuses a file that is not a namespace and a missing process (exit 2)', () => {
      const file = join(tempDir(), 'f')
      writeFileSync(file, '')
      expect(mycli(['ns', 'inspect', file]).code).to.equal(2)
      const dead = spawnSync('true').pid!
      const r = mycli(['ns', 'inspect', String(dead)])
      expect(r.code).to.equal(2)
      expect(flat(r.stderr)).to.include(`process ${dead} does not exist`)
    })
  })

  describe('ns exec', () => {
    it('replaces nsenter -t PID -n -u: runs inside, passes the exit status on', async () => {
      const holder = await startHolder(['net', 'uts'], 'exec-host')
      const r = mycli(['ns', 'exec', '-J', `net:${holder.pid}`, '-J', `uts:${holder.pid}`, '--', 'sh', '-c', 'readlink /proc/self/ns/net; hostname; exit 7'])
      expect(r.code, r.stderr).to.equal(7)
      expect(r.stdout.trim().split('\n')).to.deep.equal([`net:[${nsInode(holder.pid, 'net')}]`, 'exec-host'])
    })

    it('joins a user namespace as the user join\'s uid/gid', async () => {
      const holder = await startHolder(['user'])
      const r = mycli(['ns', 'exec', '-J', `user:${holder.pid}:1000:1000`, '--', 'sh', '-c', 'id -u; id -g; readlink /proc/self/ns/user'])
      expect(r.code, r.stderr).to.equal(0)
      expect(r.stdout.trim().split('\n')).to.deep.equal(['1000', '1000', `user:[${nsInode(holder.pid, 'user')}]`])
      expect(r.stderr, 'no CRIU warning for ns exec').not.to.include('dangerous')
    })

    it('127 for a missing command, 2 for a bad target, 2 without a command', async () => {
      const holder = await startHolder(['net'])
      expect(mycli(['ns', 'exec', '-J', `net:${holder.pid}`, '--', 'no-such-command-x']).code).to.equal(127)
      const dead = spawnSync('true').pid!
      const bad = mycli(['ns', 'exec', '-J', `net:${dead}`, '--', 'true'])
      expect(bad.code).to.equal(2)
      expect(flat(bad.stderr)).to.include(`process ${dead} does not exist (or exited)`)
      expect(mycli(['ns', 'exec', '-J', `net:${holder.pid}`]).code).to.equal(2)
    })
  })

  // oclif's parser fills a missing argument from a piped stdin: `echo 1 | mycli checkpoint -D x`
  // would checkpoint PID 1, and a script's input would be eaten. No argument of ours comes from stdin.
  describe('arguments never come from stdin', () => {
    it('a missing PID, DIR or target is refused as missing, whatever stdin holds', () => {
      const dir = tempDir()
      const cases: Array<[string[], RegExp]> = [
        [['checkpoint', '-D', join(dir, 'ck'), '--dry-run'], /Missing 1 required arg:(\s|\\n)+pid/],
        [['checkpoint', 'verify'], /Missing 1 required arg:(\s|\\n)+dir/],
        [['ns', 'inspect', '--json'], /Missing 1 required arg:(\s|\\n)+target/],
      ]
      for (const [args, missing] of cases) {
        const r = mycli(args, {}, '1\n')
        expect(r.code, args.join(' ')).to.equal(2)
        expect(r.stderr + r.stdout, args.join(' ')).to.match(missing) // --json: the error is on stdout
        expect(existsSync(join(dir, 'ck')), 'nothing written').to.equal(false)
      }

      // restore -D: the folder is the one -D names, not a second one read from stdin.
      const restore = mycli(['restore', '-D', join(dir, 'none'), '--dry-run'], {}, '/etc\n')
      expect(restore.code).to.equal(2)
      expect(flat(restore.stderr)).to.include(`--images-dir "${join(dir, 'none')}"`).and.not.include('/etc')
    })
  })
})
