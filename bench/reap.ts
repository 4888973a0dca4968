/** Ending the processes a benchmark started: by PID, reaped so that none is left as a zombie. */
import {waitPid} from '../src/lib/native.js'

export async function killAndReap(pid: number): Promise<void> {
  try {
    process.kill(pid, 'SIGKILL')
  } catch {
    return
  }

  await waitPid(pid).catch(() => {})
}
