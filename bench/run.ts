/**
 * `npm run bench`: the plugin's own cost, measured side by side in one run, as ratios.
 * Needs root. Each figure interleaves its two sides (A, B, A, B, ...) so that machine noise
 * hits both alike, and reports medians.
 *
 *   1. spawn-joined /bin/true into net+uts+ipc   vs  nsenter -t PID -n -u -i true
 *   2. mycli restore -J net:H (checkpoint with a manifest; plain criu dump) vs  mycli --version + criu restore,
 *      and the floor: a minimal oclif command that only runs criu restore, vs its --version + criu restore
 *   3. large restore (1 GiB touched): mycli restore / criu restore
 *   4. host CLI --help with the plugin installed vs without it
 *   5. validation: parse, pin and check 1, 8, 64 -J targets (library level)
 *   6. integrity: restore of a 1 GiB checkpoint with its manifest, verified vs --no-verify-images
 *   7. integrity: restore of a small plain checkpoint, structure-checked vs --no-verify-images
 *   8. judging CRIU before the work: cached answer vs a cold cache (criu --version + criu check)
 *   9. a host CLI's own command with the plugin installed vs without (bench/host-cost.ts)
 *  10. the post-restore gate: runRestore -J net (every task verified before resume) vs
 *      runRestore without -J (no gate), and the time CRIU spends in its action stages
 *  11. starting CRIU (`criu --version`) from a process with oclif and the restore command
 *      loaded: child_process.spawn() vs native startProgram() vs new CriuRun(), the call alone
 *
 * `--only=6,7` runs only those figures (`--gate` is `--only=10`).
 */
import {execFileSync, spawn, spawnSync} from 'node:child_process'
import {
  closeSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync,
} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'

import {criuCapabilities} from '../src/lib/capabilities.js'
import {findProblems} from '../src/lib/checks.js'
import {CriuRun} from '../src/lib/criu-run.js'
import {judgeCriu} from '../src/lib/criu.js'
import {parseJoinNs} from '../src/lib/join-ns.js'
import {digestFile, writeManifest} from '../src/lib/manifest.js'
import {namespaceByName} from '../src/lib/namespaces.js'
import {
  PinnedNamespace, pinJoins, pinPid, setChildSubreaper, spawnJoined, startProgram, waitPid, watchExit,
} from '../src/lib/native.js'
import {runRestore} from '../src/lib/restore.js'
import {judgeJoins, observeJoins, readRestoredTree} from '../src/lib/restored-tree.js'
import {benchHostCost} from './host-cost.js'
import {killAndReap} from './reap.js'

const REPO = join(__dirname, '..', '..')
const BIN = join(REPO, 'bin', 'run.js')
const HOST = join(REPO, 'examples', 'mycli', 'bin', 'run.js')
const QUICK = process.argv.includes('--quick')
const ONLY = process.argv.find(a => a.startsWith('--only='))?.slice('--only='.length).split(',').map(Number)
const wanted = (figure: number) => !ONLY || ONLY.includes(figure)

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[(s.length / 2) - 1] + s[s.length / 2]) / 2
}

function nowMs(): number {
  return Number(process.hrtime.bigint()) / 1e6
}

function report(line: string): void {
  console.log(line)
}

function criu(): string {
  return execFileSync('bash', [join(REPO, 'scripts', 'provision-criu.sh')], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit']}).trim().split('\n').pop()!
}

/** A holder in new net, uts and ipc namespaces. */
function holder(): number {
  const h = spawn('unshare', ['--net', '--uts', '--ipc', 'sleep', '100000'], {detached: true, stdio: 'ignore'})
  spawnSync('sleep', ['0.2'])
  return h.pid!
}

/** Checkpoint a single-process workload; returns its images folder and PID. */
async function checkpointOf(criuPath: string, argv: string[], settled: number | (() => boolean)): Promise<{dir: string; pid: number}> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-ckpt-'))
  const child = spawn('setsid', argv, {stdio: 'ignore'})
  const exited = new Promise(r => {
    child.once('exit', r)
  })
  const ready = typeof settled === 'number' ? () => true : settled
  const deadline = nowMs() + 120_000
  for (let wait = typeof settled === 'number' ? settled : 50; ; wait = 50) {
    await new Promise(r => {
      setTimeout(r, wait)
    })
    if (ready()) break
    if (nowMs() > deadline) throw new Error(`${argv.join(' ')}: not ready after 120 s`)
  }

  execFileSync(criuPath, ['dump', '-t', String(child.pid), '-D', dir, '-o', 'dump.log'])
  await exited
  return {dir, pid: child.pid!}
}

/**
 * Checkpoint a workload holding `mib` MiB of touched memory. It says when every page is written
 * (a file appears): a fixed wait was not enough on a busy machine (a "1 GiB" checkpoint had
 * 549 MiB of pages after 3 s).
 */
