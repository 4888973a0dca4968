import {expect} from 'chai'

import {unknownMentions} from '../support/hints.js'

describe('the hint checker the bad-input corpus uses', () => {
  it('accepts real flags of the command named, and of the running command otherwise', () => {
    expect(unknownMentions('pass --allow-overwrite, or --no-verify-images', 'restore')).to.deep.equal([])
    expect(unknownMentions('checkpoint again with mycli checkpoint PID -D DIR --external-ns net, then restore with --join-ns', 'restore')).to.deep.equal(['--join-ns (of checkpoint)'])
    expect(unknownMentions('`mycli criu check` shows which works; mycli ns exec --uid 0', 'restore')).to.deep.equal([])
    expect(unknownMentions('see `mycli restore --help`', 'restore'), 'oclif answers --help for every command').to.deep.equal([])
  })

  it('names what does not exist', () => {
    expect(unknownMentions('pass --allow-overwrit', 'restore')).to.deep.equal(['--allow-overwrit (of restore)'])
    expect(unknownMentions('run mycli doctor first', 'restore')).to.deep.equal(['mycli doctor first'])
    expect(unknownMentions('pass --external-ns net', 'restore')).to.deep.equal(['--external-ns (of restore)'])
  })
})
