/**
 * The plugin's typed oclif flags, defined once and shared by every command.
 */
import {Flags} from '@oclif/core'
import {resolve} from 'node:path'

import {ContainerRef, JOIN_CONTAINER_GRAMMAR, parseContainerRef} from './containers.js'
import {DEFAULT_LOG_LIMIT_MIB, DEFAULT_STALL_SECONDS} from './criu-run.js'
import {RefusedError} from './errors.js'
import {
  JOIN_NS_EXAMPLES, JOIN_NS_GRAMMAR, JoinNsError, JoinNsSpec, parseJoinNs, quote,
} from './join-ns.js'
import {
  joinableBy, JoinUse, NamespaceDesc, NamespaceListError, NAMESPACES, namesOf, parseNamespaceList, POD_SHARED,
} from './namespaces.js'

/**
 * The -J help both commands share: the target forms. What a join means (CRIU joins for the
 * restored tree, `ns exec` for one command) is each command's to say.
 */
export const JOIN_NS_TARGETS_HELP = 'Repeat the flag for each namespace. TARGET is a PID (its /proc/PID/ns/NS is used) or a namespace file such as /proc/PID/ns/net or /run/netns/NAME; relative paths resolve against the current directory. For user, the first ":" or "," ends the target (a user-namespace file whose path contains one must be given through a symlink); other types take everything after the first ":" as the target.'

/** The joinable types, one line each (oclif's help keeps lines), with the table's notes if asked. */
export function joinableTypesHelp(withNotes: boolean, use: JoinUse = 'restore'): string {
  const joinable = joinableBy(use)
  const lines = joinable.map(d => `- ${d.name}${withNotes && d.note ? ` (${d.note})` : ''}`)
  return `Joinable types:\n${lines.join('\n')}\n\nNot joinable: ${NAMESPACES.filter(d => !joinable.includes(d)).map(d => d.name).join(', ')}.`
}

/** e.g. "-J net:1234, -J uts:/run/netns/blue, -J user:1234:1000:1000", for summaries. */
export const JOIN_NS_EXAMPLE_FLAGS = JOIN_NS_EXAMPLES.map(e => `-J ${e}`).join(', ')

/** The same for restore, whose user join takes no UID:GID (checks.ts, userIdsProblem): "-J user:1234". */
export const RESTORE_JOIN_NS_EXAMPLE_FLAGS = JOIN_NS_EXAMPLES.map(e => `-J ${e.startsWith('user:') ? e.split(':').slice(0, 2).join(':') : e}`).join(', ')

/**
 * `-J/--join-ns NS:PID|NS_FILE[:UID[:GID]]`, repeatable; each value parsed to a JoinNsSpec, for
 * restore (CRIU joins) or for ns exec and launch (the plugin's child joins).
 * The command gives the summary and description.
 */
export const joinNsFor = (use: JoinUse) => Flags.custom<JoinNsSpec>({
  char: 'J',
  helpGroup: 'NAMESPACE',
  helpValue: JOIN_NS_GRAMMAR,
  multiple: true,
  multipleNonGreedy: true,
  async parse(input) {
    return parseJoinNs(input, process.cwd(), use)
  },
})

/** restore's -J. */
export const joinNs = joinNsFor('restore')

/** The --join-container help the commands share: the grammar, and where containers are found. */
export const JOIN_CONTAINER_HELP = [
  `ID is a container ID or a unique start of one. TYPES is a comma-separated list of namespace types; without it, the types the containers of a pod share: ${namesOf(POD_SHARED)}. Other types can be given with -J, but not the same type twice.`,
  'The host CLI is asked first (the criu:resolve-container hook); then the runtimes\' state folders: runc (/run/runc), Docker (/run/docker/runtime-runc/moby), containerd (/run/containerd/runc/NAMESPACE), crun ($XDG_RUNTIME_DIR/crun or /run/crun). The container\'s init is checked against the start time its runtime recorded, so a restarted container or a reused PID is refused, not joined.',
].join('\n\n')