async function checkpointOfMemory(criuPath: string, mib: number): Promise<{dir: string; pagesMiB: number; pid: number}> {
  const marker = join(mkdtempSync(join(tmpdir(), 'bench-ready-')), 'ready')
  const touch = `import sys, time\nb = b"\\x01" * (${mib} << 20)\nopen(sys.argv[1], "w").close()\ntime.sleep(100000)`
  try {
    const ck = await checkpointOf(criuPath, ['python3', '-c', touch, marker], () => existsSync(marker))
    const pages = readdirSync(ck.dir).filter(name => /^pages-\d+\.img$/.test(name))
    return {...ck, pagesMiB: pages.reduce((sum, name) => sum + statSync(join(ck.dir, name)).size, 0) / (1 << 20)}
  } finally {
    rmSync(dirname(marker), {force: true, recursive: true})
  }
}

/** Milliseconds from starting a process to having waited for it. */
async function time(start: () => number): Promise<number> {
  const t0 = nowMs()
  await waitPid(start())
  return nowMs() - t0
}

async function benchSpawnJoined(): Promise<void> {
  const h = holder()
  const types = ['net', 'uts', 'ipc'].map(t => namespaceByName(t)!)
  const runs = QUICK ? 50 : 300
  const pinned = types.map(t => pinPid(t, h))
  const ours: number[] = []
  const oursPinEach: number[] = []
  const nsenter: number[] = []
  for (let i = 0; i < runs; i++) {
    ours.push(await time(() => spawnJoined('/bin/true', [], {namespaces: pinned})))
    oursPinEach.push(await time(() => {
      const pins: PinnedNamespace[] = types.map(t => pinPid(t, h))
      try {
        return spawnJoined('/bin/true', [], {namespaces: pins})
      } finally {
        for (const p of pins) p.close()
      }
    }))
    nsenter.push(await time(() => spawnJoined('/usr/bin/nsenter', ['-t', String(h), '-n', '-u', '-i', '/bin/true'], {namespaces: []})))
  }

  for (const p of pinned) p.close()
  await killAndReap(h)
  const [a, b, c] = [median(ours), median(oursPinEach), median(nsenter)]
  report(`1. spawn-joined /bin/true into net+uts+ipc (median of ${runs}, both started by the same fork+exec from Node):`)
  report(`   spawnJoined, targets pinned once:    ${a.toFixed(3)} ms   ratio to nsenter ${(a / c).toFixed(2)}`)
  report(`   spawnJoined, pinning every time:     ${b.toFixed(3)} ms   ratio to nsenter ${(b / c).toFixed(2)}`)
  report(`   nsenter -t PID -n -u -i /bin/true:   ${c.toFixed(3)} ms`)
}

/**
 * What the plugin adds to an eager restore beyond the host CLI's start-up and CRIU itself, for
 * the two kinds of checkpoint: one the plugin made (a manifest: the small images are hashed)
 * and a plain `criu dump` (no manifest: every image's structure is decoded, with protobufjs).
 * All four sides interleaved in one loop, the order rotating each round. With BENCH_BEFORE set to
 * another build's bin/run.js (an earlier commit, built), its restore of the manifest checkpoint
 * is a fifth side: before and after in the same run. BENCH_ROUNDS sets the rounds (21).
 */
async function benchRestoreOverhead(criuPath: string): Promise<void> {
  const floor = floorCli()
  try {
    await restoreOverhead(criuPath, floor)
  } finally {
    rmSync(floor.dir, {force: true, recursive: true})
  }
}

