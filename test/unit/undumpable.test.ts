import {expect} from 'chai'
import fc from 'fast-check'

import {
  anonInodeMappings, fdinfoInode, findUndumpable, ioUringPolicy, mapsPathname, ProcessObjects, undumpableRefusal,
} from '../../src/lib/undumpable.js'

// Lines as /proc/PID/maps shows them on Linux 6.18 for a Node.js 24 process.
const NODE24_MAPS = [
  '55d5c8a00000-55d5cc7d2000 r-xp 00000000 08:01 1312                       /opt/node/bin/node',
  '7f3a10000000-7f3a10021000 rw-p 00000000 00:00 0 ',
  '7f3a1c0f8000-7f3a1c0fa000 rw-s 00000000 00:10 94214                      anon_inode:[io_uring]',
  '7f3a1c0fa000-7f3a1c0fc000 rw-s 10000000 00:10 94214                      anon_inode:[io_uring]',
  '7f3a1c0fc000-7f3a1c0fd000 rw-s 00000000 00:10 94215                      anon_inode:[io_uring]',
  '7f3a1d000000-7f3a1d001000 r--s 00000000 00:10 1038                       anon_inode:[perf_event]',
  '7f3a1e000000-7f3a1e001000 rw-s 00000000 00:01 1287                       /memfd:a name with spaces (deleted)',
  '7ffd84e7b000-7ffd84e9c000 rw-p 00000000 00:00 0                          [stack]',
].join('\n')

const proc = (over: Partial<ProcessObjects>): ProcessObjects => ({comm: 'MainThread', exe: '/opt/node/bin/node', fds: [], maps: '', pid: 42, ...over})

