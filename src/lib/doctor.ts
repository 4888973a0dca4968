/**
 * The plugin's doctor (`criu check`): which CRIU would run and why, whether it can work here,
 * and the features the plugin relies on. Each row of the report is one small check function
 * in DOCTOR_CHECKS: a DoctorCheck takes the gathered DoctorContext and returns one DoctorRow
 * (blocking rows decide `usable`; rows with `feature` also land in the report's `features`).
 * A new row is one more function in that list; a new fact it needs is one more context field.
 */
import {existsSync, readFileSync} from 'node:fs'
import {release} from 'node:os'
import {join} from 'node:path'

import type {Colours} from './colour.js'

import {CapabilityNeed, criuCapabilities, hasCapability, capabilityByName, missingCapabilities} from './capabilities.js'
import {
  CRIU_DETECTS_BREAKPOINTS, CriuCheck, criuCheck, CriuSource, criuSupports, CriuVersion, findCriu, formatVersion,
  FoundCriu, hwBreakpointsWork, MIN_CRIU, onPath, readCriuVersion, versionAtLeast, wayOut,
} from './criu.js'
import {CriuPluginError} from './errors.js'
import {packageRoot} from './package-root.js'
import {GAP, wrap} from './screen.js'
import {IoUringPolicy, readIoUringPolicy} from './undumpable.js'

/** What every check may look at; gathered once, CRIU's answers memoised. */
export interface DoctorContext {
  /** Whether hardware breakpoints work here (native probe, cached per boot). */
  breakpoints: () => boolean | null
  capabilities: bigint
  check?: CriuCheck
  /** `criu check --feature NAME` passed (false when CRIU cannot run at all). */
  feature: (name: string) => Promise<boolean>
  /** Why CRIU was not found or its version not read. */
  findError?: string
  found?: FoundCriu
  /** kernel.io_uring_disabled: whether programs started now can make rings CRIU cannot dump. */
  ioUring: IoUringPolicy
  kernel: string
  root: boolean
  version?: CriuVersion
  /** A command on PATH, or undefined. */
  which: (command: string) => string | undefined
}

export interface DoctorRow {
  /** When false: `usable` is false (CRIU cannot checkpoint or restore here). */
  blocking: boolean
  /** Set for the rows that are features: their key in the report's `features`. */
  feature?: string
  label: string
  /** null: information only. */
  ok: boolean | null
  /** What it affects, or what is wrong. */
  says: string
  /** The short answer shown in the table. */
  value: string
}

export type DoctorCheck = (ctx: DoctorContext) => DoctorRow | Promise<DoctorRow>

const yesNo = (ok: boolean) => (ok ? 'yes' : 'no')

/** A feature row backed by `criu check --feature NAME`. */
function criuFeature(feature: string, criuName: string, label: string, affects: string): DoctorCheck {
  return async ctx => {
    // A CRIU that cannot run here cannot say what the kernel offers: unknown, not "no".
    if (!ctx.check?.ok) return {blocking: false, feature, label, ok: null, says: `${affects} (unknown: this CRIU cannot run here)`, value: 'unknown'}
    const ok = await ctx.feature(criuName)
    return {blocking: false, feature, label, ok, says: affects, value: yesNo(ok)}
  }
}

