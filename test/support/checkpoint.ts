/**
 * Real checkpoints for the tests: a workload is started, CRIU dumps it (which ends it), and
 * the images folder is returned. The workloads are single processes: PID 1 here does not
 * reap orphans, and an orphaned zombie child would keep the workload's PID taken.
 */
import {spawn, spawnSync} from 'node:child_process'
import {createHash} from 'node:crypto'
import {readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {
  BIN, criuPath, tempDir, track, waitFor,
} from './system.js'

export type Workload = 'echo-server' | 'sleeper' | {python: string}

const ECHO_SERVER = `
import socket, sys
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1])))
s.listen(8)
open(sys.argv[2], "w").write("ready")
while True:
    c, _ = s.accept()
    data = c.recv(1024)
    c.sendall(b"echo:" + data)
    c.close()
`

export interface Checkpoint {
  dir: string
  /** The PID the workload had, which the restore gives back. */
  pid: number
  port?: number
}

let nextPort = 20_000 + (process.pid % 20_000)

/** Start a workload on the host, checkpoint it with the real CRIU, and wait until it is reaped. */
export async function checkpoint(workload: Workload = 'sleeper'): Promise<Checkpoint> {
  const dir = tempDir('criu-ckpt-')
  const ready = join(tempDir('criu-ready-'), 'ready')
  const port = workload === 'echo-server' ? nextPort++ : undefined
  const python = typeof workload === 'object' ? `open(${JSON.stringify(ready)}, "w").write("ready")\n${workload.python}` : undefined
  const args = workload === 'echo-server' ? ['python3', '-c', ECHO_SERVER, String(port), ready] : (python ? ['python3', '-c', python] : ['sleep', '100000'])
  const child = spawn('setsid', args, {stdio: 'ignore'})
  const pid = track(child.pid!)
  const exited = new Promise(resolve => {
    child.once('exit', resolve)
  })
  await waitFor('the workload to start', () => {
    try {
      if (workload !== 'sleeper') return readFileSync(ready, 'utf8') === 'ready'
      return readFileSync(`/proc/${pid}/comm`, 'utf8').trim() === 'sleep'
    } catch {
      return false
    }
  })
  const dump = spawnSync(criuPath(), ['dump', '-t', String(pid), '-D', dir, '-o', 'dump.log', '-v4'], {encoding: 'utf8'})
  if (dump.status !== 0) {
    throw new Error(`criu dump failed (${dump.status}): ${dump.stderr}\n${readFileSync(join(dir, 'dump.log'), 'utf8').split('\n').filter(l => l.includes('Error')).join('\n')}`)
  }

  await exited // reaped: the PID is free for the restore
  return {dir, pid, port}
}

/**
 * A checkpoint the real CRIU fails to restore once it has started: the workload had a file
 * open, which is removed after the dump (CRIU reopens a file by its path: "Can't open file
 * ... on restore"). Nothing the plugin checks before CRIU starts sees it.
 */
export async function unrestorableCheckpoint(): Promise<Checkpoint> {
  const file = join(tempDir('criu-held-'), 'held')
  writeFileSync(file, 'held open by the workload\n')
  const ckpt = await checkpoint({python: `held = open(${JSON.stringify(file)})\nimport time\nwhile True:\n    time.sleep(1000)`})
  rmSync(file)
  return ckpt
}

/** A digest of every file in a folder (names, sizes, contents), to prove nothing was written. */
export function folderDigest(dir: string): string {
  const hash = createHash('sha256')
  for (const name of readdirSync(dir).sort()) {
    hash.update(name)
    hash.update(readFileSync(join(dir, name)))
  }

  return hash.digest('hex')
}

export interface CliResult {
  code: null | number
  stderr: string
  stdout: string
}

/** Run the plugin's CLI (bin/run.js) as a user would. */
export function mycli(args: string[], env: NodeJS.ProcessEnv = {}, input?: string): CliResult {
  const r = spawnSync(process.execPath, [BIN, ...args], {encoding: 'utf8', env: {...process.env, CRIU_PATH: criuPath(), ...env}, input, timeout: 120_000})
  return {code: r.status, stderr: r.stderr, stdout: r.stdout}
}
