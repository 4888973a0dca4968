import {expect} from 'chai'
import fc from 'fast-check'

import {
  formatJoinNs, ID_MAX, joinLabel, JoinNsError, JoinNsSpec, parseJoinNs, PID_MAX,
} from '../../src/lib/join-ns.js'
import {JOINABLE, namespaceByName} from '../../src/lib/namespaces.js'

const CWD = '/work/here'

/** A compact view of a spec for the table: `net pid 123`, `user path /x uid 1 gid 2`. */
function view(spec: JoinNsSpec): string {
  let s = `${spec.ns.name} ${spec.target.kind} ${spec.target.kind === 'pid' ? spec.target.pid : spec.target.path}`
  if (spec.uid !== undefined) s += ` uid ${spec.uid}`
  if (spec.gid !== undefined) s += ` gid ${spec.gid}`
  return s
}

const TYPES = 'ipc, mnt, net, time, user, uts'
const pidReason = (text: string) =>
  `PID ${JSON.stringify(text)} is not a whole number from 1 to ${PID_MAX} (to name a file whose name is a number, write ./${text.trim()})`

// [input, expected view] for valid values; [input, null, exact reason] for invalid ones.
const VALID: [string, string][] = [
  ['net:1', 'net pid 1'],
  ['net:1234', 'net pid 1234'],
  ['net:65536', 'net pid 65536'],
  ['net:4194304', 'net pid 4194304'],
  ['net:0123', 'net pid 123'],
  ['uts:99999', 'uts pid 99999'],
  ['ipc:42', 'ipc pid 42'],
  ['time:7', 'time pid 7'],
  ['mnt:8', 'mnt pid 8'],
  ['user:9', 'user pid 9'],
  ['net:/proc/123/ns/net', 'net path /proc/123/ns/net'],
  ['uts:/run/netns/blue', 'uts path /run/netns/blue'],
  ['net:/run/netns/blue', 'net path /run/netns/blue'],
  ['net:blue', 'net path /work/here/blue'],
  ['net:./123', 'net path /work/here/123'],
  ['net:../x/./y/', 'net path /work/x/y'],
  ['net:/a:b', 'net path /a:b'],
  ['net:/a,b', 'net path /a,b'],
  ['net:/with space', 'net path /with space'],
  ['net:/ns:1000:1000', 'net path /ns:1000:1000'],
  ['ipc:/proc/1/fd/3', 'ipc path /proc/1/fd/3'],
  ['net:-', 'net path /work/here/-'],
  ['net:/ünïcode', 'net path /ünïcode'],
  ['user:123:1000:1000', 'user pid 123 uid 1000 gid 1000'],
  ['user:123,1000,1000', 'user pid 123 uid 1000 gid 1000'],
  ['user:123:1000', 'user pid 123 uid 1000'],
  ['user:123,0', 'user pid 123 uid 0'],
  ['user:123:0:0', 'user pid 123 uid 0 gid 0'],
  ['user:123:65536:70000', 'user pid 123 uid 65536 gid 70000'],
  [`user:123:${ID_MAX}:${ID_MAX}`, `user pid 123 uid ${ID_MAX} gid ${ID_MAX}`],
  ['user:/proc/5/ns/user:1000:1000', 'user path /proc/5/ns/user uid 1000 gid 1000'],
  ['user:/proc/5/ns/user,1,2', 'user path /proc/5/ns/user uid 1 gid 2'],
  ['user:rel/user', 'user path /work/here/rel/user'],
  ['user:100000', 'user pid 100000'],
]

