import {expect} from 'chai'
import {mkdirSync, writeFileSync} from 'node:fs'
import {connect} from 'node:net'
import {join} from 'node:path'

import {containerJoins, parseContainerRef, resolveContainer} from '../../src/lib/containers.js'
import {RefusedError} from '../../src/lib/errors.js'
import {pinJoins} from '../../src/lib/native.js'
import {processStat} from '../../src/lib/proc.js'
import {checkpoint, mycli} from '../support/checkpoint.js'
import {
  provisionRunc, removeContainers, runcExec, startContainer, stopContainer,
} from '../support/runc.js'
import {
  cleanup, criuPath, flat, nsInode, requireRoot, startHolder, tempDir, track,
} from '../support/system.js'

/** Whether something on the host's loopback accepts connections on the port. */
function hostAccepts(port: number): Promise<boolean> {
  return new Promise(resolve => {
    const socket = connect(port, '127.0.0.1')
    socket.once('connect', () => {
      socket.destroy()
      resolve(true)
    })
    socket.once('error', () => resolve(false))
  })
}

function restoredPid(stdout: string): number {
  const m = /Restored PID (\d+)/.exec(stdout)
  expect(m, stdout).not.to.equal(null)
  return track(Number(m![1]))
}

/** Write a container's state where and as its runtime does (JSON text), under a private prefix. */
function writeState(prefix: string, dir: string, file: string, json: string): void {
  mkdirSync(join(prefix, dir), {recursive: true})
  writeFileSync(join(prefix, dir, file), json)
}

/** runc's state.json (libcontainer BaseState and State), the fields that matter here. */
const runcStateJson = (id: string, pid: number, start: number) =>
  `{"id":"${id}","init_process_pid":${pid},"init_process_start":${start},"created":"2026-11-30T00:00:00Z","config":{},"namespace_paths":{}}`

/** crun's status file (libcrun/status.c). */
const crunStatusJson = (pid: number, start: number) =>
  `{"pid":${pid},"process-start-time":${start},"cgroup-path":"/c","scope":"","rootfs":"rootfs","systemd-cgroup":false,"bundle":"/b","created":"2026-11-30T00:00:00Z","detached":true}`

const startOf = (pid: number) => processStat(pid)!.startTime

let serial = 0
const newId = (name: string) => `crt-${process.pid}-${serial++}-${name}`