/** `--join-container ID[:TYPES]`: a running container. The command gives the summary and description. */
export const joinContainer = Flags.custom<ContainerRef>({
  helpGroup: 'NAMESPACE',
  helpValue: JOIN_CONTAINER_GRAMMAR,
  async parse(input) {
    return parseContainerRef(input)
  },
})

const EMPTYABLE = NAMESPACES.filter(d => d.emptyable)

/** `--empty-ns net`: namespaces CRIU creates empty at restore (CRIU supports net only). */
export const emptyNs = Flags.custom<NamespaceDesc[]>({
  description: 'CRIU restores the namespace itself but leaves its contents to you (for net: no interfaces but loopback), as container engines that set up networking themselves do.',
  helpGroup: 'NAMESPACE',
  helpValue: 'net',
  async parse(input) {
    try {
      return parseNamespaceList(input, EMPTYABLE)
    } catch (error) {
      if (error instanceof NamespaceListError) {
        throw new JoinNsError(input, `${error.message}; CRIU can create only the net namespace empty`, '--empty-ns')
      }

      throw error
    }
  },
  summary: 'Create these namespaces empty instead of restoring their contents (net only).',
})

const EXTERNALIZABLE = NAMESPACES.filter(d => d.externalizable)

/** `--external-ns net`: namespaces the tree shares with a holder, left out of the checkpoint. */
export const externalNs = Flags.custom<NamespaceDesc[]>({
  description: 'CRIU leaves the namespace out of the images and records it under a key; `restore -J net:TARGET` then puts the tree into TARGET\'s net namespace (through CRIU\'s --inherit-fd). For a process in a pod or container whose network namespace outlives it.',
  async parse(input) {
    try {
      return parseNamespaceList(input, EXTERNALIZABLE)
    } catch (error) {
      if (error instanceof NamespaceListError) throw new JoinNsError(input, error.message, '--external-ns')
      throw error
    }
  },
  summary: 'Leave these namespaces out of the checkpoint, to be joined at restore (net).',
})

/** `--log-limit MIB`: CRIU is stopped when its log grows past this (see criu-run.ts). */
export const logLimit = () => Flags.integer({
  default: DEFAULT_LOG_LIMIT_MIB,
  description: 'A CRIU that loops (as CRIU 4.2.1 does restoring an emptied pages image) can write tens of MB of log a second until the disk is full; past this size it is stopped and the command fails with exit 1. A normal run at -v4 logs a few MiB. Also set by $CRIU_LOG_LIMIT.',
  env: 'CRIU_LOG_LIMIT',
  helpGroup: 'CRIU',
  min: 1,
  summary: 'Stop CRIU when its log grows past this many MiB.',
})

/** `--stall-timeout SECONDS`: CRIU is stopped when its log stays silent this long (see criu-run.ts). */
export const stallTimeout = () => Flags.integer({
  default: DEFAULT_STALL_SECONDS,
  description: 'Without --timeout, this is what ends a CRIU that is stuck: one that writes nothing to its log for this long is stopped and the command fails with exit 1. It no longer applies once a --no-restore-detached tree is restored (CRIU then waits for it by design). Also set by $CRIU_STALL_TIMEOUT.',
  env: 'CRIU_STALL_TIMEOUT',
  helpGroup: 'CRIU',
  min: 1,
  summary: 'Stop CRIU when its log has not grown for this many seconds.',
})

/**
 * The checkpoint folder, given as -D DIR or as a positional argument (`restore ./ckpt`): the two
 * are the same input. Refused when neither is given, or both are and name different folders.
 */
export function imagesDirOf(flag: string | undefined, arg: string | undefined, example: string): string {
  if (flag !== undefined && arg !== undefined && resolve(flag) !== resolve(arg)) {
    throw new RefusedError(`the checkpoint folder is given twice: --images-dir ${quote(flag)} and the argument ${quote(arg)}; give it once`, `e.g. ${example}`)
  }

  const dir = flag ?? arg
  if (dir === undefined) throw new RefusedError('missing the checkpoint folder: give it as -D DIR (--images-dir) or as the argument', `e.g. ${example}`)
  return dir
}

export {quote} from './join-ns.js'
