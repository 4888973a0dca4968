import {expect} from 'chai'
import {spawn, spawnSync} from 'node:child_process'
import {chmodSync, existsSync, mkdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'

import {
  checkpoint, CliResult, mycli, unrestorableCheckpoint,
} from '../support/checkpoint.js'
import {
  alive, BIN, cleanup, criuPath, flat, nsInode, nsLink, requireRoot, startHolder, tempDir, startSleeper, track, waitFor,
} from '../support/system.js'

/** What --json says of an error (README "JSON output"). */
type JsonError = {exitCode: number; hint?: string; logFile?: string; message: string; ran?: string}

/** One JSON object on stdout, nothing on stderr, the exit code given: the --json contract (README "JSON output"). */
function json(r: CliResult, code: number): Record<string, unknown> & {error?: JsonError} {
  expect(r.stderr, 'nothing on stderr').to.equal('')
  expect(r.code, r.stdout).to.equal(code)
  const out = JSON.parse(r.stdout)
  expect(out, 'one JSON object').to.be.an('object')
  if (code !== 0) {
    expect(Object.keys(out)).to.deep.equal(['error'])
    expect(out.error.exitCode).to.equal(code)
    expect(out.error.message).to.be.a('string')
  }

  return out
}

/** Run the next command without nyc's preload (see asNobody). */
const NO_NYC = ['env', '-u', 'NODE_OPTIONS']

/** A failed run keeps its temporary work folder for the log it names: the test's to remove. */
function removeKept(logFile: string | undefined): void {
  if (logFile && dirname(logFile).startsWith(join(tmpdir(), 'oclif-plugin-criu-'))) rmSync(dirname(logFile), {force: true, recursive: true})
}

/** Start the plugin as user nobody, without root's rights. */
function asNobody(args: string[]): CliResult {
  // Not under nyc's preload: as nobody it cannot write root's coverage folder, and its failing
  // exit handler would print. nyc puts NODE_OPTIONS back into every child's environment, so it
  // is removed by env(1), after setpriv.
  const r = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', ...NO_NYC, process.execPath, BIN, ...args], {
    encoding: 'utf8',
    env: {...process.env, CRIU_PATH: criuPath(), HOME: '/tmp'},
  })
  return {code: r.status, stderr: r.stderr, stdout: r.stdout}
}

/**
 * A CRIU that checks and reports its version as the real one, but hangs in restore (which the
 * plugin runs as `criu swrk FD`) after writing its log into the work folder the plugin holds open.
 */
function hangingCriu(): string {
  const stub = join(tempDir(), 'criu')
  writeFileSync(stub, `#!/bin/sh
if [ "$1" = swrk ]; then
  for f in /proc/$PPID/fd/*; do
    case "$(readlink "$f")" in */oclif-plugin-criu-restore-*) echo "pretending to restore" > "$(readlink "$f")/restore.log";; esac
  done
  exec sleep 100000
fi
exec ${criuPath()} "$@"
`)
  chmodSync(stub, 0o755)
  return stub
}