const INVALID: [string, string][] = [
  ['', 'missing ":" between namespace type and target (expected NS:PID|NS_FILE[:UID[:GID]], e.g. net:1234)'],
  ['net', 'missing ":" between namespace type and target (expected NS:PID|NS_FILE[:UID[:GID]], e.g. net:1234)'],
  ['1234', 'missing ":" between namespace type and target (expected NS:PID|NS_FILE[:UID[:GID]], e.g. net:1234)'],
  [':123', `missing namespace type before ":" (expected one of: ${TYPES})`],
  ['netx:123', `unknown namespace "netx" (expected one of: ${TYPES})`],
  ['NET:123', `unknown namespace "NET" (expected one of: ${TYPES})`],
  [' net:123', `unknown namespace " net" (expected one of: ${TYPES})`],
  ['network:1', `unknown namespace "network" (expected one of: ${TYPES})`],
  ['pid:123', 'the pid namespace cannot be joined at restore: ' + namespaceByName('pid')!.note],
  ['cgroup:123', 'the cgroup namespace cannot be joined at restore: ' + namespaceByName('cgroup')!.note],
  ['net:', 'missing target (expected a PID or a namespace file: NS:PID|NS_FILE[:UID[:GID]])'],
  ['user:', 'missing target (expected a PID or a namespace file: NS:PID|NS_FILE[:UID[:GID]])'],
  ['user::1000', 'missing target (expected a PID or a namespace file: NS:PID|NS_FILE[:UID[:GID]])'],
  ['net:0', pidReason('0')],
  ['net:00', pidReason('00')],
  ['net:-1', pidReason('-1')],
  ['net:+5', pidReason('+5')],
  ['net:4194305', pidReason('4194305')],
  ['net:99999999999999999999', pidReason('99999999999999999999')],
  ['net: 123', pidReason(' 123')],
  ['net:123 ', pidReason('123 ')],
  ['user:0', pidReason('0')],
  ['net:123:1000', 'UID/GID options are accepted only for user (expected net:PID or net:NS_FILE)'],
  ['uts:123,1000,1000', 'UID/GID options are accepted only for user (expected uts:PID or uts:NS_FILE)'],
  ['ipc:5:', 'UID/GID options are accepted only for user (expected ipc:PID or ipc:NS_FILE)'],
  ['net:/a\nb', 'the target contains a control character (newline, tab, ...)'],
  ['net:/a\tb', 'the target contains a control character (newline, tab, ...)'],
  ['user:123::5', 'empty UID (leave out UID and GID, or give numbers: user:PID:1000:1000)'],
  ['user:123:', 'empty UID (leave out UID and GID, or give numbers: user:PID:1000:1000)'],
  ['user:123,', 'empty UID (leave out UID and GID, or give numbers: user:PID:1000:1000)'],
  ['user:123:5:', 'empty GID (leave out UID and GID, or give numbers: user:PID:1000:1000)'],
  ['user:123,,5', 'empty UID (leave out UID and GID, or give numbers: user:PID:1000:1000)'],
  ['user:123:abc', 'UID "abc" is not a whole number from 0 to 4294967294'],
  ['user:123:-1', 'UID "-1" is not a whole number from 0 to 4294967294'],
  ['user:123:4294967295', 'UID "4294967295" is not a whole number from 0 to 4294967294'],
  ['user:123:1:4294967295', 'GID "4294967295" is not a whole number from 0 to 4294967294'],
  ['user:123:1: 2', 'GID " 2" is not a whole number from 0 to 4294967294'],
  ['user:123:1.5', 'UID "1.5" is not a whole number from 0 to 4294967294'],
  ['user:123:1:2:3', 'expected user:PID|NS_FILE[:UID[:GID]] with one kind of separator, e.g. user:1234:1000:1000'],
  ['user:123:1,2', 'expected user:PID|NS_FILE[:UID[:GID]] with one kind of separator, e.g. user:1234:1000:1000'],
  ['user:123,1:2', 'expected user:PID|NS_FILE[:UID[:GID]] with one kind of separator, e.g. user:1234:1000:1000'],
]