describe('--join-container', () => {
  describe('with the real runc and CRIU', function () {
    this.timeout(180_000)

    before(() => {
      requireRoot()
      criuPath()
      provisionRunc()
    })

    afterEach(async () => {
      await removeContainers()
      await cleanup()
    })

    it('restores a service into a running container: it answers inside, not on the host; the container keeps its hostname and IPC', async () => {
      const ckpt = await checkpoint('echo-server')
      const id = newId('web')
      const c = await startContainer(id, 'crt-web')
      const ipcBefore = runcExec(id, ['cat', '/proc/sys/kernel/msgmax', '/proc/sys/kernel/shmmni']).stdout
      const r = mycli(['restore', '-D', ckpt.dir, '--join-container', id])
      expect(r.code, r.stderr).to.equal(0)
      const pid = restoredPid(r.stdout)
      expect(r.stdout).to.include(`into container ${id} (runc, from /run/runc/${id}/state.json): init PID ${c.pid}`)
      for (const type of ['net', 'ipc', 'uts']) expect(nsInode(pid, type), type).to.equal(nsInode(c.pid, type))
      for (const type of ['mnt', 'pid', 'user']) expect(nsInode(pid, type), type).to.equal(nsInode('self', type))
      const inside = runcExec(id, ['sh', '-c', `echo hi | nc 127.0.0.1 ${ckpt.port}`])
      expect(inside.stdout.trim(), 'the service answers inside the container').to.equal('echo:hi')
      expect(await hostAccepts(ckpt.port!), 'nothing answers on the host').to.equal(false)
      expect(runcExec(id, ['hostname']).stdout.trim()).to.equal('crt-web')
      expect(runcExec(id, ['cat', '/proc/sys/kernel/msgmax', '/proc/sys/kernel/shmmni']).stdout).to.equal(ipcBefore)
    })

    it('--dry-run and --json show the container, its runtime, its init PID and each namespace; a unique start of the ID works', async () => {
      const ckpt = await checkpoint()
      const id = newId('dry')
      const c = await startContainer(id, 'crt-dry')
      const prefix = id.slice(0, -2)
      const text = mycli(['restore', '-D', ckpt.dir, '--join-container', prefix, '--dry-run'])
      expect(text.code, text.stderr).to.equal(0)
      expect(text.stdout).to.include(`Joining container ${id} (runc, from /run/runc/${id}/state.json): init PID ${c.pid}, started ${processStat(c.pid)!.startTime} clock ticks after boot.`)
      // The plan's detail column wraps to the terminal: read it as one line.
      expect(flat(text.stdout)).to.include(`net joined process ${c.pid} (--join-container "${prefix}")`)
      const r = mycli(['restore', '-D', ckpt.dir, '--join-container', `${prefix}:net,uts`, '--dry-run', '--json'])
      expect(r.code, r.stderr).to.equal(0)
      const out = JSON.parse(r.stdout)
      expect(out.container).to.deep.equal({
        id, initPid: c.pid, initStartTime: processStat(c.pid)!.startTime, runtime: 'runc', source: `/run/runc/${id}/state.json`, stateFile: `/run/runc/${id}/state.json`,
      })
      const rows = Object.fromEntries(out.plan.namespaces.map((n: {action: string; detail: string; type: string}) => [n.type, `${n.action}: ${n.detail}`]))
      expect(rows.net).to.equal(`joined: process ${c.pid} (--join-container "${prefix}:net,uts")`)
      expect(rows.uts).to.equal(`joined: process ${c.pid} (--join-container "${prefix}:net,uts")`)
      expect(rows.ipc).to.equal('inherited: the namespace CRIU runs in')
      expect(out.command).to.include('--join-ns net:/proc/')
    })

    it('combines with -J for another type; the same type from both is refused before anything is read', async () => {
      const ckpt = await checkpoint()
      const id = newId('mix')
      const c = await startContainer(id, 'crt-mix')
      const holder = await startHolder(['uts'], 'other-host')
      const r = mycli(['restore', '-D', ckpt.dir, '--join-container', `${id}:net,ipc`, '-J', `uts:${holder.pid}`, '--json'])
      expect(r.code, r.stderr).to.equal(0)
      const out = JSON.parse(r.stdout)
      track(out.pid)
      expect(nsInode(out.pid, 'net')).to.equal(nsInode(c.pid, 'net'))
      expect(nsInode(out.pid, 'uts')).to.equal(nsInode(holder.pid, 'uts'))
      expect(out.namespaces.map((n: {source: string; type: string}) => `${n.type} ${n.source}`)).to.have.members([`net pid ${c.pid}`, `ipc pid ${c.pid}`, `uts pid ${holder.pid}`])
      const twice = mycli(['restore', '-D', ckpt.dir, '--join-container', id, '-J', `uts:${holder.pid}`])
      expect(twice.code).to.equal(2)
      expect(flat(twice.stderr)).to.include(`--join-container "${id}" and --join-ns "uts:${holder.pid}" both join the uts namespace; give one target per namespace type: list the container's other types (--join-container ${id}:ipc,net) or leave out the -J`)
    })

    it('refuses an unknown or ambiguous ID with what was searched and the candidates (exit 2, CRIU not started)', async () => {
      const ckpt = await checkpoint()
      const twin = newId('twin')
      const a = `${twin}-a`
      const b = `${twin}-b`
      await startContainer(a, 'a')
      await startContainer(b, 'b')
      const env = {CRIU_PATH: '/nonexistent/criu'}
      const unknown = mycli(['restore', '-D', ckpt.dir, '--join-container', `${a}-nope`], env)
      expect(unknown.code, unknown.stderr).to.equal(2)
      expect(flat(unknown.stderr)).to.match(new RegExp(`--join-container "${a}-nope": no container "${a}-nope": searched /run/runc, /run/docker/runtime-runc/moby, .*/run/crun; containers there: .*${a} \\(runc\\)`))
      const ambiguous = mycli(['restore', '-D', ckpt.dir, '--join-container', twin], env)
      expect(ambiguous.code, ambiguous.stderr).to.equal(2)
      expect(flat(ambiguous.stderr)).to.include(`--join-container "${twin}": "${twin}" is the start of 2 container IDs: ${a} (runc), ${b} (runc)`)
      expect(flat(ambiguous.stderr)).to.include('Hint: give more of the ID')
      expect(ambiguous.stderr).not.to.include('nonexistent')
    })

    it('ns inspect names an unknown ID as the argument it is, not as --join-container', () => {
      const nope = newId('nope')
      const r = mycli(['ns', 'inspect', nope])
      expect(r.code, r.stderr).to.equal(2)
      expect(r.stderr).to.match(new RegExp(`^Error: "${nope}" \\(not a PID or a path, so a container ID\\): no container "${nope}": searched /run/runc`))
      expect(r.stderr).not.to.include('--join-container')
    })

    it('after runc kill and a new container with the same ID, a target pinned to the old one is refused; the ID now means the new one', async () => {
      const id = newId('again')
      const old = await startContainer(id, 'crt-old')
      const ref = parseContainerRef(id)
      const resolved = await resolveContainer(ref)
      expect(resolved.initPid).to.equal(old.pid)
      const oldJoins = containerJoins(ref, resolved)
      await stopContainer(id)
      const fresh = await startContainer(id, 'crt-new')
      expect(() => pinJoins(oldJoins)).to.throw(RefusedError, new RegExp(`--join-container "${id}" \\(ipc:${old.pid}\\): (process ${old.pid} does not exist|PID ${old.pid} now names another process)`))
      // A reused PID: a record naming a live process with another start time.
      const reused = containerJoins(ref, {...resolved, initPid: fresh.pid})
      expect(() => pinJoins(reused)).to.throw(RefusedError, `PID ${fresh.pid} now names another process (started at ${processStat(fresh.pid)!.startTime} clock ticks after boot, not ${resolved.initStartTime} as recorded)`)
      const r = mycli(['ns', 'exec', '--join-container', id, '--', 'hostname'])
      expect(r.code, r.stderr).to.equal(0)
      expect(r.stdout.trim()).to.equal('crt-new')
    })

    it('ns exec and ns inspect take the container too', async () => {
      const id = newId('ns')
      const c = await startContainer(id, 'crt-ns')
      const exec = mycli(['ns', 'exec', '--join-container', `${id}:uts`, '--', 'hostname'])
      expect(exec.code, exec.stderr).to.equal(0)
      expect(exec.stdout.trim()).to.equal('crt-ns')
      const r = mycli(['ns', 'inspect', id, '--json'])
      expect(r.code, r.stderr).to.equal(0)
      const [out] = JSON.parse(r.stdout)
      expect(out.container.initPid).to.equal(c.pid)
      const inodes = Object.fromEntries(out.namespaces.map((n: {inode: number; type: string}) => [n.type, n.inode]))
      for (const type of ['cgroup', 'ipc', 'mnt', 'net', 'pid', 'time', 'user', 'uts']) expect(inodes[type], type).to.equal(nsInode(c.pid, type))
    })
  })

  describe('Docker, containerd and crun layouts (state files in the runtime\'s format, real processes)', function () {
    this.timeout(60_000)

    before(requireRoot)

    afterEach(cleanup)

    it('finds Docker\'s (runtime-runc/moby), containerd\'s (runc/<namespace>) and crun\'s containers and joins their inits', async () => {
      const prefix = tempDir('container-roots-')
      const docker = await startHolder(['net', 'uts'], 'docker-c')
      const k8s = await startHolder(['net', 'uts'], 'k8s-c')
      const crun = await startHolder(['net', 'uts'], 'crun-c')
      const dockerId = `4f1c2e${'0'.repeat(58)}`
      writeState(prefix, `run/docker/runtime-runc/moby/${dockerId}`, 'state.json', runcStateJson(dockerId, docker.pid, startOf(docker.pid)))
      writeState(prefix, 'run/containerd/runc/k8s.io/pod-web', 'state.json', runcStateJson('pod-web', k8s.pid, startOf(k8s.pid)))
      writeState(prefix, 'run/crun/db', 'status', crunStatusJson(crun.pid, startOf(crun.pid)))
      const cases: [string, string, number, string][] = [
        ['4f1c', 'docker', docker.pid, `run/docker/runtime-runc/moby/${dockerId}/state.json`],
        ['pod-web:net,uts', 'containerd (namespace k8s.io)', k8s.pid, 'run/containerd/runc/k8s.io/pod-web/state.json'],
        ['db', 'crun', crun.pid, 'run/crun/db/status'],
      ]
      for (const [token, runtime, pid, file] of cases) {
        const ref = parseContainerRef(token)
        const c = await resolveContainer(ref, {env: {}, prefix})
        expect([c.runtime, c.initPid, c.stateFile], token).to.deep.equal([runtime, pid, join(prefix, file)])
        const pins = pinJoins(containerJoins(ref, c))
        try {
          for (const pin of pins) expect(pin.ino, `${token} ${pin.ns.name}`).to.equal(nsInode(pid, pin.ns.procEntry))
        } finally {
          for (const pin of pins) pin.close()
        }
      }
    })

    it('refuses a record whose PID names another process, and one whose init has exited', async () => {
      const prefix = tempDir('container-roots-')
      const holder = await startHolder(['net'])
      writeState(prefix, 'run/containerd/runc/default/stale', 'state.json', runcStateJson('stale', holder.pid, startOf(holder.pid) - 1))
      const ref = parseContainerRef('stale:net')
      const c = await resolveContainer(ref, {env: {}, prefix})
      expect(() => pinJoins(containerJoins(ref, c))).to.throw(RefusedError, `--join-container "stale:net" (net:${holder.pid}): PID ${holder.pid} now names another process`)
      process.kill(holder.pid, 'SIGKILL')
      await new Promise(resolve => {
        holder.proc.once('exit', resolve)
      })
      writeState(prefix, 'run/crun/gone', 'status', crunStatusJson(holder.pid, 5))
      const gone = parseContainerRef('gone:net')
      const g = await resolveContainer(gone, {env: {}, prefix})
      expect(() => pinJoins(containerJoins(gone, g))).to.throw(RefusedError, `process ${holder.pid} does not exist (or exited)`)
    })
  })
})
