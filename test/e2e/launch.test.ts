/**
 * `launch`: own session, stdio on files, io_uring denied for the whole tree, joined
 * namespaces; bad input refused with exit 2 and nothing started.
 */
import {expect} from 'chai'
import {existsSync, readFileSync, readlinkSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {runLaunch} from '../../src/lib/launch.js'
import {isChildSubreaper, setChildSubreaper, waitPid} from '../../src/lib/native.js'
import {mycli} from '../support/checkpoint.js'
import {
  cleanup, fdCount, flat, nsInode, requireRoot, startHolder, tempDir, waitFor,
} from '../support/system.js'

// io_uring_setup through ctypes, in the launched program and in a child of it: the errno it gets.
const PROBE = `
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def probe():
    r = libc.syscall(425, 8, ctypes.create_string_buffer(120))
    return "ok" if r >= 0 else os.strerror(ctypes.get_errno())
pid = os.fork()
if pid == 0:
    print("child", probe(), flush=True)
    os._exit(0)
os.waitpid(pid, 0)
print("parent", probe(), flush=True)
print("session", os.getsid(0) == os.getpid(), flush=True)
print("stdin", repr(sys.stdin.read()), flush=True)
print("net", os.readlink("/proc/self/ns/net"), flush=True)
print("to stderr", file=sys.stderr, flush=True)
`

describe('launch (own session, no terminal, no io_uring)', function () {
  this.timeout(120_000)
  let wasSubreaper = false

  before(() => {
    requireRoot()
    wasSubreaper = isChildSubreaper()
    setChildSubreaper(true) // the launched program outlives the CLI: it comes back to us to be reaped
  })

  after(() => setChildSubreaper(wasSubreaper))

  afterEach(cleanup)

  it('denies io_uring_setup (ENOSYS) to the program and its children, in its own session, stdio on the files, inside -J net', async () => {
    const dir = tempDir()
    const holder = await startHolder(['net'])
    const input = join(dir, 'in')
    writeFileSync(input, 'from the file')
    const [out, err] = [join(dir, 'out'), join(dir, 'err')]
    writeFileSync(out, 'kept\n') // appended to, not truncated
    const r = mycli(['launch', '-J', `net:${holder.pid}`, '--stdin', input, '--stdout', out, '--stderr', err, '--json', '--', 'python3', '-c', PROBE])
    expect(r.code, r.stderr).to.equal(0)
    const result = JSON.parse(r.stdout)
    expect(result).to.include({ioUring: 'denied', stderr: err, stdin: input, stdout: out})
    expect(result.joined).to.deep.equal([`net:${holder.pid}`])
    await waitPid(result.pid)
    expect(readFileSync(out, 'utf8').split('\n')).to.deep.equal([
      'kept', 'child Function not implemented', 'parent Function not implemented', 'session True', 'stdin \'from the file\'', `net net:[${nsInode(holder.pid, 'net')}]`, '',
    ])
    expect(readFileSync(err, 'utf8')).to.equal('to stderr\n')
  })

  it('prints only the PID without --json; stdio defaults to /dev/null', async () => {
    const r = mycli(['launch', '--', 'sleep', '100000'])
    expect(r.code, r.stderr).to.equal(0)
    expect(r.stdout).to.match(/^\d+\n$/)
    const pid = Number(r.stdout)
    await waitFor('sleep to run', () => readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'sleep')
    expect([0, 1, 2].map(fd => readlinkSync(`/proc/${pid}/fd/${fd}`))).to.deep.equal(['/dev/null', '/dev/null', '/dev/null'])
    process.kill(pid, 'SIGKILL')
    await waitPid(pid)
  })

  it('refuses bad input with exit 2 and starts nothing', async () => {
    const dir = tempDir()
    const cases: [string[], string][] = [
      [['launch'], 'give the command to start after --'],
      [['launch', '--', 'no-such-command-x'], '"no-such-command-x": no such command (looked for it on PATH)'],
      [['launch', '--stdout', join(dir, 'missing', 'out'), '--', 'true'], `--stdout "${join(dir, 'missing', 'out')}": cannot open it: no such file or folder`],
      [['launch', '--stdin', join(dir, 'nothing'), '--', 'true'], `--stdin "${join(dir, 'nothing')}": cannot open it: no such file or folder`],
      [['launch', '-J', 'net:999999999', '--', 'true'], '999999999'],
      [['launch', '-J', 'net:1', '-J', 'net:1', '--', 'true'], 'the net namespace is already joined'],
    ]
    for (const [argv, message] of cases) {
      const r = mycli(argv)
      expect(r.code, `${argv.join(' ')}: ${r.stderr}`).to.equal(2)
      expect(flat(r.stderr), argv.join(' ')).to.include(message)
      expect(r.stdout, argv.join(' ')).to.equal('')
    }

    expect(existsSync(join(dir, 'missing')), 'no folder made').to.equal(false)
  })

  it('the library leaves no fd open, on success and on refusal', async () => {
    const before = fdCount()
    const ok = runLaunch({args: ['0'], command: 'sleep', joinNs: []})
    await waitPid(ok.pid)
    expect(() => runLaunch({args: [], command: 'no-such-command-x', joinNs: [], stdout: join(tempDir(), 'o')})).to.throw('no such command')
    expect(fdCount()).to.equal(before)
  })
})
