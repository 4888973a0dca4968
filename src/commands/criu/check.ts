import {Flags} from '@oclif/core'
import Table from 'cli-table3'

import {CriuCommand} from '../../lib/base-command.js'
import {runDoctor} from '../../lib/doctor.js'
import {probeHwBreakpoints} from '../../lib/native.js'

export default class CriuCheck extends CriuCommand {
  static override description = [
    'Says which CRIU checkpoint and restore would run and why (--criu-path, then $CRIU_PATH, then PATH), its version, whether it can work here (CRIU\'s own `criu check`), whether we are root and which capabilities CRIU would lack, the kernel, and the features the plugin relies on, each with what it affects.',
    'Exit codes: 0 this CRIU can checkpoint and restore here; 1 it cannot (the reasons and the way out are printed).',
  ].join('\n\n')
  static override enableJsonFlag = true
  static override examples = [
    {command: '<%= config.bin %> <%= command.id %>', description: 'Check the CRIU that would be used.'},
    {command: '<%= config.bin %> <%= command.id %> --criu-path /usr/sbin/criu --json', description: 'Check another CRIU; machine-readable.'},
  ]
  static override flags = {
    'criu-path': Flags.string({summary: 'CRIU binary to check (default: $CRIU_PATH, then criu on PATH).'}),
  }
  static override summary = 'Check the CRIU this machine has: can checkpoint and restore work here?'

  public async run() {
    const {flags} = await this.parse(CriuCheck)
    const report = await runDoctor({criuPath: flags['criu-path'], probe: () => probeHwBreakpoints()})
    if (!report.usable) process.exitCode = 1
    if (this.jsonEnabled()) return report
    const table = new Table({
      chars: {bottom: '', 'bottom-left': '', 'bottom-mid': '', 'bottom-right': '', left: '', 'left-mid': '', mid: '', 'mid-mid': '', middle: '  ', right: '', 'right-mid': '', top: '', 'top-left': '', 'top-mid': '', 'top-right': ''},
      colWidths: [null, null, null, Math.max(40, (process.stdout.columns || 120) - 50)],
      head: ['', 'check', 'result', 'what it affects'],
      style: {border: [], head: [], 'padding-left': 0, 'padding-right': 0},
      wordWrap: true,
    })
    for (const row of report.checks) table.push([row.ok === null ? ' ' : (row.ok ? '✓' : '✗'), row.label, row.value, row.says])
    this.log(table.toString())
    this.log('')
    if (report.usable) {
      this.log(`Usable: CRIU ${report.version} at ${report.path} can checkpoint and restore here.`)
    } else {
      this.log(`Not usable here:${report.reasons.map(r => `\n  ${r}`).join('')}`)
      this.log(`Way out: ${report.wayOut}`)
    }

    return report
  }
}
