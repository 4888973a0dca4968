import {expect} from 'chai'
import {ChildProcess, spawn, spawnSync} from 'node:child_process'
import {chmodSync, existsSync, readFileSync, writeFileSync} from 'node:fs'
import {basename, join} from 'node:path'

import {
  Checkpoint, checkpoint, folderDigest, mycli,
} from '../support/checkpoint.js'
import {alive, BIN, cleanup, criuPath, flat, keptWorkDir, killPid, nsInode, pluginFolders, requireRoot, startHolder, tempDir, track, waitFor} from '../support/system.js'

/**
 * Hold the real CRIU at one of its action-script stages (CRIU's own hook points, configured
 * through CRIU_CONFIG_FILE), so a test can act while CRIU is mid-restore.
 */
function holdCriuAt(stage: string): {criuPid: () => number; env: NodeJS.ProcessEnv; release: () => void; reached: () => boolean} {
  const dir = tempDir('criu-hold-')
  const script = join(dir, 'action.sh')
  writeFileSync(script, `#!/bin/sh
[ "$CRTOOLS_SCRIPT_ACTION" = "${stage}" ] || exit 0
echo $PPID > ${dir}/criu.pid
i=0
while [ ! -e ${dir}/go ] && [ $i -lt 1200 ]; do sleep 0.05; i=$((i+1)); done
exit 0
`)
  chmodSync(script, 0o755)
  writeFileSync(join(dir, 'criu.conf'), `action-script ${script}\n`)
  return {
    criuPid: () => Number(readFileSync(join(dir, 'criu.pid'), 'utf8')),
    env: {CRIU_CONFIG_FILE: join(dir, 'criu.conf')},
    release: () => writeFileSync(join(dir, 'go'), ''),
    reached: () => existsSync(join(dir, 'criu.pid')),
  }
}

function startMycli(args: string[], env: NodeJS.ProcessEnv): {done: Promise<{code: null | number; stderr: string; stdout: string}>; proc: ChildProcess} {
  const proc = spawn(process.execPath, [BIN, ...args], {env: {...process.env, CRIU_PATH: criuPath(), ...env}})
  track(proc.pid!)
  let stdout = ''
  let stderr = ''
  proc.stdout!.on('data', c => {
    stdout += c
  })
  proc.stderr!.on('data', c => {
    stderr += c
  })
  const done = new Promise<{code: null | number; stderr: string; stdout: string}>(resolve => {
    proc.once('exit', code => resolve({code, stderr, stdout}))
  })
  return {done, proc}
}

/** Gone entirely: not running, not a zombie, the PID free for the next restore. */
function gone(pid: number): boolean {
  return !existsSync(`/proc/${pid}`)
}

