import {Args} from '@oclif/core'

import {CriuCommand} from '../../lib/base-command.js'
import {stdoutColours} from '../../lib/colour.js'
import {verdictLine, verifyCheckpoint} from '../../lib/integrity.js'

export default class CheckpointVerify extends CriuCommand {
  static override args = {
    dir: Args.directory({description: 'The checkpoint folder (`checkpoint -D` or `criu dump -D`).', ignoreStdin: true, required: true}),
  }
  static override description = [
    'Runs the checks `restore` runs before it lets a restored tree go on, without restoring anything and without root or CRIU.',
    'A checkpoint written by `checkpoint` carries a manifest (oclif-plugin-criu.manifest.json): every file\'s size and XXH64 digest must match it, pages images included. Every checkpoint, with or without a manifest, is also checked for structure: the images its process tree needs are there, every image starts with its magic number and its records decode, and each pages image is as long as its pagemap says. Without a manifest, page contents cannot be checked.',
    'XXH64 finds damage (disks, copies, interrupted transfers); it does not protect against someone who changes the images on purpose and rewrites the manifest.',
    'Exit codes: 0 sound; 1 damaged (each damaged file is named); 2 refused (not a checkpoint folder, or a manifest that cannot be read).',
  ].join('\n\n')
  static override enableJsonFlag = true
  static override examples = [
    {command: '<%= config.bin %> <%= command.id %> ./ckpt', description: 'Check a checkpoint before copying it or restoring it.'},
    {command: '<%= config.bin %> <%= command.id %> ./ckpt --json', description: 'The same, as JSON: sound, method, files and each damaged file.'},
  ]
  static override summary = 'Check a checkpoint folder for damage without restoring it.'

  public async run() {
    const {args} = await this.parse(CheckpointVerify)
    const result = await verifyCheckpoint(args.dir)
    if (!result.sound) process.exitCode = 1 // damaged: exit 1, after the JSON or the list is printed
    if (this.jsonEnabled()) return result

    const colour = stdoutColours()
    const verdict = verdictLine(result)
    this.log(`${args.dir}: ${result.sound ? colour.green(verdict) : colour.red(verdict)}`)
    for (const d of result.damage) this.log(`  ${colour.red(d.file)}: ${d.message}`)
    return result
  }
}
