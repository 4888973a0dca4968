import {expect} from 'chai'

import {findProblems} from '../../src/lib/checks.js'
import {
  ContainerEntry, containerJoins, ContainerRef, matchContainer, overlapProblems, parseContainerRef, parseCrunStatus,
  parseRuncState, readHostAnswer, ResolvedContainer, StateRoot, stateRoots,
} from '../../src/lib/containers.js'
import {RefusedError} from '../../src/lib/errors.js'
import {JoinNsError, parseJoinNs} from '../../src/lib/join-ns.js'
import {namespaceByName, POD_SHARED} from '../../src/lib/namespaces.js'
import {planNamespaces} from '../../src/lib/plan.js'

const names = (ref: ContainerRef) => ref.types.map(t => t.name).join(',')

function refusal(f: () => unknown): string {
  try {
    f()
  } catch (error) {
    if (error instanceof RefusedError || error instanceof JoinNsError) return error.message
    throw error
  }

  throw new Error('expected a refusal')
}

const RUNC: StateRoot = {format: 'runc', path: '/run/runc', runtime: 'runc'}
const DOCKER: StateRoot = {format: 'runc', path: '/run/docker/runtime-runc/moby', runtime: 'docker'}
const CRUN: StateRoot = {format: 'crun', path: '/run/crun', runtime: 'crun'}

