/**
 * The capabilities of this process, read from /proc/self/status.
 */
import {readFileSync} from 'node:fs'

/** Root, or CAP_SYS_ADMIN (setns) in the effective set. */
export function hasAdminCapability(status = readFileSync('/proc/self/status', 'utf8')): boolean {
  const m = /^CapEff:\s*([\da-f]+)$/m.exec(status)
  if (!m) return false
  return (BigInt(`0x${m[1]}`) & (1n << 21n)) !== 0n
}