/** A workload that appends a line to `log` every 10 ms: its line count shows whether it ran. */
const ticking = (log: string) => ({python: `import time\nlog = open(${JSON.stringify(log)}, "a", buffering=1)\nwhile True:\n    log.write("tick\\n")\n    time.sleep(0.01)`})
const lines = (file: string) => readFileSync(file, 'utf8').split('\n').filter(Boolean).length
describe('faults: nothing restored or half-restored is left behind', function () {
  this.timeout(180_000)
  let ckpt: Checkpoint

  before(requireRoot)

  beforeEach(async () => {
    ckpt = await checkpoint()
  })

  afterEach(cleanup)

  it('CRIU killed mid-restore (tasks created, not resumed): exit 1, the half-restored task is ended and reaped', async () => {
    const holder = await startHolder(['net'])
    const hold = holdCriuAt('pre-resume')
    const run = startMycli(['restore', '-D', ckpt.dir, '-J', `net:${holder.pid}`], hold.env)
    await waitFor('CRIU to reach pre-resume', hold.reached, 30_000)
    expect(alive(ckpt.pid), 'CRIU has recreated the task').to.equal(true)
    killPid(hold.criuPid())
    const r = await run.done
    expect(r.code, r.stderr).to.equal(1)
    expect(flat(r.stderr)).to.include('CRIU restore failed (SIGKILL)')
    expect(keptWorkDir(r.stderr), 'the failed restore keeps its folder and names its log').to.match(/oclif-plugin-criu-restore-/)
    expect(gone(ckpt.pid), 'the half-restored task is gone and reaped').to.equal(true)
    // and so the same checkpoint restores now
    const again = mycli(['restore', '-D', ckpt.dir, '-J', `net:${holder.pid}`])
    expect(again.code, again.stderr).to.equal(0)
    track(ckpt.pid)
  })

  it('CRIU hanging: --timeout stops it, exit 1, nothing left', async () => {
    const hold = holdCriuAt('pre-resume')
    const started = Date.now()
    const r = mycli(['restore', '-D', ckpt.dir, '--timeout', '2'], hold.env)
    expect(r.code, r.stderr).to.equal(1)
    expect(flat(r.stderr)).to.include('CRIU did not finish within 2 s; it was stopped and nothing restored is left running')
    expect(keptWorkDir(r.stderr), 'the failed restore keeps its folder and names its log').to.match(/oclif-plugin-criu-restore-/)
    expect(Date.now() - started).to.be.below(15_000)
    expect(alive(hold.criuPid()), 'CRIU is gone').to.equal(false)
    expect(gone(ckpt.pid)).to.equal(true)
  })

  it('checkpoint stopped by --timeout while CRIU holds the tree (post-dump): exit 1, no checkpoint left, the message says so, the process runs on', async () => {
    // A process that wakes every 10 ms: its voluntary context switches count its wake-ups.
    const child = spawn('setsid', ['python3', '-c', 'import time\nwhile True: time.sleep(0.01)'], {stdio: 'ignore'})
    const pid = track(child.pid!)
    const status = () => readFileSync(`/proc/${pid}/status`, 'utf8')
    const wakeups = () => Number(/^voluntary_ctxt_switches:\s+(\d+)$/m.exec(status())![1])
    await waitFor('the workload to run', () => readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'python3' && wakeups() > 5)
    const dir = join(tempDir(), 'ck')
    const hold = holdCriuAt('post-dump')
    const r = mycli(['checkpoint', String(pid), '-D', dir, '--timeout', '2'], hold.env)
    expect(r.code, r.stderr).to.equal(1)
    expect(flat(r.stderr)).to.include(`CRIU did not finish within 2 s; it was stopped and no checkpoint was written (the folder made for it, "${dir}", was removed); the process tree runs on`)
    expect(existsSync(dir), 'the folder made for the checkpoint').to.equal(false)
    expect(alive(hold.criuPid()), 'CRIU is gone').to.equal(false)
    expect(status()).to.match(/^TracerPid:\s+0$/m)
    const before = wakeups()
    await new Promise(resolve => {
      setTimeout(resolve, 500)
    })
    expect(wakeups() - before, 'wake-ups in 0.5 s').to.be.above(10)
  })

  for (const signal of ['SIGINT', 'SIGTERM'] as const) {
    it(`${signal} to mycli mid-restore: exit 130, CRIU and the tasks are gone`, async () => {
      const hold = holdCriuAt('pre-resume')
      const run = startMycli(['restore', '-D', ckpt.dir], hold.env)
      await waitFor('CRIU to reach pre-resume', hold.reached, 30_000)
      run.proc.kill(signal)
      const r = await run.done
      expect(r.code, r.stderr).to.equal(130)
      expect(flat(r.stderr)).to.include(`interrupted by ${signal}: CRIU was stopped and nothing restored is left running`)
      expect(keptWorkDir(r.stderr), 'the interrupted restore keeps its folder and names its log').to.match(/oclif-plugin-criu-restore-/)
      expect(alive(hold.criuPid())).to.equal(false)
      expect(gone(ckpt.pid)).to.equal(true)
    })
  }

  it('the join target exits between pinning and the join: the pinned namespace is still the one joined', async () => {
    const holder = await startHolder(['net'])
    const inode = nsInode(holder.pid, 'net')
    const hold = holdCriuAt('pre-restore')
    const run = startMycli(['restore', '-D', ckpt.dir, '-J', `net:${holder.pid}`], hold.env)
    await waitFor('CRIU to reach pre-restore', hold.reached, 30_000)
    killPid(holder.pid)
    await waitFor('the holder to die', () => !alive(holder.pid))
    hold.release()
    const r = await run.done
    expect(r.code, r.stderr).to.equal(0)
    track(ckpt.pid)
    expect(nsInode(ckpt.pid, 'net')).to.equal(inode)
  })

  it('the restored PID is already taken: refused before CRIU starts (exit 2), naming the PID and its process; nothing written; the running one untouched', async () => {
    const first = mycli(['restore', '-D', ckpt.dir])
    expect(first.code, first.stderr).to.equal(0)
    track(ckpt.pid)
    const folders = pluginFolders()
    const images = folderDigest(ckpt.dir)
    const second = mycli(['restore', '-D', ckpt.dir])
    expect(second.code, second.stderr).to.equal(2)
    expect(second.stderr).to.equal(`Error: the checkpoint's PID ${ckpt.pid} (sleep) is taken here: CRIU recreates every task with its PID, and cannot while another process holds it\nHint: end that process first, and restore again (after \`mycli checkpoint --leave-running\`, the checkpointed tree itself still runs and holds them)\n`)
    const json = mycli(['restore', '-D', ckpt.dir, '--json'])
    expect(json.code).to.equal(2)
    expect(json.stderr).to.equal('')
    expect(JSON.parse(json.stdout).error).to.include({exitCode: 2})
    // A mistake on the command line is said first: the taken PID is the last check.
    const typo = mycli(['restore', '-D', ckpt.dir, '-J', 'net:no-such-netns'])
    expect(typo.code).to.equal(2)
    expect(typo.stderr).to.match(/^Error: --join-ns "net:no-such-netns": \S+\/no-such-netns does not exist\n/)
    expect(pluginFolders(), 'no work folder: CRIU never started').to.deep.equal(folders)
    expect(folderDigest(ckpt.dir), 'the checkpoint is untouched').to.equal(images)
    expect(alive(ckpt.pid), 'the first restore still runs').to.equal(true)
  })

  it('CRIU\'s own "File exists" still gets its hint, when a PID is taken between the check and the fork', async () => {
    const first = mycli(['restore', '-D', ckpt.dir])
    expect(first.code, first.stderr).to.equal(0)
    track(ckpt.pid)
    // Held at pre-restore, after the plugin's check: the PID is taken only now.
    killPid(ckpt.pid)
    await waitFor('the first restore to be reaped', () => gone(ckpt.pid), 10_000)
    const hold = holdCriuAt('pre-restore')
    const run = startMycli(['restore', '-D', ckpt.dir], hold.env)
    await waitFor('CRIU to reach pre-restore', hold.reached, 30_000)
    const other = mycli(['restore', '-D', ckpt.dir])
    expect(other.code, other.stderr).to.equal(0)
    hold.release()
    const r = await run.done
    expect(r.code).to.equal(1)
    const err = flat(r.stderr)
    expect(err).to.include(`Can't fork for ${ckpt.pid}: File exists`)
    expect(err).to.include('Hint: a process with one of the checkpoint\'s PIDs already runs here')
    expect(keptWorkDir(r.stderr), 'the failed restore keeps its folder and names its log').to.match(/oclif-plugin-criu-restore-/)
    expect(alive(ckpt.pid), 'the other restore still runs').to.equal(true)
  })

  it('the restored PID is already taken: a --dry-run says so, by PID and name (exit 0, text and --json), and starts nothing', async () => {
    const first = mycli(['restore', '-D', ckpt.dir])
    expect(first.code, first.stderr).to.equal(0)
    track(ckpt.pid)
    const folders = pluginFolders()
    const warning = `the checkpoint's PID ${ckpt.pid} (sleep) is taken here: CRIU recreates every task with its PID, so the restore would be refused; end that process first`
    const text = mycli(['restore', '-D', ckpt.dir, '--dry-run'])
    expect(text.code, text.stderr).to.equal(0)
    expect(text.stderr).to.equal(`Warning: ${warning}\n`)
    const json = mycli(['restore', '-D', ckpt.dir, '--dry-run', '--json'])
    expect(json.code, json.stderr).to.equal(0)
    expect(json.stderr).to.equal('')
    expect(JSON.parse(json.stdout).warnings).to.deep.equal([warning])
    expect(pluginFolders(), 'no work folder').to.deep.equal(folders)
    killPid(ckpt.pid)
    // A zombie keeps its PID (and is told as taken): the PID is free once it is reaped.
    await waitFor('the restored task to be reaped', () => gone(ckpt.pid), 10_000)
    const free = mycli(['restore', '-D', ckpt.dir, '--dry-run', '--json'])
    expect(free.code, free.stderr).to.equal(0)
    expect(JSON.parse(free.stdout)).not.to.have.property('warnings')
  })

  it('CRIU missing from PATH: exit 1 and what to do, whatever CRIU the machine has elsewhere', () => {
    // An empty folder as the whole PATH: a CRIU in /usr/sbin (Debian's) is not searched, only named.
    const r = spawnSync(process.execPath, [BIN, 'restore', '-D', ckpt.dir], {encoding: 'utf8', env: {...process.env, CRIU_PATH: '', PATH: tempDir('empty-path-')}})
    expect(r.status).to.equal(1)
    const err = flat(r.stderr)
    expect(err).to.include('CRIU not found on PATH (needs 3.14 or newer; 4.2 or newer recommended) Hint: ')
    expect(err).to.match(/pass --criu-path.* or set CRIU_PATH/)
    if (existsSync('/usr/sbin/criu')) expect(err).to.include('/usr/sbin/criu exists but is not on PATH')
  })

  it('CRIU too old: exit 1, the version found and the one needed', () => {
    const stub = join(tempDir(), 'criu')
    writeFileSync(stub, '#!/bin/sh\necho "Version: 3.13"\n')
    chmodSync(stub, 0o755)
    const r = mycli(['restore', '-D', ckpt.dir, '--criu-path', stub])
    expect(r.code).to.equal(1)
    expect(flat(r.stderr)).to.include(`CRIU 3.13 at ${stub} (from --criu-path) is too old: restore needs CRIU 3.14 or newer`)
  })

  it('not root: exit 1, nothing started', () => {
    const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', process.execPath, BIN, 'restore', '-D', ckpt.dir, '-J', 'net:1'], {
      encoding: 'utf8',
      env: {...process.env, CRIU_PATH: criuPath(), HOME: '/tmp'},
    })
    expect(r.status, r.stderr).to.equal(1)
    expect(flat(r.stderr)).to.include('restore needs root: joining namespaces and running CRIU need CAP_SYS_ADMIN Hint: run it as root (sudo)')
  })

  it('--no-restore-detached: prints the verified PID, then waits until the tree has ended', async () => {
    // The root is this process's child once CRIU has exited: its exit status is known.
    const ending = await checkpoint({python: 'import time\ntime.sleep(1.5)\nraise SystemExit(3)'})
    const holder = await startHolder(['uts'])
    const started = Date.now()
    const r = mycli(['restore', '-D', ending.dir, '-J', `uts:${holder.pid}`, '--no-restore-detached'])
    expect(r.code, r.stderr).to.equal(0)
    expect(r.stdout).to.include(`Restored PID ${ending.pid}`)
    expect(r.stdout).to.include(`uts   joined pid ${holder.pid}`)
    expect(r.stdout).to.include(`The restored tree (PID ${ending.pid}) has ended (exit code 3)`)
    expect(Date.now() - started, 'it waited for the tree').to.be.above(1000)
    expect(gone(ending.pid)).to.equal(true)
  })

  it('--no-restore-detached, interrupted while it waits for the tree: exit 130, the tree ended, and the message says CRIU had already finished', async () => {
    const holder = await startHolder(['uts'])
    const run = startMycli(['restore', '-D', ckpt.dir, '-J', `uts:${holder.pid}`, '--no-restore-detached'], {})
    const children = () => readFileSync(`/proc/${run.proc.pid}/task/${run.proc.pid}/children`, 'utf8').trim()
    // CRIU is gone and the restored root is the command's child (it is the subreaper): it waits for the tree.
    await waitFor('the command to wait for the restored tree alone', () => alive(ckpt.pid) && children() === String(ckpt.pid), 30_000)
    run.proc.kill('SIGINT')
    const r = await run.done
    expect(r.code, r.stderr).to.equal(130)
    expect(r.stdout).to.include(`Restored PID ${ckpt.pid}`)
    expect(flat(r.stderr)).to.include('interrupted by SIGINT: CRIU had finished, and nothing restored is left running')
    await waitFor('the tree to be gone', () => gone(ckpt.pid), 10_000)
  })

  describe('at the post-restore stage: every task restored, none resumed, the joins being verified', () => {
    const cases = [
      {args: [] as string[], code: 130, how: 'SIGINT', message: 'interrupted by SIGINT: CRIU was stopped and nothing restored is left running'},
      // Long enough for a busy machine to reach the stage; the held stage outlasts it.
      {args: ['--timeout', '10'], code: 1, how: '--timeout', message: 'CRIU did not finish within 10 s; it was stopped and nothing restored is left running'},
    ]
    for (const {args, code, how, message} of cases) {
      it(`${how} while CRIU is held at post-restore: exit ${code}, CRIU and the tree are gone, the workload never ran`, async () => {
        const log = join(tempDir('criu-tick-'), 'ticks.log')
        const ckpt = await checkpoint(ticking(log))
        const ticks = lines(log)
        const holder = await startHolder(['net'])
        const foldersBefore = pluginFolders()
        const hold = holdCriuAt('post-restore')
        const run = startMycli(['restore', '-D', ckpt.dir, '-J', `net:${holder.pid}`, ...args], hold.env)
        if (how === 'SIGINT') {
          await waitFor('CRIU to reach post-restore', hold.reached, 30_000)
          expect(alive(ckpt.pid), 'CRIU has recreated the task').to.equal(true)
          run.proc.kill('SIGINT')
        }

        const r = await run.done
        expect(hold.reached(), 'CRIU was at post-restore').to.equal(true)
        expect(r.code, r.stderr).to.equal(code)
        expect(flat(r.stderr)).to.include(message)
        expect(alive(hold.criuPid()), 'CRIU is gone').to.equal(false)
        expect(gone(ckpt.pid), 'the task is gone and reaped').to.equal(true)
        const kept = keptWorkDir(r.stderr)
        expect(kept, 'the work folder with CRIU\'s log, named in the error').to.be.a('string')
        expect(pluginFolders(), 'no other folder of the plugin left').to.deep.equal([...foldersBefore, basename(kept!)].sort())
        await new Promise(r => {
          setTimeout(r, 200)
        })
        expect(lines(log), 'the workload ran no code after the checkpoint').to.equal(ticks)
      })
    }

    it('SIGKILL to mycli mid-restore: CRIU loses the pinned targets and its socket, fails and kills the tree; the workload never ran', async () => {
      const log = join(tempDir('criu-tick-'), 'ticks.log')
      const ckpt = await checkpoint(ticking(log))
      const ticks = lines(log)
      const holder = await startHolder(['net'])
      // Held after mycli answered pre-restore (CRIU asks over RPC first, then runs configured scripts).
      const hold = holdCriuAt('pre-restore')
      const work = tempDir() // a killed mycli cannot remove its work folder: this one the test removes
      const run = startMycli(['restore', '-D', ckpt.dir, '-J', `net:${holder.pid}`, '-W', work], hold.env)
      await waitFor('CRIU to reach pre-restore', hold.reached, 30_000)
      const criu = hold.criuPid()
      track(criu)
      run.proc.kill('SIGKILL')
      await run.done
      hold.release()
      await waitFor('CRIU to end', () => !alive(criu), 30_000)
      await waitFor('the tree to be gone', () => !alive(ckpt.pid), 10_000)
      await new Promise(r => {
        setTimeout(r, 200)
      })
      expect(lines(log), 'the workload ran no code after the checkpoint').to.equal(ticks)
      const criuLog = readFileSync(join(work, 'restore.log'), 'utf8')
      // The join fails (the targets were mycli's fds: /proc/MYCLI/fd/N), or, past the joins, the question at the next stage.
      expect(criuLog, criuLog.split('\n').slice(-12).join('\n')).to.match(/Restoring FAILED|RPC client reported script error/)
      expect(criuLog).not.to.include('Restore finished successfully')
    })
  })
})
