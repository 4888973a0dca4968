/**
 * `--join-container ID[:TYPES]`: a running container's namespaces, found through the host CLI
 * (a custom oclif hook) or the container runtimes' own state folders, never their CLIs.
 *
 * Pure: parseContainerRef, stateRoots, parseRuncState, parseCrunStatus, matchContainer,
 * readHostAnswer, containerJoins. Effects: listContainers/readRecord (the folders) and
 * resolveContainer (asks the host, then the folders). The joins come out as JoinNsSpecs with
 * the init's PID and recorded start time, for the one pinning path (native.ts pinJoins).
 */
import type {Config} from '@oclif/core'

import {readdirSync, readFileSync, statSync} from 'node:fs'
import {join} from 'node:path'

import {RefusedError} from './errors.js'
import {JoinNsError, JoinNsSpec, PID_MAX, quote, typedJoinNs} from './join-ns.js'
import {
  JOINABLE, namespaceByName, NamespaceDesc, NamespaceListError, namesOf, parseNamespaceList, POD_SHARED,
} from './namespaces.js'

export const JOIN_CONTAINER_GRAMMAR = 'ID[:TYPES]'

/** The custom oclif hook event a host CLI answers to resolve a container itself. */
export const RESOLVE_CONTAINER_EVENT = 'criu:resolve-container'

/** One parsed `--join-container` value. */
export interface ContainerRef {
  /** The ID or a unique prefix of it. */
  readonly id: string
  /** The flag value as typed, for messages. */
  readonly token: string
  /** The types to join: those listed, else the ones a pod shares (net, ipc, uts). */
  readonly types: readonly NamespaceDesc[]
  /** How messages name it where it is no --join-container value (ns inspect's argument). */
  readonly label?: string
}

/** `--join-container "web"`, or the ref's own label. Pure. */
const labelOf = (ref: ContainerRef) => ref.label ?? `--join-container ${quote(ref.token)}`

/** runc (libcontainer/container_linux.go) and crun (status.c) accept these characters in IDs. */
const CONTAINER_ID = /^[\w+.-]+$/

/** Parse `web`, `web:net,uts`. Errors name --join-container and the token. */
export function parseContainerRef(token: string): ContainerRef {
  const fail = (reason: string) => new JoinNsError(token, reason, '--join-container')
  const colon = token.indexOf(':')
  const id = colon === -1 ? token : token.slice(0, colon)
  if (id === '') throw fail(`missing container ID (expected ${JOIN_CONTAINER_GRAMMAR}, e.g. web or web:net,uts)`)
  if (!isContainerId(id)) {
    throw fail(`${quote(id)} is not a container ID: runtimes allow letters, digits and _ + - . (not first)`)
  }

  if (colon === -1) return {id, token, types: POD_SHARED}
  try {
    return {id, token, types: parseNamespaceList(token.slice(colon + 1), JOINABLE)}
  } catch (error) {
    if (error instanceof NamespaceListError) throw fail(error.message)
    throw error
  }
}

/** Whether a text can be a container ID (runc's and crun's rule). */
export function isContainerId(text: string): boolean {
  return CONTAINER_ID.test(text) && !text.startsWith('.')
}

/** A folder where a runtime keeps one sub-folder per container. */
export interface StateRoot {
  /** runc: <root>/<id>/state.json; crun: <root>/<id>/status. */
  readonly format: 'crun' | 'runc'
  readonly path: string
  /** Who keeps containers there, for messages and --json: `runc`, `docker`, `containerd (namespace k8s.io)`. */
  readonly runtime: string
}

