/**
 * Run by the arm64 Node under qemu-user (see arm64.test.ts): it loads the native module the way
 * the plugin does (src/lib/native.ts, which picks the prebuild by CPU as node-gyp-build would),
 * calls it, and prints one JSON object of outcomes for the x86-64 test to judge. No mocha here:
 * every emulated Node start costs seconds, so one run does everything.
 *
 * argv: TEMP_DIR HOLDER_PID USER_HOLDER_PID
 */
import {
  closeSync, fstatSync, openSync, readFileSync,
} from 'node:fs'
import {join} from 'node:path'

import {namespaceByName} from '../../src/lib/namespaces.js'
import {
  inspectPath, nativeBinary, pinPath, pinPid, PinnedNamespace, probeHwBreakpoints, setChildSubreaper, spawnJoined, waitPid,
} from '../../src/lib/native.js'

export type Outcome = {error: {code?: string; message: string; name: string}} | {value: unknown}

const [dir, holder, userHolder] = process.argv.slice(2)
const ns = (name: string) => namespaceByName(name)!

/**
 * A pin made from an fd opened here, without the NS_GET_NSTYPE check that pinPid() makes:
 * qemu-user does not translate that ioctl. The join itself (setns in the forked child) is the
 * module's own code.
 */
function openedPin(type: string, pid: string): PinnedNamespace {
  const desc = ns(type)
  const path = `/proc/${pid}/ns/${desc.procEntry}`
  const fd = openSync(path, 'r')
  const st = fstatSync(fd)
  return new PinnedNamespace(desc, {dev: st.dev, fd, ino: st.ino, mode: st.mode, nstype: desc.flag}, path)
}

let runs = 0
/** Run a program through spawnJoined with its output in a file; its exit status and output. */
async function joined(file: string, args: string[], options: Omit<Parameters<typeof spawnJoined>[2], 'stdio'>) {
  const out = join(dir, `out-${runs++}`)
  const fd = openSync(out, 'w')
  let pid: number
  try {
    pid = spawnJoined(file, args, {...options, stdio: [-1, fd, fd]})
  } finally {
    closeSync(fd)
  }

  const status = await waitPid(pid)
  return {output: readFileSync(out, 'utf8').trim().split('\n'), status}
}

async function outcome(run: () => unknown): Promise<Outcome> {
  try {
    return {value: await run()}
  } catch (error) {
    const {code, message, name} = error as Error & {code?: string}
    return {error: {code, message, name}}
  }
}

async function main(): Promise<void> {
  // Not mnt, user and time: see arm64.test.ts.
  const four = ['net', 'uts', 'ipc', 'cgroup']
  const report: Record<string, Outcome> = {
    arch: {value: process.arch},
    loaded: await outcome(() => nativeBinary()),
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    nodeGypBuild: await outcome(() => require('node-gyp-build').resolve(join(__dirname, '..', '..', '..'))),
    exitStatus: await outcome(async () => waitPid(spawnJoined('sh', ['-c', 'exit 7'], {namespaces: []}))),
    joinFour: await outcome(async () => {
      const pins = four.map(t => openedPin(t, holder))
      try {
        return await joined('sh', ['-c', `for t in ${four.join(' ')}; do readlink /proc/self/ns/$t; done; hostname`], {namespaces: pins})
      } finally {
        for (const p of pins) p.close()
      }
    }),
    joinAs1000: await outcome(async () => {
      const pins = ['net', 'uts', 'ipc'].map(t => openedPin(t, holder))
      try {
        return await joined('sh', ['-c', 'id -u; id -g; id -G; for t in net uts ipc; do readlink /proc/self/ns/$t; done'], {gid: 1000, groups: [1000, 1001], namespaces: pins, uid: 1000})
      } finally {
        for (const p of pins) p.close()
      }
    }),
    ownUserNamespace: await outcome(() => {
      const own = openedPin('user', 'self')
      try {
        return spawnJoined('/bin/true', [], {namespaces: [own]})
      } finally {
        own.close()
      }
    }),
    noSuchProgram: await outcome(() => spawnJoined('no-such-program-here', [], {namespaces: []})),
    missingPath: await outcome(() => pinPath(ns('net'), '/nonexistent/ns')),
    breakpointProbe: await outcome(() => probeHwBreakpoints(50)),
    // What qemu-user itself stands in the way of (the test documents it, so that a qemu that
    // does better shows up as a failure asking for these to be tested for real).
    nsGetNstype: await outcome(() => inspectPath('/proc/self/ns/net')),
    pinPidIoctl: await outcome(() => pinPid(ns('net'), process.pid)),
    subreaper: await outcome(() => setChildSubreaper(true)),
    joinMnt: await outcome(async () => {
      const pin = openedPin('mnt', holder)
      try {
        return await waitPid(spawnJoined('/bin/true', [], {namespaces: [pin]}))
      } finally {
        pin.close()
      }
    }),
    joinTime: await outcome(async () => {
      const pin = openedPin('time', holder)
      try {
        return await waitPid(spawnJoined('/bin/true', [], {namespaces: [pin]}))
      } finally {
        pin.close()
      }
    }),
    joinUser: await outcome(async () => {
      const pin = openedPin('user', userHolder)
      try {
        return await waitPid(spawnJoined('/bin/true', [], {namespaces: [pin]}))
      } finally {
        pin.close()
      }
    }),
  }
  process.stdout.write(JSON.stringify(report))
}

main()
