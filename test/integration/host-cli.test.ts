import {expect} from 'chai'
import {execFileSync, spawnSync} from 'node:child_process'
import {
  existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync,
} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'

import {checkpoint, unrestorableCheckpoint} from '../support/checkpoint.js'
import {
  BIN, cleanup, criuPath, flat, killPid, REPO, requireRoot, startHolder, tempDir, startSleeper, track, waitFor,
} from '../support/system.js'

/**
 * The two host CLIs the plugin is installed into: the example host (core 4, plugin-plugins 5,
 * topics separated by spaces, like the standalone bin) and one on the newest oclif (core 5,
 * plugin-plugins 7, which need Node >= 22) whose name and ':' separator are not the plugin's.
 */
interface HostCli {
  bin: string
  core: number
  dir: string
  separator: string
}

const HOSTS: HostCli[] = [
  {bin: 'mycli', core: 4, dir: join(REPO, 'examples', 'mycli'), separator: ' '},
  {bin: 'hostctl', core: 5, dir: join(REPO, 'examples', 'hostctl'), separator: ':'},
]

type Run = (args: string[], env?: NodeJS.ProcessEnv) => {code: null | number; stderr: string; stdout: string}

/** A Node.js the host can run on: this one, or Node 24 from the npm registry for a core-5 host on Node 20. */
function nodeFor(host: HostCli): string {
  const major = Number(process.versions.node.split('.')[0])
  if (host.core < 5 || major >= 22) return process.execPath
  return execFileSync('bash', [join(REPO, 'scripts', 'fetch-node.sh'), '24'], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit']}).trim().split('\n').pop()!
}

/** The host CLI with its own data, cache, config and temp folders, as a fresh user would have. */
function hostRunner(host: HostCli, node: string, home: string, tmp: string): Run {
  const prefix = host.bin.toUpperCase()
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    CRIU_PATH: criuPath(),
    [`${prefix}_CACHE_DIR`]: join(home, 'cache'),
    [`${prefix}_CONFIG_DIR`]: join(home, 'config'),
    [`${prefix}_DATA_DIR`]: join(home, 'data'),
    PATH: `${dirname(node)}:${process.env.PATH}`,
    TMPDIR: tmp,
  }
  // Not under nyc's preload (NODE_OPTIONS): the host CLI is not what the coverage measures.
  delete env.NODE_OPTIONS
  return (args, extra = {}) => {
    const r = spawnSync(node, [join(host.dir, 'bin', 'run.js'), ...args], {encoding: 'utf8', env: {...env, ...extra}, timeout: 300_000})
    return {code: r.status, stderr: r.stderr, stdout: r.stdout}
  }
}

/** The plugin on its own (bin/run.js, called mycli, topics separated by spaces). */
const standalone: Run = args => {
  const r = spawnSync(process.execPath, [BIN, ...args], {encoding: 'utf8', env: {...process.env, CRIU_PATH: criuPath()}, timeout: 120_000})
  return {code: r.status, stderr: r.stderr, stdout: r.stdout}
}

/** A command as this host spells it: `ns exec` or `ns:exec`. */
function commandId(host: HostCli, command: string): string {
  return command.split(' ').join(host.separator)
}

/** A command's words as argv in this host: `ns exec` is two arguments, `ns:exec` one. */
function commandArgv(host: HostCli, command: string): string[] {
  return commandId(host, command).split(' ')
}

/** What the plugin on its own (mycli, topics separated by spaces) prints, in this host's words. */
function inHostWords(host: HostCli, text: string): string {
  return text.replaceAll('mycli ns exec', `${host.bin} ${commandId(host, 'ns exec')}`).replaceAll('mycli ', `${host.bin} `)
}

/** What the probe preloaded into a host process saw loaded from the plugin's folder. */
function loaded(r: {stderr: string}): string[] {
  return JSON.parse(/LOADED (.*)$/.exec(r.stderr)![1]) as string[]
}

let tarball: string
let packDir: string

