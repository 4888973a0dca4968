/**
 * The plugin's typed oclif flags, defined once and shared by every command.
 */
import {Flags} from '@oclif/core'

import {
  JOIN_NS_EXAMPLES, JOIN_NS_GRAMMAR, JoinNsError, JoinNsSpec, parseJoinNs,
} from './join-ns.js'
import {
  JOINABLE, NamespaceDesc, NamespaceListError, NAMESPACES, parseNamespaceList,
} from './namespaces.js'

/**
 * The -J help both commands share: the target forms. What a join means (CRIU joins for the
 * restored tree, `ns exec` for one command) is each command's to say.
 */
export const JOIN_NS_TARGETS_HELP = 'Repeat the flag for each namespace. TARGET is a PID (its /proc/PID/ns/NS is used) or a namespace file such as /proc/PID/ns/net or /run/netns/NAME; relative paths resolve against the current directory. For user, the first ":" or "," ends the target (a user-namespace file whose path contains one must be given through a symlink); other types take everything after the first ":" as the target.'

/** The joinable types, one line each (oclif's help keeps lines), with the table's notes if asked. */
export function joinableTypesHelp(withNotes: boolean): string {
  const lines = JOINABLE.map(d => `- ${d.name}${withNotes && d.note ? ` (${d.note})` : ''}`)
  return `Joinable types:\n${lines.join('\n')}\n\nNot joinable: ${NAMESPACES.filter(d => !d.joinable).map(d => d.name).join(', ')}.`
}

/** e.g. "-J net:1234, -J uts:/run/netns/blue, -J user:1234:1000:1000", for summaries. */
export const JOIN_NS_EXAMPLE_FLAGS = JOIN_NS_EXAMPLES.map(e => `-J ${e}`).join(', ')

/**
 * `-J/--join-ns NS:PID|NS_FILE[:UID[:GID]]`, repeatable; each value parsed to a JoinNsSpec.
 * The command gives the summary and description.
 */
export const joinNs = Flags.custom<JoinNsSpec>({
  char: 'J',
  helpGroup: 'NAMESPACE',
  helpValue: JOIN_NS_GRAMMAR,
  multiple: true,
  multipleNonGreedy: true,
  async parse(input) {
    return parseJoinNs(input, process.cwd())
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

/** A flag error written here (not by oclif) that the hook and commands print as it is. */
export function userFacingMessage(error: unknown): string | undefined {
  if (error instanceof JoinNsError) return error.userMessage
  return undefined
}

export {quote} from './join-ns.js'
