import {Config, Help} from '@oclif/core'
import {expect} from 'chai'
import {spawnSync} from 'node:child_process'
import {readFileSync} from 'node:fs'
import {join} from 'node:path'

import {BIN, REPO} from '../support/system.js'

/** Every command of the plugin, as oclif's manifest lists it (ids with ':'). */
function commandIds(): string[] {
  return Object.keys(JSON.parse(readFileSync(join(REPO, 'oclif.manifest.json'), 'utf8')).commands).sort()
}

function help(id: string, columns: number): string {
  const r = spawnSync(process.execPath, [BIN, ...id.split(':'), '--help'], {
    encoding: 'utf8',
    env: {...process.env, NO_COLOR: '1', OCLIF_COLUMNS: String(columns)},
  })
  expect(r.status, r.stderr).to.equal(0)
  expect(r.stderr).to.equal('')
  return r.stdout
}

/** The lines of one section (USAGE, FLAGS, ...) of a help text. */
function section(text: string, name: string): string[] {
  const lines = text.split('\n')
  const start = lines.indexOf(name)
  if (start === -1) return []
  const end = lines.findIndex((l, i) => i > start && /^[A-Z][A-Z ]+$/.test(l))
  return lines.slice(start + 1, end === -1 ? undefined : end).filter(Boolean)
}

/** Brackets opened and not closed on one line: a usage line broken inside an option. */
function unbalanced(line: string): boolean {
  let depth = 0
  for (const c of line) {
    if (c === '[') depth++
    if (c === ']') depth--
    if (depth < 0) return true
  }

  return depth !== 0
}

describe('help as a person reads it', () => {
  const ids = commandIds()

  it('covers every command of the plugin', () => {
    expect(ids).to.include.members(['checkpoint', 'ns:exec', 'ns:inspect', 'restore'])
  })

  for (const columns of [80, 160]) {
    for (const id of ids) {
      it(`${id} --help at ${columns} columns: fits, usage breaks between options, no trailing spaces`, () => {
        const text = help(id, columns)
        for (const line of text.split('\n')) {
          expect(line.length, `longer than ${columns}: ${JSON.stringify(line)}`).to.be.at.most(columns)
          expect(line, 'trailing spaces').to.not.match(/ +$/)
        }

        const usage = section(text, 'USAGE')
        expect(usage.length, 'a USAGE section').to.be.greaterThan(0)
        for (const line of usage) expect(unbalanced(line), `usage line broken inside an option: ${JSON.stringify(line)}`).to.equal(false)
      })
    }
  }

  // ns exec joins in its own forked child: cgroup works there (CRIU cannot join it at restore).
  const joinable: Record<string, string[]> = {'ns:exec': ['cgroup', 'ipc', 'mnt', 'net', 'time', 'user', 'uts'], restore: ['ipc', 'mnt', 'net', 'time', 'user', 'uts']}
  for (const id of ['restore', 'ns:exec']) {
    it(`${id}: the joinable types stay a list, one type per line`, () => {
      const lines = help(id, 80).split('\n').map(l => l.trim())
      const at = lines.indexOf('Joinable types:')
      expect(at, 'a "Joinable types:" line of its own').to.be.greaterThan(-1)
      const end = lines.indexOf('', at)
      // A long note wraps onto the next line; every type still starts a line of its own.
      const items = lines.slice(at + 1, end).map(l => /^- (\w+)/.exec(l)?.[1]).filter(Boolean)
      expect(items).to.deep.equal(joinable[id])
    })
  }

  it('ns exec speaks of ns exec only: no restore flags, no restored tree, no CRIU', () => {
    const text = help('ns:exec', 80).replaceAll(/\s+/g, ' ')
    for (const foreign of ['--allow-user-ns', '--allow-overwrite', 'restored tree', 'CRIU switches', 'instead of creating one']) {
      expect(text, foreign).to.not.include(foreign)
    }
  })

  it('restore explains the flags it has: --allow-user-ns is named where a user join is described', () => {
    const text = help('restore', 80).replaceAll(/\s+/g, ' ')
    expect(text).to.include('- user (CRIU calls joining a user namespace dangerous')
    expect(text).to.include('--allow-user-ns')
  })

  // The plugin's help as a host with another name and ':' between topic and command renders it
  // (the host's oclif renders the templates with its own config).
  describe('in a host named hostctl whose topic separator is ":"', () => {
    let config: Config
    let text: (id?: string) => Promise<string>

    before(async () => {
      config = await Config.load(REPO)
      config.bin = 'hostctl'
      config.topicSeparator = ':'
      text = async id => {
        const out: string[] = []
        const help = new (class extends Help {
          protected override log(...args: string[]): void {
            out.push(args.join(' '))
          }
        })(config, {stripAnsi: true})
        await help.showHelp(id ? [id] : [])
        return out.join('\n').replaceAll(/\s+/g, ' ')
      }
    })

    for (const id of [undefined, 'checkpoint', 'restore', 'launch', 'criu:check', 'checkpoint:verify', 'ns:exec', 'ns:inspect']) {
      it(`${id ?? 'the root help'}: every command it names is spelt hostctl TOPIC:COMMAND, never with a space`, async () => {
        const said = await text(id)
        expect(said).not.to.include('mycli')
        // `criu check --feature` and "CRIU's own `criu check`" are CRIU's own command, not the plugin's.
        expect(said).not.to.match(/\b(checkpoint verify|ns exec|ns inspect)\b|(?<!own `)\bcriu check(?! --feature)/)
      })
    }

    it('names checkpoint:verify, criu:check and ns:exec in the host\'s words', async () => {
      expect(await text('checkpoint')).to.include('`hostctl criu:check` shows which work here').and.include('`hostctl checkpoint:verify` check the checkpoint')
      expect(await text('restore')).to.include('`hostctl checkpoint:verify` runs the same checks without restoring')
      expect(await text('launch')).to.include('as `hostctl ns:exec` does')
      expect(await text()).to.include('check a checkpoint for damage (hostctl checkpoint:verify)')
    })
  })
})
