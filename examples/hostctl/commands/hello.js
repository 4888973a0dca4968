// The host's own command: the plugin's prerun hook must leave it alone.
import {Command, Flags} from '@oclif/core'

export default class Hello extends Command {
  static description = 'Say hello (a command of the host CLI, not of the plugin).'
  static flags = {'join-ns': Flags.string({char: 'J', multiple: true})}

  async run() {
    const {flags} = await this.parse(Hello)
    this.log(`hello ${(flags['join-ns'] ?? []).join(' ')}`.trim())
  }
}
