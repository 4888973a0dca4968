import {expect} from 'chai'
import {execFileSync, spawn, spawnSync} from 'node:child_process'
import {existsSync, mkdirSync, readFileSync, writeFileSync} from 'node:fs'
import {join} from 'node:path'

import {checkpointPids, pidsInRestoringNamespace} from '../../src/lib/checkpoint-pids.js'
import {CliResult} from '../support/checkpoint.js'
import {
  addNetns, BIN, cleanup, criuPath, firstChild, flat, nsInode, REPO, requireRoot, tempDir, track, untrack, waitFor,
} from '../support/system.js'

/** Root without CAP_SYS_RESOURCE, made here (these VMs lack it anyway; others must too, for the test to mean the same). */
function withoutSysResource(args: string[]): CliResult {
  const r = spawnSync('setpriv', ['--inh-caps=-sys_resource', '--bounding-set=-sys_resource', process.execPath, BIN, ...args], {
    encoding: 'utf8',
    env: {...process.env, CRIU_PATH: criuPath()},
    timeout: 120_000,
  })
  return {code: r.status, stderr: r.stderr, stdout: r.stdout}
}

let nextPort = 30_000 + (process.pid % 10_000)

interface Nginx {
  /** The master: its own PID namespace's init, so that its workers never linger as zombies. */
  master: number
  port: number
  workers: number[]
}

/**
 * Debian's nginx, a master and two workers running as `user`, serving on 127.0.0.1:PORT. The
 * master is the init of its own PID namespace (`unshare --pid --fork`, then setsid so the session
 * leader is inside): when CRIU ends the tree after the dump the kernel reaps the workers, and the
 * restore gets new host PIDs.
 */
async function startNginx(binary: string, user: string): Promise<Nginx> {
  const dir = tempDir('nginx-')
  const port = nextPort++
  for (const t of ['body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']) mkdirSync(join(dir, t))
  writeFileSync(join(dir, 'nginx.conf'), `daemon off;
master_process on;
worker_processes 2;
user ${user};
pid ${dir}/nginx.pid;
error_log ${dir}/error.log;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  server { listen 127.0.0.1:${port}; location / { return 200 "hello from nginx\\n"; } }
}
`)
  const proc = spawn('unshare', ['--pid', '--fork', 'sh', '-c', `exec setsid ${binary} -p ${dir} -c ${dir}/nginx.conf -e ${dir}/error.log`], {stdio: 'ignore'})
  track(proc.pid!)
  let master = 0
  await waitFor('nginx to start its workers', () => {
    try {
      master = firstChild(proc.pid!)
      return readFileSync(`/proc/${master}/task/${master}/children`, 'utf8').trim().split(' ').length === 2
    } catch {
      return false
    }
  }, 10_000)
  track(master)
  const workers = readFileSync(`/proc/${master}/task/${master}/children`, 'utf8').trim().split(' ').map(Number)
  for (const w of workers) track(w)
  await waitFor('nginx to answer', () => get(port) === 'hello from nginx', 10_000)
  return {master, port, workers}
}

/** GET / on 127.0.0.1:PORT, from the host or from inside a named net namespace; the body or the error. */
function get(port: number, netns?: string): string {
  const script = `import urllib.request,sys
try: print(urllib.request.urlopen("http://127.0.0.1:${port}/", timeout=3).read().decode().strip())
except Exception as e: print("error:", e)`
  const argv = netns ? ['ip', 'netns', 'exec', netns, 'python3', '-c', script] : ['python3', '-c', script]
  return execFileSync(argv[0], argv.slice(1), {encoding: 'utf8'}).trim()
}

const uid = (pid: number) => Number(/^Uid:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1])
const state = (pid: number) => /^State:\s+(\S)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]
const children = (pid: number) => readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(' ').filter(Boolean).map(Number)

