/**
 * CRIU's RPC (`criu swrk FD`: one CRIU process serving one request on a socket), for restore.
 * Over RPC, CRIU tells its client about each action stage and waits for the answer
 * (`notify_scripts`), instead of forking an action script at every stage: the post-restore
 * check is a question on a socket this process already holds, nothing is written to disk,
 * and a stage costs a round trip instead of a fork and two execs (bench/README "gate").
 *
 * Only the fields the plugin uses are written here, with their numbers from CRIU's
 * images/rpc.proto; the wire format is protobuf's (varints and length-delimited fields), written
 * and read by hand: the ten fields below do not justify loading protobufjs, which takes 50-60 ms
 * on these machines (measured: `require('protobufjs/minimal')` in a fresh Node 20).
 */
import {Cursor, fieldOf, fieldsOf, LENGTH, VARINT} from './wire.js'

/** criu_req_type */
export const REQ = {NOTIFY: 6, RESTORE: 2} as const

/** criu_cg_mode, by the names --manage-cgroups takes. */
const CG_MODE = {full: 4, ignore: 0, none: 1, props: 2, soft: 3, strict: 5} as const

/** What a restore request says, in the plugin's words (see rpcRestoreOptions in restore.ts). */
export interface RpcRestoreOptions {
  /** CLONE_NEW* bits of --empty-ns. */
  emptyNs: number
  extUnixSk: boolean
  fileLocks: boolean
  /** This process's fd of the images folder (CRIU opens /proc/OUR_PID/fd/N). */
  imagesDirFd: number
  /** --inherit-fd: the fd as CRIU has it, and the key of the external object it stands for. */
  inheritFds: readonly {fd: number; key: string}[]
  /** --join-ns, as CRIU splits it: the type, the file, and `UID,GID` for user. */
  joins: readonly {extra?: string; file: string; ns: string}[]
  lazyPages: boolean
  /** A file name in the work folder (CRIU's RPC takes no path here). */
  logFile: string
  logLevel: number
  manageCgroups?: keyof typeof CG_MODE
  shellJob: boolean
  tcpEstablished: boolean
  /** This process's fd of the work folder. */
  workDirFd: number
}

/** A protobuf message being written: fields appended in order. */
class Fields {
  private readonly parts: number[] = []

  bool(id: number, value: boolean): this {
    return value ? this.varint(id, 1) : this
  }

  bytes(): Uint8Array {
    return Uint8Array.from(this.parts)
  }

  message(id: number, inner: Fields): this {
    const body = inner.bytes()
    this.tag(id, LENGTH)
    this.raw(body.length)
    this.parts.push(...body)
    return this
  }

  string(id: number, value: string): this {
    const body = new TextEncoder().encode(value)
    this.tag(id, LENGTH)
    this.raw(body.length)
    this.parts.push(...body)
    return this
  }

  /** int32/uint32/enum/bool: a negative int32 is written as ten bytes, as protobuf does. */
  varint(id: number, value: number): this {
    this.tag(id, VARINT)
    this.raw(value)
    return this
  }

  private raw(value: number): void {
    let v = BigInt.asUintN(64, BigInt(value))
    do {
      const low = Number(v & 0x7Fn)
      v >>= 7n
      this.parts.push(v === 0n ? low : low | 0x80)
    } while (v !== 0n)
  }

  private tag(id: number, wire: number): void {
    this.raw((id * 8) + wire)
  }
}

/** criu_req {type: RESTORE, opts: criu_opts {...}}. Pure. */
export function encodeRestoreRequest(o: RpcRestoreOptions): Uint8Array {
  const opts = new Fields()
  .varint(1, o.imagesDirFd)
  .bool(4, o.extUnixSk)
  .bool(5, o.tcpEstablished)
  .bool(7, o.shellJob)
  .bool(8, o.fileLocks)
  .varint(9, o.logLevel)
  .string(10, o.logFile)
  .bool(12, true) // notify_scripts: every action stage becomes a question on this socket
  .varint(17, o.workDirFd)
  for (const {fd, key} of o.inheritFds) opts.message(27, new Fields().string(1, key).varint(2, fd))
  if (o.manageCgroups !== undefined) opts.varint(34, CG_MODE[o.manageCgroups])
  if (o.emptyNs !== 0) opts.varint(38, o.emptyNs)
  for (const join of o.joins) {
    const entry = new Fields().string(1, join.ns).string(2, join.file)
    if (join.extra !== undefined) entry.string(3, join.extra)
    opts.message(39, entry)
  }

  opts.bool(48, o.lazyPages)
  return new Fields().varint(1, REQ.RESTORE).message(2, opts).bytes()
}