/** The rows, in the order shown. Add a row: write a DoctorCheck and list it here. */
export const DOCTOR_CHECKS: DoctorCheck[] = [
  ctx => ({
    blocking: true,
    label: 'CRIU',
    ok: ctx.found !== undefined,
    says: ctx.found ? `found through ${ctx.found.source} (order: --criu-path, $CRIU_PATH, PATH)` : ctx.findError ?? 'not found',
    value: ctx.found?.path ?? 'not found',
  }),
  ctx => {
    const ok = ctx.version !== undefined && versionAtLeast(ctx.version, MIN_CRIU)
    const old = ctx.version && !versionAtLeast(ctx.version, CRIU_DETECTS_BREAKPOINTS)
    return {
      blocking: true,
      label: 'version',
      ok: ctx.version ? ok : false,
      says: ok
        ? (old ? `works from ${formatVersion(MIN_CRIU)}; ${formatVersion(CRIU_DETECTS_BREAKPOINTS)} or newer recommended` : `needs ${formatVersion(MIN_CRIU)} or newer`)
        : (ctx.version ? `too old: needs ${formatVersion(MIN_CRIU)} or newer` : ctx.findError ?? 'unknown'),
      value: ctx.version?.text ?? 'unknown',
    }
  },
  ctx => ({
    blocking: true,
    label: 'criu check',
    ok: ctx.check?.ok ?? false,
    says: ctx.check ? (ctx.check.ok ? 'CRIU\'s own check of this kernel passes' : ctx.check.reason!) : 'not run: no CRIU to run',
    value: ctx.check?.ok ? 'passes' : 'fails',
  }),
  ctx => ({
    blocking: true,
    label: 'root',
    ok: ctx.root,
    says: ctx.root ? 'checkpoint and restore run CRIU as root' : 'checkpoint and restore need root (CAP_SYS_ADMIN)',
    value: yesNo(ctx.root),
  }),
  ctx => {
    const missing = missingCapabilities(ctx.capabilities)
    return {
      blocking: missing.some(c => c.required),
      label: 'capabilities',
      ok: missing.length === 0,
      says: missing.length === 0 ? 'every capability CRIU uses' : missing.map(c => `${c.name}: ${c.breaks}`).join('; '),
      value: missing.length === 0 ? 'all' : `missing ${missing.map(c => c.name).join(', ')}`,
    }
  },
  ctx => ({blocking: false, label: 'kernel', ok: null, says: 'the running kernel', value: ctx.kernel}),
  criuFeature('timeNamespaces', 'timens', 'time namespaces', 'restore gives the tree a time namespace (or joins one with -J time:...)'),
  criuFeature('externalNetNs', 'external_net_ns', 'external net namespaces', 'checkpoint --external-ns net, then restore -J net:...'),
  ctx => {
    const works = ctx.breakpoints()
    const old = ctx.version !== undefined && !versionAtLeast(ctx.version, CRIU_DETECTS_BREAKPOINTS)
    return {
      blocking: false,
      feature: 'hwBreakpoints',
      label: 'hardware breakpoints',
      ok: works === true,
      says: works === false
        ? (old
          ? `a CRIU older than ${formatVersion(CRIU_DETECTS_BREAKPOINTS)} would hang; the plugin starts it with CRIU_FAULT=130 (syscall tracing instead)`
          : `CRIU ${formatVersion(CRIU_DETECTS_BREAKPOINTS)}+ works around it by itself`)
        : (works === null ? 'not probed on this architecture' : 'CRIU stops the tasks it dumps with them'),
      value: works === null ? 'unknown' : yesNo(works),
    }
  },
  criuFeature('lazyPages', 'uffd-noncoop', 'userfaultfd (lazy pages)', 'restore --lazy-pages: memory copied in on demand'),
  criuFeature('dirtyTracking', 'mem_dirty_track', 'memory dirty tracking', 'pre-dump and --track-mem (iterative migration)'),
  ctx => {
    const path = ctx.which('iptables-restore')
    return {blocking: false, feature: 'networkLockIptables', label: 'network lock: iptables', ok: path !== undefined, says: path ? `--network-lock iptables (CRIU's default) runs ${path}` : '--network-lock iptables (CRIU\'s default) fails: no iptables-restore; pass --network-lock skip or nftables', value: yesNo(path !== undefined)}
  },
  criuFeature('networkLockNftables', 'network_lock_nftables', 'network lock: nftables', '--network-lock nftables'),
  ctx => ({
    blocking: false,
    label: 'io_uring',
    ok: ctx.ioUring.ringsPossible === undefined ? null : !ctx.ioUring.ringsPossible,
    says: ctx.ioUring.summary,
    value: ctx.ioUring.value === undefined ? 'no setting' : `io_uring_disabled=${ctx.ioUring.value}`,
  }),
]

export interface DoctorReport {
  capabilities: {missing: {breaks: string; name: string}[]}
  checks: {label: string; ok: boolean | null; says: string; value: string}[]
  features: Record<string, boolean>
  kernel: string
  path: null | string
  /** Why not usable, one line each. */
  reasons: string[]
  root: boolean
  source: CriuSource | null
  usable: boolean
  version: null | string
  /** What to do when not usable. */
  wayOut?: string
}

/** The report from the rows. Pure. */
export function buildReport(ctx: DoctorContext, rows: readonly DoctorRow[], advice: string): DoctorReport {
  const failing = rows.filter(r => r.blocking && r.ok === false)
  const usable = failing.length === 0
  return {
    capabilities: {missing: missingCapabilities(ctx.capabilities).map(c => ({breaks: c.breaks, name: c.name}))},
    checks: rows.map(r => ({label: r.label, ok: r.ok, says: r.says, value: r.value})),
    features: Object.fromEntries(rows.filter(r => r.feature).map(r => [r.feature!, r.ok === true])),
    kernel: ctx.kernel,
    path: ctx.found?.path ?? null,
    reasons: failing.map(r => `${r.label}: ${r.says}`),
    root: ctx.root,
    source: ctx.found?.source ?? null,
    usable,
    version: ctx.version?.text ?? null,
    ...(usable ? {} : {wayOut: advice}),
  }
}

