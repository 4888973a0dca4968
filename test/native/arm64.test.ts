import {expect} from 'chai'
import {execFile, execFileSync} from 'node:child_process'
import {existsSync, readFileSync} from 'node:fs'
import {join} from 'node:path'
import {promisify} from 'node:util'

import type {Outcome} from './arm64-driver.js'

import {
  cleanup, Holder, nsInode, REPO, requireRoot, startHolder, tempDir,
} from '../support/system.js'

/**
 * The linux-arm64 prebuild that scripts/build-arm64.sh cross-compiles, loaded by the arm64 Node
 * from the npm registry running under qemu-user on this x86-64 machine. qemu-user translates the
 * instructions and passes system calls to this (x86-64) kernel: the module's fork, setns,
 * setresuid, execve and waitpid run for real. What qemu-user stands in the way of (mnt, user and
 * time joins, the nsfs ioctls, PR_SET_CHILD_SUBREAPER) the last test pins down.
 */
const PREBUILD = join(REPO, 'prebuilds', 'linux-arm64', 'oclif-plugin-criu.node')
const SYSROOT = '/usr/aarch64-linux-gnu'
const NODE_MAJOR = '24'

function onPath(tool: string): boolean {
  return (process.env.PATH ?? '').split(':').some(dir => existsSync(join(dir, tool)))
}

const value = (o: Outcome) => {
  if ('error' in o) throw new Error(`expected a value, got ${o.error.name}: ${o.error.message}`)
  return o.value
}

const error = (o: Outcome) => {
  if ('value' in o) throw new Error(`expected an error, got ${JSON.stringify(o.value)}`)
  return o.error
}