/**
 * The folders searched, in order. Each is the runtime's own default, read from its source:
 * runc's --root default /run/runc (main.go; as root in the initial user namespace it ignores
 * $XDG_RUNTIME_DIR); Docker runs runc through containerd's shim with root
 * <exec-root>/runtime-runc (daemon/runtime_unix.go) under namespace moby; containerd's runc
 * shim uses /run/containerd/runc/<namespace> (pkg/process RuncRoot); crun uses
 * $XDG_RUNTIME_DIR/crun when that is set, else /run/crun (libcrun/status.c).
 * `prefix` is prepended to every path (tests), `containerdNamespaces` are the sub-folders of
 * /run/containerd/runc.
 */
export function stateRoots(options: {containerdNamespaces: readonly string[]; prefix?: string; xdgRuntimeDir?: string}): StateRoot[] {
  const at = (path: string) => join(options.prefix ?? '/', path)
  const roots: StateRoot[] = [
    {format: 'runc', path: at('/run/runc'), runtime: 'runc'},
    {format: 'runc', path: at('/run/docker/runtime-runc/moby'), runtime: 'docker'},
    ...[...options.containerdNamespaces].sort().map((ns): StateRoot => ({format: 'runc', path: at(`/run/containerd/runc/${ns}`), runtime: `containerd (namespace ${ns})`})),
  ]
  if (options.xdgRuntimeDir) roots.push({format: 'crun', path: join(options.xdgRuntimeDir, 'crun'), runtime: 'crun'})
  roots.push({format: 'crun', path: at('/run/crun'), runtime: 'crun'})
  return roots
}

/** A container folder found under a root. */
export interface ContainerEntry {
  readonly id: string
  readonly root: StateRoot
}

/** What a runtime recorded about a container's init. */
export interface ContainerRecord {
  readonly id: string
  readonly initPid: number
  /** /proc/PID/stat field 22 of the init when the runtime started it. */
  readonly initStartTime: number
  readonly root: StateRoot
  readonly stateFile: string
}

export function stateFileOf(entry: ContainerEntry): string {
  return join(entry.root.path, entry.id, entry.root.format === 'runc' ? 'state.json' : 'status')
}

function parseJson(text: string, file: string): Record<string, unknown> {
  let value: unknown
  try {
    value = JSON.parse(text)
  } catch (error) {
    throw new RefusedError(`${file} is not the runtime's JSON state: ${(error as Error).message}`)
  }

  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new RefusedError(`${file} is not the runtime's JSON state: not an object`)
  return value as Record<string, unknown>
}

function pidField(value: unknown, file: string, key: string): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 1 || value > PID_MAX) {
    throw new RefusedError(`${file}: ${key} is ${quote(JSON.stringify(value) ?? 'missing')}, not a PID; the container has no running init`)
  }

  return value
}

/** A start time; old runc versions wrote it as a string of digits. */
function startField(value: unknown, file: string, key: string): number {
  const n = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value
  if (typeof n !== 'number' || !Number.isSafeInteger(n) || n <= 0) {
    throw new RefusedError(`${file}: ${key} is ${quote(JSON.stringify(value) ?? 'missing')}; without the init's start time a reused PID cannot be told from the container's init, so it is not joined`)
  }

  return n
}

/** runc's state.json (libcontainer BaseState): init_process_pid, init_process_start. Pure. */
export function parseRuncState(text: string, entry: ContainerEntry): ContainerRecord {
  const file = stateFileOf(entry)
  const state = parseJson(text, file)
  return {
    id: entry.id,
    initPid: pidField(state.init_process_pid, file, 'init_process_pid'),
    initStartTime: startField(state.init_process_start, file, 'init_process_start'),
    root: entry.root,
    stateFile: file,
  }
}

/** crun's status file: pid, process-start-time. Pure. */
export function parseCrunStatus(text: string, entry: ContainerEntry): ContainerRecord {
  const file = stateFileOf(entry)
  const status = parseJson(text, file)
  return {
    id: entry.id,
    initPid: pidField(status.pid, file, 'pid'),
    initStartTime: startField(status['process-start-time'], file, 'process-start-time'),
    root: entry.root,
    stateFile: file,
  }
}

