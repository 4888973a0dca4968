import {expect} from 'chai'

import {findProblems} from '../../src/lib/checks.js'
import {parseJoinNs} from '../../src/lib/join-ns.js'
import {namespaceByName} from '../../src/lib/namespaces.js'
import {parseIdMap, UserJoinFacts, userJoinRefusal} from '../../src/lib/restore.js'

const user = namespaceByName('user')!
const net = namespaceByName('net')!
const specs = [parseJoinNs('net:7', '/'), parseJoinNs('user:9', '/')]
const facts = (u: Partial<UserJoinFacts>): UserJoinFacts[] => [{ns: net}, {ns: user, ...u}]
const map = (text: string) => parseIdMap(text)
const messages = (token: string) => findProblems({allowUserNs: true, joinNs: [parseJoinNs(token, '/')]}).map(p => `${p.severity}: ${p.message}`)

describe('joining a user namespace: what CRIU 4.2.1 can do, judged before it starts (pure)', () => {
  it('reads uid_map/gid_map lines', () => {
    expect(parseIdMap('         0          0 4294967295\n')).to.deep.equal([{count: 4_294_967_295, inside: 0, outside: 0}])
    expect(parseIdMap('0 1000 1\n1 100000 65536\n')).to.deep.equal([{count: 1, inside: 0, outside: 1000}, {count: 65_536, inside: 1, outside: 100_000}])
    expect(parseIdMap('')).to.deep.equal([])
  })

  const cases: [string, Partial<UserJoinFacts>, string | undefined][] = [
    ['identity map, owned by root', {maps: {gid: map('0 0 65536'), uid: map('0 0 65536')}, ownerUid: 0}, undefined],
    ['identity map, owned by uid 1000 (root wrote the map): the maps decide', {maps: {gid: map('0 0 65536'), uid: map('0 0 65536')}, ownerUid: 1000}, undefined],
    ['host root at another inside id still counts as mapped', {maps: {gid: map('5 0 1'), uid: map('5 0 1')}, ownerUid: 1000}, undefined],
    ['an unprivileged --map-root-user namespace',
      {maps: {gid: map('0 65534 1'), uid: map('0 65534 1')}, ownerUid: 65_534},
      '--join-ns "user:9": that user namespace does not map the host\'s uid 0 (its uid_map is "0 65534 1"); CRIU restores the tasks with the credentials of the images (root), which mean another user or none there, so they could not read the checkpoint\'s images or switch user at all'],
    ['owned by root, but the host root not mapped',
      {maps: {gid: map('0 0 65536'), uid: map('0 100000 65536')}, ownerUid: 0},
      '--join-ns "user:9": that user namespace does not map the host\'s uid 0 (its uid_map is "0 100000 65536"); CRIU restores the tasks with the credentials of the images (root), which mean another user or none there, so they could not read the checkpoint\'s images or switch user at all'],
    ['uid mapped, gid not',
      {maps: {gid: map('0 100000 10'), uid: map('0 0 10')}, ownerUid: 0},
      '--join-ns "user:9": that user namespace does not map the host\'s gid 0 (its gid_map is "0 100000 10"); CRIU restores the tasks with the credentials of the images (root), which mean another user or none there, so they could not read the checkpoint\'s images or switch user at all'],
    ['no map written yet',
      {maps: {gid: [], uid: []}, ownerUid: 0},
      '--join-ns "user:9": that user namespace does not map the host\'s uid 0 (its uid_map is "empty"); CRIU restores the tasks with the credentials of the images (root), which mean another user or none there, so they could not read the checkpoint\'s images or switch user at all'],
    ['maps unknown, owned by root', {ownerUid: 0}, undefined],
    ['maps unknown, owned by another user',
      {ownerUid: 1000},
      '--join-ns "user:9": that user namespace is owned by uid 1000, not root, and no process of it is known to read its uid_map from; CRIU restores the tasks with the credentials of the images (root), which mean another user or none there, so they could not read the checkpoint\'s images or switch user at all'],
  ]
  for (const [what, user, expected] of cases) {
    it(`${what}: ${expected === undefined ? 'joined' : 'refused'}`, () => {
      expect(userJoinRefusal(facts(user), specs)).to.equal(expected)
    })
  }

  it('user:PID:0:GID with another GID is a warning that the tasks keep their checkpointed IDs; :0:0 and no IDs say nothing of it', () => {
    expect(messages('user:9:0:1000')).to.deep.equal(['warning: --join-ns "user:9:0:1000": the restored tasks keep the UID and GID they were checkpointed with; GID 1000 is CRIU\'s own only while it restores'])
    expect(messages('user:9:0:0')).to.deep.equal([])
    expect(messages('user:9')).to.deep.equal([])
  })
})
