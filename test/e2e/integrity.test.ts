import {expect} from 'chai'
import {spawn, spawnSync} from 'node:child_process'
import {
  copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync,
} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {CriuRun, logCutMarker, supervise} from '../../src/lib/criu-run.js'
import {CriuPluginError, FailedError} from '../../src/lib/errors.js'
import {parseJoinNs} from '../../src/lib/join-ns.js'
import {MANIFEST_FILE} from '../../src/lib/manifest.js'
import {runRestore} from '../../src/lib/restore.js'
import {checkpoint, folderDigest} from '../support/checkpoint.js'
import {
  alive, BIN, cleanup, criuPath, flat, requireRoot, startHolder, tempDir, track,
} from '../support/system.js'

/**
 * A seeded corpus of damaged copies of two real checkpoints of the same kind of workload: a
 * plain `criu dump` and one written by `mycli checkpoint` (with its manifest). Every file of
 * each, every way disks and copies damage files. None may restore, none may hang, each ends
 * with its documented exit code and a message naming the file, and nothing is left behind.
 */
const SEED = 19
const KINDS = ['truncated', 'flipped', 'zeroed', 'emptied', 'garbage'] as const
type Kind = (typeof KINDS)[number]

/** mulberry32: a small seeded PRNG, so that every run damages the same bytes. */
function prng(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6D_2B_79_F5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
}

const seedOf = (text: string) => [...text].reduce((h, c) => Math.imul(h ^ c.codePointAt(0)!, 16_777_619) >>> 0, 2_166_136_261 ^ SEED)

/**
 * Damage one file in place. Flips land anywhere in a file covered by a manifest; without one
 * they land in the 8-byte header, the only place where any flip is sure to show (a flip in a
 * value that still decodes is undetectable without a manifest: see README).
 */
function damageFile(path: string, kind: Kind, headerOnly: boolean): void {
  const bytes = readFileSync(path)
  // The seed leaves out the PID in the name (core-1234.img), so every run damages the same bytes.
  const random = prng(seedOf(`${path.split('/').pop()!.replaceAll(/\d+/g, 'N')}:${kind}`))
  switch (kind) {
  case 'emptied': {
    truncateSync(path, 0)
    break
  }

  case 'flipped': {
    const span = headerOnly ? Math.min(8, bytes.length) : bytes.length
    for (let i = 0; i < 4; i++) {
      const at = Math.floor(random() * span)
      bytes[at] ^= 1 << Math.floor(random() * 8)
    }

    writeFileSync(path, bytes)
    break
  }

  case 'garbage': {
    writeFileSync(path, Buffer.from(bytes.map(() => Math.floor(random() * 256))))
    break
  }

  case 'truncated': {
    truncateSync(path, Math.floor(random() * bytes.length))
    break
  }

  case 'zeroed': {
    writeFileSync(path, Buffer.alloc(bytes.length))
    break
  }
  }
}

/** A checkpoint folder is flat: copy its files. */
function cpSync(from: string, to: string): void {
  mkdirSync(to, {recursive: true})
  for (const name of readdirSync(from)) copyFileSync(join(from, name), join(to, name))
}

const isPages = (name: string) => /^pages-\d+\.img$/.test(name)

/**
 * Which copies are in the corpus. Without a manifest the contents of a pages image cannot be
 * checked (only its size): a flipped, zeroed or garbage pages image of the right size is
 * undetectable there and left out; CRIU does not read stats-dump.
 */
function corpusFiles(dir: string, withManifest: boolean, kind: Kind): string[] {
  return readdirSync(dir).filter(name => {
    if (withManifest) return true
    if (!name.endsWith('.img')) return false
    return !(isPages(name) && ['flipped', 'garbage', 'zeroed'].includes(kind))
  }).sort()
}

/** Same-size damage of a pages image is found only while CRIU reads it (a manifest's digest). */
const foundWhileCriuRuns = (name: string, kind: Kind, withManifest: boolean) => withManifest && isPages(name) && ['flipped', 'garbage', 'zeroed'].includes(kind)

