/**
 * Reading protobuf's wire format by hand (varints and length-delimited fields), for the few
 * messages read on every restore: CRIU's RPC answers (criu-rpc.ts) and the PIDs of a checkpoint
 * (checkpoint-pids.ts). protobufjs, which decodes the other images (image-reader.ts), takes
 * 13-20 ms to load on these machines (`require('protobufjs/minimal')` after @oclif/core, Node 20).
 */

/** protobuf wire types */
export const VARINT = 0
export const LENGTH = 2

/** A reader over one message; throws on anything that is not well-formed protobuf. */
export class Cursor {
  pos = 0

  constructor(private readonly buf: Uint8Array, readonly end = buf.length) {}

  bytes(): Uint8Array {
    const n = this.varint()
    if (this.pos + n > this.end) throw new Error('a field runs past the end of the message')
    const out = this.buf.subarray(this.pos, this.pos + n)
    this.pos += n
    return out
  }

  skip(wire: number): void {
    switch (wire) {
    case VARINT: {
      this.varint()
      break
    }

    case 1: {
      this.pos += 8
      break
    }

    case LENGTH: {
      this.bytes()
      break
    }

    case 5: {
      this.pos += 4
      break
    }

    default: {
      throw new Error(`wire type ${wire}`)
    }
    }

    if (this.pos > this.end) throw new Error('a field runs past the end of the message')
  }

  /** A varint as a signed 64-bit value cut to a JS number (int32 fields: -1 stays -1). */
  varint(): number {
    let v = 0n
    for (let shift = 0n; shift < 70n; shift += 7n) {
      if (this.pos >= this.end) throw new Error('a varint runs past the end of the message')
      const b = this.buf[this.pos++]
      v |= BigInt(b & 0x7F) << shift
      if (b < 0x80) return Number(BigInt.asIntN(64, v))
    }

    throw new Error('a varint longer than ten bytes')
  }
}

/**
 * The fields of a message in order.
 * @yields each field's number and wire type, with `c` positioned on its value (read or skip it)
 */
export function * fieldsOf(c: Cursor): Generator<{id: number; wire: number}> {
  while (c.pos < c.end) {
    const tag = c.varint()
    yield {id: Math.floor(tag / 8), wire: tag % 8}
  }
}

/**
 * One field of a message, read with `read` where its number and wire type match; the last one
 * wins, as protobuf has it for a field that is not repeated. Every other field is skipped.
 */
export function fieldOf<T>(message: Uint8Array, field: {id: number; wire: number}, read: (c: Cursor) => T): T | undefined {
  const c = new Cursor(message)
  let value: T | undefined
  for (const {id, wire} of fieldsOf(c)) {
    if (id === field.id && wire === field.wire) value = read(c)
    else c.skip(wire)
  }

  return value
}
