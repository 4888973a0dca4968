import {Args, Flags} from '@oclif/core'
import Table from 'cli-table3'

import {CriuCommand} from '../../lib/base-command.js'
import {hostResolver} from '../../lib/containers.js'
import {inspectAny} from '../../lib/inspect.js'

export default class NsInspect extends CriuCommand {
  static override args = {
    target: Args.string({description: 'A PID, a namespace file such as /run/netns/blue or /proc/PID/ns/net, or a running container\'s ID (or a unique start of it).', required: true}),
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
  }
  static override strict = false
  static override summary = 'Show the namespaces of processes or namespace files.'

  public async run() {
    const {argv, flags} = await this.parse(NsInspect)
    const host = hostResolver(this.config)
    const results = []
    for (const target of argv as string[]) results.push(await inspectAny(target, {holders: flags.holders, host}))
    if (this.jsonEnabled()) return results
    for (const r of results) {
      const head = ['type', 'inode', 'owner user ns', 'yours']
      if (flags.holders) head.push('processes')
      const table = new Table({
        chars: {bottom: '', 'bottom-left': '', 'bottom-mid': '', 'bottom-right': '', left: '', 'left-mid': '', mid: '', 'mid-mid': '', middle: '  ', right: '', 'right-mid': '', top: '', 'top-left': '', 'top-mid': '', 'top-right': ''},
        head,
        style: {border: [], head: [], 'padding-left': 0, 'padding-right': 0},
      })
      for (const ns of r.namespaces) {
        const row = [ns.type, String(ns.inode), ns.ownerUserNs === undefined ? '-' : String(ns.ownerUserNs), ns.sameAsCaller ? 'same' : 'differs']
        if (flags.holders) {
          const shown = (ns.holders ?? []).map(h => `${h.pid} ${h.comm}`).join(', ')
          row.push(ns.holderCount! > (ns.holders?.length ?? 0) ? `${shown} (+${ns.holderCount! - ns.holders!.length} more)` : shown)
        }

        table.push(row)
      }

      this.log(`${r.target}:`)
      this.log(table.toString())
    }

    return results
  }
}
