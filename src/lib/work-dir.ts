/**
 * CRIU's work folder (its log, pidfile, stats) when the user gives no --work-dir: a new folder
 * under the temp folder, named after the plugin (the host CLI's name is not ours to use). It
 * lives as long as one run: removed after a run that succeeded, kept after one that failed, when
 * CRIU wrote something there, with its log path in the error: that log is what the user reads next.
 */
import {existsSync, mkdtempSync, readdirSync, rmSync} from 'node:fs'
import {tmpdir} from 'node:os'
import {join, resolve} from 'node:path'

import type {ShellFolder} from './criu-run.js'

import {CriuPluginError} from './errors.js'

/** Every temporary folder of the plugin starts with this, under the temp folder. */
export const TEMP_PREFIX = 'oclif-plugin-criu-'

/** What a temporary folder is for: CRIU's work folder of a run, or the post-restore gate's. */
export type WorkKind = 'checkpoint' | 'restore'

export interface WorkDir {
  readonly path: string
  /** Made for this run (no --work-dir), so it is the run's to remove. */
  readonly temporary: boolean
}

/** The folder a run uses: the user's --work-dir, or a new temporary one. */
export function makeWorkDir(kind: WorkKind, given: string | undefined): WorkDir {
  if (given) return {path: resolve(given), temporary: false}
  return {path: mkdtempSync(join(tmpdir(), `${TEMP_PREFIX}${kind}-`)), temporary: true}
}

/**
 * The work folder in the command a dry run prints for a person to run: the user's --work-dir, or
 * a new folder the printed command makes first (`W=$(mktemp -d) && criu ... --work-dir "$W"`),
 * so that the command runs as printed and, like the real run, never writes into the checkpoint.
 * Pure.
 */
export function shownWorkDir(given?: string): {folder?: ShellFolder; path: string; setup?: string} {
  if (given) return {path: resolve(given)}
  return {folder: {name: 'W', path: '$W'}, path: '$W', setup: 'W=$(mktemp -d)'}
}

/** After a run that succeeded: the temporary folder goes. The user's own folder stays as it is. */
export function removeWorkDir(dir: WorkDir): void {
  if (dir.temporary) rmSync(dir.path, {force: true, recursive: true})
}

/**
 * After a run that failed: a temporary folder CRIU wrote nothing into goes; one with CRIU's log
 * stays, and the error names the log if it does not already.
 */
export function keepWorkDirFor(error: unknown, dir: WorkDir, logFile: string): void {
  // Removed by someone else meanwhile: the run's own error is what the user must see.
  if (!dir.temporary || !existsSync(dir.path)) return
  if (readdirSync(dir.path).length === 0) {
    rmSync(dir.path, {force: true, recursive: true})
    return
  }

  if (error instanceof Error && !error.message.includes(logFile)) error.message += `\nLog: ${logFile}`
}

/**
 * After CRIU started and the run failed, timed out or was interrupted: the error says which CRIU
 * ran, as CRIU's own failures do (a `Ran:` line; --json's `ran`). Before keepWorkDirFor, so that
 * the line comes before `Log:`.
 */
export function noteCriuRan(error: unknown, ran: string): void {
  if (!(error instanceof CriuPluginError) || error.ran !== undefined) return
  error.ran = ran
  if (!error.message.includes(`\nRan: ${ran}`)) error.message += `\nRan: ${ran}`
}

/** After CRIU ran and failed: the error carries CRIU's log (for --json's `logFile`), when there is one. */
export function noteLogFile(error: unknown, logFile: string): void {
  if (error instanceof CriuPluginError && !error.logFile && existsSync(logFile)) error.logFile = logFile
}