describe('nginx (Debian package), root without CAP_SYS_RESOURCE', function () {
  this.timeout(300_000)
  let binary: string
  /** Debian's nginx user; `nobody` where the system has no www-data. */
  let workerUser: string

  before(() => {
    requireRoot()
    // The repo provisions nginx itself (private unpack, nothing installed): fails loudly when it cannot.
    const r = spawnSync('bash', [join(REPO, 'scripts', 'provision-nginx.sh')], {encoding: 'utf8'})
    if (r.status !== 0) throw new Error(`scripts/provision-nginx.sh failed (${r.status}):\n${r.stderr}`)
    binary = r.stdout.trim().split('\n').pop()!
    workerUser = spawnSync('id', ['www-data']).status === 0 ? 'www-data' : 'nobody'
  })

  afterEach(cleanup)

  it('workers of another user: checkpoint is refused up front, naming CAP_SYS_RESOURCE and the workers; nginx untouched and serving', async () => {
    const nginx = await startNginx(binary, workerUser)
    expect(nginx.workers.map(w => uid(w))).to.not.include(0)
    const images = join(tempDir('nginx-ckpt-'), 'ck')
    const r = withoutSysResource(['checkpoint', String(nginx.master), '-D', images, '--network-lock', 'skip'])
    expect(r.code, r.stderr).to.equal(1)
    const err = flat(r.stderr)
    expect(err).to.include('checkpoint cannot work here: CRIU would run without CAP_SYS_RESOURCE')
    for (const w of nginx.workers) expect(err).to.include(`${w} nginx (uid ${uid(w)}`)
    expect(err).not.to.include(`${nginx.master} nginx`)
    expect(err).to.include('nginx: `user root;`')
    expect(r.stderr, 'no stack trace').not.to.match(/\n\s+at .+:\d+:\d+/)
    for (const p of [nginx.master, ...nginx.workers]) expect(state(p), `process ${p} not frozen`).to.match(/^[RS]$/)
    expect(existsSync(images)).to.equal(false)
    expect(get(nginx.port)).to.equal('hello from nginx')
  })

  it('workers as root: checkpointed, restored into a joined net namespace, and serving there only', async () => {
    const nginx = await startNginx(binary, 'root')
    const images = join(tempDir('nginx-ckpt-'), 'ck')
    const dump = withoutSysResource(['checkpoint', String(nginx.master), '-D', images, '--network-lock', 'skip'])
    expect(dump.code, dump.stderr).to.equal(0)
    await waitFor('the dumped nginx to be gone', () => [nginx.master, ...nginx.workers].every(p => !existsSync(`/proc/${p}`)))
    // restored with new PIDs (its own PID namespace): the old numbers are not ours any more
    for (const p of [nginx.master, ...nginx.workers]) untrack(p)
    expect(get(nginx.port)).to.match(/^error:.*Connection refused/)
    // Its PIDs are those of its own PID namespace (1, 2, 3): none of them has to be free here.
    expect(checkpointPids(images)).to.include(1)
    expect(pidsInRestoringNamespace(images)).to.deep.equal([])

    const name = `ngx-${process.pid}-${nginx.port}`
    const netns = addNetns(name)
    execFileSync('ip', ['netns', 'exec', name, 'ip', 'link', 'set', 'lo', 'up'])
    const restore = withoutSysResource(['restore', '-D', images, '-J', `net:${netns}`, '--json'])
    expect(restore.code, restore.stderr).to.equal(0)
    const {pid} = JSON.parse(restore.stdout) as {pid: number}
    track(pid)
    const workers = children(pid)
    for (const w of workers) track(w)
    expect(workers, 'master and two workers back').to.have.length(2)
    const joined = Number(execFileSync('stat', ['-L', '-c', '%i', netns], {encoding: 'utf8'}).trim())
    for (const p of [pid, ...workers]) expect(nsInode(p, 'net'), `process ${p} is in the joined namespace`).to.equal(joined)
    expect(get(nginx.port, name), 'serves inside the joined namespace').to.equal('hello from nginx')
    expect(get(nginx.port), 'and not on the host').to.match(/^error:.*Connection refused/)
  })

  it('the doctor lists what the tests dropped', () => {
    const r = withoutSysResource(['criu', 'check', '--json'])
    expect(r.code, r.stderr).to.equal(0)
    const report = JSON.parse(r.stdout) as {capabilities: {missing: {name: string}[]}}
    expect(report.capabilities.missing.map(m => m.name)).to.include('CAP_SYS_RESOURCE')
  })
})