/** Most candidates a message lists. */
const CANDIDATES_SHOWN = 10

function listed(entries: readonly ContainerEntry[]): string {
  const shown = entries.slice(0, CANDIDATES_SHOWN).map(e => `${e.id} (${e.root.runtime})`).join(', ')
  return entries.length > CANDIDATES_SHOWN ? `${shown} and ${entries.length - CANDIDATES_SHOWN} more` : shown
}

/**
 * The one container `ref` names: an exact ID, else the one ID it is a prefix of (as Docker
 * does). Refuses an unknown or ambiguous ID, saying what was searched and the candidates. Pure.
 */
export function matchContainer(ref: ContainerRef, entries: readonly ContainerEntry[], searched: readonly StateRoot[], hostAsked = false): ContainerEntry {
  const head = labelOf(ref)
  const exact = entries.filter(e => e.id === ref.id)
  const matches = exact.length > 0 ? exact : entries.filter(e => e.id.startsWith(ref.id))
  if (matches.length === 1) return matches[0]
  if (matches.length > 1) {
    const what = exact.length > 1 ? `${exact.length} containers have the ID ${quote(ref.id)}` : `${quote(ref.id)} is the start of ${matches.length} container IDs`
    throw new RefusedError(`${head}: ${what}: ${listed(matches)}`, exact.length > 1 ? 'give -J NS:PID with the PID from the runtime you mean' : 'give more of the ID')
  }

  const where = searched.map(r => r.path).join(', ')
  const host = hostAsked ? 'the host CLI did not know it, and ' : ''
  const there = entries.length > 0 ? `containers there: ${listed(entries)}` : 'no containers there'
  throw new RefusedError(`${head}: no container ${quote(ref.id)}: ${host}searched ${where}; ${there}`)
}

/**
 * A host CLI's answer to `criu:resolve-container`: the init's PID (with its start time, to
 * refuse a reused PID), or namespace files by type, or both (files win for their types).
 */
export interface HostAnswer {
  readonly id?: string
  readonly namespaces?: Partial<Record<string, string>>
  readonly pid?: number
  readonly runtime?: string
  readonly startTime?: number
}

const isPid = (v: unknown): v is number => typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= PID_MAX
const isStartTime = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v > 0

/** The namespace files of a host's answer, checked; `bad` words the refusal. */
function hostNamespaces(value: unknown, bad: (what: string) => RefusedError): Record<string, string> {
  if (typeof value !== 'object' || value === null) throw bad('namespaces that are not an object of type: path')
  const namespaces: Record<string, string> = {}
  for (const [type, path] of Object.entries(value)) {
    const ns = namespaceByName(type)
    if (!ns || !ns.joinable) throw bad(`a namespace of type ${quote(type)} (expected one of: ${namesOf(JOINABLE)})`)
    if (typeof path !== 'string' || !path.startsWith('/')) throw bad(`${type}: ${quote(String(path))}, not an absolute path`)
    namespaces[type] = path
  }

  return namespaces
}

/**
 * The answer of one host hook, checked: undefined when it did not answer (no pid and no
 * namespaces); refused when it answered something that is not a PID or a namespace path. Pure.
 */
export function readHostAnswer(result: unknown, plugin: string): HostAnswer | undefined {
  if (typeof result !== 'object' || result === null) return undefined
  const answer = result as Record<string, unknown>
  if (answer.pid === undefined && answer.namespaces === undefined) return undefined
  const bad = (what: string) => new RefusedError(`the ${RESOLVE_CONTAINER_EVENT} hook of ${plugin} answered ${what}`)
  if (answer.pid !== undefined && !isPid(answer.pid)) throw bad(`pid ${quote(String(answer.pid))}, not a PID`)
  if (answer.startTime !== undefined && !isStartTime(answer.startTime)) {
    throw bad(`startTime ${quote(String(answer.startTime))}, not /proc/PID/stat field 22`)
  }

  return {
    id: typeof answer.id === 'string' ? answer.id : undefined,
    namespaces: answer.namespaces === undefined ? undefined : hostNamespaces(answer.namespaces, bad),
    pid: answer.pid,
    runtime: typeof answer.runtime === 'string' ? answer.runtime : undefined,
    startTime: answer.startTime,
  } as HostAnswer
}