describe('the plugin in host CLIs', function () {
  this.timeout(600_000)

  before(() => {
    requireRoot()
    // The tarball users get: prebuilt native module inside, no build on install.
    // Not tempDir(): the tarball must outlive each test's cleanup().
    packDir = mkdtempSync(join(tmpdir(), 'pack-'))
    execFileSync('npm', ['pack', '--ignore-scripts', '--pack-destination', packDir], {cwd: REPO, stdio: 'ignore'})
    tarball = join(packDir, readdirSync(packDir).find(f => f.endsWith('.tgz'))!)
  })

  after(async () => {
    await cleanup()
    rmSync(packDir, {force: true, recursive: true})
  })

  it('the tarball ships the prebuilt module and the manifest, not the sources; no install script', () => {
    const list = execFileSync('tar', ['-tzf', tarball], {encoding: 'utf8'}).split('\n')
    expect(list).to.include('package/prebuilds/linux-x64/oclif-plugin-criu.node')
    expect(list).to.include('package/oclif.manifest.json')
    expect(list).to.include('package/dist/src/commands/restore.js')
    expect(list.some(f => f.startsWith('package/src/') || f.startsWith('package/test/'))).to.equal(false)
    const pjson = JSON.parse(execFileSync('tar', ['-xzOf', tarball, 'package/package.json'], {encoding: 'utf8'}))
    expect(pjson.scripts).not.to.have.any.keys('install', 'preinstall', 'postinstall')
    // plugin-plugins checks every `files` entry as a literal path: no globs.
    for (const f of pjson.files as string[]) expect(f, 'files entry').not.to.match(/[*?[{]/)
  })

  it('npm install --ignore-scripts in a scratch project: the library and its native module load', () => {
    const scratch = tempDir('scratch-')
    mkdirSync(join(scratch, 'app'))
    writeFileSync(join(scratch, 'app', 'package.json'), '{"name": "scratch", "version": "1.0.0", "private": true}')
    execFileSync('npm', ['install', '--ignore-scripts', '--no-audit', '--no-fund', tarball], {cwd: join(scratch, 'app'), stdio: 'ignore'})
    expect(existsSync(join(scratch, 'app', 'node_modules', 'oclif-plugin-criu', 'build')), 'nothing was compiled').to.equal(false)
    const script = "const p = require('oclif-plugin-criu'); const d = p.inspectPath('/proc/self/ns/net'); console.log(p.namespaceByFlag(d.nstype).name)"
    const r = spawnSync(process.execPath, ['-e', script], {cwd: join(scratch, 'app'), encoding: 'utf8'})
    expect(r.stdout.trim(), r.stderr).to.equal('net')
  })

  for (const host of HOSTS) {
    describe(`${host.bin} (@oclif/core ${host.core}, topic separator "${host.separator}")`, () => {
      let run: Run
      let home: string
      let tmp: string
      let node: string

      before(() => {
        node = nodeFor(host)
        const path = `${dirname(node)}:${process.env.PATH}`
        if (!existsSync(join(host.dir, 'node_modules'))) {
          execFileSync('npm', ['ci', '--no-audit', '--no-fund'], {cwd: host.dir, env: {...process.env, PATH: path}, stdio: 'ignore'})
        }

        // Not tempDir(): these live as long as this host's tests, past each test's cleanup().
        home = mkdtempSync(join(tmpdir(), `${host.bin}-home-`))
        tmp = mkdtempSync(join(tmpdir(), `${host.bin}-tmp-`))
        run = hostRunner(host, node, home, tmp)
      })

      after(() => {
        rmSync(home, {force: true, recursive: true})
        rmSync(tmp, {force: true, recursive: true})
      })

      afterEach(cleanup)

      it('plugins install file:<tarball> prints no warning caused by the plugin', () => {
        const install = run([...commandArgv(host, 'plugins install'), `file:${tarball}`])
        expect(install.code, install.stderr).to.equal(0)
        const output = install.stdout + install.stderr
        expect(output, 'plugin-plugins\' warning').not.to.match(/Warning:/)
        expect(output, 'npm\'s install-script warning').not.to.match(/install-scripts|oclif-plugin-criu@[^\n]*install/)
        expect(output).to.include('installed v0.1.0')
      })

      it('the host\'s own command runs as before and loads nothing of the plugin but its hook file', () => {
        // Everything plugins install put in the data folder: the plugin and its dependencies.
        const data = join(home, 'data')
        const probe = join(tempDir('probe-'), 'probe.cjs')
        writeFileSync(probe, `process.on('exit', () => process.stderr.write('LOADED ' + JSON.stringify(Object.keys(require.cache).filter(k => k.startsWith(${JSON.stringify(data + '/')})))))`)
        const hello = run(['hello', '-J', 'netx:1', '-J', 'netx:1'], {NODE_OPTIONS: `--require ${probe}`})
        expect(hello.code, hello.stderr).to.equal(0)
        expect(hello.stdout.trim()).to.equal('hello netx:1 netx:1')
        expect(loaded(hello).map(k => k.slice(data.length + 1))).to.deep.equal(['node_modules/oclif-plugin-criu/dist/src/hooks/prerun.js'])
        // The probe sees what a command of the plugin loads: its own @oclif/core among it.
        const ours = run([...commandArgv(host, 'ns inspect'), String(process.pid)], {NODE_OPTIONS: `--require ${probe}`})
        expect(ours.code, ours.stderr).to.equal(0)
        expect(loaded(ours).some(k => k.includes('/node_modules/@oclif/core/'))).to.equal(true)
      })

      it('help and usage lines speak in the host\'s names', () => {
        const help = run([...commandArgv(host, 'ns exec'), '--help'])
        expect(help.code, help.stderr).to.equal(0)
        expect(help.stdout).to.include(`$ ${host.bin} ${commandId(host, 'ns exec')} [-J NS:TARGET`)
        expect(help.stdout).to.include(`$ ${host.bin} ${commandId(host, 'ns exec')} -J net:1234 -J uts:1234 -- ip addr`)
        expect(help.stdout).not.to.match(host.bin === 'mycli' ? /ns:exec/ : /mycli|ns exec -J/)
        expect(help.stderr).to.equal('')
        // Static help texts that name another command: rendered by the host with its bin and separator.
        const verify = `\`${host.bin} ${commandId(host, 'checkpoint verify')}\``
        for (const [argv, said] of [
          [['checkpoint', '--help'], `\`${host.bin} restore\` and ${verify} check the checkpoint against it`],
          [['checkpoint', '--help'], `\`${host.bin} ${commandId(host, 'criu check')}\` shows which work here`],
          [['restore', '--help'], `${verify} runs the same checks without restoring`],
          [['launch', '--help'], `as \`${host.bin} ${commandId(host, 'ns exec')}\` does`],
          [['--help'], `check a checkpoint for damage (${host.bin} ${commandId(host, 'checkpoint verify')})`],
        ] as const) {
          const r = run([...argv])
          expect(r.code, r.stderr).to.equal(0)
          expect(flat(r.stdout), argv.join(' ')).to.include(said)
          // (The root help shows hostctl's own description, which names mycli.)
          if (host.bin !== 'mycli') expect(r.stdout, argv.join(' ')).not.to.match(argv[0] === '--help' ? /checkpoint verify/ : /mycli|checkpoint verify/)
        }
      })

      describe('stderr is what the plugin prints on its own: no EEXIT, exit codes as documented', () => {
        // [what, argv (H: a holder's PID, SELF: this process, whose user namespace cannot be re-joined), exit code]
        const cases: [string, string[], number][] = [
          ['ns exec: success', ['ns exec', '-J', 'net:H', '--', 'sh', '-c', 'exit 0'], 0],
          ['ns exec: the command\'s own status', ['ns exec', '-J', 'net:H', '--', 'sh', '-c', 'exit 7'], 7],
          ['ns exec: refused (no command)', ['ns exec', '-J', 'net:H'], 2],
          ['ns exec: refused by the hook', ['ns exec', '-J', 'net:H', '-J', 'net:H', '--', 'true'], 2],
          ['ns exec: failed (setns)', ['ns exec', '-J', 'user:SELF', '--', 'true'], 1],
          ['ns inspect: success', ['ns inspect', 'H'], 0],
          ['ns inspect: success, --json', ['ns inspect', 'H', '--json'], 0],
          ['ns inspect: refused', ['ns inspect', '/nonexistent'], 2],
          ['ns inspect: refused, --json', ['ns inspect', '/nonexistent', '--json'], 2],
          ['restore: refused', ['restore', '-D', '/nonexistent', '-J', 'net:H'], 2],
          ['restore: refused, --json', ['restore', '-D', '/nonexistent', '-J', 'net:H', '--json'], 2],
          ['restore: failed (no CRIU there)', ['restore', '-D', 'CKPT', '-J', 'net:H', '--criu-path', '/nonexistent/criu'], 1],
          ['restore: failed (no CRIU there), --json', ['restore', '-D', 'CKPT', '-J', 'net:H', '--criu-path', '/nonexistent/criu', '--json'], 1],
          ['checkpoint: refused', ['checkpoint', 'DEAD', '-D', 'NEW'], 2],
          ['checkpoint: refused, --json', ['checkpoint', 'DEAD', '-D', 'NEW', '--json'], 2],
          ['checkpoint: failed (no CRIU there)', ['checkpoint', 'H', '-D', 'NEW', '--criu-path', '/nonexistent/criu'], 1],
          ['checkpoint: failed (no CRIU there), --json', ['checkpoint', 'H', '-D', 'NEW', '--criu-path', '/nonexistent/criu', '--json'], 1],
          // The one --json contract at the stages oclif would print itself: its parser, the hook.
          ['restore: oclif\'s parser, --json', ['restore', '-D', 'CKPT', '--bogus', '--json'], 2],
          ['restore: refused by the hook, --json', ['restore', '-D', '/nonexistent', '-J', 'net', '--json'], 2],
          ['restore: refused by the hook', ['restore', '-D', '/nonexistent', '-J', 'net'], 2],
          ['ns inspect: oclif\'s parser, --json', ['ns inspect', 'H', '--bogus', '--json'], 2],
          ['ns exec: refused by the hook, --json', ['ns exec', '--json', '-J', 'net:H', '-J', 'net:H', '--', 'true'], 2],
          ['ns exec: --json refused', ['ns exec', '--json', '-J', 'net:H', '--', 'true'], 2],
          ['checkpoint: an argument oclif\'s parser refuses, --json', ['checkpoint', 'notapid', '-D', 'NEW', '--json'], 2],
        ]

        for (const [what, argv, code] of cases) {
          it(`${what}: exit ${code}`, async () => {
            const holder = await startHolder(['net'])
            const dead = spawnSync('true').pid!
            const fresh = join(tempDir('new-'), 'images')
            const images = argv.includes('CKPT') ? (await checkpoint()).dir : ''
            const rest = argv.slice(1).map(a => a.replace(/\bH$/, String(holder.pid)).replace(/\bSELF$/, String(process.pid))
            .replace(/^DEAD$/, String(dead)).replace(/^NEW$/, fresh).replace(/^CKPT$/, images))
            const args = [...argv[0].split(' '), ...rest]
            const hostArgs = [...commandArgv(host, argv[0]), ...rest]
            const inHost = run(hostArgs)
            const alone = standalone(args)
            expect(inHost.code, inHost.stderr).to.equal(code)
            expect(alone.code, alone.stderr).to.equal(code)
            expect(inHost.stderr).not.to.include('EEXIT')
            expect(flat(inHost.stderr)).to.equal(inHostWords(host, flat(alone.stderr)))
            if (args.includes('--json')) {
              expect(inHost.stderr).to.equal('')
              const out = JSON.parse(inHost.stdout)
              if (code !== 0) expect(out.error.exitCode).to.equal(code)
            } else if (code === 0) {
              expect(inHost.stderr).to.equal('')
            }
          })
        }

        it('names the host\'s commands in hints and suggestions', () => {
          const noCommand = run([...commandArgv(host, 'ns exec'), '-J', `net:${process.pid}`])
          expect(flat(noCommand.stderr)).to.include(`e.g. ${host.bin} ${commandId(host, 'ns exec')} -J net:1234 -- ip addr`)
          const noImages = run(['restore', '-D', '/nonexistent', '-J', 'net:1', '--json'])
          expect(JSON.parse(noImages.stdout).error.hint).to.equal(`give the folder \`criu dump -D\` (or \`${host.bin} checkpoint -D\`) wrote`)
          const bogus = run([...commandArgv(host, 'ns inspect'), '1', '--bogus', '--json'])
          expect(bogus.stderr).to.equal('')
          expect(JSON.parse(bogus.stdout).error).to.deep.equal({exitCode: 2, hint: `see \`${host.bin} ${commandId(host, 'ns inspect')} --help\``, message: 'Nonexistent flag: --bogus'})
        })
      })

      it('checkpoint and restore succeed with nothing on stderr, and leave nothing in the temp folder', async () => {
        const holder = await startHolder(['net'])
        const pid = await startSleeper()
        const images = join(tempDir('images-'), 'ckpt')
        const dumped = run(['checkpoint', String(pid), '-D', images])
        expect(dumped.code, dumped.stderr).to.equal(0)
        expect(dumped.stderr).to.equal('')
        await waitFor(`process ${pid} to be gone`, () => !existsSync(`/proc/${pid}`))
        const restored = run(['restore', '-D', images, '-J', `net:${holder.pid}`, '--json'])
        expect(restored.code, restored.stderr).to.equal(0)
        expect(restored.stderr).to.equal('')
        const out = JSON.parse(restored.stdout)
        track(out.pid)
        expect(out.namespaces[0].type).to.equal('net')
        expect(out.logFile, 'the log went with its temporary folder').to.equal(undefined)
        // Only the plugin's folders count: on Node 22+ npm (run by plugins install) keeps Node's
        // compile cache there (node-compile-cache).
        const ours = () => readdirSync(tmp).filter(f => f.startsWith('oclif-plugin-criu-'))
        expect(ours()).to.deep.equal([])

        // The same PID is taken now: refused before CRIU starts, nothing left.
        const taken = run(['restore', '-D', images, '-J', `net:${holder.pid}`])
        expect(taken.code, taken.stderr).to.equal(2)
        expect(taken.stderr).to.include(`the checkpoint's PID ${out.pid} (sleep) is taken here`)
        expect(ours()).to.deep.equal([])
        killPid(out.pid)

        // CRIU fails once started: its folder stays, named in the message.
        const broken = await unrestorableCheckpoint()
        const again = run(['restore', '-D', broken.dir, '-J', `net:${holder.pid}`])
        expect(again.code).to.equal(1)
        const left = ours()
        expect(left).to.have.length(1)
        expect(left[0]).to.match(/^oclif-plugin-criu-restore-\w{6}$/)
        // (oclif breaks a path longer than the terminal inside it: read it without the breaks.)
        expect(again.stderr.replaceAll(/[\s›]/g, '')).to.include(`Log:${join(tmp, left[0], 'restore.log')}`)
        expect(again.stderr).not.to.include('EEXIT')

        // The other way round: checkpoint with --json, restore in words; stderr stays empty.
        const other = await startSleeper()
        const images2 = join(tempDir('images-'), 'ckpt')
        const dumped2 = run(['checkpoint', String(other), '-D', images2, '--json'])
        expect(dumped2.code, dumped2.stderr).to.equal(0)
        expect(dumped2.stderr).to.equal('')
        expect(JSON.parse(dumped2.stdout)).to.include({pid: other})
        await waitFor(`process ${other} to be gone`, () => !existsSync(`/proc/${other}`))
        const restored2 = run(['restore', '-D', images2, '-J', `net:${holder.pid}`])
        expect(restored2.code, restored2.stderr).to.equal(0)
        expect(restored2.stderr).to.equal('')
        expect(restored2.stdout).to.include(String(other))
        killPid(other)
      })
    })
  }
})
