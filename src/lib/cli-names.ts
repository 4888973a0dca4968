/**
 * How the running CLI spells the plugin's commands in messages and hints. The plugin runs inside
 * host CLIs it does not know (`heroku ns:exec ...`, `mycli ns exec ...`): the host's bin and
 * topic separator come from its oclif config, set by the commands as they start. Used as a
 * library, without a CLI, a command is named by its bare ID (`checkpoint -D`).
 */
export interface CliNames {
  bin?: string
  topicSeparator: string
}

let names: CliNames = {topicSeparator: ' '}

/** Set by the commands from `this.config`; one process runs one host CLI. */
export function useCliNames(next: CliNames): void {
  names = next
}

/**
 * A command line as the user types it in this CLI: `commandLine('ns:exec', '-J net:1234 -- ip addr')`
 * gives `heroku ns:exec -J net:1234 -- ip addr` in heroku, `mycli ns exec -J ...` in mycli.
 */
export function commandLine(id: string, args = '', cli: CliNames = names): string {
  return [cli.bin, id.split(/[: ]/).join(cli.topicSeparator), args].filter(Boolean).join(' ')
}
