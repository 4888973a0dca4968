/**
 * `node dist/bench/containers.js`: what --join-container costs, side by side in one run
 * (interleaved A, B, A, B, ...; medians). Needs root, runc and busybox-static
 * (scripts/provision-runc.sh).
 *
 *   1. mycli ns exec --join-container ID -- true   vs  mycli ns exec -J net:P -J ipc:P -J uts:P -- true
 *   2. reading the state folder (library)          vs  runc state ID (the runtime's CLI)
 *   3. resolving one ID among 1, 100, 1000 containers in the folders (library, state files
 *      pointing at one real process), then pinning net, ipc and uts
 */
import {execFileSync, spawn, spawnSync} from 'node:child_process'
import {
  mkdirSync, mkdtempSync, readFileSync, rmSync, symlinkSync, writeFileSync,
} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {containerJoins, parseContainerRef, resolveContainer} from '../src/lib/containers.js'
import {pinJoins} from '../src/lib/native.js'
import {processStat} from '../src/lib/proc.js'

const REPO = join(__dirname, '..', '..')
const BIN = join(REPO, 'bin', 'run.js')
const RUNS = process.argv.includes('--quick') ? 5 : 15

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[(s.length / 2) - 1] + s[s.length / 2]) / 2
}

function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6
}

function timed(f: () => void): number {
  const t = nowMs()
  f()
  return nowMs() - t
}

async function timedAsync(f: () => Promise<void>): Promise<number> {
  const t = nowMs()
  await f()
  return nowMs() - t
}

function cli(args: string[]): void {
  const r = spawnSync(process.execPath, [BIN, ...args], {encoding: 'utf8'})
  if (r.status !== 0) throw new Error(`mycli ${args.join(' ')}: ${r.stderr}`)
}

async function main(): Promise<void> {
  const [runc, busybox] = execFileSync('bash', [join(REPO, 'scripts', 'provision-runc.sh')], {encoding: 'utf8'}).trim().split('\n')
  const bundle = mkdtempSync(join(tmpdir(), 'bench-runc-'))
  const id = `bench-${process.pid}`
  mkdirSync(join(bundle, 'rootfs', 'bin'), {recursive: true})
  mkdirSync(join(bundle, 'rootfs', 'proc'))
  writeFileSync(join(bundle, 'rootfs', 'bin', 'busybox'), readFileSync(busybox), {mode: 0o755})
  symlinkSync('busybox', join(bundle, 'rootfs', 'bin', 'sleep'))
  execFileSync(runc, ['spec'], {cwd: bundle})
  const config = JSON.parse(readFileSync(join(bundle, 'config.json'), 'utf8'))
  config.process.terminal = false
  config.process.args = ['sleep', '100000']
  writeFileSync(join(bundle, 'config.json'), JSON.stringify(config))
  const proc = spawn(runc, ['run', id], {cwd: bundle, stdio: 'ignore'})
  const prefix = mkdtempSync(join(tmpdir(), 'bench-roots-'))
  try {
    let pid = 0
    for (let i = 0; i < 200 && pid === 0; i++) {
      const r = spawnSync(runc, ['state', id], {encoding: 'utf8'})
      if (r.status === 0 && JSON.parse(r.stdout).status === 'running') pid = JSON.parse(r.stdout).pid
      else spawnSync('sleep', ['0.05'])
    }

    if (pid === 0) throw new Error('the container did not start')

    const byId: number[] = []
    const byPid: number[] = []
    for (let i = 0; i < RUNS; i++) {
      byId.push(timed(() => cli(['ns', 'exec', '--join-container', id, '--', 'true'])))
      byPid.push(timed(() => cli(['ns', 'exec', '-J', `net:${pid}`, '-J', `ipc:${pid}`, '-J', `uts:${pid}`, '--', 'true'])))
    }

    console.log(`1. ns exec --join-container ${median(byId).toFixed(1)} ms  vs  -J net,ipc,uts by PID ${median(byPid).toFixed(1)} ms  (ratio ${(median(byId) / median(byPid)).toFixed(2)}, ${RUNS} runs each)`)

    const ref = parseContainerRef(id)
    const lib: number[] = []
    const runcState: number[] = []
    for (let i = 0; i < RUNS; i++) {
      lib.push(await timedAsync(async () => {
        await resolveContainer(ref, {env: {}})
      }))
      runcState.push(timed(() => execFileSync(runc, ['state', id], {stdio: 'ignore'})))
    }

    console.log(`2. reading runc's state folder ${median(lib).toFixed(2)} ms  vs  runc state ID ${median(runcState).toFixed(1)} ms  (ratio ${(median(runcState) / median(lib)).toFixed(0)}x)`)

    const start = processStat(pid)!.startTime
    let written = 0
    for (const count of [1, 100, 1000]) {
      for (; written < count; written++) {
        const dir = join(prefix, 'run', 'containerd', 'runc', 'k8s.io', `c${String(written).padStart(6, '0')}`)
        mkdirSync(dir, {recursive: true})
        writeFileSync(join(dir, 'state.json'), `{"id":"c${written}","init_process_pid":${pid},"init_process_start":${start},"config":{}}`)
      }

      const one = parseContainerRef(`c${String(count - 1).padStart(6, '0')}`)
      const times: number[] = []
      for (let i = 0; i < RUNS; i++) {
        times.push(await timedAsync(async () => {
          const c = await resolveContainer(one, {env: {}, prefix})
          for (const pin of pinJoins(containerJoins(one, c))) pin.close()
        }))
      }

      console.log(`3. resolve one of ${count} containers and pin net, ipc, uts: ${median(times).toFixed(2)} ms`)
    }
  } finally {
    spawnSync(runc, ['kill', id, 'KILL'])
    await new Promise<void>(resolve => {
      if (proc.exitCode === null) proc.once('exit', () => resolve())
      else resolve()
    })
    spawnSync(runc, ['delete', '--force', id])
    rmSync(bundle, {force: true, recursive: true})
    rmSync(prefix, {force: true, recursive: true})
  }
}

main().catch(error => {
  console.error(error)
  process.exitCode = 1
})