describe('containers (--join-container)', () => {
  describe('--join-container grammar', () => {
    it('joins what a pod shares by default: net, ipc, uts, read from the namespace table', () => {
      expect(POD_SHARED.map(d => d.name)).to.deep.equal(['ipc', 'net', 'uts'])
      expect(names(parseContainerRef('web'))).to.equal('ipc,net,uts')
    })

    const valid: [string, string, string][] = [
      ['web', 'web', 'ipc,net,uts'],
      ['web:net', 'web', 'net'],
      ['web:uts,net', 'web', 'net,uts'],
      ['3f2a9c', '3f2a9c', 'ipc,net,uts'],
      ['my_app-1.2+x:time,user', 'my_app-1.2+x', 'time,user'],
    ]
    for (const [token, id, types] of valid) {
      it(`parses ${token}`, () => {
        const ref = parseContainerRef(token)
        expect([ref.id, names(ref), ref.token]).to.deep.equal([id, types, token])
      })
    }

    const invalid: [string, string][] = [
      ['', '--join-container "": missing container ID (expected ID[:TYPES], e.g. web or web:net,uts)'],
      [':net', '--join-container ":net": missing container ID (expected ID[:TYPES], e.g. web or web:net,uts)'],
      ['a/b', '--join-container "a/b": "a/b" is not a container ID: runtimes allow letters, digits and _ + - . (not first)'],
      ['.x', '--join-container ".x": ".x" is not a container ID: runtimes allow letters, digits and _ + - . (not first)'],
      ['web:pid', '--join-container "web:pid": namespace "pid" is not supported here (expected one of: ipc, mnt, net, time, user, uts)'],
      ['web:netx', '--join-container "web:netx": unknown namespace "netx" (expected one of: ipc, mnt, net, time, user, uts)'],
      ['web:', '--join-container "web:": empty namespace name in "" (expected one of: ipc, mnt, net, time, user, uts)'],
    ]
    for (const [token, message] of invalid) {
      it(`refuses ${JSON.stringify(token)}`, () => {
        expect(refusal(() => parseContainerRef(token))).to.equal(message)
      })
    }
  })

  describe('the runtimes\' state folders', () => {
    it('searches runc, Docker, each containerd namespace, then crun (XDG first when set)', () => {
      const roots = stateRoots({containerdNamespaces: ['k8s.io', 'default'], xdgRuntimeDir: '/run/user/0'})
      expect(roots.map(r => `${r.format} ${r.runtime} ${r.path}`)).to.deep.equal([
        'runc runc /run/runc',
        'runc docker /run/docker/runtime-runc/moby',
        'runc containerd (namespace default) /run/containerd/runc/default',
        'runc containerd (namespace k8s.io) /run/containerd/runc/k8s.io',
        'crun crun /run/user/0/crun',
        'crun crun /run/crun',
      ])
      expect(stateRoots({containerdNamespaces: [], prefix: '/tmp/x'}).map(r => r.path)).to.deep.equal(['/tmp/x/run/runc', '/tmp/x/run/docker/runtime-runc/moby', '/tmp/x/run/crun'])
    })

    const entry: ContainerEntry = {id: 'web', root: RUNC}

    it('reads runc\'s state.json: init_process_pid and init_process_start (a number, or digits as old runc wrote)', () => {
      const r = parseRuncState('{"id":"web","init_process_pid":4242,"init_process_start":61056,"config":{}}', entry)
      expect(r).to.deep.equal({id: 'web', initPid: 4242, initStartTime: 61_056, root: RUNC, stateFile: '/run/runc/web/state.json'})
      expect(parseRuncState('{"init_process_pid":7,"init_process_start":"123"}', entry).initStartTime).to.equal(123)
    })

    it('reads crun\'s status: pid and process-start-time', () => {
      const r = parseCrunStatus('{"pid":99,"process-start-time":263473330,"cgroup-path":"/x","rootfs":"r","bundle":"/b","created":"t"}', {id: 'db', root: CRUN})
      expect(r).to.deep.equal({id: 'db', initPid: 99, initStartTime: 263_473_330, root: CRUN, stateFile: '/run/crun/db/status'})
    })

    const bad: [string, string][] = [
      ['not json', '/run/runc/web/state.json is not the runtime\'s JSON state: '],
      ['[]', '/run/runc/web/state.json is not the runtime\'s JSON state: not an object'],
      ['{"init_process_start":5}', '/run/runc/web/state.json: init_process_pid is "missing", not a PID; the container has no running init'],
      ['{"init_process_pid":0,"init_process_start":5}', '/run/runc/web/state.json: init_process_pid is "0", not a PID'],
      ['{"init_process_pid":12}', '/run/runc/web/state.json: init_process_start is "missing"; without the init\'s start time a reused PID cannot be told from the container\'s init, so it is not joined'],
      ['{"init_process_pid":12,"init_process_start":"soon"}', '/run/runc/web/state.json: init_process_start is "\\"soon\\""'],
    ]
    for (const [text, start] of bad) {
      it(`refuses the state ${text}`, () => {
        expect(refusal(() => parseRuncState(text, entry))).to.satisfy((m: string) => m.startsWith(start))
      })
    }
  })

  describe('matching an ID', () => {
    const entries: ContainerEntry[] = [
      {id: 'web', root: RUNC},
      {id: 'webapp', root: RUNC},
      {id: '3f2a9c11aa', root: DOCKER},
      {id: '3f2b0000bb', root: DOCKER},
      {id: 'db', root: CRUN},
    ]
    const searched = [RUNC, DOCKER, CRUN]
    const match = (id: string) => matchContainer(parseContainerRef(id), entries, searched)

    it('takes an exact ID even when it is the start of another', () => {
      expect(match('web')).to.equal(entries[0])
    })

    it('takes a unique start of an ID, as Docker does', () => {
      expect(match('3f2a')).to.equal(entries[2])
      expect(match('weba')).to.equal(entries[1])
      expect(match('d')).to.equal(entries[4])
    })

    it('refuses an ambiguous start, listing the candidates', () => {
      expect(refusal(() => match('3f2'))).to.equal('--join-container "3f2": "3f2" is the start of 2 container IDs: 3f2a9c11aa (docker), 3f2b0000bb (docker)')
    })

    it('refuses an ID that two runtimes both have', () => {
      const twice = [...entries, {id: 'db', root: RUNC}]
      expect(refusal(() => matchContainer(parseContainerRef('db'), twice, searched))).to.equal('--join-container "db": 2 containers have the ID "db": db (crun), db (runc)')
    })

    it('refuses an unknown ID, saying what was searched and what is there', () => {
      expect(refusal(() => match('cache'))).to.equal('--join-container "cache": no container "cache": searched /run/runc, /run/docker/runtime-runc/moby, /run/crun; containers there: web (runc), webapp (runc), 3f2a9c11aa (docker), 3f2b0000bb (docker), db (crun)')
      expect(refusal(() => matchContainer(parseContainerRef('x'), [], [RUNC], true))).to.equal('--join-container "x": no container "x": the host CLI did not know it, and searched /run/runc; no containers there')
    })
  })

  describe('the host\'s answer and the joins', () => {
    const ref = parseContainerRef('web')

    it('takes no pid and no namespaces as no answer', () => {
      expect(readHostAnswer(undefined, 'p')).to.equal(undefined)
      expect(readHostAnswer({runtime: 'x'}, 'p')).to.equal(undefined)
    })

    it('refuses an answer that is not a PID or a namespace path, naming the plugin', () => {
      expect(refusal(() => readHostAnswer({pid: -1}, 'acme'))).to.equal('the criu:resolve-container hook of acme answered pid "-1", not a PID')
      expect(refusal(() => readHostAnswer({pid: 3, startTime: 'x'}, 'acme'))).to.equal('the criu:resolve-container hook of acme answered startTime "x", not /proc/PID/stat field 22')
      expect(refusal(() => readHostAnswer({namespaces: {pid: '/x'}}, 'acme'))).to.equal('the criu:resolve-container hook of acme answered a namespace of type "pid" (expected one of: ipc, mnt, net, time, user, uts)')
      expect(refusal(() => readHostAnswer({namespaces: {net: 'rel'}}, 'acme'))).to.equal('the criu:resolve-container hook of acme answered net: "rel", not an absolute path')
    })

    it('joins the init by PID and recorded start time', () => {
      const c: ResolvedContainer = {id: 'web', initPid: 42, initStartTime: 900, runtime: 'runc', source: '/run/runc/web/state.json'}
      const joins = containerJoins(ref, c)
      expect(joins.map(j => [j.ns.name, j.target, j.from])).to.deep.equal([
        ['ipc', {kind: 'pid', pid: 42, startTime: 900}, '--join-container "web"'],
        ['net', {kind: 'pid', pid: 42, startTime: 900}, '--join-container "web"'],
        ['uts', {kind: 'pid', pid: 42, startTime: 900}, '--join-container "web"'],
      ])
    })

    it('uses the host\'s namespace files for their types, the PID for the rest; refuses a type neither covers', () => {
      const both: ResolvedContainer = {id: 'web', initPid: 42, namespaces: {net: '/run/netns/web'}, runtime: 'acme', source: 'host CLI (acme)'}
      expect(containerJoins(ref, both).map(j => j.target)).to.deep.equal([{kind: 'pid', pid: 42, startTime: undefined}, {kind: 'path', path: '/run/netns/web'}, {kind: 'pid', pid: 42, startTime: undefined}])
      const files: ResolvedContainer = {id: 'web', namespaces: {net: '/run/netns/web'}, runtime: 'acme', source: 'host CLI (acme)'}
      expect(refusal(() => containerJoins(ref, files))).to.equal('--join-container "web": host CLI (acme) named no ipc namespace and no PID for "web"')
    })

    it('refuses -J and --join-container on the same type, before anything is read', () => {
      expect(overlapProblems(ref, [parseJoinNs('net:1', '/')])).to.deep.equal([
        '--join-container "web" and --join-ns "net:1" both join the net namespace; give one target per namespace type: list the container\'s other types (--join-container web:ipc,uts) or leave out the -J',
      ])
      expect(overlapProblems(parseContainerRef('web:net'), [parseJoinNs('net:1', '/')], [namespaceByName('net')!])).to.deep.equal([
        '--join-container "web:net" and --join-ns "net:1" both join the net namespace; give one target per namespace type: leave out one of them',
        '--join-container "web:net" joins the net namespace and --empty-ns net creates it empty; keep one of them',
      ])
      expect(overlapProblems(parseContainerRef('web:ipc,uts'), [parseJoinNs('net:1', '/')])).to.deep.equal([])
    })

    it('names the container in the checks and the plan of the joins it made', () => {
      const joins = containerJoins(parseContainerRef('web:user'), {id: 'web', initPid: 42, initStartTime: 9, runtime: 'runc', source: 's'})
      expect(findProblems({joinNs: joins}).map(p => p.message)).to.deep.equal([
        '--join-container "web:user" (user:42): CRIU calls joining a user namespace dangerous: the restored tree gets the target\'s uid/gid mappings (a warning only: the restore goes ahead; --allow-user-ns silences it)',
      ])
      const row = planNamespaces({netDevices: [], own: []}, {emptyNs: [], joinNs: joins}).find(r => r.type === 'user')
      expect(row).to.deep.equal({action: 'joined', detail: 'process 42 (--join-container "web:user")', type: 'user'})
    })
  })
})
