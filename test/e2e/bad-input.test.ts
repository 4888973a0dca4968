import {expect} from 'chai'
import {execFileSync, spawnSync} from 'node:child_process'
import {
  chmodSync, mkdirSync, readFileSync, symlinkSync, writeFileSync,
} from 'node:fs'
import {createServer, Server} from 'node:net'
import {join} from 'node:path'

import {Checkpoint, checkpoint, folderDigest} from '../support/checkpoint.js'
import {unknownMentions} from '../support/hints.js'
import {alive, BIN, cleanup, criuPath, Holder, requireRoot, startHolder, tempDir, flat} from '../support/system.js'

interface BadInput {
  args: string[]
  exit: number
  message: string
}

const CORPUS: BadInput[] = JSON.parse(readFileSync(join(__dirname, '..', '..', '..', 'test', 'fixtures', 'bad-input.json'), 'utf8'))

/** bash $'...' quoting; a lone surrogate \uDCxx stands for the raw byte xx (not UTF-8). */
function bashQuote(arg: string): string {
  let out = "$'"
  for (const ch of arg) {
    const code = ch.codePointAt(0)!
    if (code >= 0xDC_80 && code <= 0xDC_FF) out += `\\x${(code - 0xDC_00).toString(16)}`
    else if (ch === "'" || ch === '\\') out += `\\${ch}`
    else if (code < 0x20) out += `\\x${code.toString(16).padStart(2, '0')}`
    else out += ch
  }

  return `${out}'`
}

