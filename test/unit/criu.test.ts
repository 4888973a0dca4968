import {expect} from 'chai'
import {mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {hasAdminCapability} from '../../src/lib/capabilities.js'
import {formatCommand} from '../../src/lib/criu-run.js'
import {
  cacheDir,
  criuEnvironment,
  criuErrorLines,
  criuVersion,
  describeCriu,
  explainCheckFailure,
  findCriu,
  FI_NO_BREAKPOINTS,
  hintFor,
  judgeCriu,
  MIN_CRIU,
  parseCriuVersion,
  versionAtLeast,
} from '../../src/lib/criu.js'
import {FailedError} from '../../src/lib/errors.js'
import {parseJoinNs} from '../../src/lib/join-ns.js'
import {namespaceByName} from '../../src/lib/namespaces.js'
import {criuJoinArg, planRestore} from '../../src/lib/restore.js'

const v = (text: string) => parseCriuVersion(`Version: ${text}\n`)!
const spec = (text: string) => parseJoinNs(text, '/')

describe('CRIU (pure functions)', () => {
  describe('versions, environment, log reading', () => {
    it('parses `criu --version` output', () => {
      expect(parseCriuVersion('Version: 4.2.1\nGitID: v4.2.1\n')).to.deep.equal({major: 4, minor: 2, sublevel: 1, text: '4.2.1'})
      expect(parseCriuVersion('Version: 3.14\n')).to.deep.equal({major: 3, minor: 14, sublevel: 0, text: '3.14'})
      expect(parseCriuVersion('criu from the future')).to.equal(undefined)
    })

    it('compares versions', () => {
      expect(versionAtLeast(v('3.14'), MIN_CRIU)).to.equal(true)
      expect(versionAtLeast(v('3.13.9'), MIN_CRIU)).to.equal(false)
      expect(versionAtLeast(v('4.0'), MIN_CRIU)).to.equal(true)
      expect(versionAtLeast(v('3.15'), MIN_CRIU)).to.equal(true)
    })

    it('sets CRIU_FAULT=130 only for a CRIU older than 4.2 where breakpoints do not work', () => {
      let probed = 0
      const probe = (works: boolean | null) => () => {
        probed++
        return works
      }

      expect(criuEnvironment(v('4.1.1'), probe(false), {}).CRIU_FAULT).to.equal(FI_NO_BREAKPOINTS)
      expect(criuEnvironment(v('4.1.1'), probe(true), {}).CRIU_FAULT).to.equal(undefined)
      expect(criuEnvironment(v('4.1.1'), probe(null), {}).CRIU_FAULT).to.equal(undefined)
      expect(probed).to.equal(3)
      // 4.2 detects it itself: the probe is not even run
      expect(criuEnvironment(v('4.2.1'), probe(false), {}).CRIU_FAULT).to.equal(undefined)
      // the user's own setting wins
      expect(criuEnvironment(v('4.1.1'), probe(false), {CRIU_FAULT: '1'}).CRIU_FAULT).to.equal('1')
      expect(probed).to.equal(3)
    })

    it('reads the error lines of a log, without the harmless rlimit line', () => {
      const log = [
        '(00.000100) Error (criu/util.c:1534): rlimit: Can\'t setup RLIMIT_NOFILE for self: Operation not permitted',
        '(00.010000) Warn  (criu/x.c:1): something',
        '(00.020494)   8154: Error (criu/net.c:2942): net: Unable to find an external netns: pod-net',
        '(00.020535) Error (criu/cr-restore.c:2331): Restoring FAILED.',
      ].join('\n')
      expect(criuErrorLines(log)).to.deep.equal(['8154: Error (criu/net.c:2942): net: Unable to find an external netns: pod-net', 'Error (criu/cr-restore.c:2331): Restoring FAILED.'])
      expect(hintFor(log)).to.equal(undefined)
      expect(hintFor('Error (criu/cr-restore.c:1237): Can\'t fork for 77: File exists')).to.match(/already runs here/)
      expect(hintFor('Error (criu/pstree.c:404): A session leader of 5(5) is outside of its pid namespace')).to.match(/^the tree belongs to a shell's session .*--shell-job \(-j\)/)
      expect(hintFor('Error (criu/cr-dump.c:1340): 4210 is not a session leader. Consider using --shell-job')).to.match(/--shell-job \(-j\) and restore it with -j; or start it with launch -- CMD/)
      expect(hintFor('Error (criu/util.c:642): execvp("iptables-restore", ...) failed')).to.match(/--network-lock skip/)
      // What CRIU 4.2.1 says for a process started by `ip netns exec` (measured by a new-user trial)
      expect(hintFor('Error (criu/mount.c:1091): mnt: Mount 66 ./run/netns/trialpod (master_id: 0 shared_id: 2) has unreachable sharing. Try --enable-external-masters.'))
      .to.match(/^the process runs in a mount namespace of its own .* start the workload with (\S+ )?launch -J net:\/run\/netns\/NAME -- CMD instead/)
    })

    it('finds CRIU through the flag, then CRIU_PATH, then PATH, says where it found it, and what to do when it is missing', () => {
      const dir = mkdtempSync(join(tmpdir(), 'criu-find-'))
      try {
        const fake = join(dir, 'criu')
        const other = join(dir, 'other', 'criu')
        writeFileSync(fake, '#!/bin/sh\n', {mode: 0o755})
        mkdirSync(join(dir, 'other'))
        writeFileSync(other, '#!/bin/sh\n', {mode: 0o755})
        const empty = join(dir, 'empty')
        mkdirSync(empty)
        expect(findCriu(fake, {CRIU_PATH: other, PATH: dir})).to.deep.equal({path: fake, source: '--criu-path'})
        expect(findCriu(undefined, {CRIU_PATH: fake, PATH: join(dir, 'other')})).to.deep.equal({path: fake, source: 'CRIU_PATH'})
        expect(findCriu(undefined, {CRIU_PATH: '', PATH: `${empty}:${dir}`})).to.deep.equal({path: fake, source: 'PATH'})
        expect(describeCriu({path: fake, source: 'PATH'}, v('3.17.1'))).to.equal(`CRIU 3.17.1 at ${fake} (found on PATH)`)
        expect(describeCriu({path: fake, source: 'CRIU_PATH'})).to.equal(`CRIU at ${fake} (from CRIU_PATH)`)
        expect(() => findCriu(join(dir, 'nope'), {})).to.throw(FailedError, `CRIU not found at ${join(dir, 'nope')} (--criu-path)`)
        expect(() => findCriu(undefined, {CRIU_PATH: join(dir, 'nope')})).to.throw(FailedError, `CRIU not found at ${join(dir, 'nope')} (CRIU_PATH)`)
        // A bare name is looked up on PATH, as a shell would; a folder is said to be one.
        expect(findCriu('criu', {PATH: `${empty}:${dir}`})).to.deep.equal({path: fake, source: '--criu-path'})
        expect(findCriu(undefined, {CRIU_PATH: 'criu', PATH: join(dir, 'other')})).to.deep.equal({path: other, source: 'CRIU_PATH'})
        expect(() => findCriu('criu', {PATH: empty})).to.throw(FailedError, 'CRIU not found: no criu on PATH (--criu-path)')
        expect(() => findCriu(empty, {})).to.throw(FailedError, `${empty} (--criu-path) is a folder, not a CRIU binary`)
        expect(findCriu(undefined, {PATH: `${dir}/other-missing:${join(dir, 'empty')}:${dir}`})).to.deep.equal({path: fake, source: 'PATH'})
        // Nothing beyond PATH is searched; a CRIU in an sbin folder off PATH is named in the hint only.
        const notFound = (sbin: string[]) => {
          try {
            findCriu(undefined, {PATH: empty}, sbin)
          } catch (error) {
            return error as FailedError
          }

          throw new Error('found a CRIU that is not on PATH')
        }

        expect(notFound([join(dir, 'other')]).message).to.equal('CRIU not found on PATH (needs 3.14 or newer; 4.2 or newer recommended)')
        expect(notFound([join(dir, 'other')]).hint).to.include(`${other} exists but is not on PATH: pass --criu-path ${other} or set CRIU_PATH`)
        expect(notFound([empty]).hint).to.equal('install CRIU, or pass --criu-path, or set CRIU_PATH')
      } finally {
        rmSync(dir, {force: true, recursive: true})
      }
    })

    it('says in one line why `criu check` failed, from CRIU\'s own words', () => {
      // What Debian 12's CRIU 3.17.1 prints on Linux 6.18 (these machines).
      const bookworm = [
        'Error (criu/util.c:642): exited, status=1',
        'Error (criu/util.c:642): exited, status=1',
        'Error (criu/vdso.c:381): vdso: Unexpected rt vDSO area bounds',
        'Error (criu/vdso.c:613): vdso: Failed to fill self vdso symtable',
        'Error (criu/kerndat.c:1615): kerndat_vdso_fill_symtable failed when initializing kerndat.',
        'Error (criu/crtools.c:260): Could not initialize kernel features detection.',
      ].join('\n')
      expect(explainCheckFailure(bookworm)).to.equal('cannot run on this kernel: kerndat (vDSO) failed (vdso: Unexpected rt vDSO area bounds)')
      expect(explainCheckFailure('Error (criu/kerndat.c:1): kerndat_uffd failed when initializing kerndat.')).to.equal('cannot run on this kernel: kerndat (uffd) failed (kerndat_uffd failed when initializing kerndat.)')
      expect(explainCheckFailure('CRIU needs to have the CAP_SYS_ADMIN or the CAP_CHECKPOINT_RESTORE capability: \nsetcap cap_checkpoint_restore+eip /x')).to.match(/lacks CAP_SYS_ADMIN/)
      expect(explainCheckFailure('Warn  (criu/x.c:1): w\nError (criu/cr-check.c:9): prctl: PR_SET_MM_MAP is not supported')).to.equal('its own `criu check` fails: prctl: PR_SET_MM_MAP is not supported')
    })

    it('asks `criu check` once per binary, boot and capability set, and refuses a CRIU that fails it with path, version and the way out', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'criu-judge-'))
      const saved = process.env.XDG_CACHE_HOME
      process.env.XDG_CACHE_HOME = join(dir, 'cache')
      try {
        const calls = join(dir, 'calls')
        const good = join(dir, 'good')
        writeFileSync(good, `#!/bin/sh\necho "$1" >> ${calls}\n[ "$1" = --version ] && echo "Version: 4.2.1"\nexit 0\n`, {mode: 0o755})
        const bad = join(dir, 'bad')
        writeFileSync(bad, '#!/bin/sh\n[ "$1" = --version ] && { echo "Version: 3.17.1"; exit 0; }\necho "Error (criu/kerndat.c:1615): kerndat_vdso_fill_symtable failed when initializing kerndat." >&2\nexit 1\n', {mode: 0o755})
        expect((await judgeCriu({path: good, source: 'PATH'}, 0x1_FF_FE_FF_FF_FFn)).text).to.equal('4.2.1')
        expect((await judgeCriu({path: good, source: 'PATH'}, 0x1_FF_FE_FF_FF_FFn)).text).to.equal('4.2.1')
        expect(readFileSync(calls, 'utf8'), 'asked once').to.equal('--version\ncheck\n')
        await judgeCriu({path: good, source: 'PATH'}, 0x1_FF_FF_FF_FF_FFn)
        expect(readFileSync(calls, 'utf8'), 'other capabilities: asked again').to.equal('--version\ncheck\ncheck\n')
        const error = await judgeCriu({path: bad, source: 'CRIU_PATH'}, 0x1_FF_FF_FF_FF_FFn).then(() => expect.fail('3.17.1 cannot run here'), (error_: FailedError) => error_)
        expect(error).to.be.instanceOf(FailedError)
        expect(error.exitCode).to.equal(1)
        expect(error.message).to.equal(`CRIU 3.17.1 at ${bad} (from CRIU_PATH) cannot run on this kernel: kerndat (vDSO) failed (kerndat_vdso_fill_symtable failed when initializing kerndat.)`)
        expect(error.hint).to.match(/^use CRIU 4\.2 or newer: pass --criu-path or set CRIU_PATH \(Debian family: .*forky or sid/)
      } finally {
        if (saved === undefined) delete process.env.XDG_CACHE_HOME
        else process.env.XDG_CACHE_HOME = saved
        rmSync(dir, {force: true, recursive: true})
      }
    })

    it('caches `criu --version` per binary in the user\'s cache folder, and notices a replaced binary', async () => {
      const dir = mkdtempSync(join(tmpdir(), 'criu-cache-'))
      const saved = process.env.XDG_CACHE_HOME
      process.env.XDG_CACHE_HOME = join(dir, 'cache')
      try {
        const fake = join(dir, 'criu')
        const calls = join(dir, 'calls')
        writeFileSync(fake, `#!/bin/sh\necho x >> ${calls}\necho "Version: 4.2.1"\n`, {mode: 0o755})
        expect((await criuVersion(fake)).text).to.equal('4.2.1')
        expect((await criuVersion(fake)).text).to.equal('4.2.1')
        expect(readFileSync(calls, 'utf8'), 'asked once').to.equal('x\n')
        expect(cacheDir()).to.equal(join(dir, 'cache', 'oclif-plugin-criu'))
        // an upgrade in place (new size) is asked again
        writeFileSync(fake, `#!/bin/sh\necho x >> ${calls}\necho "Version: 3.13"\n\n`, {mode: 0o755})
        await criuVersion(fake).then(
          () => expect.fail('3.13 is too old'),
          (error: Error) => expect(error.message).to.include(`CRIU 3.13 at ${fake} (from --criu-path) is too old`),
        )
        expect(readFileSync(calls, 'utf8')).to.equal('x\nx\n')
      } finally {
        if (saved === undefined) delete process.env.XDG_CACHE_HOME
        else process.env.XDG_CACHE_HOME = saved
        rmSync(dir, {force: true, recursive: true})
      }
    })

    it('reads CAP_SYS_ADMIN from /proc/self/status', () => {
      expect(hasAdminCapability('CapEff:\t000001ffffffffff\n')).to.equal(true)
      expect(hasAdminCapability('CapEff:\t0000000000000000\n')).to.equal(false)
      expect(hasAdminCapability('CapEff:\t0000000000200000\n')).to.equal(true)
      expect(hasAdminCapability('nothing')).to.equal(false)
    })
  })

  describe('the CRIU command line (pure)', () => {
    it('translates joins to CRIU\'s own syntax', () => {
      expect(criuJoinArg(spec('user:5:1000:1001'), '/proc/9/fd/20')).to.equal('user:/proc/9/fd/20,1000,1001')
      expect(criuJoinArg(spec('net:5'), '/proc/9/fd/21')).to.equal('net:/proc/9/fd/21')
      expect(() => criuJoinArg(spec('net:5'), '/a,b')).to.throw('comma')
    })

    it('plans every flag, and an external net namespace as --inherit-fd', () => {
      const net = namespaceByName('net')!
      const plan = planRestore(
        {
          detached: true,
          emptyNs: [],
          extUnixSk: true,
          fileLocks: true,
          imagesDir: '/ck',
          joinNs: [spec('net:5'), spec('uts:5')],
          manageCgroups: 'soft',
          shellJob: true,
          tcpEstablished: true,
          verbosity: 2,
        },
        {
          criu: '/usr/sbin/criu',
          externalNetKey: 'mycli-net-7',
          joins: [
            {criuPath: '/proc/1/fd/10', fd: 10, ino: 7, spec: spec('net:5')},
            {criuPath: '/proc/1/fd/11', fd: 11, ino: 8, spec: spec('uts:5')},
          ],
          workDir: '/w',
        },
      )
      expect(plan.argv).to.deep.equal([
        'restore',
        '--images-dir',
        '/ck',
        '--work-dir',
        '/w',
        '--log-file',
        '/w/restore.log',
        '-v2',
        '--pidfile',
        '/w/restore.pid',
        '--restore-detached',
        '--shell-job',
        '--tcp-established',
        '--ext-unix-sk',
        '--file-locks',
        '--manage-cgroups=soft',
        '--inherit-fd',
        'fd[3]:mycli-net-7',
        '--join-ns',
        'uts:/proc/1/fd/11',
      ])
      expect(plan.inheritFds).to.deep.equal([10])
      expect(planRestore({detached: false, emptyNs: [net], imagesDir: '/ck', joinNs: []}, {criu: 'c', joins: [], workDir: '/w'}).argv)
      .to.include.members(['--empty-ns', 'net']).and.not.include('--restore-detached')
    })

    it('quotes what a shell would split', () => {
      expect(formatCommand('/x/criu', ['restore', '-D', '/a b', "it's"], {CRIU_FAULT: '130'})).to.equal('CRIU_FAULT=130 /x/criu restore -D \'/a b\' \'it\'\\\'\'s\'')
    })
  })
})