async function restoreOverhead(criuPath: string, floor: {bin: string}): Promise<void> {
  const h = holder()
  const withManifest = await checkpointOf(criuPath, ['sleep', '100000'], 100)
  await writeManifest(withManifest.dir, 'bench')
  const plainDump = await checkpointOf(criuPath, ['sleep', '100000'], 100)
  const runs = Number(process.env.BENCH_ROUNDS ?? (QUICK ? 5 : 21))
  const env = {...process.env, CRIU_PATH: criuPath}
  const before = process.env.BENCH_BEFORE
  const pluginRestore = async (ck: {dir: string; pid: number}, bin = BIN) => {
    const t0 = nowMs()
    const r = spawnSync(process.execPath, [bin, 'restore', '-D', ck.dir, '-J', `net:${h}`], {env})
    const ms = nowMs() - t0
    if (r.status !== 0) throw new Error(`mycli restore failed: ${r.stderr}`)
    await killAndReap(ck.pid)
    return ms
  }

  const sides: Record<string, {ms: number[]; run: () => Promise<number>}> = {
    criu: {ms: [], async run() {
      const work = mkdtempSync(join(tmpdir(), 'bench-work-'))
      const t0 = nowMs()
      const c = spawnSync(criuPath, ['restore', '-D', withManifest.dir, '-W', work, '-o', 'restore.log', '-v4', '--pidfile', join(work, 'pid'), '-d', '-J', `net:/proc/${h}/ns/net`])
      const ms = nowMs() - t0
      if (c.status !== 0) throw new Error('criu restore failed')
      rmSync(work, {force: true, recursive: true})
      await killAndReap(withManifest.pid)
      return ms
    }},
    manifest: {ms: [], run: () => pluginRestore(withManifest)},
    ...(before ? {before: {ms: [] as number[], run: () => pluginRestore(withManifest, before)}} : {}),
    plain: {ms: [], run: () => pluginRestore(plainDump)},
    version: {ms: [], async run() {
      const t0 = nowMs()
      spawnSync(process.execPath, [BIN, '--version'], {env})
      return nowMs() - t0
    }},
    floor: {ms: [], run: () => pluginRestore(withManifest, floor.bin)},
    floorVersion: {ms: [], async run() {
      const t0 = nowMs()
      spawnSync(process.execPath, [floor.bin, '--version'], {env})
      return nowMs() - t0
    }},
  }
  const order = Object.keys(sides)
  for (let i = 0; i < runs; i++) {
    for (let k = 0; k < order.length; k++) {
      const side = sides[order[(i + k) % order.length]]
      side.ms.push(await side.run())
    }
  }

  await killAndReap(h)
  for (const ck of [withManifest, plainDump]) rmSync(ck.dir, {force: true, recursive: true})
  const [m, p, v, d] = [median(sides.manifest.ms), median(sides.plain.ms), median(sides.version.ms), median(sides.criu.ms)]
  const [f, fv] = [median(sides.floor.ms), median(sides.floorVersion.ms)]
  report(`2. eager restore overhead (median of ${runs} interleaved rounds, order rotating):`)
  report(`   mycli --version:                                   ${v.toFixed(1)} ms`)
  report(`   criu restore -D imgs -J net:H:                     ${d.toFixed(1)} ms`)
  report(`   mycli restore -J net:H, checkpoint with manifest:  ${m.toFixed(1)} ms  plugin adds ${(m - v - d).toFixed(1)} ms (target <= 10)`)
  report(`   mycli restore -J net:H, plain criu dump:           ${p.toFixed(1)} ms  plugin adds ${(p - v - d).toFixed(1)} ms (structure check included)`)
  report('   the floor: a minimal oclif command that only runs criu restore (floorCli):')
  report(`      floor --version ${fv.toFixed(1)} ms; floor restore -D imgs -J net:H ${f.toFixed(1)} ms  the command adds ${(f - fv - d).toFixed(1)} ms`)
  if (before) {
    const b = median(sides.before.ms)
    report(`   the build at BENCH_BEFORE, checkpoint with manifest: ${b.toFixed(1)} ms  plugin adds ${(b - v - d).toFixed(1)} ms; after/before ${(m / b).toFixed(3)}`)
    report(`      (BENCH_BEFORE=${before})`)
  }
}

/**
 * The floor of figure 2: the least an oclif command can do to restore into a joined namespace,
 * as a CLI of its own in a temp folder (this repo's @oclif/core, a manifest, one command, no
 * hook). Its `restore` parses -D and -J with oclif's flags, makes a work folder, runs `criu
 * restore -d` as the bare CRIU side does, reads the pidfile, prints the PID and removes the
 * folder: no checks, no pinning, no verification. What it adds beyond its own `--version` and
 * bare CRIU is what any oclif command pays to run CRIU, before any work of the plugin's.
 */
function floorCli(): {bin: string; dir: string} {
  const dir = mkdtempSync(join(tmpdir(), 'oclif-plugin-criu-bench-floor-'))
  try {
    writeFloorCli(dir)
  } catch (error) {
    rmSync(dir, {force: true, recursive: true})
    throw error
  }

  return {bin: join(dir, 'bin', 'run.js'), dir}
}