/** The provisioning script shipped with the plugin, when this copy has it. */
export function provisionScript(): string | undefined {
  const script = join(packageRoot(), 'scripts', 'provision-criu.sh')
  return existsSync(script) ? script : undefined
}

/** Where the provisioning script can work: apt, and Debian's archive key to check forky's packages. */
function debianFamily(): boolean {
  try {
    return /^ID(?:_LIKE)?=.*\bdebian\b/m.test(readFileSync('/etc/os-release', 'utf8')) && existsSync('/usr/share/keyrings/debian-archive-keyring.gpg')
  } catch {
    return false
  }
}

/** The way out, with the exact command where the machine allows one. */
export function advice(): string {
  const script = provisionScript()
  if (script && debianFamily()) {
    return `${wayOut(false)}. On this Debian-family system, as root: \`CRIU_PROVISION_DIR=/opt/criu bash ${script}\` then \`export CRIU_PATH=/opt/criu/bin/criu\``
  }

  return wayOut(false)
}

/** Gather the facts (effects: finds and runs CRIU), then run every check. */
export async function runDoctor(options: {criuPath?: string; env?: NodeJS.ProcessEnv; probe: () => {works: boolean | null}}): Promise<DoctorReport> {
  const env = options.env ?? process.env
  const capabilities = criuCapabilities()
  const ctx: DoctorContext = {
    breakpoints: () => hwBreakpointsWork(options.probe),
    capabilities,
    feature: async () => false,
    ioUring: readIoUringPolicy(),
    kernel: release(),
    root: process.geteuid?.() === 0 && hasCapability(capabilities, capabilityByName('CAP_SYS_ADMIN') as CapabilityNeed),
    which: command => onPath(command, env),
  }
  try {
    ctx.found = findCriu(options.criuPath, env)
    ctx.version = await readCriuVersion(ctx.found)
  } catch (error) {
    if (!(error instanceof CriuPluginError)) throw error
    ctx.findError = error.hint ? `${error.message} (${error.hint})` : error.message
  }

  if (ctx.found) {
    // Even a CRIU below the floor is asked: its own answer says more than the version alone.
    ctx.check = await criuCheck(ctx.found.path, capabilities)
    const {path} = ctx.found
    const answers = new Map<string, Promise<boolean>>()
    ctx.feature = name => {
      if (!ctx.check?.ok) return Promise.resolve(false)
      if (!answers.has(name)) answers.set(name, criuSupports(path, name))
      return answers.get(name)!
    }
  }

  const rows = await Promise.all(DOCTOR_CHECKS.map(check => check(ctx)))
  return buildReport(ctx, rows, advice())
}

/** The narrowest "what it affects" column worth a column of its own; below it, it goes under the result. */
const MIN_SAYS = 36

/**
 * The report as a table that fits `width`: check, result and what it affects side by side where
 * they fit, else what it affects under the result. A mark says ok (green), failed (red when it
 * makes CRIU unusable here, yellow when only a feature is missing) or information only. Pure.
 */
export function doctorTable(report: DoctorReport, width: number, colour: Colours): string[] {
  const blocking = (label: string) => report.reasons.some(r => r.startsWith(`${label}: `))
  const mark = (row: DoctorReport['checks'][number]) => {
    if (row.ok === null) return ' '
    if (row.ok) return colour.green('✓')
    return blocking(row.label) ? colour.red('✗') : colour.yellow('✗')
  }

  const gap = ' '.repeat(GAP)
  const labelW = Math.max(...report.checks.map(r => r.label.length))
  const valueW = Math.max(...report.checks.map(r => r.value.length))
  const wide = width - 1 - labelW - valueW - (3 * GAP) >= MIN_SAYS
  const saysAt = 1 + GAP + labelW + GAP + (wide ? valueW + GAP : 0)
  const lines = [wide
    ? `${' '.repeat(1 + GAP)}${'check'.padEnd(labelW)}${gap}${'result'.padEnd(valueW)}${gap}what it affects`
    : `${' '.repeat(1 + GAP)}${'check'.padEnd(labelW)}${gap}result, and what it affects`]
  for (const row of report.checks) {
    const says = wrap(row.says, width, {at: saysAt, indent: ' '.repeat(saysAt)})
    const head = `${mark(row)}${gap}${row.label.padEnd(labelW)}${gap}`
    lines.push(wide ? `${head}${row.value.padEnd(valueW)}${gap}${says}` : `${head}${row.value}\n${' '.repeat(saysAt)}${says}`)
  }

  return lines.join('\n').split('\n').map(l => l.trimEnd())
}
