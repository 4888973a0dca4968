/**
 * Real OCI containers for the tests: Debian's runc with a busybox root file system. runc runs in
 * the foreground as our child: it is the container init's parent (a subreaper), reaps it when it
 * dies and removes the container's state, so nothing is left for PID 1 to reap. Every container
 * started here is killed and deleted by ID in removeContainers(), which suites call from afterEach.
 */
import {ChildProcess, execFileSync, spawn, spawnSync} from 'node:child_process'
import {existsSync, mkdirSync, readFileSync, symlinkSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {REPO, tempDir, waitFor} from './system.js'

let tools: undefined | {busybox: string; runc: string}

/** runc and a static busybox, installed by the repo's script when missing; fails loudly. */
export function provisionRunc(): {busybox: string; runc: string} {
  if (tools) return tools
  let out: string
  try {
    out = execFileSync('bash', [join(REPO, 'scripts', 'provision-runc.sh')], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit']})
  } catch (error) {
    throw new Error(`scripts/provision-runc.sh could not provide runc and busybox-static: ${(error as Error).message}`)
  }

  const [runc, busybox] = out.trim().split('\n').slice(-2)
  tools = {busybox, runc}
  return tools
}

export interface Container {
  bundle: string
  id: string
  /** The init's PID, from `runc state`. */
  pid: number
  runc: ChildProcess
}

const running = new Map<string, Container>()

const APPLETS = ['sh', 'sleep', 'hostname', 'nc', 'cat', 'ipcs', 'ipcmk', 'wget', 'true']

/** `runc state ID` as JSON, or undefined when runc does not know the container. */
export function runcState(id: string): undefined | {pid: number; status: string} {
  const r = spawnSync(provisionRunc().runc, ['state', id], {encoding: 'utf8'})
  return r.status === 0 ? JSON.parse(r.stdout) : undefined
}

/** Start a container whose init sleeps, with its own pid, net, ipc, uts and mount namespaces. */
export async function startContainer(id: string, hostname: string): Promise<Container> {
  const {busybox, runc} = provisionRunc()
  const bundle = tempDir('runc-bundle-')
  mkdirSync(join(bundle, 'rootfs', 'bin'), {recursive: true})
  mkdirSync(join(bundle, 'rootfs', 'proc'))
  writeFileSync(join(bundle, 'rootfs', 'bin', 'busybox'), readFileSync(busybox), {mode: 0o755})
  for (const applet of APPLETS) symlinkSync('busybox', join(bundle, 'rootfs', 'bin', applet))
  execFileSync(runc, ['spec'], {cwd: bundle})
  const config = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'))
  config.process.terminal = false
  config.process.args = ['sleep', '100000']
  config.hostname = hostname
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(config))
  const proc = spawn(runc, ['run', id], {cwd: bundle, stdio: 'ignore'})
  const container: Container = {bundle, id, pid: 0, runc: proc}
  running.set(id, container)
  await waitFor(`runc to start container ${id}`, () => runcState(id)?.status === 'running', 20_000)
  container.pid = runcState(id)!.pid
  return container
}

/** Run a command inside the container (`runc exec`). */
export function runcExec(id: string, args: string[]): {code: null | number; stdout: string} {
  const r = spawnSync(provisionRunc().runc, ['exec', id, ...args], {encoding: 'utf8', timeout: 30_000})
  return {code: r.status, stdout: r.stdout}
}

/** Kill the container and wait until runc has reaped its init and removed its state. */
export async function stopContainer(id: string): Promise<void> {
  const container = running.get(id)
  const {runc} = provisionRunc()
  spawnSync(runc, ['kill', id, 'KILL'])
  if (container && container.runc.exitCode === null && container.runc.signalCode === null) {
    await new Promise(resolve => {
      container.runc.once('exit', resolve)
    })
  }

  if (runcState(id)) spawnSync(runc, ['delete', '--force', id])
  running.delete(id)
}

/** Remove every container the test started. */
export async function removeContainers(): Promise<void> {
  for (const id of running.keys()) await stopContainer(id)
}

/** Whether runc's default root holds a container with this ID (state written by runc itself). */
export function hasState(id: string): boolean {
  return existsSync(`/run/runc/${id}/state.json`)
}
