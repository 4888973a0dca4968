import {expect} from 'chai'

import {holderEntry, plainTable, words, wrap} from '../../src/lib/screen.js'

describe('wrapping text for the terminal', () => {
  it('breaks between words only, and never inside a command in backquotes (it must be copied whole)', () => {
    const command = '`CRIU_PROVISION_DIR=/opt/criu bash /home/user/.local/share/hostctl/node_modules/oclif-plugin-criu/scripts/provision-criu.sh`'
    const text = `get CRIU 4.2.1 into a folder of its own with ${command} and pass it with --criu-path`
    const lines = wrap(text, 80).split('\n')
    expect(lines).to.include(command)
    expect(lines.filter(l => l !== command).every(l => l.length <= 80)).to.equal(true)
    expect(lines.join(' ')).to.equal(text)
  })

  it('splits at single spaces as before outside backquotes', () => {
    expect(words('a b  `c d` e')).to.deep.equal(['a', 'b', '', '`c d`', 'e'])
  })

  describe('a holder in a narrow processes column (ns inspect --holders)', () => {
    it('keeps the PID whole and cuts the name instead', () => {
      expect(holderEntry({comm: 'bash', pid: 1143}, 19)).to.equal('bash(1143)')
      expect(holderEntry({comm: 'memfd:sealed-91', pid: 1143}, 19)).to.equal('memfd:sealed…(1143)')
      expect(holderEntry({comm: 'memfd:sealed-91', pid: 1143}, 19)).to.have.length(19)
      expect(holderEntry({comm: 'abcdefghijklmno', pid: 4_194_304}, 5)).to.equal('a…(4194304)')
    })
  })

  describe('tables in a narrow terminal', () => {
    it('never cut a word: a column is at least as wide as its longest word, colour codes taking no room', () => {
      const lines = plainTable([['net', 'joined', 'oclif-plugin-criu-net-4026532455 key'], ['uts', '\u001B[33mdiffers\u001B[39m', 'x']], [3, 4, 10])
      expect(lines.join('\n')).to.include('oclif-plugin-criu-net-4026532455')
      expect(lines.join('\n')).not.to.include('…')
      expect(lines.at(-1)!.split(/\s+/)).to.deep.equal(['uts', '\u001B[33mdiffers\u001B[39m', 'x'])
    })
  })
})
