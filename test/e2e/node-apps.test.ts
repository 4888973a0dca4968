/**
 * Node.js apps and io_uring, end to end with the real CRIU: Node.js 22 and newer map io_uring
 * rings at start-up, which CRIU cannot dump. `checkpoint` refuses them up front; `launch` (or
 * sysctl kernel.io_uring_disabled=2) starts them without rings, and they then round-trip
 * into a holder's net namespace with their state. Python and Redis are not refused.
 *
 * The apps outlive the CLI that launched them, so this process is their subreaper while the
 * suite runs, and reaps them itself: PID 1 here may never reap, and a zombie keeps its PID
 * taken, which the restore needs.
 */
import {expect} from 'chai'
import {ChildProcess, execFileSync, spawn, spawnSync} from 'node:child_process'
import {existsSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {isChildSubreaper, setChildSubreaper, waitPid} from '../../src/lib/native.js'
import {mycli} from '../support/checkpoint.js'
import {
  alive, cleanup, flat, killPid, nsInode, REPO, requireRoot, startHolder, tempDir, waitFor,
} from '../support/system.js'

const SERVER = `
const http = require('node:http')
const fs = require('node:fs')
let hits = 0
http.createServer((req, res) => {
  hits++
  res.end('hits ' + hits)
}).listen(Number(process.argv[2]), '127.0.0.1', () => fs.writeFileSync(process.argv[3], 'ready'))
`

const PY_SERVER = `
import asyncio, sys
hits = 0
async def serve(reader, writer):
    global hits
    await reader.read(100)
    hits += 1
    writer.write(b"hits %d" % hits)
    await writer.drain()
    writer.close()
async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", int(sys.argv[1]))
    open(sys.argv[2], "w").write("ready")
    await server.serve_forever()
asyncio.run(main())
`

/** An HTTP GET (Node) or a raw line (Python, Redis) from the host or from inside a net namespace; the answer, or undefined. */
function ask(port: number, options: {inNetOf?: number; raw?: string} = {}): string | undefined {
  const client = options.raw === undefined
    ? `require('node:http').get('http://127.0.0.1:${port}/', r => { let b = ''; r.on('data', d => { b += d }); r.on('end', () => console.log(b)) }).on('error', () => process.exit(1))`
    : `const s = require('node:net').connect(${port}, '127.0.0.1', () => s.write(${JSON.stringify(options.raw)})); s.on('data', d => { console.log(String(d).trim()); s.end() }); s.on('error', () => process.exit(1))`
  const argv = [process.execPath, '-e', client]
  const r = options.inNetOf === undefined
    ? spawnSync(argv[0], argv.slice(1), {encoding: 'utf8', timeout: 5000})
    : spawnSync('nsenter', ['-t', String(options.inNetOf), '-n', ...argv], {encoding: 'utf8', timeout: 5000})
  return r.status === 0 ? r.stdout.trim() : undefined
}

function ioUringMappings(pid: number): number {
  return readFileSync(`/proc/${pid}/maps`, 'utf8').split('\n').filter(l => l.endsWith('anon_inode:[io_uring]')).length
}

let nextPort = 30_000 + (process.pid % 10_000)
/**
 * The processes this suite owns, each with how to wait until it is reaped: Node reaps the ones
 * it spawned (and must: a child it did not see exit keeps its event loop alive); the launched
 * and restored ones came to us as subreaper, and waitPid reaps them.
 */
const ours = new Map<number, () => Promise<void>>()

function adoptOrphan(pid: number): void {
  ours.set(pid, () => waitPid(pid).then(() => {}, () => {})) // ECHILD: already reaped
}

/** Track a child Node spawned; resolves once Node has reaped it. */
function adoptChild(child: ChildProcess): void {
  const exited = new Promise<void>(resolve => {
    child.once('exit', () => resolve())
  })
  ours.set(child.pid!, () => exited)
}

async function reap(pid: number): Promise<void> {
  await ours.get(pid)?.()
}

async function ready(file: string): Promise<void> {
  await waitFor(`the app to write ${file}`, () => existsSync(file) && readFileSync(file, 'utf8') === 'ready', 15_000)
}

interface App {
  pid: number
  port: number
}

/** Start the server with `node`, plainly (as a user would: its own session, no terminal). */
async function startPlain(argv: string[], port: number, readyFile: string): Promise<App> {
  const child = spawn('setsid', argv, {stdio: 'ignore'})
  adoptChild(child)
  await ready(readyFile)
  return {pid: child.pid!, port}
}

async function startNode(node: string): Promise<App & {readyFile: string}> {
  const dir = tempDir('node-app-')
  const script = join(dir, 'server.js')
  writeFileSync(script, SERVER)
  const port = nextPort++
  const readyFile = join(dir, 'ready')
  return {...await startPlain([node, script, String(port), readyFile], port, readyFile), readyFile}
}

/** Start the server through `mycli launch`; the PID is what it printed. */
async function launchNode(node: string): Promise<App & {log: string}> {
  const dir = tempDir('node-app-')
  const script = join(dir, 'server.js')
  writeFileSync(script, SERVER)
  const port = nextPort++
  const readyFile = join(dir, 'ready')
  const log = join(dir, 'app.log')
  const r = mycli(['launch', '--stdout', log, '--stderr', log, '--', node, script, String(port), readyFile])
  expect(r.code, r.stderr).to.equal(0)
  expect(r.stdout).to.match(/^\d+\n$/)
  const pid = Number(r.stdout)
  adoptOrphan(pid)
  await ready(readyFile)
  return {log, pid, port}
}

/**
 * Checkpoint the app with the plugin, restore it into a holder's net namespace with -J net,
 * and check it answers there with `expected`, and no longer on the host.
 */
async function roundTrip(app: App, expected: string, raw?: string): Promise<void> {
  const dir = join(tempDir(), 'ckpt')
  const c = mycli(['checkpoint', String(app.pid), '-D', dir])
  expect(c.code, c.stderr).to.equal(0)
  await reap(app.pid)
  const holder = await startHolder(['net'])
  spawnSync('nsenter', ['-t', String(holder.pid), '-n', 'ip', 'link', 'set', 'lo', 'up'])
  const r = mycli(['restore', '-D', dir, '-J', `net:${holder.pid}`])
  expect(r.code, r.stderr).to.equal(0)
  expect(r.stdout).to.include(`Restored PID ${app.pid}`)
  adoptOrphan(app.pid) // the restored tree, left to us when the CLI ended
  expect(nsInode(app.pid, 'net')).to.equal(nsInode(holder.pid, 'net'))
  expect(ask(app.port, {inNetOf: holder.pid, raw}), 'answers inside the holder\'s net namespace').to.equal(expected)
  expect(ask(app.port, {raw}), 'no longer answers on the host').to.equal(undefined)
}

function fetchNode(major: number): string {
  return execFileSync('bash', [join(REPO, 'scripts', 'fetch-node.sh'), String(major)], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit']}).trim().split('\n').pop()!
}

describe('Node.js apps and io_uring (real CRIU; Node.js 20, 22, 24, 26; Python; Redis)', function () {
  this.timeout(300_000)
  const nodes: Record<number, string> = {}
  let wasSubreaper = false

  before(() => {
    requireRoot()
    for (const major of [22, 24, 26]) nodes[major] = fetchNode(major)
    wasSubreaper = isChildSubreaper()
    setChildSubreaper(true)
  })

  after(() => setChildSubreaper(wasSubreaper))

  afterEach(async () => {
    for (const pid of ours.keys()) killPid(pid)
    for (const pid of ours.keys()) await reap(pid)
    ours.clear()
    await cleanup()
  })

  for (const major of [22, 24, 26]) {
    it(`Node.js ${major}: maps io_uring rings when started plainly; launch denies them and the server works on epoll`, async () => {
      const plain = await startNode(nodes[major])
      expect(ioUringMappings(plain.pid), 'rings when started plainly').to.be.greaterThan(0)
      const launched = await launchNode(nodes[major])
      expect(ioUringMappings(launched.pid), 'no ring through launch').to.equal(0)
      const status = readFileSync(`/proc/${launched.pid}/status`, 'utf8')
      expect(status).to.match(/^Seccomp:\s+2$/m)
      expect(status).to.match(/^NoNewPrivs:\s+1$/m)
      expect(readFileSync(`/proc/${launched.pid}/stat`, 'utf8').split(') ')[1].split(' ')[3], 'its own session').to.equal(String(launched.pid))
      expect(ask(launched.port)).to.equal('hits 1')
      expect(ask(launched.port)).to.equal('hits 2')
      expect(readFileSync(launched.log, 'utf8'), 'nothing on stderr: the fallback is silent').to.equal('')
    })
  }

  for (const major of [24, 26]) {
    it(`Node.js ${major}: checkpoint (and --dry-run) refuses a server holding io_uring with the reason and what to do; launched, it round-trips into a holder's netns with its state`, async () => {
      const plain = await startNode(nodes[major])
      expect(ask(plain.port)).to.equal('hits 1')
      const dir = join(tempDir(), 'ckpt')
      for (const extra of [[], ['--dry-run']]) {
        const r = mycli(['checkpoint', String(plain.pid), '-D', dir, ...extra])
        expect(r.code, r.stderr).to.equal(2)
        const message = flat(r.stderr)
        expect(message).to.match(new RegExp(`process ${plain.pid} \\(node\\) holds \\d io_uring rings \\(fds `))
        expect(message).to.match(/\d+ mappings\), likely made by libuv, which Node\.js 22 and newer set up at start-up/)
        expect(message).to.include('restart the program with `mycli launch -- COMMAND`')
        expect(message).to.include('sysctl kernel.io_uring_disabled=2')
        expect(message).not.to.include('    at ') // no stack trace
      }

      expect(existsSync(dir), 'nothing written').to.equal(false)
      expect(readFileSync(`/proc/${plain.pid}/stat`, 'utf8').split(') ')[1][0], 'not frozen').to.be.oneOf(['S', 'R'])
      expect(ask(plain.port), 'the app runs on untouched').to.equal('hits 2')

      const launched = await launchNode(nodes[major])
      expect(ask(launched.port)).to.equal('hits 1')
      expect(ask(launched.port)).to.equal('hits 2')
      await roundTrip(launched, 'hits 3')
      expect(readFileSync(`/proc/${launched.pid}/status`, 'utf8'), 'CRIU restored the filter').to.match(/^Seccomp_filters:\s+1$/m)
    })
  }

  it('Node.js 24 with sysctl kernel.io_uring_disabled=2 (set by the test, restored after): no rings, round-trips with its state', async () => {
    const sysctl = '/proc/sys/kernel/io_uring_disabled'
    const before = readFileSync(sysctl, 'utf8').trim()
    let app: App | undefined
    try {
      writeFileSync(sysctl, '2')
      app = await startNode(nodes[24])
    } finally {
      writeFileSync(sysctl, before)
    }

    expect(readFileSync(sysctl, 'utf8').trim()).to.equal(before)
    expect(ioUringMappings(app!.pid)).to.equal(0)
    expect(ask(app!.port)).to.equal('hits 1')
    await roundTrip(app!, 'hits 2')
  })

  it('Node.js 20 (libuv 1.46, the machine\'s own) maps no ring: not refused, round-trips started plainly', async () => {
    // Node 20 from the registry, not process.execPath: the suite also runs under Node 24.
    const app = await startNode(fetchNode(20))
    expect(ioUringMappings(app.pid)).to.equal(0)
    expect(ask(app.port)).to.equal('hits 1')
    await roundTrip(app, 'hits 2')
  })

  it('a Python asyncio server is not refused: round-trips with its state', async () => {
    const dir = tempDir('py-app-')
    const port = nextPort++
    const app = await startPlain(['python3', '-c', PY_SERVER, String(port), join(dir, 'ready')], port, join(dir, 'ready'))
    expect(ask(port, {raw: 'hi'})).to.equal('hits 1')
    await roundTrip(app, 'hits 2', 'hi')
  })

  it('a Redis server is not refused: round-trips with its keys', async () => {
    const bin = execFileSync('bash', [join(REPO, 'scripts', 'fetch-redis.sh')], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit']}).trim().split('\n').pop()!
    const dir = tempDir('redis-app-')
    const port = nextPort++
    const child = spawn('setsid', [join(bin, 'redis-server'), '--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--dir', dir, '--daemonize', 'no'], {stdio: 'ignore'})
    const app = {pid: child.pid!, port}
    adoptChild(child)
    await waitFor('redis to answer', () => ask(port, {raw: 'PING\r\n'}) === '+PONG', 15_000)
    expect(ask(port, {raw: 'SET visits 41\r\n'})).to.equal('+OK')
    expect(ask(port, {raw: 'INCR visits\r\n'})).to.equal(':42')
    expect(alive(app.pid)).to.equal(true)
    await roundTrip(app, ':43', 'INCR visits\r\n')
  })
})