function writeFloorCli(dir: string): void {
  mkdirSync(join(dir, 'bin'))
  mkdirSync(join(dir, 'commands'))
  symlinkSync(join(REPO, 'node_modules'), join(dir, 'node_modules'))
  writeFileSync(join(dir, 'package.json'), JSON.stringify({
    name: 'floor', version: '1.0.0', private: true, files: ['bin', 'commands'],
    oclif: {bin: 'floor', commands: './commands', dirname: 'floor', topicSeparator: ' '},
  }))
  writeFileSync(join(dir, 'bin', 'run.js'), "require('@oclif/core').execute({dir: __dirname})\n")
  writeFileSync(join(dir, 'commands', 'restore.js'), `
const {Command, Flags} = require('@oclif/core')
const {spawnSync} = require('node:child_process')
const {mkdtempSync, readFileSync, rmSync} = require('node:fs')
const {tmpdir} = require('node:os')
const {join} = require('node:path')

module.exports = class Restore extends Command {
  static description = 'criu restore -d into joined namespaces, nothing else'
  static flags = {
    'images-dir': Flags.string({char: 'D', required: true}),
    'join-ns': Flags.string({char: 'J', multiple: true}),
  }

  async run() {
    const {flags} = await this.parse(Restore)
    const work = mkdtempSync(join(tmpdir(), 'floor-'))
    const joins = (flags['join-ns'] ?? []).flatMap(j => ['-J', j.replace(/^(\\w+):(\\d+)$/, (_, ns, pid) => ns + ':/proc/' + pid + '/ns/' + ns)])
    const criu = spawnSync(process.env.CRIU_PATH, ['restore', '-D', flags['images-dir'], '-W', work, '-o', 'restore.log', '-v4', '--pidfile', join(work, 'pid'), '-d', ...joins])
    if (criu.status !== 0) this.error('criu restore failed')
    this.log('Restored PID ' + readFileSync(join(work, 'pid'), 'utf8').trim())
    rmSync(work, {force: true, recursive: true})
  }
}
`)
  execFileSync(join(REPO, 'node_modules', '.bin', 'oclif'), ['manifest'], {cwd: dir, env: {...process.env, OCLIF_SKIP_NEW_VERSION_CHECK: 'true'}, stdio: 'ignore'})
}

async function benchLargeRestore(criuPath: string): Promise<void> {
  const mib = QUICK ? 256 : 1024
  const ck = await checkpointOfMemory(criuPath, mib)
  const runs = QUICK ? 2 : 9
  const plugin: number[] = []
  const direct: number[] = []
  const startup: number[] = []
  const library: number[] = []
  const env = {...process.env, CRIU_PATH: criuPath}
  for (let i = 0; i < runs; i++) {
    let t0 = nowMs()
    spawnSync(process.execPath, [BIN, '--version'], {env})
    startup.push(nowMs() - t0)
    t0 = nowMs()
    const r = spawnSync(process.execPath, [BIN, 'restore', '-D', ck.dir], {env})
    plugin.push(nowMs() - t0)
    if (r.status !== 0) throw new Error(`mycli restore failed: ${r.stderr}`)
    await killAndReap(ck.pid)
    const work = mkdtempSync(join(tmpdir(), 'bench-work-'))
    t0 = nowMs()
    const c = spawnSync(criuPath, ['restore', '-D', ck.dir, '-W', work, '-o', 'restore.log', '-v4', '--pidfile', join(work, 'pid'), '-d'])
    direct.push(nowMs() - t0)
    if (c.status !== 0) throw new Error('criu restore failed')
    rmSync(work, {force: true, recursive: true})
    await killAndReap(ck.pid)
    t0 = nowMs()
    await runRestore({criuPath, detached: true, emptyNs: [], imagesDir: ck.dir, joinNs: []})
    library.push(nowMs() - t0)
    await killAndReap(ck.pid)
  }

  rmSync(ck.dir, {force: true, recursive: true})
  const [p, d, v, l] = [median(plugin), median(direct), median(startup), median(library)]
  report(`3. large restore, ${mib} MiB touched (pages images ${ck.pagesMiB.toFixed(0)} MiB; median of ${runs} interleaved runs):`)
  report(`   mycli restore ${p.toFixed(0)} ms, criu restore ${d.toFixed(0)} ms, ratio ${(p / d).toFixed(3)} (target <= 1.03)`)
  report(`   without the CLI's own startup (mycli --version ${v.toFixed(0)} ms): ratio ${((p - v) / d).toFixed(3)}`)
  report(`   the library in this process (runRestore, no CLI start): ${l.toFixed(0)} ms, ratio to criu ${(l / d).toFixed(3)}`)
}

/** Each run's two sides next to each other: the load of a shared machine drifts between runs. */
const pairedRatio = (a: number[], b: number[]) => median(a.map((x, i) => x / b[i])).toFixed(3)
const spread = (xs: number[]) => `${Math.min(...xs).toFixed(0)}-${Math.max(...xs).toFixed(0)}`

