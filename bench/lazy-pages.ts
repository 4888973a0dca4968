/**
 * `node dist/bench/lazy-pages.js [--sizes 1024,4096] [--runs 5]` (root): time from command start
 * to the first answer of a TCP service holding N MiB, restored into a joined net namespace:
 *
 *   A  mycli restore -J net:H --lazy-pages   (the plugin, Node start-up included; it waits for all pages)
 *   B  criu restore -d -J net:/proc/H/ns/net (bare, eager)
 *
 * Interleaved A, B, A, B ...; the page cache is dropped before each run (sync; echo 3 >
 * /proc/sys/vm/drop_caches); medians. A client started inside the holder's netns beforehand
 * connects every millisecond until the service answers. After each run the service is asked for
 * the SHA-256 of its memory (after all pages arrived, for A), which must equal the checkpoint's.
 * Loopback only; every loop is bounded.
 */
import {execFileSync, spawn, spawnSync} from 'node:child_process'
import {existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {setChildSubreaper} from '../src/lib/native.js'
import {killAndReap} from './reap.js'

const REPO = join(__dirname, '..', '..')
const BIN = join(REPO, 'bin', 'run.js')
const PORT = 41_000

const arg = (name: string, fallback: string) => {
  const i = process.argv.indexOf(name)
  return i === -1 ? fallback : process.argv[i + 1]
}

const SIZES = arg('--sizes', '1024').split(',').map(Number)
const RUNS = Number(arg('--runs', '5'))

const SERVICE = `
import hashlib, os, socket, sys
mib, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
buf = bytearray(mib << 20)
for i in range(mib):
    buf[i << 20:(i + 1) << 20] = hashlib.sha256(str(i).encode()).digest() * (1 << 15)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen(16)
with open(out + ".tmp", "w") as f:
    f.write(hashlib.sha256(buf).hexdigest())
os.rename(out + ".tmp", out)
while True:
    c, _ = s.accept()
    d = c.recv(16)
    c.sendall(hashlib.sha256(buf).hexdigest().encode() if d.startswith(b"sum") else b"ok\\n")
    c.close()
`

/** Inside the holder's netns: says "ready", then connects every ms until answered; prints the wall time. */
const CLIENT = `
import socket, sys, time
port, what = int(sys.argv[1]), sys.argv[2].encode()
print("ready", flush=True)
deadline = time.time() + 300
while time.time() < deadline:
    try:
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(what)
        d = s.recv(100)
        if d:
            print(time.time() * 1000, d.decode().strip(), flush=True)
            sys.exit(0)
    except OSError:
        time.sleep(0.001)
sys.exit(1)
`

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[(s.length / 2) - 1] + s[s.length / 2]) / 2
}

