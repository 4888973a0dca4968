import {Args, Flags} from '@oclif/core'

import {CriuCommand} from '../../lib/base-command.js'
import {stdoutColours} from '../../lib/colour.js'
import {hostResolver} from '../../lib/containers.js'
import {InspectedTarget, inspectAny} from '../../lib/inspect.js'
import {GAP, holderEntry, plainTable, stdoutWidth} from '../../lib/screen.js'

/** Holders shown per namespace in the table; --json lists them all. */
const HOLDERS_SHOWN = 5
/** Widths of the type, inode, owner and yours columns. */
const FIXED = [6, 10, 13, 7]

export default class NsInspect extends CriuCommand {
  static override args = {
    target: Args.string({description: 'A PID, a namespace file such as /run/netns/blue or /proc/PID/ns/net, or a running container\'s ID (or a unique start of it).', ignoreStdin: true, required: true}),
  }
  static override description = 'For a PID: each of its eight namespaces. For a namespace file: that namespace. For a container ID (found as --join-container finds it: the host CLI first, then the runc, Docker, containerd and crun state folders): the namespaces of its init, checked against the start time its runtime recorded. Shows the inode (what `readlink /proc/PID/ns/TYPE` prints), the user namespace that owns it, whether it is the caller\'s own, and with --holders the processes in it. Give several targets to compare them.'
  static override enableJsonFlag = true
  static override examples = [
    {command: '<%= config.bin %> <%= command.id %> 1234', description: 'The namespaces of process 1234, and which differ from yours.'},
    {command: '<%= config.bin %> <%= command.id %> /run/netns/blue --holders', description: 'A named network namespace and the processes in it.'},
    {command: '<%= config.bin %> <%= command.id %> web $$', description: 'The namespaces of the container web, next to your shell\'s.'},
  ]
  static override flags = {
    holders: Flags.boolean({summary: 'List the processes in each namespace (scans /proc).'}),
    'kernel-threads': Flags.boolean({dependsOn: ['holders'], summary: 'Count kernel threads among the holders (left out by default).'}),
  }
  static override strict = false
  static override summary = 'Show the namespaces of processes or namespace files.'

  public async run() {
    const {argv, flags} = await this.parse(NsInspect)
    const host = hostResolver(this.config)
    const results = []
    for (const target of argv as string[]) {
      results.push(await inspectAny(target, {holders: flags.holders, host, kernelThreads: flags['kernel-threads']}))
    }

    if (this.jsonEnabled()) return results
    for (const r of results) this.log(this.render(r, flags.holders))
    return results
  }

  /** One target as a table that fits the terminal (80 columns in pipes), without trailing spaces. */
  private render(r: InspectedTarget, holders: boolean): string {
    const colour = stdoutColours()
    const head = ['type', 'inode', 'owner user ns', 'yours']
    const colWidths = [...FIXED]
    if (holders) {
      head.push('processes')
      colWidths.push(Math.max(20, stdoutWidth() - FIXED.reduce((a, b) => a + b, 0) - (GAP * FIXED.length)))
    }

    // An entry longer than the column loses the end of its name, never its PID.
    const entry = (h: {comm: string; pid: number}) => holderEntry(h, colWidths.at(-1)! - 1)

    const rows = r.namespaces.map(ns => {
      const row = [ns.type, String(ns.inode), ns.ownerUserNs === undefined ? '-' : String(ns.ownerUserNs), ns.sameAsCaller ? 'same' : colour.yellow('differs')]
      if (holders) {
        const all = ns.holders ?? []
        // comm(pid), as pstree writes it: no space inside an entry, so wrapping breaks between entries.
        const shown = all.slice(0, HOLDERS_SHOWN).map(h => entry(h)).join(', ')
        row.push(all.length > HOLDERS_SHOWN ? `${shown} (+${all.length - HOLDERS_SHOWN} more)` : shown)
      }

      return row
    })
    return [`${r.target}:`, ...plainTable(rows, colWidths, head)].join('\n')
  }
}
