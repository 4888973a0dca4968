import {expect} from 'chai'
import fc from 'fast-check'
import {mkdirSync, mkdtempSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {RefusedError} from '../../src/lib/errors.js'
import {
  checkCriuOutputs, FileFacts, folderProblem, Found, kindOf, othersCanWrite, ownerProblem, passageProblem, readSourceProblem, Trust, walkPath,
  writeTargetProblem,
} from '../../src/lib/trust.js'

const ROOT: Trust = {groups: [0], owners: [0]}
const DIR = 0o04_0000
const FILE = 0o10_0000
const LINK = 0o12_0000
const FIFO = 0o01_0000

const f = (mode: number, uid = 0, nlink = 1, gid = 0): FileFacts => ({gid, mode, nlink, uid})

describe('trust (pure rules over lstat data)', () => {
  it('reads the file type from the mode', () => {
    expect([DIR | 0o755, FILE | 0o644, LINK | 0o777, FIFO | 0o644].map(m => kindOf(m))).to.deep.equal(['directory', 'file', 'symlink', 'other'])
  })

  const table: [string, (x: FileFacts, t: Trust) => string | undefined, FileFacts, string | undefined][] = [
    ['others-writable: 0755', othersCanWrite, f(DIR | 0o755), undefined],
    ['others-writable: 0777', othersCanWrite, f(DIR | 0o777), 'other users can write to it (mode 0777)'],
    ['others-writable: 0775, root\'s group', othersCanWrite, f(DIR | 0o775, 0, 2, 0), undefined],
    ['others-writable: 0775, group 100', othersCanWrite, f(DIR | 0o775, 0, 2, 100), 'group 100 can write to it (mode 0775)'],
    ['owner: root', ownerProblem, f(FILE | 0o600), undefined],
    ['owner: nobody', ownerProblem, f(FILE | 0o600, 65_534), 'it is owned by uid 65534, not by root'],
    ['on the way: /tmp (1777, root)', passageProblem, f(DIR | 0o1777), undefined],
    ['on the way: 0777 without sticky bit', passageProblem, f(DIR | 0o777), 'other users can write to it (mode 0777)'],
    ['on the way: sticky but nobody\'s', passageProblem, f(DIR | 0o1777, 65_534), 'it is owned by uid 65534, not by root'],
    ['on the way: a file', passageProblem, f(FILE | 0o644), 'it is not a folder'],
    ['written into: 0700 root', folderProblem, f(DIR | 0o700), undefined],
    ['written into: /tmp (the sticky bit does not help)', folderProblem, f(DIR | 0o1777), 'other users can write to it (mode 1777)'],
    ['written into: nobody\'s 0700', folderProblem, f(DIR | 0o700, 65_534), 'it is owned by uid 65534, not by root'],
    ['written over: a regular file of root', writeTargetProblem, f(FILE | 0o644), undefined],
    ['written over: a symbolic link, even root\'s', writeTargetProblem, f(LINK | 0o777), 'it is a symbolic link, which CRIU (as root) would write through'],
    ['written over: a hard link', writeTargetProblem, f(FILE | 0o644, 0, 2), 'it is a hard link (the file has 2 names), so writing it changes another file'],
    ['written over: a FIFO', writeTargetProblem, f(FIFO | 0o644), 'it is not a regular file'],
    ['written over: nobody\'s file', writeTargetProblem, f(FILE | 0o644, 65_534), 'it is owned by uid 65534, not by root'],
    ['written over: a world-writable file', writeTargetProblem, f(FILE | 0o666), 'other users can write to it (mode 0666)'],
    ['read: root\'s image with two names', readSourceProblem, f(FILE | 0o644, 0, 2), undefined],
    ['read: nobody\'s image', readSourceProblem, f(FILE | 0o644, 65_534), 'it is owned by uid 65534, not by root'],
    ['read: a group-writable image, group 100', readSourceProblem, f(FILE | 0o664, 0, 1, 100), 'group 100 can write to it (mode 0664)'],
  ]
  for (const [name, rule, facts, expected] of table) {
    it(name, () => {
      expect(rule(facts, ROOT)).to.equal(expected)
    })
  }

  it('names every trusted owner: root, and the caller or the user who ran sudo', () => {
    expect(ownerProblem(f(FILE, 7), {groups: [0], owners: [0, 1000]})).to.equal('it is owned by uid 7, not by root or uid 1000')
    expect(ownerProblem(f(FILE, 1000), {groups: [0], owners: [0, 1000]})).to.equal(undefined)
  })

  it('a folder written into is a stricter test than a folder on the way; a file written over, than a file read', () => {
    const facts = fc.record({
      gid: fc.constantFrom(0, 100), mode: fc.integer({max: 0o17_7777, min: 0}), nlink: fc.integer({max: 3, min: 1}), uid: fc.constantFrom(0, 1000, 65_534),
    })
    fc.assert(fc.property(facts, x => {
      if (folderProblem(x, ROOT) === undefined) expect(passageProblem(x, ROOT)).to.equal(undefined)
      if (writeTargetProblem(x, ROOT) === undefined) expect(readSourceProblem(x, ROOT)).to.equal(undefined)
    }))
  })

  describe('walkPath, over a made-up file system', () => {
    const files: Record<string, Found> = {
      '/': {facts: f(DIR | 0o755)},
      '/etc': {facts: f(DIR | 0o755)},
      '/etc/passwd': {facts: f(FILE | 0o644)},
      '/home': {facts: f(DIR | 0o755)},
      '/home/alice': {facts: f(DIR | 0o755, 1000)},
      '/home/alice/ck': {facts: f(DIR | 0o700)},
      '/loop': {facts: f(LINK | 0o777), target: '/loop'},
      '/tmp': {facts: f(DIR | 0o1777)},
      '/tmp/evil': {facts: f(DIR | 0o777, 65_534)},
      '/tmp/evil/ck': {facts: f(DIR | 0o700)},
      '/tmp/link': {facts: f(LINK | 0o777, 65_534), target: '/etc'},
      '/tmp/ok': {facts: f(DIR | 0o700)},
      '/tmp/ok/up': {facts: f(LINK | 0o777), target: '../ok'},
      '/tmp/rootlink': {facts: f(LINK | 0o777), target: 'ok'},
    }
    const look = (path: string) => files[path]

    const cases: [string, string, Trust, {problem?: string; resolved: string; exists: boolean}][] = [
      ['a folder of its own under /tmp', '/tmp/ok', ROOT, {exists: true, resolved: '/tmp/ok'}],
      ['missing parts are for the caller to create', '/tmp/ok/new/deeper', ROOT, {exists: false, resolved: '/tmp/ok/new/deeper'}],
      ['under a folder nobody owns', '/tmp/evil/ck', ROOT, {exists: true, problem: '/tmp/evil: it is owned by uid 65534, not by root', resolved: '/tmp/evil/ck'}],
      ['a link nobody owns, last', '/tmp/link', ROOT, {exists: true, problem: '/tmp/link: it is a symbolic link and it is owned by uid 65534, not by root', resolved: '/tmp/link'}],
      ['a link nobody owns, on the way', '/tmp/link/passwd', ROOT, {exists: true, problem: '/tmp/link: it is a symbolic link and it is owned by uid 65534, not by root', resolved: '/tmp/link/passwd'}],
      ['root\'s relative link is followed', '/tmp/rootlink/up/x', ROOT, {exists: false, resolved: '/tmp/ok/x'}],
      ['.. after a link goes up from where the link led', '/tmp/rootlink/../etc', ROOT, {exists: false, resolved: '/tmp/etc'}],
      ['a user\'s home is not root\'s', '/home/alice/ck', ROOT, {exists: true, problem: '/home/alice: it is owned by uid 1000, not by root', resolved: '/home/alice/ck'}],
      ['unless that user ran sudo', '/home/alice/ck', {groups: [0], owners: [0, 1000]}, {exists: true, resolved: '/home/alice/ck'}],
      ['a loop of links', '/loop/x', ROOT, {exists: true, problem: '/loop: too many levels of symbolic links', resolved: '/loop/x'}],
      ['the root folder', '/', ROOT, {exists: true, resolved: '/'}],
    ]
    for (const [name, path, trust, expected] of cases) {
      it(`${name}: ${path}`, () => {
        const walked = walkPath(path, trust, look)
        expect(walked.problem && `${walked.problem.path}: ${walked.problem.reason}`).to.equal(expected.problem)
        expect(walked.resolved).to.equal(expected.resolved)
        if (!expected.problem) expect(walked.facts !== undefined).to.equal(expected.exists)
      })
    }
  })

  describe('files root writes (checkCriuOutputs)', () => {
    it('a folder given for a file: the hint names a file in it, as that flag would', () => {
      // Not in the temp folder itself: its sticky mode 1777 is refused first.
      const base = mkdtempSync(join(tmpdir(), 'trust-'))
      const dir = join(base, 'out')
      mkdirSync(dir)
      try {
        const refusal = (paths: {logFile?: string; pidfile?: string}) => {
          try {
            checkCriuOutputs(paths, [])
          } catch (error) {
            return error as RefusedError
          }

          throw new Error('not refused')
        }

        expect(refusal({pidfile: dir}).message).to.equal(`--pidfile ${JSON.stringify(dir)}: it is a folder, not a file`)
        expect(refusal({pidfile: dir}).hint).to.equal(`name a file in it, e.g. ${dir}/restored.pid`)
        expect(refusal({logFile: dir}).hint).to.equal(`name a file in it, e.g. ${dir}/criu.log`)
      } finally {
        rmSync(base, {recursive: true})
      }
    })
  })
})