describe('undumpable objects (pure)', () => {
  it('reads the pathname column, spaces and all', () => {
    expect(mapsPathname('7f3a1e000000-7f3a1e001000 rw-s 00000000 00:01 1287   /memfd:a name with spaces (deleted)')).to.equal('/memfd:a name with spaces (deleted)')
    expect(mapsPathname('7f3a10000000-7f3a10021000 rw-p 00000000 00:00 0 ')).to.equal('')
    expect(mapsPathname('not a maps line')).to.equal('')
  })

  it('counts anonymous-inode mappings and their inodes per kind', () => {
    expect(Object.fromEntries([...anonInodeMappings(NODE24_MAPS)].map(([k, v]) => [k, {inodes: [...v.inodes], mappings: v.mappings}]))).to.deep.equal({
      '[io_uring]': {inodes: [94_214, 94_215], mappings: 3},
      '[perf_event]': {inodes: [1038], mappings: 1},
    })
  })

  it('reads the inode from fdinfo text', () => {
    expect(fdinfoInode('pos:\t0\nflags:\t02000002\nmnt_id:\t17\nino:\t94214\nSqMask:\t0x7\n')).to.equal(94_214)
    expect(fdinfoInode('pos:\t0\n')).to.equal(undefined)
  })

  it('reports every kind CRIU refuses once, with its fds and mappings; lets the kinds CRIU dumps through', () => {
    const fds = [
      {fd: 0, link: '/dev/null'},
      {fd: 3, link: 'anon_inode:[eventpoll]'},
      {fd: 4, link: 'anon_inode:[eventfd]'},
      {fd: 17, ino: 94_214, link: 'anon_inode:[io_uring]'},
      {fd: 12, ino: 94_215, link: 'anon_inode:[io_uring]'},
      {fd: 5, link: 'anon_inode:[pidfd]'},
      {fd: 6, link: 'anon_inode:inotify'},
      {fd: 7, link: 'anon_inode:[timerfd]'},
      {fd: 8, link: 'anon_inode:[signalfd]'},
      {fd: 9, link: 'anon_inode:[fanotify]'},
      {fd: 10, link: 'anon_inode:bpf-map'},
      {fd: 11, link: 'anon_inode:[userfaultfd]'},
      {fd: 13, link: 'socket:[1234]'},
      {fd: 14, link: 'pipe:[99]'},
    ]
    const found = findUndumpable(proc({fds, maps: NODE24_MAPS}))
    expect(found.map(o => [o.kind, o.fds, o.mappings, o.count, o.what])).to.deep.equal([
      ['[io_uring]', [12, 17], 3, 2, '2 io_uring rings'],
      ['[perf_event]', [], 1, 1, 'a perf event'],
      ['[userfaultfd]', [11], 0, 1, 'a userfaultfd'],
    ])
    expect(found[0].program).to.equal('node')
    expect(found[0].likelyMadeBy).to.include('libuv, which Node.js 22 and newer')
  })

  it('a ring held by two fds (a dup) is one ring', () => {
    const fds = [{fd: 3, ino: 7, link: 'anon_inode:[io_uring]'}, {fd: 4, ino: 7, link: 'anon_inode:[io_uring]'}]
    expect(findUndumpable(proc({fds}))[0]).to.include({count: 1, what: 'an io_uring ring'})
  })

  it('names libuv in Node.js only for a Node.js process', () => {
    const ring = {fds: [{fd: 3, link: 'anon_inode:[io_uring]'}]}
    expect(findUndumpable(proc({...ring, comm: 'node', exe: undefined}))[0].likelyMadeBy).to.match(/^libuv, which Node/)
    expect(findUndumpable(proc({...ring, comm: 'qemu', exe: '/usr/bin/qemu-system-x86_64'}))[0].likelyMadeBy).to.equal('a library that uses io_uring (libuv in Node.js 22 and newer, liburing)')
  })

  it('finds nothing in a process whose links and maps name only what CRIU dumps (property)', () => {
    const dumpable = fc.constantFrom('anon_inode:[eventfd]', 'anon_inode:[eventpoll]', 'anon_inode:inotify', 'anon_inode:[timerfd]', 'anon_inode:[signalfd]', 'anon_inode:[pidfd]', 'anon_inode:[fanotify]', 'anon_inode:bpf-map', '/dev/null', 'socket:[1]', 'pipe:[2]', '/memfd:x (deleted)')
    fc.assert(fc.property(fc.array(dumpable), links => {
      const fds = links.map((link, fd) => ({fd, link}))
      const maps = links.filter(l => l.startsWith('/')).map((l, i) => `7f00000${i}000-7f00000${i}fff rw-s 00000000 00:01 7 ${l}`).join('\n')
      expect(findUndumpable(proc({fds, maps}))).to.deep.equal([])
    }))
  })

  it('the refusal: one line per object, the hint names the launch command and the sysctl', () => {
    const objects = findUndumpable(proc({fds: [{fd: 19, ino: 94_214, link: 'anon_inode:[io_uring]'}], maps: NODE24_MAPS, pid: 4321}))
    const refusal = undumpableRefusal(objects, 'heroku launch')!
    expect(refusal.exitCode).to.equal(2)
    expect(refusal.message.split('\n')).to.deep.equal([
      'CRIU cannot checkpoint this process tree: it holds kernel objects CRIU cannot dump (nothing was frozen; it runs on untouched):',
      '  process 4321 (node) holds 2 io_uring rings (fd 19; 3 mappings), likely made by libuv, which Node.js 22 and newer set up at start-up for file and network I/O',
      '  process 4321 (node) holds a perf event (1 mapping), likely made by a profiler or performance counter library',
    ])
    expect(refusal.hint).to.include('`heroku launch -- COMMAND`')
    expect(refusal.hint).to.include('`sysctl kernel.io_uring_disabled=2`')
    expect(undumpableRefusal([], 'x')).to.equal(undefined)
    const other = undumpableRefusal(findUndumpable(proc({fds: [{fd: 3, link: 'anon_inode:[userfaultfd]'}]})), 'x')!
    expect(other.hint).not.to.include('io_uring')
  })

  it('kernel.io_uring_disabled: what each value means for checkpointing', () => {
    const table: [string | undefined, boolean | undefined, number | undefined, string][] = [
      ['0\n', true, 0, 'kernel.io_uring_disabled = 0: programs started now may make io_uring rings'],
      ['1\n', true, 1, 'kernel.io_uring_disabled = 1 (only root and kernel.io_uring_group may use io_uring)'],
      ['2\n', false, 2, 'kernel.io_uring_disabled = 2: io_uring is off'],
      [undefined, true, undefined, 'kernel.io_uring_disabled: not present (kernel before 6.6)'],
      ['', undefined, undefined, 'kernel.io_uring_disabled = "": not a value this plugin knows'],
      ['7', undefined, undefined, 'kernel.io_uring_disabled = "7": not a value this plugin knows'],
    ]
    for (const [text, ringsPossible, value, summary] of table) {
      const p = ioUringPolicy(text)
      expect({ringsPossible: p.ringsPossible, value: p.value}, String(text)).to.deep.equal({ringsPossible, value})
      expect(p.summary, String(text)).to.include(summary)
    }
  })
})
