/**
 * What the plugin costs a host CLI's own commands: the host's trivial `hello` with the plugin
 * installed (plugins install file:<tarball>, as users do) vs without it, interleaved, the order
 * rotating each round. Every fourth round also the same host with the hook as it was before it
 * was split (the checks and @oclif/core loaded eagerly), to show what the split saves.
 * `npm run bench:host`; `--quick` runs fewer rounds. About 3 minutes when nothing else runs.
 *
 * Two figures per side: the median wall time, and the CPU time (user+sys) the host process used,
 * summed over all rounds. Wall time on this 2-core VM moves with whatever else runs; the CPU time
 * a process spends on the same work moves less, and its ratio comes with a 95% interval from the
 * paired rounds, which says whether a 3 % difference is shown, refuted or not resolved.
 *
 *   examples/hostctl: @oclif/core 5, plugin-plugins 7, on Node 24 (the newest host; target <= 1.03)
 *   examples/mycli:   @oclif/core 4, plugin-plugins 5, on this machine's Node
 */import {execFileSync, spawnSync} from 'node:child_process'
import {existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'

const REPO = join(__dirname, '..', '..')

interface Host {
  bin: string
  dir: string
  node: string
  rounds: number
}

/** One way of running the host: its samples, one per round it ran in. */
interface Side {
  /** The CPU times of the side without the plugin in the same rounds, for the paired interval. */
  baseCpu: number[]
  cpu: number[]
  env: NodeJS.ProcessEnv
  wall: number[]
}

/** Every how many rounds the eager hook runs too: it is there to show a large difference. */
const EAGER_EVERY = 4

function newSide(env: NodeJS.ProcessEnv): Side {
  return {baseCpu: [], cpu: [], env, wall: []}
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b)
  return s.length % 2 ? s[(s.length - 1) / 2] : (s[(s.length / 2) - 1] + s[s.length / 2]) / 2
}

function sum(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0)
}

