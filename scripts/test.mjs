#!/usr/bin/env node
// The whole test suite, as CI runs it: provision CRIU, build (native + TypeScript + manifest),
// run mocha under nyc (coverage), and end with one plain line "N passed, N failed".
// Lint and type checks are tests inside the suite (test/lint.test.ts), so they are counted.
import {execFileSync, spawnSync} from 'node:child_process'
import {
  existsSync, mkdirSync, readFileSync, rmSync,
} from 'node:fs'
import {tmpdir} from 'node:os'
import {dirname, join} from 'node:path'
import {fileURLToPath} from 'node:url'

const root = join(dirname(fileURLToPath(import.meta.url)), '..')
process.chdir(root)
const results = join(tmpdir(), `oclif-plugin-criu-mocha-${process.pid}.json`)

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

rmSync('.nyc_output', {force: true, recursive: true})
rmSync('coverage', {force: true, recursive: true})
mkdirSync('.nyc_output', {recursive: true})
const mocha = spawnSync('npx', ['nyc', 'mocha', ...process.argv.slice(2)], {
  env: {...process.env, MOCHA_RESULTS: results},
  stdio: 'inherit',
})

let passed = 0
let failed = 0
if (existsSync(results)) {
  ({failed, passed} = JSON.parse(readFileSync(results, 'utf8')))
} else {
  failed = 1
  console.log(`mocha ended without results (exit ${mocha.status ?? mocha.signal})`)
}

if (mocha.status !== 0 && failed === 0) failed = 1
console.log(`${passed} passed, ${failed} failed`)
process.exit(failed === 0 ? 0 : 1)