/** Figure 6: what verifying the manifest adds to a large restore (pages hashed while CRIU reads them). */
async function benchIntegrityLarge(criuPath: string): Promise<void> {
  const mib = QUICK ? 256 : 1024
  const ck = await checkpointOfMemory(criuPath, mib)
  rmSync(join(ck.dir, 'dump.log'))
  let t0 = nowMs()
  await writeManifest(ck.dir, 'bench')
  const write = nowMs() - t0
  const runs = QUICK ? 3 : 15
  const verified: number[] = []
  const skipped: number[] = []
  const cliVerified: number[] = []
  const cliSkipped: number[] = []
  const hashOnly: number[] = []
  const env = {...process.env, CRIU_PATH: criuPath}
  for (let i = 0; i < runs; i++) {
    // Each side goes first as often as the other: a side that always followed the other's
    // restore (1 GiB freed just before) would be measured on a different machine state.
    for (const verifyImages of i % 2 ? [false, true] : [true, false]) {
      t0 = nowMs()
      await runRestore({criuPath, detached: true, emptyNs: [], imagesDir: ck.dir, joinNs: [], verifyImages});
      (verifyImages ? verified : skipped).push(nowMs() - t0)
      await killAndReap(ck.pid)
      t0 = nowMs()
      const r = spawnSync(process.execPath, [BIN, 'restore', '-D', ck.dir, ...(verifyImages ? [] : ['--no-verify-images'])], {env});
      (verifyImages ? cliVerified : cliSkipped).push(nowMs() - t0)
      if (r.status !== 0) throw new Error(`mycli restore failed: ${r.stderr}`)
      await killAndReap(ck.pid)
    }

    t0 = nowMs()
    await digestFile(join(ck.dir, 'pages-1.img'))
    hashOnly.push(nowMs() - t0)
  }

  rmSync(ck.dir, {force: true, recursive: true})
  const [v, sk, cv, cs, h] = [median(verified), median(skipped), median(cliVerified), median(cliSkipped), median(hashOnly)]
  report(`6. integrity, ${mib} MiB checkpoint with its manifest (pages images ${ck.pagesMiB.toFixed(0)} MiB; median of ${runs} interleaved runs):`)
  report(`   library runRestore: verified ${v.toFixed(0)} ms, --no-verify-images ${sk.toFixed(0)} ms, ratio ${(v / sk).toFixed(3)} (target <= 1.05); median of the runs' own ratios ${pairedRatio(verified, skipped)}; range ${spread(skipped)} ms`)
  report(`   mycli restore:      verified ${cv.toFixed(0)} ms, --no-verify-images ${cs.toFixed(0)} ms, ratio ${(cv / cs).toFixed(3)} (target <= 1.05); median of the runs' own ratios ${pairedRatio(cliVerified, cliSkipped)}; range ${spread(cliSkipped)} ms`)
  report(`   for comparison: hashing pages-1.img alone (xxh64) ${h.toFixed(0)} ms; writing the manifest after the dump ${write.toFixed(0)} ms`)
}

/** Figure 7: what the structure check (and loading protobufjs) adds to restoring a small plain checkpoint. */
async function benchIntegritySmall(criuPath: string): Promise<void> {
  const h = holder()
  const ck = await checkpointOf(criuPath, ['sleep', '100000'], 100)
  const runs = QUICK ? 5 : 15
  const verified: number[] = []
  const skipped: number[] = []
  const env = {...process.env, CRIU_PATH: criuPath}
  for (let i = 0; i < runs; i++) {
    for (const verifyImages of [true, false]) {
      const t0 = nowMs()
      const r = spawnSync(process.execPath, [BIN, 'restore', '-D', ck.dir, '-J', `net:${h}`, ...(verifyImages ? [] : ['--no-verify-images'])], {env});
      (verifyImages ? verified : skipped).push(nowMs() - t0)
      if (r.status !== 0) throw new Error(`mycli restore failed: ${r.stderr}`)
      await killAndReap(ck.pid)
    }
  }

  await killAndReap(h)
  rmSync(ck.dir, {force: true, recursive: true})
  const [v, sk] = [median(verified), median(skipped)]
  report(`7. integrity, small plain checkpoint (criu dump, no manifest), mycli restore -J net:H (median of ${runs} interleaved runs):`)
  report(`   structure checked ${v.toFixed(1)} ms, --no-verify-images ${sk.toFixed(1)} ms: the check adds ${(v - sk).toFixed(1)} ms`)
}

function benchStartup(): void {
  const home = mkdtempSync(join(tmpdir(), 'bench-host-'))
  const envFor = (name: string) => {
    const dir = join(home, name)
    mkdirSync(dir)
    return {...process.env, MYCLI_CACHE_DIR: join(dir, 'cache'), MYCLI_CONFIG_DIR: join(dir, 'config'), MYCLI_DATA_DIR: join(dir, 'data')}
  }

  const withPlugin = envFor('with')
  const without = envFor('without')
  execFileSync(process.execPath, [HOST, 'plugins', 'link', REPO, '--no-install'], {env: withPlugin, stdio: 'ignore'})
  const runs = QUICK ? 10 : 40
  const a: number[] = []
  const b: number[] = []
  for (let i = 0; i < runs; i++) {
    let t0 = nowMs()
    spawnSync(process.execPath, [HOST, '--help'], {env: withPlugin})
    a.push(nowMs() - t0)
    t0 = nowMs()
    spawnSync(process.execPath, [HOST, '--help'], {env: without})
    b.push(nowMs() - t0)
  }

  rmSync(home, {force: true, recursive: true})
  const [x, y] = [median(a), median(b)]
  report(`4. host CLI --help (median of ${runs} interleaved runs): with plugin ${x.toFixed(1)} ms, without ${y.toFixed(1)} ms, ratio ${(x / y).toFixed(3)} (target <= 1.05)`)
}

