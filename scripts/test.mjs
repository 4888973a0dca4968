#!/usr/bin/env node
// The whole test suite, as CI runs it: provision CRIU, build (native + TypeScript + manifest)
// once, then run mocha on each Node.js of the matrix: this machine's Node under nyc (coverage),
// then every other major given with --node (default: 26, the newest LTS since October 2026),
// each a `node` from the npm registry (scripts/fetch-node.sh). The native module is N-API, so
// one build serves them all.
// Each run gets a temp folder of its own, which must be empty afterwards: what a test leaves
// there is reported as a failure. Ends with one plain line "N passed, N failed", summed over the runs.
// Lint and type checks are tests inside the suite (test/lint.test.ts), so they are counted.
//
//   node scripts/test.mjs                      this machine's Node, then Node 26
//   node scripts/test.mjs --node 22,24,26      this machine's Node, then 22, 24, 26 (npm run test:matrix)
//   node scripts/test.mjs --node current       this machine's Node only
//   node scripts/test.mjs [--node ...] -- MOCHA_ARGS...   e.g. some test files only
import {execFileSync, spawnSync} from 'node:child_process'
import {
  existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync,
} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
process.chdir(root)

const args = process.argv.slice(2)
let majors = ['26']
const nodeAt = args.indexOf('--node')
if (nodeAt !== -1) {
  majors = (args[nodeAt + 1] ?? '').split(',').filter(Boolean)
  args.splice(nodeAt, 2)
  if (majors.some(m => m !== 'current' && !/^\d+$/.test(m))) {
    console.log(`--node takes majors separated by commas, e.g. 22,24,26 (or current), not "${majors.join(',')}"`)
    console.log('0 passed, 1 failed')
    process.exit(1)
  }
}

if (args[0] === '--') args.shift()
const machineMajor = process.versions.node.split('.')[0]
const others = [...new Set(majors.filter(m => m !== 'current' && m !== machineMajor))]

function step(name, cmd, args, opts = {}) {
  process.stderr.write(`\n== ${name}: ${cmd} ${args.join(' ')}\n`)
  const r = spawnSync(cmd, args, {stdio: 'inherit', ...opts})
  if (r.status !== 0) {
    console.log(`${name} failed (exit ${r.status ?? r.signal})`)
    console.log('0 passed, 1 failed')
    process.exit(1)
  }
}

if (process.getuid?.() !== 0) {
  console.error('the test suite needs root: it creates namespaces and runs CRIU')
  console.log('0 passed, 1 failed')
  process.exit(1)
}

// CRIU >= 4.2: its path is the script's last line of output.
process.stderr.write('\n== provision CRIU: scripts/provision-criu.sh\n')
let criu
try {
  criu = execFileSync('bash', ['scripts/provision-criu.sh'], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit']}).trim().split('\n').pop()
} catch {
  console.log('provisioning CRIU failed')
  console.log('0 passed, 1 failed')
  process.exit(1)
}

process.env.CRIU_PATH = criu
if (!existsSync('node_modules/.bin/tsc')) step('install', 'npm', ['ci', '--no-audit', '--no-fund'])
step('build native', 'npm', ['run', '--silent', 'build:native'])
step('build TypeScript and manifest', 'npm', ['run', '--silent', 'build:ts'])

/** One mocha run on the given `node`, in a temp folder of its own; its counts. */
function runSuite(node, coverage) {
  // Each run starts from what the build step left: the lint test's node-gyp rebuild leaves a
  // build/ that node-gyp-build would load before prebuilds/ (also for the arm64 Node).
  rmSync('build', {force: true, recursive: true})
  const version = execFileSync(node, ['--version'], {encoding: 'utf8'}).trim()
  const temp = mkdtempSync(join(tmpdir(), 'oclif-plugin-criu-test-'))
  const results = join(temp, '..', `${temp.split('/').pop()}.json`)
  const mochaArgs = coverage ? ['node_modules/nyc/bin/nyc.js', 'node_modules/mocha/bin/mocha.js', ...args] : ['node_modules/mocha/bin/mocha.js', ...args]
  process.stderr.write(`\n== tests on Node.js ${version}${coverage ? ' (with coverage)' : ''}: ${node} ${mochaArgs.join(' ')}\n`)
  const mocha = spawnSync(node, mochaArgs, {
    // `node` on PATH is this one too, for everything the tests start with a #!/usr/bin/env node;
    // node_modules/.bin as under npx.
    env: {...process.env, MOCHA_RESULTS: results, PATH: `${dirname(node)}:${join(root, 'node_modules', '.bin')}:${process.env.PATH}`, TMPDIR: temp},
    stdio: 'inherit',
  })

  let passed = 0
  let failed = 0
  if (existsSync(results)) {
    ({failed, passed} = JSON.parse(readFileSync(results, 'utf8')))
    rmSync(results, {force: true})
  } else {
    failed = 1
    console.log(`Node.js ${version}: mocha ended without results (exit ${mocha.status ?? mocha.signal})`)
  }

  if (mocha.status !== 0 && failed === 0) failed = 1
  // node-compile-cache is Node's, not the plugin's: npm 11 enables it when it runs on Node 22+
  // (the tests' npm pack and npm install, and plugins install, which runs npm).
  const left = readdirSync(temp).filter(name => name !== 'node-compile-cache')
  if (left.length > 0) {
    failed++
    console.log(`Node.js ${version}: the tests left ${left.length} entries in the temp folder: ${left.sort().join(', ')}`)
  }

  rmSync(temp, {force: true, recursive: true})
  console.log(`Node.js ${version}: ${passed} passed, ${failed} failed`)
  return {failed, passed}
}

rmSync('.nyc_output', {force: true, recursive: true})
rmSync('coverage', {force: true, recursive: true})
mkdirSync('.nyc_output', {recursive: true})
const runs = [runSuite(process.execPath, true)]
for (const major of others) {
  let node
  try {
    node = execFileSync('bash', ['scripts/fetch-node.sh', major], {encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit']}).trim().split('\n').pop()
  } catch {
    console.log(`Node.js ${major}: scripts/fetch-node.sh could not provide it`)
    runs.push({failed: 1, passed: 0})
    continue
  }

  runs.push(runSuite(node, false))
}

const passed = runs.reduce((n, r) => n + r.passed, 0)
const failed = runs.reduce((n, r) => n + r.failed, 0)
console.log(`${passed} passed, ${failed} failed`)
process.exit(failed === 0 ? 0 : 1)
