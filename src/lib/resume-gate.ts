/**
 * CRIU's post-restore stage as a gate: every task is restored and none resumed, and CRIU
 * resumes the tree only if its action script exits 0 (a non-zero exit makes it kill the
 * tree: criu/cr-restore.c). The verdict is computed here, in this process, where the pinned
 * targets are; the script only carries the question and the answer.
 *
 * CRIU runs an action script with execvp after closing every fd above 2 (criu/util.c,
 * cr_system), so the script cannot inherit a channel. It reaches this process through two
 * named pipes next to it, in a folder that this process created with mode 0700. The script is
 * fixed text with no path or value from the user in it, uses shell builtins only, and exits 0
 * at every other stage at once.
 */
import {closeSync, constants, mkdtempSync, openSync, readdirSync, readFileSync, rmSync, writeFileSync, writeSync} from 'node:fs'
import {Socket} from 'node:net'
import {tmpdir} from 'node:os'
import {join} from 'node:path'

import {makeFifo, waitPid} from './native.js'
import {TEMP_PREFIX} from './work-dir.js'

const SCRIPT_NAME = 'post-restore'

/**
 * `$0` is the path CRIU ran, so the pipes are found next to the script without writing any
 * path into it. `1<>` opens the question pipe without waiting for a reader; the answer pipe
 * is held open for writing by this process, so reading it ends (and the script fails) when
 * this process is gone.
 */
export const GATE_SCRIPT = `#!/bin/sh
# Written for one restore by oclif-plugin-criu; CRIU runs it at each of its action stages.
[ "$CRTOOLS_SCRIPT_ACTION" = post-restore ] || exit 0
dir=\${0%/*}
printf '%s %s\\n' "$CRTOOLS_INIT_PID" "$$" 1<>"$dir/ask" || exit 1
IFS= read -r verdict <"$dir/verdict" || exit 1
[ "$verdict" = resume ]
`

export class ResumeGate {
  /** Set once CRIU has asked; the root PID it named. */
  askedFor?: number
  readonly scriptPath: string
  /** Why the tree was not resumed, once the judge said no. */
  refusal?: Error
  private answered = false
  private readonly ask: Socket
  private readonly dir: string
  private readonly verdictFd: number

  /**
   * `judge` gets the root PID CRIU names at post-restore; resolving lets CRIU resume the tree,
   * rejecting (with the reason for the user) makes CRIU kill it.
   */
  constructor(private readonly judge: (root: number) => Promise<void>) {
    this.dir = mkdtempSync(join(tmpdir(), `${TEMP_PREFIX}gate-`))
    try {
      makeFifo(join(this.dir, 'ask'), 0o600)
      makeFifo(join(this.dir, 'verdict'), 0o600)
      // Read-write opens of a FIFO do not wait for the other side.
      const askFd = openSync(join(this.dir, 'ask'), constants.O_RDWR | constants.O_NONBLOCK)
      this.verdictFd = openSync(join(this.dir, 'verdict'), constants.O_RDWR)
      this.scriptPath = join(this.dir, SCRIPT_NAME)
      writeFileSync(this.scriptPath, GATE_SCRIPT, {mode: 0o500})
      this.ask = new Socket({fd: askFd, readable: true, writable: false})
    } catch (error) {
      rmSync(this.dir, {force: true, recursive: true})
      throw error
    }

    let line = ''
    this.ask.on('data', (chunk: Buffer) => {
      line += chunk.toString()
      if (line.includes('\n')) this.onAsk(line.slice(0, line.indexOf('\n')))
    })
  }

  private onAsk(line: string): void {
    if (this.answered) return
    this.answered = true
    const root = Number(line.split(' ')[0])
    this.askedFor = root
    if (!(Number.isInteger(root) && root > 0)) {
      this.refusal = new Error(`CRIU's post-restore stage named no root PID (${JSON.stringify(line)})`)
      this.answer('stop')
      return
    }

    this.judge(root).then(
      () => this.answer('resume'),
      (error: Error) => {
        this.refusal = error
        this.answer('stop')
      },
    )
  }

  private answer(verdict: 'resume' | 'stop'): void {
    try {
      writeSync(this.verdictFd, `${verdict}\n`)
    } catch {
      // closed: the restore was stopped meanwhile, and the script fails on its own
    }
  }

  /**
   * Remove the pipes and the script, then end a script that CRIU left behind (CRIU killed
   * while it ran: the script is then this subreaper's orphan). Call after CRIU has exited.
   */
  async close(): Promise<void> {
    rmSync(this.dir, {force: true, recursive: true})
    this.ask.destroy()
    closeSync(this.verdictFd)
    for (const pid of this.orphanedScripts()) {
      try {
        process.kill(pid, 'SIGKILL')
      } catch {
        // gone already
      }

      await waitPid(pid).catch(() => {})
    }
  }

  /** This process's children that run our script (`/bin/sh <scriptPath>`). */
  private orphanedScripts(): number[] {
    const children = readdirSync(`/proc/${process.pid}/task`).flatMap(tid =>
      readFileSync(`/proc/${process.pid}/task/${tid}/children`, 'utf8').trim().split(' ').filter(Boolean).map(Number))
    return children.filter(pid => {
      try {
        return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[1] === this.scriptPath
      } catch {
        return false
      }
    })
  }
}