function benchValidation(): void {
  const h = holder()
  report('5. validation: parse + pin + type-check + conflict check of N -J targets (library, median of 200):')
  const perTarget: number[] = []
  for (const n of [1, 8, 64]) {
    const tokens = Array.from({length: n}, () => `net:${h}`)
    const samples: number[] = []
    for (let i = 0; i < 200; i++) {
      const t0 = nowMs()
      const specs = tokens.map(t => parseJoinNs(t, '/'))
      findProblems({joinNs: specs.slice(0, 1)})
      const pins = specs.map(s => pinPid(s.ns, h))
      for (const p of pins) p.close()
      samples.push(nowMs() - t0)
    }

    const m = median(samples)
    perTarget.push(m / n)
    report(`   N=${String(n).padEnd(3)} ${m.toFixed(3)} ms in all, ${((m / n) * 1000).toFixed(1)} us per target`)
  }

  spawnSync('kill', ['-9', String(h)])
  report(`   per-target cost N=64 / N=1: ${(perTarget[2] / perTarget[0]).toFixed(2)} (1.0 = linear; target < 1 ms per target)`)
}

/** What every checkpoint and restore now pays to know its CRIU can run here: warm (cached) vs cold. */
async function benchJudge(criuPath: string): Promise<void> {
  const saved = process.env.XDG_CACHE_HOME
  const warm = mkdtempSync(join(tmpdir(), 'bench-judge-'))
  const found = {path: criuPath, source: 'CRIU_PATH' as const}
  const caps = criuCapabilities()
  process.env.XDG_CACHE_HOME = warm
  await judgeCriu(found, caps)
  const runs = QUICK ? 5 : 15
  const a: number[] = []
  const b: number[] = []
  for (let i = 0; i < runs; i++) {
    process.env.XDG_CACHE_HOME = warm
    let t0 = nowMs()
    await judgeCriu(found, caps)
    a.push(nowMs() - t0)
    const cold = mkdtempSync(join(tmpdir(), 'bench-judge-'))
    process.env.XDG_CACHE_HOME = cold
    t0 = nowMs()
    await judgeCriu(found, caps)
    b.push(nowMs() - t0)
    rmSync(cold, {force: true, recursive: true})
  }

  if (saved === undefined) delete process.env.XDG_CACHE_HOME
  else process.env.XDG_CACHE_HOME = saved
  rmSync(warm, {force: true, recursive: true})
  report(`6. judging CRIU before the work (library, median of ${runs} interleaved): cached ${median(a).toFixed(2)} ms, cold (--version + criu check, once per binary and boot) ${median(b).toFixed(1)} ms`)
}

/** A CRIU log line's timestamp, in ms. */
const logTime = (line: string) => Number(/^\((\d+\.\d+)\)/.exec(line)?.[1] ?? Number.NaN) * 1000

/**
 * Milliseconds CRIU spent in its action stages, from its log's timestamps (-v4): from each
 * "Running STAGE scripts" line to the first line after what the stage ran (an "RPC" line for a
 * question to the plugin, a "[path]" line per script). Stages that ran nothing are not counted.
 */
