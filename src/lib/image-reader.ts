/**
 * Decoding CRIU images: the protobuf wire format is read by protobufjs's minimal runtime (its
 * Reader), driven by image-schema's descriptors. The full protobufjs (reflection, and code it
 * generates per message at first use) cost a restore of a plain `criu dump` about 30 ms;
 * this is what is left of it. Loaded only by the code paths that read images.
 */
import {readFileSync} from 'node:fs'
import {join} from 'node:path'
import {Reader} from 'protobufjs/minimal.js'

import {FieldDescriptor, isMessageType, MESSAGES, MessageSchema, messageSchema, StatsEntry} from './image-schema.js'
import {ImageError, imageRecords} from './images.js'

/**
 * Check that a record is well-formed protobuf without knowing its message: every field has a
 * number above 0 and a known wire type, and every length stays inside the record. Zeroed or
 * random bytes fail this almost always; a flipped bit inside a value does not.
 */
export function checkWireFormat(record: Uint8Array, file: string, index: number): void {
  const reader = Reader.create(record)
  try {
    while (reader.pos < reader.len) {
      const tag = reader.uint32()
      if (tag >>> 3 === 0) throw new Error('field number 0')
      reader.skipType(tag & 7)
    }
  } catch (error) {
    throw new ImageError(`${file}: record ${index + 1} does not decode (${(error as Error).message})`)
  }
}

/**
 * Decode every entry of a CRIU image: magic number(s), then [u32 size][message] records.
 * `message` is one of image-schema's MESSAGES.
 */
export function decodeImage<T>(bytes: Uint8Array, message: MessageSchema, file = 'image'): T[] {
  return imageRecords(bytes, file).map((record, i) => decodeRecord<T>(record, message, file, i))
}

export function decodeRecord<T>(record: Uint8Array, message: MessageSchema, file: string, index: number): T {
  try {
    const reader = Reader.create(record)
    return decodeMessage(reader, record.length, message) as T
  } catch (error) {
    throw new ImageError(`${file}: record ${index + 1} does not decode as ${message.name} (${(error as Error).message})`)
  }
}

/** protobuf wire types: varint, 64-bit, length-delimited, 32-bit. */
const WIRE_VARINT = 0
const WIRE_LENGTH = 2

/** The wire type a field of this type is written with (packed repeated scalars aside). */
const wireTypeOf = (type: string) => (type === 'string' || isMessageType(type) ? WIRE_LENGTH : WIRE_VARINT)

/**
 * One message from `reader.pos` to `end`, as a plain object holding the fields that are present
 * (as protobufjs's toObject with defaults off and longs as numbers): unknown fields skipped, a
 * field whose wire type does not fit its type or a missing required field is an error.
 */
function decodeMessage(reader: Reader, end: number, schema: MessageSchema): Record<string, unknown> {
  const out: Record<string, unknown> = {}
  while (reader.pos < end) {
    const tag = reader.uint32()
    const id = tag >>> 3
    const wire = tag & 7
    if (id === 0) throw new Error('field number 0')
    const known = schema.byId.get(id)
    if (!known) {
      reader.skipType(wire)
      continue
    }

    const {field, name} = known
    if (field.rule === 'repeated') {
      const list = (out[name] ??= []) as unknown[]
      if (wire === WIRE_LENGTH && wireTypeOf(field.type) === WIRE_VARINT) {
        const stop = reader.uint32() + reader.pos // packed
        while (reader.pos < stop) list.push(readValue(reader, field))
        continue
      }

      expectWire(wire, field, name)
      list.push(readValue(reader, field))
      continue
    }

    expectWire(wire, field, name)
    out[name] = readValue(reader, field)
  }

  if (reader.pos !== end) throw new Error(`the last field runs ${reader.pos - end} bytes past the end`)
  for (const name of schema.required) if (!(name in out)) throw new Error(`missing required '${name}'`)
  return out
}

function expectWire(wire: number, field: FieldDescriptor, name: string): void {
  if (wire !== wireTypeOf(field.type)) throw new Error(`field '${name}' has wire type ${wire}, not ${wireTypeOf(field.type)}`)
}

function readValue(reader: Reader, field: FieldDescriptor): unknown {
  switch (field.type) {
  case 'bool': {
    return reader.bool()
  }

  case 'string': {
    return reader.string()
  }

  case 'uint32': {
    return reader.uint32()
  }

  case 'uint64': {
    const value = reader.uint64() as unknown as number | {toNumber(): number}
    return typeof value === 'number' ? value : value.toNumber()
  }

  default: {
    if (!isMessageType(field.type)) throw new Error(`image-schema names an unknown type '${field.type}'`)
    const length = reader.uint32()
    return decodeMessage(reader, reader.pos + length, messageSchema(field.type))
  }
  }
}

export function readImage<T>(dir: string, name: string, message: MessageSchema): T[] {
  return decodeImage<T>(readFileSync(join(dir, name)), message, name)
}

/** CRIU's own statistics of one dump or restore, times in milliseconds. */
export type CriuStats = Record<string, number>

const ms = (us: number) => Math.round(us) / 1000

/**
 * What CRIU measured (its stats-dump or stats-restore in the work dir), as plain numbers with
 * their units in the names; undefined when CRIU wrote none.
 */
export function readCriuStats(workDir: string, action: 'dump' | 'restore'): CriuStats | undefined {
  let entries: StatsEntry[]
  try {
    entries = readImage<StatsEntry>(workDir, `stats-${action}`, MESSAGES.stats)
  } catch {
    return undefined
  }

  const dump = entries[0]?.dump
  const restore = entries[0]?.restore
  if (action === 'dump' && dump) {
    return {
      freezingMs: ms(dump.freezingTime),
      frozenMs: ms(dump.frozenTime),
      memdumpMs: ms(dump.memdumpTime),
      memwriteMs: ms(dump.memwriteTime),
      pagesLazy: dump.pagesLazy,
      pagesScanned: dump.pagesScanned,
      pagesSkippedParent: dump.pagesSkippedParent,
      pagesWritten: dump.pagesWritten,
    }
  }

  if (action === 'restore' && restore) {
    return {
      forkingMs: ms(restore.forkingTime),
      pagesCompared: restore.pagesCompared,
      pagesRestored: restore.pagesRestored ?? 0,
      pagesSkippedCow: restore.pagesSkippedCow,
      restoreMs: ms(restore.restoreTime),
    }
  }

  return undefined
}