function criu(): string {
  return execFileSync('bash', [join(REPO, 'scripts', 'provision-criu.sh')], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit']}).trim().split('\n').pop()!
}

function dropCaches(): void {
  spawnSync('sync')
  writeFileSync('/proc/sys/vm/drop_caches', '3')
}

/** A holder in a new net namespace with loopback up. */
async function holder(): Promise<number> {
  const h = spawn('unshare', ['--net', 'sh', '-c', 'ip link set lo up && exec sleep 100000'], {stdio: 'ignore'})
  await new Promise(r => {
    setTimeout(r, 300)
  })
  return h.pid!
}

/** Start the client in the holder's netns; resolves with its answer's time and text. */
async function client(h: number, what: string): Promise<{answer: Promise<{at: number; text: string}>}> {
  const c = spawn('nsenter', [`--net=/proc/${h}/ns/net`, 'python3', '-c', CLIENT, String(PORT), what], {stdio: ['ignore', 'pipe', 'inherit']})
  let out = ''
  const answer = new Promise<{at: number; text: string}>((resolve, reject) => {
    c.stdout!.on('data', d => {
      out += d
    })
    c.once('exit', code => {
      const line = out.split('\n').find(l => /^\d/.test(l))
      if (code !== 0 || !line) reject(new Error(`client failed (${code}): ${out}`))
      else resolve({at: Number(line.split(' ')[0]), text: line.split(' ')[1]})
    })
  })
  await new Promise<void>(resolve => {
    const check = () => (out.includes('ready') ? resolve() : setTimeout(check, 2))
    check()
  })
  return {answer}
}

async function checkpointService(criuPath: string, mib: number): Promise<{dir: string; pid: number; sum: string}> {
  const dir = mkdtempSync(join(tmpdir(), `bench-lazy-${mib}-`))
  const sumFile = join(dir, '..', `${dir.split('/').pop()}.sum`)
  const child = spawn('setsid', ['python3', '-c', SERVICE, String(mib), String(PORT), sumFile], {stdio: 'ignore'})
  const exited = new Promise(r => {
    child.once('exit', r)
  })
  for (let i = 0; i < 6000 && !existsSync(sumFile); i++) {
    await new Promise(r => {
      setTimeout(r, 50)
    })
  }

  execFileSync(criuPath, ['dump', '-t', String(child.pid), '-D', dir, '-o', 'dump.log'])
  await exited
  const sum = readFileSync(sumFile, 'utf8')
  rmSync(sumFile)
  return {dir, pid: child.pid!, sum}
}

async function run(kind: 'criu' | 'mycli', criuPath: string, ck: {dir: string; pid: number; sum: string}, h: number) {
  dropCaches()
  const work = mkdtempSync(join(tmpdir(), 'bench-lazy-work-'))
  const {answer} = await client(h, 'hi')
  const t0 = Date.now()
  const argv = kind === 'criu'
    ? [criuPath, ['restore', '-D', ck.dir, '-W', work, '-o', 'restore.log', '-d', '-J', `net:/proc/${h}/ns/net`]] as const
    : [process.execPath, [BIN, 'restore', '-D', ck.dir, '-W', work, '-J', `net:${h}`, '--lazy-pages', '--json']] as const
  const cmd = spawn(argv[0], argv[1], {env: {...process.env, CRIU_PATH: criuPath}, stdio: ['ignore', 'pipe', 'inherit']})
  let out = ''
  cmd.stdout!.on('data', d => {
    out += d
  })
  const exit = await new Promise<null | number>(r => {
    cmd.once('exit', r)
  })
  const first = Math.round((await answer).at - t0)
  if (exit !== 0) throw new Error(`${kind} restore failed (${exit}): ${out}`)
  const all = kind === 'mycli' ? JSON.parse(out).lazyPages.allPagesMs as number : undefined
  const sum = (await (await client(h, 'sum')).answer).text
  await killAndReap(ck.pid)
  rmSync(work, {force: true, recursive: true})
  return {all, first, sumOk: sum === ck.sum}
}

async function main(): Promise<void> {
  const criuPath = criu()
  setChildSubreaper(true) // restored services come to us: killed and reaped after each run
  const h = await holder()
  try {
    console.log(`restore to first answer, service in a joined netns, ${RUNS} interleaved runs per side, page cache dropped before each`)
    for (const mib of SIZES) {
      const ck = await checkpointService(criuPath, mib)
      const a: number[] = []
      const b: number[] = []
      const all: number[] = []
      let sums = true
      for (let i = 0; i < RUNS; i++) {
        const lazy = await run('mycli', criuPath, ck, h)
        const eager = await run('criu', criuPath, ck, h)
        a.push(lazy.first)
        b.push(eager.first)
        all.push(lazy.all!)
        sums &&= lazy.sumOk && eager.sumOk
        console.log(`  ${mib} MiB run ${i + 1}: mycli --lazy-pages ${lazy.first} ms (all pages ${lazy.all} ms), criu eager ${eager.first} ms`)
      }

      const ratio = median(a) / median(b)
      console.log(`${mib} MiB: mycli restore --lazy-pages ${median(a)} ms, bare eager criu restore ${median(b)} ms, ratio ${ratio.toFixed(2)}; lazy all pages ${median(all)} ms; memory checksums equal: ${sums ? 'yes, every run' : 'NO'}`)
      rmSync(ck.dir, {force: true, recursive: true})
    }
  } finally {
    await killAndReap(h)
  }
}

main().catch((error: Error) => {
  console.error(error.message)
  process.exitCode = 1
})
