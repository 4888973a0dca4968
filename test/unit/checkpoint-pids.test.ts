import {expect} from 'chai'
import fc from 'fast-check'
import protobuf from 'protobufjs'

import {inventoryRootIds, pidNsIdOf, pstreeEntryPids} from '../../src/lib/checkpoint-pids.js'
import {DESCRIPTORS} from '../../src/lib/image-schema.js'

/**
 * checkpoint-pids reads three fields by hand (every restore asks, before CRIU starts). The
 * reference is protobufjs's reflection over the image descriptors, as for image-reader.
 */
const reference = protobuf.Root.fromJSON({nested: DESCRIPTORS})
const encode = (name: string, value: Record<string, unknown>) => {
  const type = reference.lookupType(name)
  return type.encode(type.fromObject(value)).finish()
}

const decode = (name: string, bytes: Uint8Array) => {
  const type = reference.lookupType(name)
  return type.toObject(type.decode(bytes), {defaults: false}) as Record<string, unknown> & {rootIds?: {pidNsId?: number}; pidNsId?: number}
}

const u32 = fc.integer({max: 0xFF_FF_FF_FF, min: 0})
const ids = fc.record({
  filesId: u32, fsId: u32, ipcNsId: u32, netNsId: u32, pidNsId: u32, sighandId: u32, utsNsId: u32,
}, {requiredKeys: ['filesId', 'fsId', 'sighandId']})

describe('checkpoint PIDs read by hand (checkpoint-pids)', () => {
  it('reads pid and threads of any pstree entry as protobufjs does (property)', () => {
    fc.assert(fc.property(fc.record({pgid: u32, pid: u32, ppid: u32, sid: u32, threads: fc.array(u32, {maxLength: 6})}), entry => {
      const bytes = encode('PstreeEntry', entry)
      const {pid, threads} = decode('PstreeEntry', bytes)
      expect(pstreeEntryPids(bytes)).to.deep.equal({pid, threads: threads ?? []})
    }), {numRuns: 300})
  })

  it('reads threads packed and unpacked alike, and skips fields it does not know', () => {
    const unpacked = Uint8Array.from([0x08, 0x05, 0x10, 0x01, 0x18, 0x05, 0x20, 0x05, 0x28, 0x06, 0x28, 0x07, 0x38, 0xAC, 0x02])
    const packed = Uint8Array.from([0x08, 0x05, 0x10, 0x01, 0x18, 0x05, 0x20, 0x05, 0x2A, 0x02, 0x06, 0x07, 0x4A, 0x02, 0x61, 0x62])
    for (const bytes of [unpacked, packed]) expect(pstreeEntryPids(bytes)).to.deep.equal({pid: 5, threads: [6, 7]})
  })

  it('reads pid_ns_id of any ids entry, and root_ids of any inventory, as protobufjs does (property)', () => {
    fc.assert(fc.property(ids, fc.option(ids, {nil: undefined}), u32, (taskIds, rootIds, imgVersion) => {
      const task = encode('TaskKobjIdsEntry', taskIds)
      expect(pidNsIdOf(task)).to.equal(decode('TaskKobjIdsEntry', task).pidNsId)
      const inventory = encode('InventoryEntry', {imgVersion, ...(rootIds ? {rootIds} : {})})
      const found = inventoryRootIds(inventory)
      const expected = decode('InventoryEntry', inventory).rootIds
      if (expected === undefined) expect(found).to.equal(undefined)
      else expect(pidNsIdOf(found!)).to.equal(expected.pidNsId)
    }), {numRuns: 300})
  })

  it('throws on bytes that are not protobuf, never reads past them', () => {
    expect(() => pstreeEntryPids(Uint8Array.from([0x08]))).to.throw(/varint runs past the end/)
    expect(() => pstreeEntryPids(Uint8Array.from([0x2A, 0x05, 0x01]))).to.throw(/runs past the end/)
    expect(() => pidNsIdOf(Uint8Array.from([0x0B]))).to.throw(/wire type 3/)
  })
})