/** criu_req {type: NOTIFY, notify_success}: the answer to one stage. Pure. */
export function encodeNotifyReply(success: boolean): Uint8Array {
  return new Fields().varint(1, REQ.NOTIFY).varint(3, success ? 1 : 0).bytes()
}

/** criu_resp, the fields the plugin reads. */
export interface RpcResponse {
  errmsg?: string
  errno?: number
  /** NOTIFY: the stage (criu_notify.script) and, at post-restore, the root's PID. */
  notify?: {pid?: number; script?: string}
  /** RESTORE: the root's PID (-1 when it failed). */
  restoredPid?: number
  success: boolean
  type: number
}

function decodeNotify(bytes: Uint8Array): {pid?: number; script?: string} {
  const c = new Cursor(bytes)
  const out: {pid?: number; script?: string} = {}
  for (const {id, wire} of fieldsOf(c)) {
    if (id === 1 && wire === LENGTH) out.script = new TextDecoder().decode(c.bytes())
    else if (id === 2 && wire === VARINT) out.pid = c.varint()
    else c.skip(wire)
  }

  return out
}

/** criu_restore_resp's pid (1). */
const decodeRestorePid = (bytes: Uint8Array) => fieldOf(bytes, {id: 1, wire: VARINT}, c => c.varint())

/** One criu_resp. Pure; throws on a message that is not one. */
export function decodeResponse(bytes: Uint8Array): RpcResponse {
  const c = new Cursor(bytes)
  let type: number | undefined
  let success: boolean | undefined
  const out: Omit<RpcResponse, 'success' | 'type'> = {}
  for (const {id, wire} of fieldsOf(c)) {
    if (id === 1 && wire === VARINT) type = c.varint()
    else if (id === 2 && wire === VARINT) success = c.varint() !== 0
    else if (id === 4 && wire === LENGTH) out.restoredPid = decodeRestorePid(c.bytes())
    else if (id === 5 && wire === LENGTH) out.notify = decodeNotify(c.bytes())
    else if (id === 7 && wire === VARINT) out.errno = c.varint()
    else if (id === 9 && wire === LENGTH) out.errmsg = new TextDecoder().decode(c.bytes())
    else c.skip(wire)
  }

  if (type === undefined || success === undefined) throw new Error('CRIU\'s answer lacks its type or success field')
  return {...out, success, type}
}

/** Both ends of the conversation, as the restore needs them. */
export interface RpcChannel {
  receive(): Promise<Uint8Array | null>
  send(message: Uint8Array): void
}

/** What CRIU said at the end of a restore; `ended` when it exited without saying anything. */
export type RestoreAnswer = {ended: true} | {ended: false; response: RpcResponse}

/**
 * Send the restore request, answer every stage with `onStage` (false makes CRIU abort at that
 * stage; at post-restore that means it kills the tree instead of resuming it), and return
 * CRIU's final answer.
 */
export async function restoreOverRpc(
  channel: RpcChannel,
  request: Uint8Array,
  onStage: (stage: string, pid: number | undefined) => Promise<boolean>,
): Promise<RestoreAnswer> {
  channel.send(request)
  for (;;) {
    const message = await channel.receive()
    if (message === null) return {ended: true}
    const response = decodeResponse(message)
    if (response.type === REQ.NOTIFY) {
      const ok = await onStage(response.notify?.script ?? '', response.notify?.pid)
      channel.send(encodeNotifyReply(ok))
      continue
    }

    if (response.type !== REQ.RESTORE) throw new Error(`CRIU answered a restore request with a message of type ${response.type}`)
    return {ended: false, response}
  }
}