/** A container, resolved: what --dry-run and --json show. */
export interface ResolvedContainer {
  /** The full ID. */
  readonly id: string
  readonly initPid?: number
  readonly initStartTime?: number
  /** Namespace files by type, when the host named them. */
  readonly namespaces?: Partial<Record<string, string>>
  /** `runc`, `docker`, `containerd (namespace k8s.io)`, `crun`, or what the host said. */
  readonly runtime: string
  /** `host CLI (plugin NAME)` or the runtime's state file. */
  readonly source: string
  readonly stateFile?: string
}

export function fromRecord(record: ContainerRecord): ResolvedContainer {
  const {id, initPid, initStartTime, stateFile} = record
  return {
    id, initPid, initStartTime, runtime: record.root.runtime, source: stateFile, stateFile,
  }
}

export function fromHostAnswer(ref: ContainerRef, answer: HostAnswer, plugin: string): ResolvedContainer {
  return {
    id: answer.id ?? ref.id,
    initPid: answer.pid,
    initStartTime: answer.startTime,
    namespaces: answer.namespaces,
    runtime: answer.runtime ?? 'host CLI',
    source: `host CLI (${plugin})`,
  }
}

/** The joins for the container: its namespace files, else its init's PID and start time. Pure. */
export function containerJoins(ref: ContainerRef, container: ResolvedContainer): JoinNsSpec[] {
  const from = labelOf(ref)
  return ref.types.map((ns): JoinNsSpec => {
    const path = container.namespaces?.[ns.name]
    if (path !== undefined) return {from, ns, target: {kind: 'path', path}}
    if (container.initPid === undefined) {
      throw new RefusedError(`${from}: ${container.source} named no ${ns.name} namespace and no PID for ${quote(container.id)}`, `give the types it has: ${ref.id}:${Object.keys(container.namespaces ?? {}).join(',')}`)
    }

    return {from, ns, target: {kind: 'pid', pid: container.initPid, startTime: container.initStartTime}}
  })
}

/** Refuse -J and --join-container deciding the same type (before anything is asked or read). Pure. */
export function overlapProblems(ref: ContainerRef, joinNs: readonly JoinNsSpec[], emptyNs: readonly NamespaceDesc[] = []): string[] {
  const problems: string[] = []
  for (const ns of ref.types) {
    const j = joinNs.find(s => s.ns === ns)
    if (j) {
      const rest = ref.types.filter(t => t !== ns).map(t => t.name)
      const fix = rest.length > 0 ? `list the container's other types (--join-container ${ref.id}:${rest.join(',')}) or leave out the -J` : 'leave out one of them'
      problems.push(`--join-container ${quote(ref.token)} and --join-ns ${quote(typedJoinNs(j))} both join the ${ns.name} namespace; give one target per namespace type: ${fix}`)
    }

    if (emptyNs.includes(ns)) problems.push(`--join-container ${quote(ref.token)} joins the ${ns.name} namespace and --empty-ns ${ns.name} creates it empty; keep one of them`)
  }

  return problems
}

// ---------------------------------------------------------------------------------------
// The shell: the folders and the host.

function subfolders(path: string): string[] {
  try {
    return readdirSync(path, {withFileTypes: true}).filter(d => d.isDirectory() && !d.name.startsWith('.')).map(d => d.name)
  } catch {
    return []
  }
}

/** The roots on this machine (containerd's namespaces are its sub-folders). */
export function searchedRoots(prefix = '/', env: NodeJS.ProcessEnv = process.env): StateRoot[] {
  return stateRoots({containerdNamespaces: subfolders(join(prefix, '/run/containerd/runc')), prefix, xdgRuntimeDir: env.XDG_RUNTIME_DIR || undefined})
}

