/**
 * The PIDs a checkpoint recreates, read from pstree.img (and, for the PID namespace, ids and
 * inventory.img) with the hand-written wire reader: every restore asks, before CRIU starts, and
 * loading protobufjs for it would cost more than the rest of the check (wire.ts).
 */
import {readFileSync} from 'node:fs'
import {join} from 'node:path'

import {imageRecords} from './images.js'
import {Cursor, fieldOf, fieldsOf, LENGTH, VARINT} from './wire.js'

/** pstree_entry's pid (1) and threads (5, repeated; read packed too). Pure. */
export function pstreeEntryPids(record: Uint8Array): {pid?: number; threads: number[]} {
  const c = new Cursor(record)
  const out: {pid?: number; threads: number[]} = {threads: []}
  for (const {id, wire} of fieldsOf(c)) {
    if (id === 1 && wire === VARINT) out.pid = c.varint()
    else if (id === 5 && wire === VARINT) out.threads.push(c.varint())
    else if (id === 5 && wire === LENGTH) {
      const packed = new Cursor(c.bytes())
      while (packed.pos < packed.end) out.threads.push(packed.varint())
    } else c.skip(wire)
  }

  return out
}

/** task_kobj_ids_entry's pid_ns_id (5), in an ids-PID.img record or inventory's root_ids. Pure. */
export function pidNsIdOf(ids: Uint8Array): number | undefined {
  return fieldOf(ids, {id: 5, wire: VARINT}, c => c.varint())
}

/** inventory_entry's root_ids (3): the ids of the CRIU that dumped. Pure. */
export function inventoryRootIds(record: Uint8Array): Uint8Array | undefined {
  return fieldOf(record, {id: 3, wire: LENGTH}, c => c.bytes())
}

const records = (dir: string, name: string) => imageRecords(readFileSync(join(dir, name)), name)

/** The tasks of pstree.img in order (the root first). */
function pstree(dir: string): {pid?: number; threads: number[]}[] {
  return records(dir, 'pstree.img').map(r => pstreeEntryPids(r))
}

/** The PIDs and TIDs of a tree, each once. */
const pidsOf = (tree: readonly {pid?: number; threads: number[]}[]) =>
  [...new Set(tree.flatMap(e => [...(e.pid === undefined ? [] : [e.pid]), ...e.threads]))]

/** Every PID and TID the checkpoint will recreate (pstree.img). Throws when it cannot be read. */
export function checkpointPids(dir: string): number[] {
  return pidsOf(pstree(dir))
}

/**
 * The PIDs and TIDs CRIU recreates in the PID namespace it runs in: all of them when the tree's
 * root shared the PID namespace of the CRIU that dumped it (inventory.img's root_ids), none when
 * the tree had one of its own (CRIU then makes a new one, where the numbers are free). Throws
 * when an image cannot be read.
 */
export function pidsInRestoringNamespace(dir: string): number[] {
  const tree = pstree(dir)
  const root = tree[0]?.pid
  if (root === undefined) return []
  const [ids] = records(dir, `ids-${root}.img`)
  const [inventory] = records(dir, 'inventory.img')
  const rootIds = inventory ? inventoryRootIds(inventory) : undefined
  const own = ids ? pidNsIdOf(ids) : undefined
  const dumper = rootIds ? pidNsIdOf(rootIds) : undefined
  if (own !== undefined && dumper !== undefined && own !== dumper) return []
  return pidsOf(tree)
}
