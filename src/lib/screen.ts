/**
 * Text for people at a terminal: how wide stdout is, borderless tables that fit it, paragraphs
 * wrapped between words. Pipes and files get 80 columns.
 */
import type Table from 'cli-table3'

/** stdout's width: OCLIF_COLUMNS (as oclif's help reads it), the terminal's, COLUMNS, else 80. */
export function stdoutWidth(stream: {columns?: number; isTTY?: boolean} = process.stdout, env: NodeJS.ProcessEnv = process.env): number {
  for (const text of [env.OCLIF_COLUMNS, stream.isTTY ? String(stream.columns ?? '') : undefined, env.COLUMNS]) {
    const n = Number.parseInt(text ?? '', 10)
    if (n > 0) return Math.max(40, n)
  }

  return 80
}

/** Columns this far apart. */
export const GAP = 2

/** Colour codes (SGR), which take no room on the screen. */
// eslint-disable-next-line no-control-regex
const SGR = /\u001B\[[\d;]*m/g

const BLANK = {
  bottom: '', 'bottom-left': '', 'bottom-mid': '', 'bottom-right': '', left: '', 'left-mid': '', mid: '', 'mid-mid': '', middle: ' '.repeat(GAP), right: '', 'right-mid': '', top: '', 'top-left': '', 'top-mid': '', 'top-right': '',
}

/**
 * A table without borders, columns GAP apart, cells wrapped between words to the widths given
 * (cli-table3 counts colour escapes as zero wide), no trailing spaces.
 */
export function plainTable(rows: readonly string[][], colWidths: readonly number[], head: readonly string[] = []): string[] {
  // Loaded here, not at the top: most runs of the commands that import this print no table.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const TableOf = require('cli-table3') as typeof Table
  // A column is never narrower than its longest word: in a narrow terminal the table runs past
  // the edge rather than cut a PID, an inode or a key.
  const longestWord = (i: number) => Math.max(0, ...[head, ...rows].flatMap(r => (r[i] ?? '').split(/\s+/)).map(w => w.replaceAll(SGR, '').length))
  const table = new TableOf({
    chars: BLANK, colWidths: colWidths.map((w, i) => Math.max(w, longestWord(i))), head: [...head], style: {border: [], head: [], 'padding-left': 0, 'padding-right': 0}, wordWrap: true,
  })
  table.push(...rows.map(r => [...r]))
  return table.toString().split('\n').map(line => line.trimEnd())
}

/**
 * A paragraph broken between words so that no line passes `width`: the first line starts at
 * column `at` (after what the caller prints before it), the others after `indent`. A word longer
 * than a line stays whole. Pure.
 */
export function wrap(text: string, width: number, {at = 0, indent = ''}: {at?: number; indent?: string} = {}): string {
  const lines: string[] = []
  let line = ''
  for (const word of words(text)) {
    const room = width - (lines.length === 0 ? at : indent.length)
    const candidate = line ? `${line} ${word}` : word
    if (line && candidate.length > room) {
      lines.push(line)
      line = word
    } else {
      line = candidate
    }
  }

  lines.push(line)
  return lines.map((l, i) => (i === 0 ? l : indent + l)).join('\n')
}

/** The words of a text, split at spaces; a `command in backquotes` is one word, never broken, so that it can be copied whole. */
export function words(text: string): string[] {
  const out: string[] = []
  let word = ''
  let quoted = false
  for (const ch of text) {
    if (ch === '`') quoted = !quoted
    if (ch === ' ' && !quoted) {
      out.push(word)
      word = ''
      continue
    }

    word += ch
  }

  out.push(word)
  return out
}

/** `comm(pid)`, as pstree writes it, in at most `width` characters: a long name is cut, the PID stays. Pure. */
export function holderEntry(h: {comm: string; pid: number}, width: number): string {
  const pid = `(${h.pid})`
  const full = `${h.comm}${pid}`
  if (full.length <= width) return full
  return `${h.comm.slice(0, Math.max(1, width - pid.length - 1))}…${pid}`
}