describe('--join-ns grammar', () => {
  it('has a table of at least 60 inputs', () => {
    expect(VALID.length + INVALID.length).to.be.at.least(60)
  })

  for (const [input, expected] of VALID) {
    it(`parses ${JSON.stringify(input)}`, () => {
      expect(view(parseJoinNs(input, CWD))).to.equal(expected)
    })
  }

  for (const [input, reason] of INVALID) {
    it(`refuses ${JSON.stringify(input)}`, () => {
      let error: unknown
      try {
        parseJoinNs(input, CWD)
      } catch (error_) {
        error = error_
      }

      expect(error).to.be.instanceOf(JoinNsError)
      const e = error as JoinNsError
      expect(e.reason).to.equal(reason)
      expect(e.userMessage).to.equal(`--join-ns ${JSON.stringify(input)}: ${reason}`)
      expect(e.userMessage).not.to.match(/undefined|\n\s+at /)
    })
  }

  it('formats the canonical form', () => {
    expect(formatJoinNs(parseJoinNs('user:5,1,2', CWD))).to.equal('user:5:1:2')
    expect(formatJoinNs(parseJoinNs('net:rel', CWD))).to.equal('net:/work/here/rel')
  })

  it('names a join in messages as it was typed; the canonical form is only for CRIU and --json', () => {
    expect(joinLabel(parseJoinNs('net:rel', CWD))).to.equal('--join-ns "net:rel"')
    expect(joinLabel(parseJoinNs('user:5,1,2', CWD))).to.equal('--join-ns "user:5,1,2"')
    const {given, ...built} = parseJoinNs('net:7', CWD)
    expect(given).to.equal('net:7')
    expect(joinLabel(built)).to.equal('--join-ns "net:7"')
  })

  describe('properties', () => {
    const pathSegment = fc.string({maxLength: 12, minLength: 1, unit: 'grapheme'}).filter(s => !/[/\p{Cc}]/u.test(s) && s !== '.' && s !== '..')
    const absPath = (noSeparators: boolean) =>
      fc.array(pathSegment.filter(s => !noSeparators || !/[:,]/.test(s)), {maxLength: 4, minLength: 1}).map(parts => `/${parts.join('/')}`)
    const target = (noSeparators: boolean) =>
      fc.oneof(
        fc.integer({max: PID_MAX, min: 1}).map(pid => ({kind: 'pid' as const, pid})),
        absPath(noSeparators).map(path => ({kind: 'path' as const, path})),
      )
    const id = fc.integer({max: ID_MAX, min: 0})
    const spec: fc.Arbitrary<JoinNsSpec> = fc.oneof(
      fc
      .tuple(fc.constantFrom(...JOINABLE.filter(d => d.name !== 'user')), target(false))
      .map(([ns, t]) => ({ns, target: t})),
      fc.tuple(target(true), fc.option(fc.tuple(id, fc.option(id, {nil: undefined})), {nil: undefined})).map(([t, ids]) => {
        const user = namespaceByName('user')!
        if (!ids) return {ns: user, target: t}
        return ids[1] === undefined
          ? {ns: user, target: t, uid: ids[0]}
          : {
            gid: ids[1], ns: user, target: t, uid: ids[0],
          }
      }),
    )

    it('round-trips: parse(format(x)) equals x and format(parse(s)) equals s for canonical s', () => {
      fc.assert(
        fc.property(spec, s => {
          const text = formatJoinNs(s)
          const back = parseJoinNs(text, CWD)
          expect(back).to.deep.equal({...s, given: text})
          expect(formatJoinNs(back)).to.equal(text)
        }),
        {numRuns: 2000},
      )
    })

    it('throws nothing but JoinNsError for any input of up to 200 characters', () => {
      const alphabet = fc.constantFrom(...'netusripcmtgo:,/.0123456789 -+\n\t\\"\'ü')
      fc.assert(
        fc.property(fc.oneof(fc.string({maxLength: 200}), fc.string({maxLength: 200, unit: alphabet}), fc.string({maxLength: 200, unit: 'binary'})), input => {
          try {
            parseJoinNs(input, CWD)
          } catch (error) {
            if (!(error instanceof JoinNsError)) throw error
            expect(error.userMessage.startsWith('--join-ns ')).to.equal(true)
          }
        }),
        {numRuns: 5000},
      )
    })
  })
})