describe('bad input is refused cleanly (test/fixtures/bad-input.json)', function () {
  this.timeout(600_000)
  let ckpt: Checkpoint
  let holder: Holder
  let server: Server
  let digest: string
  const places: Record<string, string> = {}
  let hints = 0
  let criuLog: string

  before(async () => {
    requireRoot()
    ckpt = await checkpoint()
    holder = await startHolder(['net', 'uts', 'ipc'])
    const dir = tempDir('bad-input-')
    const file = join(dir, 'regular-file')
    writeFileSync(file, 'not a namespace')
    const sock = join(dir, 'socket')
    server = createServer()
    await new Promise<void>(resolve => {
      server.listen(sock, resolve)
    })
    const fifo = join(dir, 'fifo')
    execFileSync('mkfifo', [fifo])
    mkdirSync(join(dir, 'empty'))
    mkdirSync(join(dir, 'notckpt'))
    writeFileSync(join(dir, 'notckpt', 'inventory.img'), Buffer.from('this is no CRIU image'))
    mkdirSync(join(dir, 'invdir', 'inventory.img'), {recursive: true})
    // No checkpoint, and a link out of the folder: what a folder like /etc looks like.
    mkdirSync(join(dir, 'linkout'))
    symlinkSync('/etc/hostname', join(dir, 'linkout', 'hostname'))
    // A checkpoint folder anyone can write to, as /tmp is (it has an inventory.img: a folder
    // without one is told first that it is no checkpoint).
    mkdirSync(join(dir, 'open'))
    writeFileSync(join(dir, 'open', 'inventory.img'), '')
    chmodSync(join(dir, 'open'), 0o1777)
    const oldcriu = join(dir, 'old-criu')
    writeFileSync(oldcriu, '#!/bin/sh\necho "Version: 3.11"\n')
    chmodSync(oldcriu, 0o755)
    // Every CRIU the commands start goes through this wrapper, which records it.
    criuLog = join(dir, 'criu-calls.log')
    const wrapper = join(dir, 'criu-wrapper')
    writeFileSync(wrapper, `#!/bin/sh\necho "$@" >> ${criuLog}\nexec ${criuPath()} "$@"\n`)
    chmodSync(wrapper, 0o755)
    Object.assign(places, {
      ckpt: ckpt.dir,
      cwd: process.cwd(),
      deadpid: String(spawnSync('true').pid),
      dir,
      emptydir: join(dir, 'empty'),
      fifo,
      file,
      holder: String(holder.pid),
      inventorydir: join(dir, 'invdir'),
      linkout: join(dir, 'linkout'),
      notckpt: join(dir, 'notckpt'),
      opendir: join(dir, 'open'),
      oldcriu,
      sock,
      wrapper,
    })
    digest = folderDigest(ckpt.dir)
  })

  after(async () => {
    server?.close()
    await cleanup()
  })

  it('has at least 80 command lines', () => {
    expect(CORPUS.length).to.be.at.least(80)
  })

  const fill = (text: string) => text.replaceAll(/{(\w+)}/g, (_, k: string) => places[k] ?? `{${k}}`)

  /** `restore ARGS` through bash, as a person would type it; every CRIU it starts is recorded. */
  const restore = (args: string[]) => {
    writeFileSync(criuLog, '')
    const argv = ['restore', ...args]
    return spawnSync('bash', ['-c', `exec ${bashQuote(process.execPath)} ${bashQuote(BIN)} ${argv.map(a => bashQuote(a)).join(' ')}`], {
      encoding: 'utf8',
      env: {...process.env, CRIU_PATH: places.wrapper},
      timeout: 60_000,
    })
  }

  const nothingHappened = () => {
    expect(readFileSync(criuLog, 'utf8'), 'no CRIU process was started').to.equal('')
    expect(folderDigest(ckpt.dir), 'the checkpoint is untouched').to.equal(digest)
    expect(alive(ckpt.pid), 'nothing was restored').to.equal(false)
  }

  for (const [i, bad] of CORPUS.entries()) {
    const shown = bad.args.join(' ').replaceAll('\n', String.raw`\n`)
    const title = shown.length > 90 ? `${shown.slice(0, 90)}...` : shown
    it(`#${i + 1} exit ${bad.exit}: restore ${title}`, () => {
      const r = restore(bad.args.map(a => fill(a)))
      const err = flat(r.stderr)
      expect(r.status, err).to.equal(bad.exit)
      expect(err).to.include(fill(bad.message))
      expect(r.stderr.match(/Error:/g), 'exactly one error message').to.have.length(1)
      expect(r.stderr, 'no stack trace').not.to.match(/\n\s+at .+:\d+:\d+/)
      expect(err).not.to.match(/undefined|\[object Object\]/)
      expect(r.stdout, 'nothing on stdout').to.equal('')
      nothingHappened()
      const hint = err.split('Hint: ')[1]
      if (hint !== undefined) {
        hints++
        expect(unknownMentions(hint, 'restore'), `the hint names only real flags and commands: ${hint}`).to.deep.equal([])
      }
    })

    // The same line with --json (before any `--`): the one JSON contract (README "JSON output").
    it(`#${i + 1} --json, exit ${bad.exit}: one JSON object on stdout, nothing on stderr`, () => {
      const r = restore([...bad.args.map(a => fill(a)), '--json'])
      expect(r.stderr, 'nothing on stderr').to.equal('')
      expect(r.status, r.stdout).to.equal(bad.exit)
      const out = JSON.parse(r.stdout)
      expect(Object.keys(out)).to.deep.equal(['error'])
      expect(out.error.exitCode).to.equal(bad.exit)
      expect(flat(out.error.message), 'names the same flag and token').to.include(fill(bad.message))
      expect(Object.keys(out.error).sort()).to.include.members(['exitCode', 'message'])
      for (const key of Object.keys(out.error)) expect(['exitCode', 'hint', 'logFile', 'message', 'ran']).to.include(key)
      expect(r.stdout).not.to.match(/undefined|\[object Object\]/)
      expect(r.stdout, 'never coloured').not.to.include('\u001B[')
      nothingHappened()
    })
  }

  it('the corpus checked hints (each names only the plugin\'s real flags and commands)', () => {
    expect(hints).to.be.at.least(10)
  })
})