describe('one --json contract, and errors people can read (real CRIU, real kernel)', function () {
  this.timeout(180_000)

  before(requireRoot)

  afterEach(cleanup)

  describe('the folder as an argument, as -D', () => {
    it('checkpoint PID DIR and restore DIR: the same as -D DIR; --json says dryRun false, nothing on stderr', async () => {
      const pid = await startSleeper()
      const dir = join(tempDir(), 'ckpt')
      const c = json(mycli(['checkpoint', String(pid), dir, '--json']), 0)
      expect(c.dryRun).to.equal(false)
      expect(c.imagesDir).to.equal(dir)
      // The temporary work folder is gone: the command names it as the dry run does, not by its old path.
      expect(c.command).to.match(/^W=\$\(mktemp -d\) && \S+ dump --tree \d+ /).and.include('--work-dir "$W"')
      expect(c.command).not.to.include('oclif-plugin-criu-checkpoint-')
      expect(c).not.to.have.property('logFile')
      await waitFor(`process ${pid} to be gone`, () => !existsSync(`/proc/${pid}`))
      const holder = await startHolder(['net'])
      const r = json(mycli(['restore', dir, '-J', `net:${holder.pid}`, '--json']), 0)
      track(pid)
      expect(r.dryRun).to.equal(false)
      expect(r.pid).to.equal(pid)
      expect(nsInode(pid, 'net')).to.equal(nsInode(holder.pid, 'net'))
    })

    it('restore DIR -D DIR (the same folder twice) is fine; two different folders are refused before anything starts', async () => {
      const ckpt = await checkpoint()
      const holder = await startHolder(['net'])
      const same = json(mycli(['restore', ckpt.dir, '-D', `${ckpt.dir}/`, '-J', `net:${holder.pid}`, '--dry-run', '--json']), 0)
      expect(same.dryRun).to.equal(true)
      const other = tempDir()
      const twice = mycli(['restore', ckpt.dir, '-D', other, '-J', `net:${holder.pid}`])
      expect(twice.code).to.equal(2)
      expect(twice.stderr).to.equal(`Error: the checkpoint folder is given twice: --images-dir "${other}" and the argument "${ckpt.dir}"; give it once\nHint: e.g. mycli restore -D ./ckpt -J net:1234\n`)
    })
  })

  describe('dry runs say so', () => {
    it('restore --dry-run --json: "dryRun": true', async () => {
      const ckpt = await checkpoint()
      const holder = await startHolder(['net'])
      const out = json(mycli(['restore', '-D', ckpt.dir, '-J', `net:${holder.pid}`, '--dry-run', '--json']), 0)
      expect(out.dryRun).to.equal(true)
      expect(out.command).to.be.a('string')
    })

    it('checkpoint --dry-run --json: "dryRun": true and no duration (nothing was measured); the process runs on', async () => {
      const pid = await startSleeper()
      const out = json(mycli(['checkpoint', String(pid), '-D', join(tempDir(), 'ckpt'), '--dry-run', '--json']), 0)
      expect(out.dryRun).to.equal(true)
      expect(out).not.to.have.property('durationMs')
      expect(existsSync(`/proc/${pid}`)).to.equal(true)
    })
  })

  describe('every stage of a refusal or failure is one JSON object', () => {
    it('oclif\'s flag parser (restore --bogus --json): the message and a hint, not oclif\'s config', () => {
      const out = json(mycli(['restore', '--bogus', '--json']), 2)
      expect(out.error).to.deep.equal({exitCode: 2, hint: 'see `mycli restore --help`', message: 'Nonexistent flag: --bogus'})
      expect(mycli(['restore', '--bogus', '--json']).stdout.length, 'a few lines, not 21 KB').to.be.below(300)
    })

    it('the prerun hook (restore -J net --json)', () => {
      const out = json(mycli(['restore', '-D', '/nonexistent', '-J', 'net', '--json']), 2)
      expect(out.error!.message).to.include('--join-ns "net": missing ":" between namespace type and target')
    })

    it('a user join\'s warning goes into the JSON (warnings), not onto stderr', async () => {
      const ckpt = await checkpoint()
      const holder = await startHolder(['user'])
      const out = json(mycli(['restore', '-D', ckpt.dir, '-J', `user:${holder.pid}`, '--dry-run', '--json']), 0)
      expect(out.warnings).to.be.an('array').with.length(1)
      expect((out.warnings as string[])[0]).to.include('CRIU calls joining a user namespace dangerous')
    })

    it('every command, refused by its parser or its checks: exit 2', () => {
      const cases: string[][] = [
        ['checkpoint', 'notapid', '-D', '/x', '--json'],
        ['checkpoint', 'verify', '--json'],
        ['checkpoint', 'verify', '/nonexistent/ckpt', '--json'],
        ['ns', 'inspect', '--bogus', '--json'],
        ['ns', 'inspect', '/nonexistent', '--json'],
        ['launch', '--json'],
        ['launch', '-J', 'pid:1', '--json', '--', 'true'],
        ['criu', 'check', '--bogus', '--json'],
        ['restore', '--json'],
      ]
      for (const args of cases) {
        const r = mycli(args)
        expect(r.stderr, args.join(' ')).to.equal('')
        expect(r.code, args.join(' ')).to.equal(2)
        expect(JSON.parse(r.stdout).error.exitCode, args.join(' ')).to.equal(2)
      }
    })

    it('failure after CRIU ran: exit 1, with CRIU\'s log (logFile), which exists', async () => {
      const ckpt = await unrestorableCheckpoint()
      const holder = await startHolder(['net'])
      const again = json(mycli(['restore', '-D', ckpt.dir, '-J', `net:${holder.pid}`, '--json']), 1)
      expect(again.error!.logFile).to.match(/restore\.log$/)
      expect(existsSync(again.error!.logFile!)).to.equal(true)
      expect(again.error!.message).to.include('CRIU restore failed')
      // Each fact once: which CRIU ran and its log are fields, not lines of the message too.
      expect(again.error!.ran).to.match(/^CRIU \d+\.\d+/).and.include(` at ${criuPath()} (from CRIU_PATH)`)
      expect(again.error!.message).not.to.match(/^(Ran|Log):/m)
      expect(again.error!.message).not.to.include(again.error!.logFile!)
      // The text keeps both lines.
      const text = mycli(['restore', '-D', ckpt.dir, '-J', `net:${holder.pid}`])
      expect(text.code).to.equal(1)
      expect(text.stderr).to.include(`\nRan: ${again.error!.ran}\nLog: `)
      removeKept(/^Log: (.*)$/m.exec(text.stderr)![1])
      removeKept(again.error!.logFile)
      expect(alive(ckpt.pid), 'nothing of the failed restore runs').to.equal(false)
    })

    describe('interrupted or timed out while CRIU runs', () => {
      it('SIGINT: exit 130, one JSON object with the log, nothing on stderr', async () => {
        const ckpt = await checkpoint()
        const holder = await startHolder(['net'])
        const stub = hangingCriu()
        const child = spawn(process.execPath, [BIN, 'restore', '-D', ckpt.dir, '-J', `net:${holder.pid}`, '--json', '--criu-path', stub], {stdio: ['ignore', 'pipe', 'pipe']})
        track(child.pid!)
        let stdout = ''
        let stderr = ''
        child.stdout.on('data', (d: Buffer) => {
          stdout += d
        })
        child.stderr.on('data', (d: Buffer) => {
          stderr += d
        })
        const done = new Promise<null | number>(resolve => {
          child.once('exit', code => resolve(code))
        })
        // Wait until the stub CRIU runs (a sleep child of ours), then interrupt.
        await waitFor('the stub CRIU to run', () => {
          try {
            const kids = readFileSync(`/proc/${child.pid}/task/${child.pid}/children`, 'utf8').trim().split(' ').filter(Boolean)
            return kids.some(k => readFileSync(`/proc/${k}/comm`, 'utf8').trim() === 'sleep')
          } catch {
            return false
          }
        }, 60_000)
        child.kill('SIGINT')
        const code = await done
        const out = json({code, stderr, stdout}, 130)
        expect(out.error!.message).to.include('interrupted by SIGINT')
        expect(out.error!.logFile).to.match(/restore\.log$/)
        // Which CRIU ran, as for a CRIU that failed: a field, not a line of the message.
        expect(out.error!.ran).to.match(/^CRIU \d+\.\d+/).and.include(`at ${stub} (from --criu-path)`)
        expect(out.error!.message).not.to.match(/^(Ran|Log):/m)
        removeKept(out.error!.logFile)
      })

      it('--timeout: exit 1, one JSON object with the log, nothing on stderr', async () => {
        const ckpt = await checkpoint()
        const holder = await startHolder(['net'])
        const stub = hangingCriu()
        const out = json(mycli(['restore', '-D', ckpt.dir, '-J', `net:${holder.pid}`, '--json', '--timeout', '3', '--criu-path', stub]), 1)
        expect(out.error!.message).to.include('CRIU did not finish within 3 s')
        expect(readFileSync(out.error!.logFile!, 'utf8')).to.equal('pretending to restore\n')
        expect(out.error!.ran).to.match(/^CRIU \d+\.\d+/).and.include(`at ${stub} (from --criu-path)`)
        expect(out.error!.message).not.to.match(/^(Ran|Log):/m)
        removeKept(out.error!.logFile)
        // The text has both lines, as a CRIU that failed does.
        const text = mycli(['restore', '-D', ckpt.dir, '-J', `net:${holder.pid}`, '--timeout', '1', '--criu-path', stub])
        expect(text.code).to.equal(1)
        expect(text.stderr).to.include(`\nRan: ${out.error!.ran}\nLog: `)
        removeKept(/^Log: (.*)$/m.exec(text.stderr)![1])
      })
    })
  })

  describe('without --json: one message on stderr, never broken inside a word or a path', () => {
    it('at 80 columns, a long path stays on one line with its Error:, the hint on the next', () => {
      const long = join('/nonexistent', 'a-rather-long-folder-name-for-checkpoints', 'and-another-one-below-it', 'checkpoint-of-the-web-service')
      expect(long.length).to.be.above(80)
      const r = mycli(['restore', '-D', long, '-J', 'net:1'], {COLUMNS: '80'})
      expect(r.code).to.equal(2)
      expect(r.stdout).to.equal('')
      const lines = r.stderr.split('\n')
      expect(lines[0]).to.equal(`Error: --images-dir "${long}": no such folder`)
      expect(lines[1]).to.match(/^Hint: /)
      expect(lines.slice(2)).to.deep.equal([''])
      expect(r.stderr).not.to.include('›')
    })

    it('oclif\'s parser errors read the same way: Error, Hint, no wrapping, no "See more help" line', () => {
      const r = mycli(['restore', '-D', '/x', '--timeout', 'abc'], {COLUMNS: '40'})
      expect(r.code).to.equal(2)
      expect(r.stderr).to.equal('Error: --timeout: Expected an integer but received: abc\nHint: see `mycli restore --help`\n')
    })
  })

  describe('needs root: exit 1 for every command that does, with the hint, as text and as JSON', () => {
    const cases: [string, (h: number, d: string) => string[], string][] = [
      ['restore', (h, d) => ['restore', '-D', d, '-J', `net:${h}`], 'restore needs root'],
      ['checkpoint', h => ['checkpoint', String(h), '-D', '/tmp/nobody-ckpt'], 'checkpoint needs root'],
      ['ns inspect', h => ['ns', 'inspect', String(h)], 'cannot be opened: permission denied'],
      ['ns exec', h => ['ns', 'exec', '-J', `net:${h}`, '--', 'true'], 'cannot be opened: permission denied'],
      ['launch', h => ['launch', '-J', `net:${h}`, '--', 'true'], 'cannot be opened: permission denied'],
    ]
    for (const [what, argv, message] of cases) {
      it(`${what}`, async () => {
        const holder = await startHolder(['net'])
        const ckpt = join(tempDir(), 'ckpt')
        mkdirSync(ckpt)
        chmodSync(join(ckpt, '..'), 0o755)
        const args = argv(holder.pid, ckpt)
        const text = asNobody(args)
        expect(text.code, text.stderr).to.equal(1)
        expect(text.stdout).to.equal('')
        expect(flat(text.stderr)).to.include(message)
        expect(text.stderr).to.match(/\nHint: run it as root \(sudo\)\n$/)
        if (what === 'ns exec') return // --json is refused there (below)
        const end = args.includes('--') ? args.indexOf('--') : args.length
        const out = json(asNobody([...args.slice(0, end), '--json', ...args.slice(end)]), 1)
        expect(out.error!.hint).to.equal('run it as root (sudo)')
      })
    }
  })

  describe('ns exec', () => {
    it('--json is refused, as one JSON object, naming what to use instead', async () => {
      const holder = await startHolder(['net'])
      const out = json(mycli(['ns', 'exec', '--json', '-J', `net:${holder.pid}`, '--', 'true']), 2)
      expect(out.error!.message).to.match(/^--json: mycli ns exec gives the command this terminal's stdin, stdout and stderr/)
      expect(out.error!.hint).to.include('mycli ns inspect PID --json')
      // After --, --json is the command's own argument.
      const r = mycli(['ns', 'exec', '-J', `net:${holder.pid}`, '--', 'echo', '--json'])
      expect(r.code, r.stderr).to.equal(0)
      expect(r.stdout).to.equal('--json\n')
    })

    it('-J pid: refused with ns exec\'s own reason (the command would stay in this PID namespace), not restore\'s', async () => {
      const holder = await startHolder(['pid'])
      const r = mycli(['ns', 'exec', '-J', `pid:${holder.pid}`, '--', 'true'])
      expect(r.code).to.equal(2)
      expect(flat(r.stderr)).to.include(`--join-ns "pid:${holder.pid}": the pid namespace cannot be joined by ns exec or launch: the command is started by the very process that joins`)
      expect(r.stderr).not.to.include('restore')
    })

    it('-J cgroup: joined, as nsenter -C does (CRIU cannot, so restore still refuses it)', async () => {
      const holder = await startHolder(['cgroup'])
      expect(nsInode(holder.pid, 'cgroup')).not.to.equal(nsInode('self', 'cgroup'))
      const r = mycli(['ns', 'exec', '-J', `cgroup:${holder.pid}`, '--', 'readlink', '/proc/self/ns/cgroup'])
      expect(r.code, r.stderr).to.equal(0)
      expect(r.stdout.trim()).to.equal(nsLink(holder.pid, 'cgroup'))
      const restore = mycli(['restore', '-D', '/x', '-J', `cgroup:${holder.pid}`])
      expect(restore.code).to.equal(2)
      expect(flat(restore.stderr)).to.include('the cgroup namespace cannot be joined at restore')
    })

    it('rootless, a namespace it may open but not join: the hint says join the user namespace too, which then works', () => {
      const script = (joins: string) => `sleep 100000 & P=$!; ${NO_NYC.join(' ')} ${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} ns exec ${joins} -- readlink /proc/self/ns/net; echo "status=$?"; kill $P`
      const denied = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'sh', '-c', script('-J net:$P')], {encoding: 'utf8', env: {...process.env, HOME: '/tmp'}})
      expect(denied.stdout).to.include('status=1')
      expect(denied.stderr).to.match(/^Error: cannot join the net namespace of pid \d+: Operation not permitted \(setns\)\n/)
      expect(denied.stderr).to.include('Hint: join the target\'s user namespace too (-J user:PID), which gives the rights to join the others, or run it as root (sudo)\n')

      // A target in a user namespace nobody made: with -J user, the join works.
      const own = `unshare --user --map-root-user --net sleep 100000 & P=$!; sleep 0.5; ${NO_NYC.join(' ')} ${JSON.stringify(process.execPath)} ${JSON.stringify(BIN)} ns exec -J net:$P -J user:$P -- readlink /proc/self/ns/net; echo "status=$?"; readlink /proc/$P/ns/net; kill $P`
      const joined = spawnSync('setpriv', ['--reuid=65534', '--regid=65534', '--clear-groups', 'sh', '-c', own], {encoding: 'utf8', env: {...process.env, HOME: '/tmp'}})
      const [inside, status, target] = joined.stdout.trim().split('\n')
      expect(status, joined.stderr).to.equal('status=0')
      expect(inside).to.equal(target)
      expect(inside).not.to.equal(nsLink('self', 'net'))
    })
  })
})
