/**
 * Whether a hint leads somewhere: every `--flag` it names is a flag of the command it is named
 * for, and every `mycli <command>` it names is a command of the plugin (oclif's manifest).
 */
import {readFileSync} from 'node:fs'
import {join} from 'node:path'

import {REPO} from './system.js'

interface ManifestFlag {
  allowNo?: boolean
}

/** Command id as typed (`ns exec`) -> its long flags (with `no-` forms where allowed). */
export function pluginCommands(): Map<string, Set<string>> {
  const manifest = JSON.parse(readFileSync(join(REPO, 'oclif.manifest.json'), 'utf8')) as {commands: Record<string, {flags: Record<string, ManifestFlag>}>}
  const commands = new Map<string, Set<string>>()
  for (const [id, command] of Object.entries(manifest.commands)) {
    // oclif answers --help for every command without listing it among the command's flags.
    const flags = new Set<string>(['help'])
    for (const [name, flag] of Object.entries(command.flags)) {
      flags.add(name)
      if (flag.allowNo) flags.add(`no-${name}`)
    }

    commands.set(id.replaceAll(':', ' '), flags)
  }

  return commands
}

/**
 * What a hint names that does not exist: `mycli <words>` that start no command, and `--flag`s
 * that are not flags of the command they belong to (the last `mycli <command>` before them, else
 * `running`, the command that printed the hint). Empty when everything it names is real.
 */
export function unknownMentions(hint: string, running: string, commands = pluginCommands()): string[] {
  const unknown: string[] = []
  // Segments: the text before the first `mycli`, then each `mycli ...` up to the next.
  const parts = hint.split(/(?=\bmycli\s)/)
  for (const [i, part] of parts.entries()) {
    let command = running
    if (i > 0 || part.startsWith('mycli ')) {
      // A command ends at the end of a word run: `mycli criu check` in backquotes, or before a comma.
      const words = part.slice('mycli '.length).split(/\s+/).map(w => w.replace(/[`'",;:.)]+$/, ''))
      const ids = [3, 2, 1].map(n => words.slice(0, n).join(' ')).filter(id => commands.has(id))
      if (ids.length === 0) {
        unknown.push(`mycli ${words.slice(0, 2).join(' ')}`)
        continue
      }

      command = ids[0]
    }

    for (const [, flag] of part.matchAll(/(?<![\w-])--([a-z][\w-]*)/g)) {
      if (!commands.get(command)?.has(flag)) unknown.push(`--${flag} (of ${command})`)
    }
  }

  return unknown
}
