import {Flags} from '@oclif/core'

import {CriuCommand} from '../../lib/base-command.js'
import {stdoutColours} from '../../lib/colour.js'
import {doctorTable, runDoctor} from '../../lib/doctor.js'
import {probeHwBreakpoints} from '../../lib/native.js'
import {stdoutWidth, wrap} from '../../lib/screen.js'

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
    const colour = stdoutColours()
    const width = stdoutWidth()
    this.log(doctorTable(report, width, colour).join('\n'))
    this.log('')
    if (report.usable) {
      this.log(`${colour.green('Usable:')} ${wrap(`CRIU ${report.version} at ${report.path} can checkpoint and restore here.`, width, {at: 8, indent: '  '})}`)
    } else {
      this.log(`${colour.red('Not usable here:')}${report.reasons.map(r => `\n  ${wrap(r, width, {at: 2, indent: '    '})}`).join('')}`)
      this.log(wrap(`Way out: ${report.wayOut}`, width, {indent: '  '}))
    }

    return report
  }
}