function actionStageMs(log: string): {ms: number; perStage: Record<string, number>; stages: number} {
  const lines = readFileSync(log, 'utf8').split('\n').filter(Boolean)
  let ms = 0
  const perStage: Record<string, number> = {}
  for (let i = 0; i < lines.length; i++) {
    const stage = /Running (\S+) scripts/.exec(lines[i])?.[1]
    if (stage === undefined) continue
    let j = i + 1
    while (j < lines.length && /^\(\d+\.\d+\)\s+(\[|RPC$)/.test(lines[j].replace(/\t/, ' '))) j++
    if (j === i + 1 || j >= lines.length) continue // nothing ran at this stage, or no line after it (post-resume)
    perStage[stage] = logTime(lines[j]) - logTime(lines[i])
    ms += perStage[stage]
  }

  return {ms, perStage, stages: Object.keys(perStage).length}
}

/**
 * The post-restore gate: what a restore costs with every task verified before resume, and
 * where CRIU's time at its action stages goes: over RPC (the plugin's way: a question on the
 * socket) against the action-script design it replaced (CRIU forks `sh -c SCRIPT` at each
 * stage), measured the same way, from CRIU's own log.
 */
async function benchResumeGate(criuPath: string): Promise<void> {
  const h = holder()
  const ck = await checkpointOf(criuPath, ['sleep', '100000'], 100)
  const runs = QUICK || process.argv.includes('--gate') ? 9 : 25
  const gated: number[] = []
  const plain: number[] = []
  const rpcStages: number[] = []
  const scriptStages: number[] = []
  let stages = {rpc: 0, script: 0}
  const rpcPerStage: Record<string, number[]> = {}
  const base = {criuPath, detached: true, emptyNs: [], imagesDir: ck.dir}
  // The old design's script: what the gate did at every stage but post-restore (exit at once).
  const scriptDir = mkdtempSync(join(tmpdir(), 'bench-gate-'))
  const script = join(scriptDir, 'action')
  writeFileSync(script, '#!/bin/sh\n[ "$CRTOOLS_SCRIPT_ACTION" = post-restore ] || exit 0\nexit 0\n', {mode: 0o500})
  for (let i = 0; i < runs; i++) {
    let work = mkdtempSync(join(tmpdir(), 'bench-work-'))
    let t0 = nowMs()
    await runRestore({...base, joinNs: [parseJoinNs(`net:${h}`, '/')], workDir: work})
    gated.push(nowMs() - t0)
    await killAndReap(ck.pid)
    const rpc = actionStageMs(join(work, 'restore.log'))
    rpcStages.push(rpc.ms)
    for (const [stage, ms] of Object.entries(rpc.perStage)) (rpcPerStage[stage] ??= []).push(ms)
    stages = {...stages, rpc: rpc.stages}
    rmSync(work, {force: true, recursive: true})
    t0 = nowMs()
    await runRestore({...base, joinNs: []})
    plain.push(nowMs() - t0)
    await killAndReap(ck.pid)
    work = mkdtempSync(join(tmpdir(), 'bench-work-'))
    const c = spawnSync(criuPath, ['restore', '-D', ck.dir, '-W', work, '-o', 'restore.log', '-v4', '-d', '-J', `net:/proc/${h}/ns/net`, '--action-script', script])
    if (c.status !== 0) throw new Error('criu restore --action-script failed')
    await killAndReap(ck.pid)
    const sh = actionStageMs(join(work, 'restore.log'))
    scriptStages.push(sh.ms)
    stages = {...stages, script: sh.stages}
    rmSync(work, {force: true, recursive: true})
  }

  await killAndReap(h)
  rmSync(ck.dir, {force: true, recursive: true})
  rmSync(scriptDir, {force: true, recursive: true})
  const [g, p] = [median(gated), median(plain)]
  report(`gate. post-restore gate, library in this process (median of ${runs} interleaved runs):`)
  report(`   runRestore -J net:H (every task verified before resume): ${g.toFixed(1)} ms`)
  report(`   runRestore without -J (nothing to verify):               ${p.toFixed(1)} ms`)
  report(`   difference ${(g - p).toFixed(1)} ms, ratio ${(g / p).toFixed(3)} (the join itself included)`)
  report(`   CRIU's time in its ${stages.rpc} action stages, asking the plugin over RPC (the verdict included): ${median(rpcStages).toFixed(2)} ms`)
  report(`     per stage: ${Object.entries(rpcPerStage).map(([stage, ms]) => `${stage} ${median(ms).toFixed(2)} ms`).join(', ')}`)
  report(`   the same stages with an action script that exits at once (the design before, bare criu): ${median(scriptStages).toFixed(2)} ms (${stages.script} stages)`)
  await benchGateVerdict()
}

/**
 * The gate's verdict without CRIU: the judge (read the tree from /proc, stat every thread's
 * joined namespaces, compare) on a live tree of 3 processes with 2 joined types.
 */
async function benchGateVerdict(): Promise<void> {
  const tree = spawn('sh', ['-c', 'sleep 100000 & sleep 100000 & wait'], {stdio: 'ignore'})
  spawnSync('sleep', ['0.3'])
  const pins = pinJoins([parseJoinNs(`net:${process.pid}`, '/'), parseJoinNs(`uts:${process.pid}`, '/')])
  const judge = (root: number) => {
    const t = readRestoredTree(root)
    return judgeJoins(t, observeJoins(t, pins.map(p => p.ns)), pins)
  }

  try {
    const size = judge(tree.pid!).length
    const rounds = 500
    const t0 = nowMs()
    for (let i = 0; i < rounds; i++) judge(tree.pid!)
    const judgeMs = (nowMs() - t0) / rounds
    report(`   the judge alone (tree of ${size} processes, 2 types; mean of ${rounds}): ${(judgeMs * 1000).toFixed(0)} us`)
  } finally {
    for (const p of pins) p.close()
    const kids = readRestoredTree(tree.pid!).processes.slice(1)
    for (const kid of kids) process.kill(kid.pid, 'SIGKILL')
    await killAndReap(tree.pid!)
    // The sleeps were the shell's children; with it gone they are this subreaper's.
    await Promise.all(kids.map(kid => waitPid(kid.pid).catch(() => {})))
  }
}

/**
 * What starting CRIU costs the process that starts it, the way runRestore starts it: fork-based
 * child_process.spawn (libuv forks the whole Node process and waits for the exec) vs
 * posix_spawn (no page tables copied), from a process the size of a real restore (oclif and
 * the restore command loaded). The start call alone, and start to exit; three sides
 * interleaved, the order rotating each round.
 */
async function benchCriuStart(criuPath: string): Promise<void> {
  await import('@oclif/core')
  await import('../src/commands/restore.js')
  const rssMiB = process.memoryUsage().rss / 1024 / 1024
  const runs = QUICK ? 30 : 200
  type Side = {call: number[]; total: number[]; run: () => Promise<{call: number; total: number}>}
  const sides: Record<string, Side> = {
    criuRun: {call: [], async run() {
      const t0 = nowMs()
      const run = new CriuRun({argv: ['--version'], criu: criuPath, inheritFds: []}, process.env)
      const call = nowMs() - t0
      const exit = await run.exited
      if (exit.code !== 0) throw new Error(`criu --version: ${JSON.stringify(exit)}`)
      return {call, total: nowMs() - t0}
    }, total: []},
    native: {call: [], async run() {
      const t0 = nowMs()
      const started = startProgram(criuPath, ['--version'], {env: process.env, fds: [], stderrPipe: true})
      const call = nowMs() - t0
      const exit = await watchExit(started.pid).exited
      closeSync(started.stderr!)
      if (exit.code !== 0) throw new Error(`criu --version: ${JSON.stringify(exit)}`)
      return {call, total: nowMs() - t0}
    }, total: []},
    spawn: {call: [], async run() {
      const t0 = nowMs()
      const child = spawn(criuPath, ['--version'], {env: process.env, stdio: ['ignore', 'ignore', 'pipe']})
      const call = nowMs() - t0
      const code = await new Promise(resolve => {
        child.once('close', resolve)
      })
      if (code !== 0) throw new Error(`criu --version: exit ${code}`)
      return {call, total: nowMs() - t0}
    }, total: []},
  }
  const order = Object.keys(sides)
  for (let i = 0; i < runs; i++) {
    for (let k = 0; k < order.length; k++) {
      const side = sides[order[(i + k) % order.length]]
      const {call, total} = await side.run()
      side.call.push(call)
      side.total.push(total)
    }
  }

  const line = (name: string, side: Side) => `   ${name.padEnd(38)} ${median(side.call).toFixed(3)} ms (min ${Math.min(...side.call).toFixed(3)}, p90 ${p90(side.call).toFixed(3)})   start to exit ${median(side.total).toFixed(2)} ms`
  report(`11. starting CRIU (criu --version) from a ${rssMiB.toFixed(0)} MiB RSS process (oclif + restore loaded; median of ${runs} interleaved rounds, order rotating):`)
  report(line('child_process.spawn():', sides.spawn))
  report(line('startProgram() (posix_spawn):', sides.native))
  report(line('new CriuRun() (startProgram + watch):', sides.criuRun))
  report(`   the call, ratio startProgram / spawn ${pairedRatio(sides.native.call, sides.spawn.call)}, new CriuRun / spawn ${pairedRatio(sides.criuRun.call, sides.spawn.call)} (median of per-round ratios)`)
}

const p90 = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length * 0.9)]

