import {expect} from 'chai'
import fc from 'fast-check'
import protobuf from 'protobufjs'

import {decodeRecord} from '../../src/lib/image-reader.js'
import {DESCRIPTORS, FieldDescriptor, isMessageType, messageSchema} from '../../src/lib/image-schema.js'
import {ImageError} from '../../src/lib/images.js'

/**
 * The image decoder reads the wire format with protobufjs's minimal Reader, driven by the
 * descriptors. The reference is protobufjs's full reflection over the same descriptors: what
 * it encodes, ours must decode to what it decodes (toObject, defaults off, longs as numbers).
 */
const reference = protobuf.Root.fromJSON({nested: DESCRIPTORS})
type Name = keyof typeof DESCRIPTORS
const names = Object.keys(DESCRIPTORS) as Name[]

function scalar(type: string): fc.Arbitrary<unknown> {
  switch (type) {
  case 'bool': {
    return fc.boolean()
  }

  case 'string': {
    return fc.string({maxLength: 40, unit: 'grapheme'})
  }

  case 'uint32': {
    return fc.integer({max: 0xFF_FF_FF_FF, min: 0})
  }

  case 'uint64': {
    return fc.integer({max: Number.MAX_SAFE_INTEGER, min: 0})
  }

  default: {
    throw new Error(`no arbitrary for ${type}`)
  }
  }
}

function valueOf(field: FieldDescriptor, depth: number): fc.Arbitrary<unknown> {
  return isMessageType(field.type) ? message(field.type, depth + 1) : scalar(field.type)
}

/** A message of that type with each optional field present or not, repeated fields 0-5 long. */
function message(name: Name, depth = 0): fc.Arbitrary<Record<string, unknown>> {
  const fields = Object.entries((DESCRIPTORS[name] as {fields: Record<string, FieldDescriptor>}).fields)
  const model: Record<string, fc.Arbitrary<unknown>> = {}
  const required: string[] = []
  for (const [fieldName, field] of fields) {
    model[fieldName] = field.rule === 'repeated' ? fc.array(valueOf(field, depth), {maxLength: 5}) : valueOf(field, depth);
    if (field.rule === 'required') required.push(fieldName)
  }

  return fc.record(model, {requiredKeys: required})
}

const encode = (name: Name, value: Record<string, unknown>) => {
  const type = reference.lookupType(name)
  return type.encode(type.fromObject(value)).finish()
}

const referenceDecode = (name: Name, bytes: Uint8Array) => {
  const type = reference.lookupType(name)
  return type.toObject(type.decode(bytes), {defaults: false, longs: Number})
}

describe('image decoder (protobufjs minimal Reader + descriptors)', () => {
  for (const name of names) {
    it(`decodes ${name} as protobufjs's reflection does, for any message (property)`, () => {
      fc.assert(fc.property(message(name), value => {
        const bytes = encode(name, value)
        expect(decodeRecord(bytes, messageSchema(name), 'x.img', 0)).to.deep.equal(referenceDecode(name, bytes))
      }), {numRuns: 200})
    })
  }

  it('skips fields it does not know, as CRIU images carry many', () => {
    // PagemapHead {pages_id = 1} followed by an unknown field 7 (varint 300) and 9 (bytes "ab")
    const bytes = Uint8Array.from([0x08, 0x01, 0x38, 0xAC, 0x02, 0x4A, 0x02, 0x61, 0x62])
    expect(decodeRecord(bytes, messageSchema('PagemapHead'), 'pagemap-1.img', 0)).to.deep.equal({pagesId: 1})
  })

  it('reads packed and unpacked repeated fields alike', () => {
    const unpacked = Uint8Array.from([0x08, 0x05, 0x10, 0x01, 0x18, 0x05, 0x20, 0x05, 0x28, 0x06, 0x28, 0x07])
    const packed = Uint8Array.from([0x08, 0x05, 0x10, 0x01, 0x18, 0x05, 0x20, 0x05, 0x2A, 0x02, 0x06, 0x07])
    for (const bytes of [unpacked, packed]) {
      expect(decodeRecord(bytes, messageSchema('PstreeEntry'), 'pstree.img', 0)).to.deep.equal({pgid: 5, pid: 5, ppid: 1, sid: 5, threads: [6, 7]})
    }
  })

  it('refuses a record without a required field, naming the field, the file and the record', () => {
    const bytes = Uint8Array.from([0x18, 0x05, 0x10, 0x01, 0x20, 0x05]) // pgid, ppid, sid: no pid (field 1)
    expect(() => decodeRecord(bytes, messageSchema('PstreeEntry'), 'pstree.img', 2))
    .to.throw(ImageError, "pstree.img: record 3 does not decode as PstreeEntry (missing required 'pid')")
  })

  it('refuses a field whose wire type does not fit (a flipped bit in a tag)', () => {
    // pid as a length-delimited field (0x0A) instead of a varint (0x08)
    expect(() => decodeRecord(Uint8Array.from([0x0A, 0x01, 0x05]), messageSchema('PagemapHead'), 'pagemap-1.img', 0))
    .to.throw(ImageError, 'wire type 2, not 0')
  })

  it('refuses truncated records and nested messages that run past their parent, never returning part of one', () => {
    const bytes = encode('StatsEntry', {restore: {forkingTime: 3, pagesCompared: 0, pagesSkippedCow: 0, restoreTime: 9}})
    fc.assert(fc.property(fc.integer({max: bytes.length - 1, min: 1}), cut => {
      expect(() => decodeRecord(bytes.subarray(0, cut), messageSchema('StatsEntry'), 'stats-restore', 0)).to.throw(ImageError)
    }))
    const longer = Uint8Array.from(bytes)
    longer[1] += 1 // the nested message claims one byte more than the record has
    expect(() => decodeRecord(longer, messageSchema('StatsEntry'), 'stats-restore', 0)).to.throw(ImageError)
  })

  it('only throws ImageError, whatever the bytes (property)', () => {
    fc.assert(fc.property(fc.uint8Array({maxLength: 64}), fc.constantFrom(...names), (bytes, name) => {
      try {
        decodeRecord(bytes, messageSchema(name), 'x.img', 0)
      } catch (error) {
        expect(error).to.be.instanceOf(ImageError)
      }
    }), {numRuns: 3000})
  })
})
