import {expect} from 'chai'
import fc from 'fast-check'

import {countCopied, lazyPagesProblems, planLazyPages, progressBar} from '../../src/lib/lazy-pages.js'
import {planRestore} from '../../src/lib/restore.js'

describe('lazy pages (pure)', () => {
  it('plans the daemon in the restore\'s work dir, with its status on fd 3 and a level-4 log', () => {
    const plan = planLazyPages({criu: '/c/criu', imagesDir: '/ckpt', workDir: '/w'})
    expect(plan.argv).to.deep.equal(['lazy-pages', '--images-dir', '/ckpt', '--work-dir', '/w', '--log-file', '/w/lazy-pages.log', '-v4', '--status-fd', '3'])
    expect(plan.socket).to.equal('/w/lazy-pages.socket')
    const restore = planRestore({detached: true, emptyNs: [], imagesDir: '/ckpt', joinNs: [], lazyPages: true}, {criu: '/c/criu', joins: [], workDir: '/w'})
    expect(restore.argv).to.include('--lazy-pages')
    expect(restore.argv.slice(restore.argv.indexOf('--work-dir'), restore.argv.indexOf('--work-dir') + 2)).to.deep.equal(['--work-dir', '/w'])
  })

  it('sums the copies in the daemon\'s log, keeping an unfinished line for the next read', () => {
    const log = '(01.02) uffd: 5-12: uffd_copy: 0x7f00/4096\n(01.03) pr5-1 Read 7f00 1 pages\n(01.04) uffd: 5-12: uffd_copy: 0x7f10/131072\n(01.05) uffd: 5-12: uffd_co'
    const first = countCopied(log)
    expect(first).to.deep.equal({bytes: 135_168, rest: '(01.05) uffd: 5-12: uffd_co'})
    expect(countCopied(`${first.rest}py: 0x1/8192\n`)).to.deep.equal({bytes: 8192, rest: ''})
  })

  it('counts the same bytes however the log is cut into reads', () => {
    const lines = Array.from({length: 40}, (_, i) => `(0${i}.0) uffd: 9-3: uffd_copy: 0x${(i * 4096).toString(16)}/${4096 * (i + 1)}\n`).join('')
    const total = countCopied(lines).bytes
    fc.assert(fc.property(fc.array(fc.nat(lines.length), {maxLength: 12}), cuts => {
      let rest = ''
      let bytes = 0
      let at = 0
      for (const cut of [...cuts.sort((a, b) => a - b), lines.length]) {
        const counted = countCopied(rest + lines.slice(at, cut))
        bytes += counted.bytes
        rest = counted.rest
        at = Math.max(at, cut)
      }

      return bytes === total
    }))
  })

  it('draws the progress bar from bytes arrived of the total', () => {
    expect(progressBar(0, 64 << 20, 10)).to.equal('[..........]   0%  0.0 of 64.0 MiB')
    expect(progressBar(16 << 20, 64 << 20, 10)).to.equal('[###.......]  25%  16.0 of 64.0 MiB')
    expect(progressBar(70 << 20, 64 << 20, 10)).to.equal('[##########] 100%  64.0 of 64.0 MiB')
  })

  it('refuses --no-wait-pages without --lazy-pages, and --lazy-pages with --no-restore-detached', () => {
    expect(lazyPagesProblems({detached: true, waitPages: true})).to.deep.equal([])
    expect(lazyPagesProblems({detached: true, lazyPages: true, waitPages: false})).to.deep.equal([])
    expect(lazyPagesProblems({detached: true, waitPages: false})[0]).to.match(/^--no-wait-pages: only with --lazy-pages/)
    expect(lazyPagesProblems({detached: false, lazyPages: true})[0]).to.match(/^--lazy-pages with --no-restore-detached: not supported/)
  })
})