function nodeMajor(major: number): string {
  return execFileSync('bash', [join(REPO, 'scripts', 'fetch-node.sh'), String(major)], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit']}).trim().split('\n').pop()!
}

const CLOCK_TICKS = Number(execFileSync('getconf', ['CLK_TCK'], {encoding: 'utf8'}))

/**
 * CPU time (user+sys, ms) of this process's children that have been waited for: cutime and
 * cstime of /proc/self/stat. The kernel keeps the sum in nanoseconds and rounds only when it is
 * read, so one reading is off by less than a clock tick (10 ms) and the error does not add up
 * over the rounds: the per-side sums are exact to a tick or two.
 */
function childrenCpuMs(): number {
  const stat = readFileSync('/proc/self/stat', 'utf8')
  const fields = stat.slice(stat.lastIndexOf(') ') + 2).split(' ') // fields from the 3rd (state) on
  return ((Number(fields[13]) + Number(fields[14])) * 1000) / CLOCK_TICKS // fields 16 and 17
}

/** The 95% interval of the ratio sum(b)/sum(a), from the per-round differences b[i] - a[i]. */
function ratioInterval(a: number[], b: number[]): [number, number] {
  const d = b.map((x, i) => x - a[i])
  const mean = sum(d) / d.length
  const sd = Math.sqrt(sum(d.map(x => (x - mean) ** 2)) / (d.length - 1))
  const half = (1.96 * sd) / Math.sqrt(d.length)
  const base = sum(a) / a.length
  return [1 + ((mean - half) / base), 1 + ((mean + half) / base)]
}

/** The hook as it was: the checks (and with them the plugin's @oclif/core) loaded with the hook file. */
const EAGER_HOOK = `"use strict";
Object.defineProperty(exports, "__esModule", {value: true});
const checks = require("../lib/prerun-checks.js");
exports.default = async function (options) {
  const marker = options.Command.criuJoinChecks;
  if (marker !== "criu" && marker !== "plain") return;
  await checks.checkJoinOptions.call(this, options, marker);
};
`

/** Host env with its own data/cache/config folders under `home`. */
function hostEnv(host: Host, home: string): NodeJS.ProcessEnv {
  const prefix = host.bin.toUpperCase()
  mkdirSync(home, {recursive: true})
  return {
    ...process.env,
    [`${prefix}_CACHE_DIR`]: join(home, 'cache'),
    [`${prefix}_CONFIG_DIR`]: join(home, 'config'),
    [`${prefix}_DATA_DIR`]: join(home, 'data'),
    PATH: `${dirname(host.node)}:${process.env.PATH}`,
  }
}

/** Runs the host's `hello` once; its wall time and the CPU time its process used, in ms. */
function runHello(host: Host, env: NodeJS.ProcessEnv): {cpu: number; wall: number} {
  const cpu0 = childrenCpuMs()
  const t0 = process.hrtime.bigint()
  const r = spawnSync(host.node, [join(host.dir, 'bin', 'run.js'), 'hello'], {encoding: 'utf8', env})
  const wall = Number(process.hrtime.bigint() - t0) / 1e6
  const cpu = childrenCpuMs() - cpu0
  if (r.status !== 0 || r.stdout.trim() !== 'hello') throw new Error(`${host.bin} hello failed: ${r.stderr}`)
  return {cpu, wall}
}

/**
 * Round `i`: `hello` once on each side, interleaved, the order rotating each round so that no
 * side always runs first. The first side is the baseline: every other side's CPU time is paired
 * with the baseline's of the same round.
 */
function runRound(host: Host, [base, ...others]: readonly Side[], i: number): void {
  const round = [base, ...others]
  const cpu = new Map<Side, number>()
  for (let k = 0; k < round.length; k++) {
    const s = round[(i + k) % round.length]
    const sample = runHello(host, s.env)
    cpu.set(s, sample.cpu)
    s.cpu.push(sample.cpu)
    s.wall.push(sample.wall)
  }

  for (const s of others) s.baseCpu.push(cpu.get(base)!)
}

function ratioLine(what: string, base: Side, side: Side): string {
  const wall = median(side.wall) / median(base.wall)
  const cpu = sum(side.cpu) / sum(side.baseCpu)
  const [lo, hi] = ratioInterval(side.baseCpu, side.cpu)
  return `${what} wall ${median(side.wall).toFixed(1)} ms, ratio ${wall.toFixed(3)}; CPU ${(sum(side.cpu) / side.cpu.length).toFixed(1)} ms, ratio ${cpu.toFixed(3)} (95% ${lo.toFixed(3)}-${hi.toFixed(3)}, ${side.cpu.length} rounds)`
}

export function benchHostCost(report: (line: string) => void, quick: boolean, label = ''): void {
  const started = Date.now()
  const work = mkdtempSync(join(tmpdir(), 'oclif-plugin-criu-bench-'))
  try {
    execFileSync('npm', ['pack', '--ignore-scripts', '--pack-destination', work], {cwd: REPO, stdio: 'ignore'})
    const tarball = join(work, readdirSync(work).find(f => f.endsWith('.tgz'))!)
    const hosts: Host[] = [
      {bin: 'hostctl', dir: join(REPO, 'examples', 'hostctl'), node: nodeMajor(24), rounds: quick ? 16 : 160},
      {bin: 'mycli', dir: join(REPO, 'examples', 'mycli'), node: process.execPath, rounds: quick ? 8 : 48},
    ]
    report(`${label}host CLI's own command (hello) with the plugin installed vs without, interleaved: wall time (median) and CPU time of the host process (user+sys, mean; ratio of the sums):`)
    for (const host of hosts) {
      if (!existsSync(join(host.dir, 'node_modules'))) {
        execFileSync('npm', ['ci', '--no-audit', '--no-fund'], {cwd: host.dir, env: hostEnv(host, join(work, 'npm')), stdio: 'ignore'})
      }

      const without = newSide(hostEnv(host, join(work, host.bin, 'without')))
      const withPlugin = newSide(hostEnv(host, join(work, host.bin, 'with')))
      const eager = newSide(hostEnv(host, join(work, host.bin, 'eager')))
      const run = join(host.dir, 'bin', 'run.js')
      const plugins = host.bin === 'hostctl' ? ['plugins:install'] : ['plugins', 'install']
      const dataDir = (side: Side) => side.env[`${host.bin.toUpperCase()}_DATA_DIR`]!
      execFileSync(host.node, [run, ...plugins, `file:${tarball}`], {env: withPlugin.env, stdio: 'ignore'})
      execFileSync('cp', ['-a', dataDir(withPlugin), dataDir(eager)]) // the same install, one npm run less
      writeFileSync(join(dataDir(eager), 'node_modules', 'oclif-plugin-criu', 'dist', 'src', 'hooks', 'prerun.js'), EAGER_HOOK)

      for (const {env} of [without, withPlugin, eager]) runHello(host, env) // warm the page cache
      for (let i = 0; i < host.rounds; i++) {
        runRound(host, i % EAGER_EVERY === 0 ? [without, withPlugin, eager] : [without, withPlugin], i)
      }

      const version = execFileSync(host.node, ['--version'], {encoding: 'utf8'}).trim()
      report(`   ${host.bin} (Node ${version}, ${host.rounds} rounds)${host.bin === 'hostctl' ? ', target <= 1.03' : ''}:`)
      report(`      without the plugin:     wall ${median(without.wall).toFixed(1)} ms; CPU ${(sum(without.cpu) / without.cpu.length).toFixed(1)} ms`)
      report(ratioLine('      with the plugin:       ', without, withPlugin))
      report(ratioLine('      the eager hook (before):', without, eager))
    }

    report(`   (${((Date.now() - started) / 1000).toFixed(0)} s in all)`)
  } finally {
    rmSync(work, {force: true, recursive: true})
  }
}

/**
 * `node dist/bench/host-cost.js --parts [ROUNDS]`: where the cost on the newest host comes from.
 * Besides without and with the plugin: the plugin with its package.json naming no hook, and an empty
 * shell (no hook, a manifest with no commands), which costs what any installed plugin costs.
 */
export function benchHostCostParts(report: (line: string) => void, rounds: number): void {
  const work = mkdtempSync(join(tmpdir(), 'oclif-plugin-criu-bench-'))
  try {
    execFileSync('npm', ['pack', '--ignore-scripts', '--pack-destination', work], {cwd: REPO, stdio: 'ignore'})
    const tarball = join(work, readdirSync(work).find(f => f.endsWith('.tgz'))!)
    const host: Host = {bin: 'hostctl', dir: join(REPO, 'examples', 'hostctl'), node: nodeMajor(24), rounds}
    const names = ['without the plugin', 'with the plugin', 'no hook', 'empty shell']
    const sides = names.map(name => newSide(hostEnv(host, join(work, name.replaceAll(' ', '-')))))
    const [without, withPlugin, noHook, empty] = sides
    const dataDir = (side: Side) => side.env.HOSTCTL_DATA_DIR!
    execFileSync(host.node, [join(host.dir, 'bin', 'run.js'), 'plugins:install', `file:${tarball}`], {env: withPlugin.env, stdio: 'ignore'})
    for (const side of [noHook, empty]) {
      execFileSync('cp', ['-a', dataDir(withPlugin), dataDir(side)])
      const plugin = join(dataDir(side), 'node_modules', 'oclif-plugin-criu')
      const pjson = JSON.parse(readFileSync(join(plugin, 'package.json'), 'utf8'))
      delete pjson.oclif.hooks
      writeFileSync(join(plugin, 'package.json'), JSON.stringify(pjson))
    }

    const manifest = join(dataDir(empty), 'node_modules', 'oclif-plugin-criu', 'oclif.manifest.json')
    writeFileSync(manifest, JSON.stringify({...JSON.parse(readFileSync(manifest, 'utf8')), commands: {}}))

    for (const {env} of sides) runHello(host, env) // warm the page cache
    for (let i = 0; i < rounds; i++) runRound(host, sides, i)

    report(`hostctl's hello (Node 24), ${rounds} interleaved rounds: wall time (median), CPU time of the host process (mean; ratio of the sums)`)
    report(`   ${names[0].padEnd(20)} wall ${median(without.wall).toFixed(1)} ms; CPU ${(sum(without.cpu) / rounds).toFixed(1)} ms`)
    for (const [i, side] of sides.entries()) if (i > 0) report(ratioLine(`   ${names[i].padEnd(20)}`, without, side))
  } finally {
    rmSync(work, {force: true, recursive: true})
  }
}

if (require.main === module) {
  const parts = process.argv.indexOf('--parts')
  if (parts === -1) benchHostCost(line => console.log(line), process.argv.includes('--quick'))
  else benchHostCostParts(line => console.log(line), Number(process.argv[parts + 1] ?? 60))
}
