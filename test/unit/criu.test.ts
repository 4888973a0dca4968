import {expect} from 'chai'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {hasAdminCapability} from '../../src/lib/capabilities.js'
import {formatCommand} from '../../src/lib/criu-run.js'
import {
  cacheDir,
  criuEnvironment,
  criuErrorLines,
  criuVersion,
  findCriu,
  FI_NO_BREAKPOINTS,
  hintFor,
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
      expect(hintFor('Error (criu/util.c:642): execvp("iptables-restore", ...) failed')).to.match(/--network-lock skip/)
    })

    it('finds CRIU through the flag, then CRIU_PATH, then PATH, and says what to do when it is missing', () => {
      const dir = mkdtempSync(join(tmpdir(), 'criu-find-'))
      try {
        const fake = join(dir, 'criu')
        writeFileSync(fake, '#!/bin/sh\n', {mode: 0o755})
        expect(findCriu(fake, {})).to.equal(fake)
        expect(findCriu(undefined, {CRIU_PATH: fake})).to.equal(fake)
        expect(findCriu(undefined, {PATH: dir})).to.equal(fake)
        expect(() => findCriu(join(dir, 'nope'), {})).to.throw(FailedError, `CRIU not found at ${join(dir, 'nope')} (--criu-path)`)
      } finally {
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
          (error: Error) => expect(error.message).to.include('CRIU 3.13 at'),
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