async function main(): Promise<void> {
  if (process.getuid?.() !== 0) throw new Error('the benchmarks need root')
  setChildSubreaper(true) // restored tasks come back to us to be reaped, not to PID 1
  const criuPath = criu()
  const version = execFileSync(criuPath, ['--version'], {encoding: 'utf8'}).split('\n')[0]
  report(`oclif-plugin-criu benchmarks, ${new Date().toISOString().slice(0, 10)}, ${readFileSync('/proc/cpuinfo', 'utf8').match(/model name\s*:\s*(.*)/)?.[1] ?? 'cpu?'}, ${process.version}, CRIU ${version.replace('Version: ', '')}${QUICK ? ' (--quick)' : ''}`)
  if (process.argv.includes('--gate')) { // this figure alone
    await benchResumeGate(criuPath)
    return
  }

  if (wanted(1)) await benchSpawnJoined()
  if (wanted(2)) await benchRestoreOverhead(criuPath)
  if (wanted(3)) await benchLargeRestore(criuPath)
  if (wanted(4)) benchStartup()
  if (wanted(5)) benchValidation()
  if (wanted(6)) await benchIntegrityLarge(criuPath)
  if (wanted(7)) await benchIntegritySmall(criuPath)
  if (wanted(8)) await benchJudge(criuPath)
  if (wanted(9)) benchHostCost(report, QUICK, '9. ')
  if (wanted(10)) await benchResumeGate(criuPath)
  if (wanted(11)) await benchCriuStart(criuPath)
}

// Children reaped by waitPid (native) stay open handles of node's own child-process bookkeeping,
// which never sees them exit: end when the figures are done.
main().then(() => process.exit(0), error => {
  console.error(error instanceof Error ? error.message : error)
  process.exit(1)
})
