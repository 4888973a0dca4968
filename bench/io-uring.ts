/**
 * What denying io_uring (as `launch` does) costs a Node.js HTTP server, side by side.
 *
 *   node dist/bench/io-uring.js [--node MAJOR] [--quick]      (after npm run build; needs Linux)
 *
 * Two copies of the same server run at once on loopback, on the same Node.js (24 by default,
 * from scripts/fetch-node.sh): A started plainly (libuv sets up io_uring), B started the way
 * `launch` starts it (spawnJoined with denyIoUring: io_uring_setup fails, libuv uses epoll).
 * Both are started by the same native spawn; only that option differs.
 * One load client (the same Node.js, keep-alive, fixed concurrency) drives them in interleaved
 * rounds, A, B, A, B, ..., so that the noise of this shared machine hits both alike; the
 * figures are the medians of the rounds' requests per second and of the server's CPU time
 * per request (from /proc/PID/stat; it moves less than the rate on a busy machine), and the
 * ratios B / A.
 * Two handlers: a constant reply, and one that reads a 64 KiB file per request (libuv sends
 * file reads through io_uring when it has one). Bounded: about 2 s per round.
 */
import {execFileSync, spawnSync} from 'node:child_process'
import {mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {setChildSubreaper, spawnJoined, waitPid} from '../src/lib/native.js'

const REPO = join(__dirname, '..', '..')
const QUICK = process.argv.includes('--quick')
const MAJOR = process.argv.includes('--node') ? process.argv[process.argv.indexOf('--node') + 1] : '24'
const ROUNDS = QUICK ? 3 : 8
const ROUND_SECONDS = QUICK ? 1 : 2
const CONCURRENCY = 16

const SERVER = `
const http = require('node:http')
const fs = require('node:fs')
const [port, mode, file, ready] = process.argv.slice(2)
http.createServer((req, res) => {
  if (mode === 'file') fs.readFile(file, (err, data) => res.end(err ? 'error' : data))
  else res.end('hello')
}).listen(Number(port), '127.0.0.1', () => fs.writeFileSync(ready, 'ready'))
`

const CLIENT = `
const http = require('node:http')
const [port, seconds, concurrency] = process.argv.slice(2).map(Number)
const agent = new http.Agent({keepAlive: true, maxSockets: concurrency})
const end = Date.now() + seconds * 1000
let done = 0
let open = concurrency
const t0 = process.hrtime.bigint()
function one() {
  http.get({agent, host: '127.0.0.1', path: '/', port}, res => {
    res.resume()
    res.on('end', () => {
      done++
      if (Date.now() < end) one()
      else if (--open === 0) console.log(done / (Number(process.hrtime.bigint() - t0) / 1e9), done)
    })
  }).on('error', e => { console.error(e.message); process.exit(1) })
}
for (let i = 0; i < concurrency; i++) one()
`

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[(s.length / 2) - 1] + s[s.length / 2]) / 2
}

function ringMappings(pid: number): number {
  return readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').filter(l => l.endsWith('anon_inode:[io_uring]')).length
}

async function waitReady(file: string): Promise<void> {
  const deadline = Date.now() + 15_000
  for (;;) {
    try {
      if (readFileSync(file, 'utf8') === 'ready') return
    } catch {
      // not yet
    }

    if (Date.now() > deadline) throw new Error(`the server did not write ${file}`)
    await new Promise(r => {
      setTimeout(r, 20)
    })
  }
}

/** CPU time (user + system) a process has used, in microseconds. */
function cpuMicros(pid: number): number {
  const fields = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')
  return ((Number(fields[11]) + Number(fields[12])) * 1e6) / CLOCK_TICKS
}

const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], {encoding: 'utf8'}).trim())

type Side = 'allowed' | 'denied'
interface Rounds {
  /** Server CPU time per request, microseconds: robust against a busy machine, unlike the rate. */
  cpuPerRequest: number[]
  rate: number[]
}