/** The container folders (whose ID starts with `start`) that hold the root's state file. */
export function listContainers(roots: readonly StateRoot[], start = ''): ContainerEntry[] {
  const entries: ContainerEntry[] = []
  for (const root of roots) {
    for (const id of subfolders(root.path)) {
      if (!id.startsWith(start)) continue
      const entry = {id, root}
      try {
        if (statSync(stateFileOf(entry)).isFile()) entries.push(entry)
      } catch {
        // being created or deleted: not a container to join
      }
    }
  }

  return entries
}

export function readRecord(entry: ContainerEntry): ContainerRecord {
  const file = stateFileOf(entry)
  let text: string
  try {
    text = readFileSync(file, 'utf8')
  } catch (error) {
    throw new RefusedError(`cannot read ${file}: ${(error as Error).message}`)
  }

  return entry.root.format === 'runc' ? parseRuncState(text, entry) : parseCrunStatus(text, entry)
}

/** What a host said, per plugin, in the order oclif ran the hooks. */
export type HostResolver = (id: string) => Promise<{answer: unknown; plugin: string}[]>

/** Ask the host CLI through oclif: `config.runHook('criu:resolve-container', {id})`. */
export function hostResolver(config: Config): HostResolver {
  return async id => {
    const {successes} = await config.runHook(RESOLVE_CONTAINER_EVENT, {id})
    return successes.map(s => ({answer: s.result, plugin: s.plugin.name}))
  }
}

export interface ResolveOptions {
  /** For $XDG_RUNTIME_DIR (crun's root when set); default process.env. */
  env?: NodeJS.ProcessEnv
  host?: HostResolver
  /** Prepended to the runtimes' folders (tests). */
  prefix?: string
}

/** The host's first answer with a PID or namespace files, else the runtimes' state folders. */
export async function resolveContainer(ref: ContainerRef, options: ResolveOptions = {}): Promise<ResolvedContainer> {
  let hostAsked = false
  if (options.host) {
    for (const {answer, plugin} of await options.host(ref.id)) {
      hostAsked = true
      const read = readHostAnswer(answer, plugin)
      if (read) return fromHostAnswer(ref, read, plugin)
    }
  }

  const roots = searchedRoots(options.prefix, options.env)
  // Only the candidates' state files are looked at; all of them only to word a refusal.
  const candidates = listContainers(roots, ref.id)
  const entry = matchContainer(ref, candidates.length > 0 ? candidates : listContainers(roots), roots, hostAsked)
  try {
    return fromRecord(readRecord(entry))
  } catch (error) {
    if (error instanceof RefusedError) throw new RefusedError(`${labelOf(ref)}: ${error.message}`, error.hint)
    throw error
  }
}

/** Check, resolve, and turn the container into join specs for the pinning path. */
export async function joinContainer(
  ref: ContainerRef,
  others: {emptyNs?: readonly NamespaceDesc[]; joinNs: readonly JoinNsSpec[]},
  options: ResolveOptions = {},
): Promise<{container: ResolvedContainer; joins: JoinNsSpec[]}> {
  const problems = overlapProblems(ref, others.joinNs, others.emptyNs)
  if (problems.length > 0) throw new RefusedError(problems.join('\n'))
  const container = await resolveContainer(ref, options)
  return {container, joins: containerJoins(ref, container)}
}

/** One line for the terminal: `web (runc, /run/runc/web/state.json): init PID 1234`. */
export function describeContainer(c: ResolvedContainer): string {
  const init = c.initPid === undefined ? '' : `: init PID ${c.initPid}${c.initStartTime === undefined ? '' : `, started ${c.initStartTime} clock ticks after boot`}`
  return `container ${c.id} (${c.runtime}, from ${c.source})${init}`
}
