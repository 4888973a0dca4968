import {Args, Errors, Flags, Parser} from '@oclif/core'
import {expect} from 'chai'

import {criuFailure} from '../../src/lib/criu.js'
import {errorJson, errorText, isExit, reportOf, wantsJson} from '../../src/lib/error-output.js'
import {FailedError, InterruptedError, RefusedError} from '../../src/lib/errors.js'
import {joinDeniedHint} from '../../src/lib/exec.js'
import {imagesDirOf, joinNs} from '../../src/lib/flags.js'
import {JoinNsError, parseJoinNs} from '../../src/lib/join-ns.js'
import {joinableBy, namespaceByName, NAMESPACES, whyNotJoinable} from '../../src/lib/namespaces.js'

/** The error oclif's real parser throws for argv. */
async function parseError(argv: string[]): Promise<unknown> {
  try {
    await Parser.parse(argv, {
      args: {dir: Args.directory()},
      flags: {'join-ns': joinNs(), 'manage-cgroups': Flags.option({options: ['none', 'soft'] as const})(), timeout: Flags.integer({min: 1})},
      strict: true,
    })
  } catch (error) {
    return error
  }

  throw new Error(`${argv.join(' ')} parsed`)
}

describe('errors and --json', () => {
  describe('error output: one report, as text or as JSON', () => {
    it('keeps the plugin\'s errors as they are: exit code, message, hint, CRIU\'s log', () => {
      expect(reportOf(new RefusedError('--images-dir "x": no such folder', 'give the folder'))).to.deep.equal({exitCode: 2, hint: 'give the folder', message: '--images-dir "x": no such folder'})
      expect(reportOf(new FailedError('CRIU restore failed', undefined, '/w/restore.log'))).to.deep.equal({exitCode: 1, logFile: '/w/restore.log', message: 'CRIU restore failed'})
      expect(reportOf(new InterruptedError('interrupted by SIGINT'))).to.deep.equal({exitCode: 130, message: 'interrupted by SIGINT'})
    })

    const parserCases: [string[], string][] = [
      [['--bogus'], 'Nonexistent flag: --bogus'],
      [['a', 'b'], 'Unexpected argument: b'],
      [['--timeout', 'abc'], '--timeout: Expected an integer but received: abc'],
      [['--timeout', '0'], '--timeout: Expected an integer greater than or equal to 1 but received: 0'],
      [['--manage-cgroups', 'bogus'], 'Expected --manage-cgroups=bogus to be one of: none, soft'],
    ]
    for (const [argv, message] of parserCases) {
      it(`oclif's parser, ${argv.join(' ')}: exit 2, its message on one line, the help as the hint`, async () => {
        const report = reportOf(await parseError(argv), 'mycli restore --help')
        expect(report).to.deep.equal({exitCode: 2, hint: 'see `mycli restore --help`', message})
      })
    }

    it('a -J value: the plugin\'s own words, not oclif\'s wrapping of them', async () => {
      const error = await parseError(['-J', 'netx:1'])
      expect(error).to.be.instanceOf(JoinNsError)
      expect(reportOf(error)).to.deep.equal({exitCode: 2, message: '--join-ns "netx:1": unknown namespace "netx" (expected one of: ipc, mnt, net, time, user, uts)'})
    })

    it('anything else: exit 1 and its message', () => {
      expect(reportOf(new TypeError('boom'))).to.deep.equal({exitCode: 1, message: 'boom'})
      expect(reportOf(new Errors.CLIError('told', {exit: 2}))).to.deep.equal({exitCode: 2, message: 'told'})
    })

    it('text: Error and Hint lines, the message never wrapped, however long its path', () => {
      const path = `/var/lib/${'very-long-folder-name/'.repeat(8)}ckpt`
      const text = errorText({exitCode: 2, hint: 'give the folder `criu dump -D` wrote', message: `--images-dir "${path}": no such folder`})
      expect(text).to.equal(`Error: --images-dir "${path}": no such folder\nHint: give the folder \`criu dump -D\` wrote\n`)
      expect(errorText({exitCode: 1, message: 'm'})).to.equal('Error: m\n')
    })

    it('JSON: the report under "error", nothing else', () => {
      expect(errorJson({exitCode: 2, message: 'm'})).to.deep.equal({error: {exitCode: 2, message: 'm'}})
    })

    it('a failed CRIU: the text says Ran: and Log:, the JSON says each once, as `ran` and `logFile`', () => {
      const ran = 'CRIU 4.2.1 at /opt/criu (from CRIU_PATH)'
      const log = '/nonexistent/w/restore.log' // no log: CRIU's stderr is shown
      const error = criuFailure('restore', log, {code: 1, signal: null}, {ran, stderr: 'Error (criu/cr-restore.c:1237): Can\'t fork for 42: File exists\n'})
      const report = reportOf(error)
      expect(errorText(report)).to.equal(`Error: CRIU restore failed (exit code 1)\n  Error (criu/cr-restore.c:1237): Can't fork for 42: File exists\nRan: ${ran}\nLog: ${log}\nHint: ${report.hint}\n`)
      expect(errorJson(report)).to.deep.equal({error: {
        exitCode: 1, hint: report.hint, logFile: log, message: 'CRIU restore failed (exit code 1)\n  Error (criu/cr-restore.c:1237): Can\'t fork for 42: File exists', ran,
      }})
      // Only a line that is exactly the field goes; a message line that merely mentions the log stays.
      expect(errorJson({exitCode: 1, logFile: log, message: `the daemon failed\nsee Log: ${log}\nLog: ${log}`}).error.message).to.equal(`the daemon failed\nsee Log: ${log}`)
    })

    it('decides --json as oclif\'s Command.jsonEnabled does: before any --, or <BIN>_CONTENT_TYPE=json', () => {
      expect(wantsJson(['-D', 'x', '--json'], true)).to.equal(true)
      expect(wantsJson(['--json', '--', 'cmd'], true)).to.equal(true)
      expect(wantsJson(['--', 'cmd', '--json'], true)).to.equal(false)
      expect(wantsJson(['--json'], false)).to.equal(false)
      expect(wantsJson([], true, 'JSON')).to.equal(true)
      expect(wantsJson([], true, 'text')).to.equal(false)
    })

    it('passes oclif\'s exit through untouched', () => {
      expect(isExit(new Errors.ExitError(3))).to.equal(true)
      expect(isExit(new RefusedError('x'))).to.equal(false)
    })
  })

  describe('the checkpoint folder as -D or as the argument', () => {
    it('takes either, or both when they name the same folder', () => {
      expect(imagesDirOf('/c', undefined, 'e.g.')).to.equal('/c')
      expect(imagesDirOf(undefined, 'c', 'e.g.')).to.equal('c')
      expect(imagesDirOf('/tmp/c', '/tmp/./c/', 'e.g.')).to.equal('/tmp/c')
    })

    it('refuses neither, and two different folders, naming both', () => {
      expect(() => imagesDirOf(undefined, undefined, 'mycli restore -D ./ckpt')).to.throw(RefusedError, 'missing the checkpoint folder: give it as -D DIR (--images-dir) or as the argument')
      expect(() => imagesDirOf('/a', '/b', 'x')).to.throw(RefusedError, 'the checkpoint folder is given twice: --images-dir "/a" and the argument "/b"; give it once')
    })
  })

  describe('who joins decides what may be joined (the namespace table)', () => {
    it('restore (CRIU): pid and cgroup refused, each with restore\'s reason', () => {
      expect(joinableBy('restore').map(d => d.name)).to.deep.equal(['ipc', 'mnt', 'net', 'time', 'user', 'uts'])
      expect(() => parseJoinNs('pid:1', '/')).to.throw(JoinNsError, 'the pid namespace cannot be joined at restore: a PID namespace is entered only by children created after the join, and CRIU must give each task back its own PID')
    })

    it('ns exec and launch (a forked child): cgroup joins, pid refused with their own reason', () => {
      expect(joinableBy('exec').map(d => d.name)).to.deep.equal(['cgroup', 'ipc', 'mnt', 'net', 'time', 'user', 'uts'])
      expect(parseJoinNs('cgroup:1', '/', 'exec').ns.name).to.equal('cgroup')
      expect(() => parseJoinNs('pid:1', '/', 'exec')).to.throw(JoinNsError, 'the pid namespace cannot be joined by ns exec or launch: the command is started by the very process that joins')
      expect(() => parseJoinNs('pid:1', '/', 'exec')).not.to.throw(JoinNsError, 'CRIU')
      expect(() => parseJoinNs('x:1', '/', 'exec')).to.throw(JoinNsError, '(expected one of: cgroup, ipc, mnt, net, time, user, uts)')
    })

    it('every type that cannot be joined has a reason for each use, from the table', () => {
      for (const use of ['exec', 'restore'] as const) {
        for (const d of NAMESPACES) {
          const why = whyNotJoinable(d, use)
          if (joinableBy(use).includes(d)) expect(why).to.equal(undefined)
          else expect(why).to.match(new RegExp(`^the ${d.name} namespace cannot be joined .+: .{20,}`))
        }
      }

      expect(namespaceByName('pid')!.execNote).to.not.equal(namespaceByName('pid')!.note)
    })
  })

  describe('ns exec: a join the kernel denied', () => {
    const net = parseJoinNs('net:1', '/', 'exec')
    const user = parseJoinNs('user:1', '/', 'exec')

    it('without root and without a user join: join the user namespace too, or run as root', () => {
      expect(joinDeniedHint({args: [], command: 'true', joinNs: [net]}, 65_534)).to.equal('join the target\'s user namespace too (-J user:PID), which gives the rights to join the others, or run it as root (sudo)')
    })

    it('no such hint for root, or when the user namespace is joined already', () => {
      expect(joinDeniedHint({args: [], command: 'true', joinNs: [net]}, 0)).to.equal(undefined)
      expect(joinDeniedHint({args: [], command: 'true', joinNs: [net, user]}, 65_534)).to.equal(undefined)
    })
  })
})