interface Pristine {
  dir: string
  pid: number
}

/** A pristine checkpoint, kept in a folder of our own for the whole suite (cleanup() empties tempDir()s after each test). */
async function pristine(withManifest: boolean, keep: string): Promise<Pristine> {
  const ckpt = await checkpoint()
  const dir = join(keep, withManifest ? 'with-manifest' : 'plain')
  cpSync(ckpt.dir, dir)
  if (withManifest) {
    // The plugin's own writer, as `mycli checkpoint` calls it after CRIU finished.
    const {writeManifest} = await import('../../src/lib/manifest.js')
    for (const extra of ['stats-dump', 'dump.log']) rmSync(join(dir, extra), {force: true})
    await writeManifest(dir, 'test')
  }

  return {dir, pid: ckpt.pid}
}

function runCli(args: string[], env: NodeJS.ProcessEnv, timeoutMs = 60_000) {
  const r = spawnSync(process.execPath, [BIN, ...args], {encoding: 'utf8', env: {...process.env, CRIU_PATH: criuPath(), ...env}, timeout: timeoutMs})
  return {code: r.status, signal: r.signal, stderr: flat(r.stderr), stdout: r.stdout}
}

describe('integrity: a damaged checkpoint is never restored, never hangs, never fills the disk', function () {
  this.timeout(180_000)
  let keep: string
  const checkpoints: Record<'manifest' | 'plain', Pristine> = {} as never

  before(async () => {
    requireRoot()
    keep = mkdtempSync(join(tmpdir(), 'criu-integrity-'))
    checkpoints.plain = await pristine(false, keep)
    checkpoints.manifest = await pristine(true, keep)
    await cleanup()
  })

  after(() => rmSync(keep, {force: true, recursive: true}))

  afterEach(cleanup)

  for (const withManifest of [true, false]) {
    for (const kind of KINDS) {
      const which = withManifest ? 'with a manifest' : 'plain criu dump'
      it(`${which}, every file ${kind}: refused before CRIU starts (exit 2, naming the file), the folder untouched`, async () => {
        const holder = await startHolder(['net'])
        const source = checkpoints[withManifest ? 'manifest' : 'plain']
        const wrong: string[] = []
        const files = corpusFiles(source.dir, withManifest, kind).filter(name => !foundWhileCriuRuns(name, kind, withManifest))
        expect(files.length, 'the corpus covers the checkpoint').to.be.greaterThan(8)
        for (const name of files) {
          const dir = tempDir('criu-damaged-')
          cpSync(source.dir, dir)
          damageFile(join(dir, name), kind, !withManifest)
          const before = folderDigest(dir)
          const outcome = await runRestore({detached: true, emptyNs: [], imagesDir: dir, joinNs: [parseJoinNs(`net:${holder.pid}`, '/')]}).then(
            r => {
              track(r.pid)
              return `RESTORED as ${r.pid}`
            },
            (error: Error) => error,
          )
          if (!(outcome instanceof CriuPluginError) || outcome.exitCode !== 2) {
            wrong.push(`${name}: ${outcome instanceof Error ? `${outcome.name} ${(outcome as CriuPluginError).exitCode}: ${outcome.message}` : outcome}`)
          } else if (!outcome.message.includes(name) && !outcome.message.includes(MANIFEST_FILE)) {
            wrong.push(`${name}: the message does not name it: ${outcome.message}`)
          }

          expect(folderDigest(dir), `${name}: the damaged folder was written to`).to.equal(before)
        }

        expect(wrong, 'cases not refused as documented').to.deep.equal([])
        expect(alive(source.pid), 'nothing restored runs').to.equal(false)
      })
    }
  }

  it('with a manifest, a pages image damaged in place (same size): found while CRIU reads it; exit 1, the tree killed, only the work dir left', async () => {
    const holder = await startHolder(['net'])
    const source = checkpoints.manifest
    for (const kind of ['flipped', 'zeroed', 'garbage'] as const) {
      const dir = tempDir('criu-damaged-')
      const temp = tempDir('criu-tmp-')
      cpSync(source.dir, dir)
      damageFile(join(dir, 'pages-1.img'), kind, false)
      const r = runCli(['restore', '-D', dir, '-J', `net:${holder.pid}`], {TMPDIR: temp})
      expect(r.code, `${kind}: ${r.stderr}`).to.equal(1)
      expect(r.stderr).to.include(`does not match ${MANIFEST_FILE}, found while CRIU read it; nothing restored is left running`)
      expect(r.stderr).to.match(/pages-1\.img: content differs from the manifest \(xxh64 [\da-f]{16}, expected [\da-f]{16}\)/)
      expect(existsSync(`/proc/${source.pid}`), `${kind}: the restored task is gone and reaped`).to.equal(false)
      // What is left: CRIU's work dir with its log (named in the message), nothing else.
      const left = readdirSync(temp)
      expect(left.length, left.join(' ')).to.equal(1)
      expect(left[0]).to.match(/^oclif-plugin-criu-restore-/)
    }
  })

  it('an emptied pages-1.img: refused by the structure check (exit 2) and by the manifest (exit 2), through the CLI, temp folder untouched', async () => {
    const holder = await startHolder(['net'])
    for (const [label, source] of Object.entries(checkpoints)) {
      const dir = tempDir('criu-damaged-')
      const temp = tempDir('criu-tmp-')
      cpSync(source.dir, dir)
      truncateSync(join(dir, 'pages-1.img'), 0)
      const r = runCli(['restore', '-D', dir, '-J', `net:${holder.pid}`], {TMPDIR: temp})
      expect(r.code, `${label}: ${r.stderr}`).to.equal(2)
      expect(r.stderr).to.include(label === 'plain' ? 'is damaged (structure check; it has no manifest)' : `does not match ${MANIFEST_FILE}`)
      expect(r.stderr).to.include('pages-1.img: 0 bytes')
      expect(r.stderr).to.include('Hint: restore from an intact copy, or pass --no-verify-images')
      expect(r.stderr).not.to.include('    at ') // no stack trace
      expect(readdirSync(temp), 'nothing written to the temp folder').to.deep.equal([])
    }
  })

  it('the emptied-pages hang of CRIU 4.2.1 (checks skipped): no --timeout, yet CRIU is stopped at --log-limit; exit 1, nothing left running', async () => {
    const holder = await startHolder(['net'])
    const source = checkpoints.plain
    const dir = tempDir('criu-damaged-')
    const work = tempDir('criu-work-')
    cpSync(source.dir, dir)
    truncateSync(join(dir, 'pages-1.img'), 0)
    const started = Date.now()
    const r = runCli(['restore', '-D', dir, '-J', `net:${holder.pid}`, '--no-verify-images', '--log-limit', '4', '-W', work], {}, 90_000)
    expect(r.signal, 'the command ended by itself').to.equal(null)
    expect(r.code, r.stderr).to.equal(1)
    expect(r.stderr).to.match(/CRIU's log grew past 4 MiB \(\d+ MiB in .*restore\.log\); CRIU was stopped and nothing restored is left running/)
    const logSize = statSync(join(work, 'restore.log')).size
    expect(logSize, 'the log stopped growing near the limit').to.be.lessThan(64 << 20)
    expect(existsSync(`/proc/${source.pid}`), 'the spinning restored task is gone and reaped').to.equal(false)
    // No CRIU of ours is left: none has our work dir on its command line.
    const criusLeft = readdirSync('/proc').filter(p => /^\d+$/.test(p)).filter(p => {
      try {
        return readFileSync(`/proc/${p}/cmdline`, 'utf8').includes(work)
      } catch {
        return false
      }
    })
    expect(criusLeft).to.deep.equal([])
    expect(statSync(join(work, 'restore.log')).size, 'and the log no longer grows').to.equal(logSize)
    expect(Date.now() - started).to.be.lessThan(60_000)

    // The log in the work folder was cut: its first part (at most 1 MiB, a quarter of the limit),
    // a marker saying how much went, its last part (at most 2 MiB, half the limit).
    expect(flat(r.stderr)).to.include('The log was cut to its first 1 MiB and its last 2 MiB, a marker line between them saying how much was cut out')
    const log = readFileSync(join(work, 'restore.log'), 'latin1')
    const marker = /\n\[oclif-plugin-criu: (\d+) bytes of CRIU's log cut out here; CRIU was stopped at --log-limit\]\n/.exec(log)!
    expect(marker, 'the marker line').not.to.equal(null)
    const head = log.slice(0, marker.index + 1)
    const tail = log.slice(marker.index + marker[0].length)
    expect(head.length).to.be.at.most(1 << 20)
    expect(tail.length).to.be.at.most(2 << 20)
    expect(logSize).to.equal(head.length + marker[0].length - 1 + tail.length)
    // What CRIU wrote first (its run id and version), and what it wrote last (the loop).
    expect(head).to.match(/^\(00\.0+\) CRIU run id = /)
    expect(head).to.match(/\) Version: \d+\.\d+/)
    expect(tail.split('\n').slice(-5).join('\n')).to.match(/pie: \d+: /)
    expect(head.length + Number(marker[1]) + tail.length, 'the log was past the limit before the cut').to.be.greaterThan(4 << 20)
  })

  it('a --log-file outside the work folder, past --log-limit: CRIU is stopped and the user\'s file is left whole, as the message says', async () => {
    const holder = await startHolder(['net'])
    const source = checkpoints.plain
    const dir = tempDir('criu-damaged-')
    const work = tempDir('criu-work-')
    const own = join(tempDir('criu-own-log-'), 'my.log')
    cpSync(source.dir, dir)
    truncateSync(join(dir, 'pages-1.img'), 0)
    const r = runCli(['restore', '-D', dir, '-J', `net:${holder.pid}`, '--no-verify-images', '--log-limit', '4', '-W', work, '--log-file', own], {}, 90_000)
    expect(r.code, r.stderr).to.equal(1)
    expect(flat(r.stderr)).to.include('CRIU\'s log grew past 4 MiB')
    expect(flat(r.stderr)).to.include('The log was left whole: it is your --log-file, outside the work folder')
    const log = readFileSync(own, 'latin1')
    expect(log.length, 'whole: past the limit').to.be.greaterThan(4 << 20)
    expect(log).not.to.include('[oclif-plugin-criu:')
    expect(existsSync(`/proc/${source.pid}`), 'the spinning restored task is gone and reaped').to.equal(false)
  })

  it('supervise stops any CRIU run whose log passes the limit (the path restore and checkpoint share)', async () => {
    const dir = tempDir('criu-log-')
    const log = join(dir, 'log')
    // A stand-in for a looping CRIU: writes its log as fast as it can. What is tested is supervise.
    const run = new CriuRun({argv: ['-c', `exec yes looping > ${log}`], criu: '/bin/sh', inheritFds: [], logFile: log, logLimitMib: 2}, process.env)
    const release = supervise(run, undefined, {}, {aftermath: 'the checkpoint is incomplete'})
    const exit = await run.exited
    release()
    expect(exit.signal).to.equal('SIGKILL')
    expect(run.stopped).to.be.instanceOf(FailedError)
    expect(run.stopped!.message).to.match(/^CRIU's log grew past 2 MiB \(\d+ MiB in .*\); CRIU was stopped and the checkpoint is incomplete$/)
    expect(run.stopped!.exitCode).to.equal(1)
  })

  it('supervise cuts a log in the work folder stopped at the limit to its first and last lines, the bytes cut in a marker; one outside stays whole', async () => {
    const dir = tempDir('criu-log-')
    const log = join(dir, 'log')
    // A stand-in whose log can be checked line by line: 1, 2, 3, ... as fast as it can.
    const run = new CriuRun({argv: ['-c', `exec seq 1 1000000000 > ${log}`], criu: '/bin/sh', inheritFds: [], logFile: log, logLimitMib: 2}, process.env)
    const release = supervise(run, undefined, {}, {aftermath: 'the checkpoint is incomplete', workDir: dir})
    await run.exited
    release()
    expect(run.stopped!.message).to.match(/^CRIU's log grew past 2 MiB \(\d+ MiB in .*\); CRIU was stopped and the checkpoint is incomplete\. /)
    expect(run.stopped!.message).to.match(/The log was cut to its first 0\.5 MiB and its last 1 MiB, a marker line between them saying how much was cut out$/)
    const text = readFileSync(log, 'utf8')
    const marker = /\n\[oclif-plugin-criu: (\d+) bytes of CRIU's log cut out here; CRIU was stopped at --log-limit\]\n/.exec(text)!
    expect(marker).not.to.equal(null)
    expect(marker[0]).to.equal(logCutMarker(Number(marker[1])))
    const head = text.slice(0, marker.index).split('\n').map(Number)
    const tail = text.slice(marker.index + marker[0].length).split('\n')
    tail.pop() // the line seq was writing when it was killed, or the empty string after the last line end
    const tailNumbers = tail.map(Number)
    // The head is the log's start, the tail consecutive lines of its end.
    expect(head.slice(0, 3)).to.deep.equal([1, 2, 3])
    for (const [i, n] of head.entries()) expect(n, 'head line').to.equal(i + 1)
    for (const [i, n] of tailNumbers.entries()) expect(n, 'tail line').to.equal(tailNumbers[0] + i)
    expect(text.slice(0, marker.index + 1).length).to.be.at.most(512 * 1024)
    expect(text.length - marker.index - marker[0].length).to.be.at.most(1024 * 1024)
    // The marker's count is exactly the lines between head and tail.
    let between = 0
    for (let n = head.at(-1)! + 1; n < tailNumbers[0]; n++) between += String(n).length + 1
    expect(Number(marker[1])).to.equal(between)
    expect(between, 'most of a log past 2 MiB was cut').to.be.greaterThan(512 * 1024)

    // The same, with the log outside the work folder: whole, and the message says so.
    const outside = join(tempDir('criu-own-'), 'log')
    const run2 = new CriuRun({argv: ['-c', `exec seq 1 1000000000 > ${outside}`], criu: '/bin/sh', inheritFds: [], logFile: outside, logLimitMib: 2}, process.env)
    const release2 = supervise(run2, undefined, {}, {aftermath: 'the checkpoint is incomplete', workDir: dir})
    await run2.exited
    release2()
    expect(run2.stopped!.message).to.match(/\. The log was left whole: it is your --log-file, outside the work folder$/)
    expect(statSync(outside).size).to.be.greaterThan(2 << 20)
    expect(readFileSync(outside, 'utf8')).not.to.include('[oclif-plugin-criu:')
  })

  it('a CRIU that is stuck and silent (held at its pre-resume stage): no --timeout, yet stopped after --stall-timeout; exit 1, nothing left running', async () => {
    const holder = await startHolder(['net'])
    const source = checkpoints.plain
    const hold = tempDir('criu-hold-')
    // CRIU's own hook point: the action script keeps CRIU waiting (at most 60 s) and writing nothing.
    writeFileSync(join(hold, 'action.sh'), '#!/bin/sh\n[ "$CRTOOLS_SCRIPT_ACTION" = pre-resume ] && sleep 60\nexit 0\n', {mode: 0o755})
    writeFileSync(join(hold, 'criu.conf'), `action-script ${join(hold, 'action.sh')}\n`)
    const work = tempDir('criu-work-')
    const started = Date.now()
    const r = runCli(['restore', '-D', source.dir, '-J', `net:${holder.pid}`, '--stall-timeout', '2', '-W', work], {CRIU_CONFIG_FILE: join(hold, 'criu.conf')}, 90_000)
    expect(r.code, r.stderr).to.equal(1)
    expect(r.stderr).to.include('CRIU wrote nothing to its log for 2 s (--stall-timeout); it was stopped and nothing restored is left running')
    expect(Date.now() - started, 'stopped long before the action script gave up').to.be.lessThan(45_000)
    expect(existsSync(`/proc/${source.pid}`), 'the half-restored task is gone and reaped').to.equal(false)
  })

  it('supervise stops a CRIU run whose log stays silent past the stall limit, and not once the run has settled', async () => {
    const log = join(tempDir('criu-log-'), 'log')
    const silent = new CriuRun({argv: ['-c', `echo started > ${log}; exec sleep 30`], criu: '/bin/sh', inheritFds: [], logFile: log, stallSeconds: 1}, process.env)
    const release = supervise(silent, undefined, {})
    const exit = await silent.exited
    release()
    expect(exit.signal).to.equal('SIGKILL')
    expect(silent.stopped!.message).to.equal('CRIU wrote nothing to its log for 1 s (--stall-timeout); it was stopped and nothing restored is left running')

    const settled = new CriuRun({argv: ['-c', `echo started > ${log}; exec sleep 2`], criu: '/bin/sh', inheritFds: [], logFile: log, stallSeconds: 1}, process.env)
    settled.settled()
    const release2 = supervise(settled, undefined, {})
    expect(await settled.exited).to.deep.equal({code: 0, signal: null})
    release2()
    expect(settled.stopped).to.equal(undefined)
  })

  it('mycli checkpoint writes the manifest; checkpoint verify passes it (human and --json, exit 0) and names damage (exit 1); restore --dry-run shows the verdict', async () => {
    const child = spawn('setsid', ['sleep', '100000'], {stdio: 'ignore'})
    const pid = track(child.pid!)
    const exited = new Promise(resolve => {
      child.once('exit', resolve)
    })
    await new Promise(r => {
      setTimeout(r, 200)
    })
    const dir = join(tempDir('criu-ckpt-'), 'ckpt')
    const made = runCli(['checkpoint', String(pid), '-D', dir], {})
    expect(made.code, made.stderr).to.equal(0)
    expect(made.stdout).to.match(new RegExp(`manifest: .*${MANIFEST_FILE} \\(\\d+ files, xxh64\\)`))
    await exited

    const ok = runCli(['checkpoint', 'verify', dir], {})
    expect(ok.code, ok.stderr).to.equal(0)
    expect(ok.stdout).to.match(new RegExp(`files match ${MANIFEST_FILE}`))
    const json = JSON.parse(runCli(['checkpoint', 'verify', dir, '--json'], {}).stdout)
    expect(json).to.include({method: 'manifest', sound: true})

    const holder = await startHolder(['net'])
    const dry = runCli(['restore', '-D', dir, '-J', `net:${holder.pid}`, '--dry-run'], {})
    expect(dry.code, dry.stderr).to.equal(0)
    expect(dry.stdout).to.match(new RegExp(`^Images: \\d+ files match ${MANIFEST_FILE}$`, 'm'))

    damageFile(join(dir, 'pages-1.img'), 'flipped', false)
    const bad = runCli(['checkpoint', 'verify', dir], {})
    expect(bad.code).to.equal(1)
    expect(bad.stdout).to.match(/pages-1\.img: content differs from the manifest/)
    const badJson = runCli(['checkpoint', 'verify', dir, '--json'], {})
    expect(badJson.code).to.equal(1)
    expect(JSON.parse(badJson.stdout)).to.deep.include({damage: [{file: 'pages-1.img', message: JSON.parse(badJson.stdout).damage[0].message}], sound: false})
    const dryBad = runCli(['restore', '-D', dir, '-J', `net:${holder.pid}`, '--dry-run'], {})
    expect(dryBad.code, 'a dry run hashes the pages too').to.equal(2)
    expect(dryBad.stderr).to.include('pages-1.img: content differs from the manifest')

    const plain = runCli(['checkpoint', 'verify', checkpoints.plain.dir], {})
    expect(plain.code, plain.stderr).to.equal(0)
    expect(plain.stdout).to.include('structure sound')
    const notOne = runCli(['checkpoint', 'verify', tempDir('criu-empty-')], {})
    expect(notOne.code).to.equal(2)
    expect(notOne.stderr).to.include('not a CRIU checkpoint (it has no inventory.img)')
  })
})