describe('the linux-arm64 prebuild, run by the arm64 Node under qemu-user', function () {
  // Every instruction of Node is translated: one run of the driver takes 10-30 s here.
  this.timeout(300_000)

  let report: Record<string, Outcome>
  let holder: Holder
  let userHolder: Holder

  before(async () => {
    requireRoot()
    const how = '`npm run build:native` installs it (scripts/build-arm64.sh)'
    if (!existsSync(PREBUILD)) throw new Error(`${PREBUILD} is missing: ${how.replace('installs it', 'builds it')}`)
    if (!onPath('qemu-aarch64-static')) throw new Error(`qemu-aarch64-static (Debian: qemu-user-static) is missing: ${how}`)
    if (!existsSync(join(SYSROOT, 'lib', 'ld-linux-aarch64.so.1'))) {
      throw new Error(`no aarch64 C library in ${SYSROOT} (Debian: libc6-arm64-cross, with g++-aarch64-linux-gnu): ${how}`)
    }

    const node = execFileSync('bash', [join(REPO, 'scripts', 'fetch-node.sh'), NODE_MAJOR], {
      encoding: 'utf8', env: {...process.env, ARCH: 'arm64'}, stdio: ['ignore', 'pipe', 'inherit'],
    }).trim().split('\n').pop()!

    holder = await startHolder(['net', 'uts', 'ipc', 'mount', 'time', 'cgroup'], 'arm64-holder')
    userHolder = await startHolder(['user', 'net', 'uts', 'ipc'])
    const driver = join(REPO, 'dist', 'test', 'native', 'arm64-driver.js')
    const {stdout} = await promisify(execFile)(
      'qemu-aarch64-static',
      ['-L', SYSROOT, node, driver, tempDir(), String(holder.pid), String(userHolder.pid)],
      {cwd: REPO, timeout: 240_000},
    )
    report = JSON.parse(stdout)
  })

  after(cleanup)

  it('is an aarch64 ELF shared object, and the package ships it', () => {
    const header = readFileSync(PREBUILD).subarray(0, 20)
    expect(header.subarray(0, 4).toString('latin1')).to.equal('\u007FELF')
    expect(header[4], 'ELFCLASS64').to.equal(2)
    expect(header[5], 'little-endian').to.equal(1)
    expect(header.readUInt16LE(16), 'ET_DYN').to.equal(3)
    expect(header.readUInt16LE(18), 'EM_AARCH64').to.equal(183)
    const [pack] = JSON.parse(execFileSync('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], {cwd: REPO, encoding: 'utf8'}))
    const files = (pack.files as {path: string}[]).map(f => f.path)
    expect(files).to.include.members(['prebuilds/linux-arm64/oclif-plugin-criu.node', 'prebuilds/linux-x64/oclif-plugin-criu.node'])
  })

  it('is what the plugin\'s loader picks for the arm64 Node, as node-gyp-build would', () => {
    expect(value(report.arch)).to.equal('arm64')
    expect(value(report.loaded)).to.equal(PREBUILD)
    expect(value(report.nodeGypBuild)).to.equal(PREBUILD)
  })

  it('runs a program and passes its exit status back', () => {
    expect(value(report.exitStatus)).to.deep.equal({code: 7, signal: null})
  })

  it('joins net, uts, ipc and cgroup of one holder at once', () => {
    const types = ['net', 'uts', 'ipc', 'cgroup']
    expect(value(report.joinFour)).to.deep.equal({
      output: [...types.map(t => `${t}:[${nsInode(holder.pid, t)}]`), 'arm64-holder'],
      status: {code: 0, signal: null},
    })
  })

  it('joins as uid 1000, gid 1000, groups 1000 1001', () => {
    expect(value(report.joinAs1000)).to.deep.equal({
      output: ['1000', '1000', '1000 1001', ...['net', 'uts', 'ipc'].map(t => `${t}:[${nsInode(holder.pid, t)}]`)],
      status: {code: 0, signal: null},
    })
  })

  it('reports a failed join, a failed exec and a missing path as the x86-64 build does', () => {
    expect(error(report.ownUserNamespace)).to.include({
      name: 'SpawnJoinedError', message: 'cannot join the user namespace of /proc/self/ns/user: Invalid argument (setns)',
    })
    expect(error(report.noSuchProgram)).to.include({
      name: 'SpawnJoinedError', message: 'cannot run no-such-program-here: No such file or directory (execve)',
    })
    expect(error(report.missingPath)).to.include({name: 'PinError', message: '/nonexistent/ns does not exist'})
  })

  it('answers the hardware breakpoint probe with "x86-64 only"', () => {
    expect(value(report.breakpointProbe)).to.deep.equal({detail: 'the probe exists for x86-64 only', works: null})
  })

  it('cannot be checked here for mnt, user and time joins, the nsfs ioctls and the subreaper flag', () => {
    // qemu-user keeps a thread of its own (RCU) in every process, forked children too: the
    // kernel refuses setns of mnt and user (EINVAL) and time (EUSERS) to a multithreaded caller.
    expect(error(report.joinMnt).message).to.equal(`cannot join the mnt namespace of /proc/${holder.pid}/ns/mnt: Invalid argument (setns)`)
    expect(error(report.joinTime).message).to.equal(`cannot join the time namespace of /proc/${holder.pid}/ns/time: Too many users (setns)`)
    expect(error(report.joinUser).message).to.equal(`cannot join the user namespace of /proc/${userHolder.pid}/ns/user: Invalid argument (setns)`)
    // ENOSYS is qemu's answer to an ioctl it has no table entry for; the kernel answers
    // NS_GET_NSTYPE for any namespace file. qemu 7.2 refuses PR_SET_CHILD_SUBREAPER itself.
    expect(error(report.nsGetNstype).message).to.equal('/proc/self/ns/net: ioctl(NS_GET_NSTYPE): Function not implemented (/proc/self/ns/net)')
    expect(error(report.pinPidIoctl).message).to.match(/ioctl\(NS_GET_NSTYPE\): Function not implemented/)
    expect(error(report.subreaper)).to.include({code: 'EINVAL', message: 'prctl(PR_SET_CHILD_SUBREAPER): Invalid argument'})
  })
})