/** Each side's figures, round by round, the sides alternating which goes first. */
function interleaved(node: string, client: string, servers: Record<Side, {pid: number; port: number}>): Record<Side, Rounds> {
  const out: Record<Side, Rounds> = {allowed: {cpuPerRequest: [], rate: []}, denied: {cpuPerRequest: [], rate: []}}
  for (let round = 0; round < ROUNDS; round++) {
    const order: Side[] = round % 2 === 0 ? ['allowed', 'denied'] : ['denied', 'allowed']
    for (const side of order) {
      const cpu0 = cpuMicros(servers[side].pid)
      const r = spawnSync(node, [client, String(servers[side].port), String(ROUND_SECONDS), String(CONCURRENCY)], {encoding: 'utf8', timeout: (ROUND_SECONDS + 10) * 1000})
      if (r.status !== 0) throw new Error(`the load client failed: ${r.stderr}`)
      const [rate, requests] = r.stdout.trim().split(' ').map(Number)
      out[side].rate.push(rate)
      out[side].cpuPerRequest.push((cpuMicros(servers[side].pid) - cpu0) / requests)
    }
  }

  return out
}

async function main(): Promise<void> {
  if (process.platform !== 'linux') throw new Error('this benchmark needs Linux')
  const node = execFileSync('bash', [join(REPO, 'scripts', 'fetch-node.sh'), MAJOR], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit']}).trim().split('\n').pop()!
  const version = execFileSync(node, ['--version'], {encoding: 'utf8'}).trim()
  const uv = execFileSync(node, ['-p', 'process.versions.uv'], {encoding: 'utf8'}).trim()
  const dir = mkdtempSync(join(tmpdir(), 'bench-io-uring-'))
  const server = join(dir, 'server.js')
  const client = join(dir, 'client.js')
  const payload = join(dir, 'payload')
  writeFileSync(server, SERVER)
  writeFileSync(client, CLIENT)
  writeFileSync(payload, Buffer.alloc(64 * 1024, 'x'))
  setChildSubreaper(true)
  const pids: number[] = []
  try {
    console.log(`io_uring denied vs allowed, Node.js ${version} (libuv ${uv}), ${readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? 'cpu?'}, ${ROUNDS} interleaved rounds of ${ROUND_SECONDS} s per side, ${CONCURRENCY} keep-alive connections, loopback`)
    let port = 40_000 + (process.pid % 10_000)
    for (const mode of ['constant', 'file']) {
      const ports = {allowed: port++, denied: port++}
      const readyA = join(dir, `ready-a-${mode}`)
      const readyB = join(dir, `ready-b-${mode}`)
      const start = {namespaces: [], newSession: true}
      const a = spawnJoined(node, [server, String(ports.allowed), mode, payload, readyA], start)
      pids.push(a)
      const b = spawnJoined(node, [server, String(ports.denied), mode, payload, readyB], {...start, denyIoUring: true})
      pids.push(b)
      await waitReady(readyA)
      await waitReady(readyB)
      const rings = {allowed: ringMappings(a), denied: ringMappings(b)}
      const rounds = interleaved(node, client, {allowed: {pid: a, port: ports.allowed}, denied: {pid: b, port: ports.denied}})
      const allowed = median(rounds.allowed.rate)
      const denied = median(rounds.denied.rate)
      const cpu = {allowed: median(rounds.allowed.cpuPerRequest), denied: median(rounds.denied.cpuPerRequest)}
      const what = mode === 'constant' ? 'constant reply' : 'reads 64 KiB file per request'
      const figures = `io_uring allowed (${rings.allowed} ring mappings): ${allowed.toFixed(0)} req/s; denied (${rings.denied}): ${denied.toFixed(0)} req/s`
      console.log(`  ${what.padEnd(30)} ${figures}; denied / allowed ${(denied / allowed).toFixed(3)}`)
      console.log(`    server CPU per request: allowed ${cpu.allowed.toFixed(1)} us, denied ${cpu.denied.toFixed(1)} us; denied / allowed ${(cpu.denied / cpu.allowed).toFixed(3)}`)
      console.log(`    req/s by round, allowed: ${rounds.allowed.rate.map(x => x.toFixed(0)).join(' ')}`)
      console.log(`    req/s by round, denied:  ${rounds.denied.rate.map(x => x.toFixed(0)).join(' ')}`)
      for (const pid of pids.splice(0)) {
        process.kill(pid, 'SIGKILL')
        await waitPid(pid).catch(() => {})
      }
    }
  } finally {
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // gone
      }
    }

    rmSync(dir, {force: true, recursive: true})
  }
}

main().catch(error => {
  console.error(error instanceof Error ? error.message : error)
  process.exit(1)
})
