/**
 * The CRIU image messages the plugin reads, as descriptors written from CRIU's images/*.proto
 * (field numbers and types only; fields the plugin does not read are left out, and the
 * decoder skips them). They are plain data, read by image-reader.ts's decoder; the shape is
 * protobufjs's JSON descriptor format, so that they read like the .proto they come from.
 */

/** The scalar types CRIU's images use in the fields the plugin reads; any other name is a message. */
export type ScalarType = 'bool' | 'string' | 'uint32' | 'uint64'

export interface FieldDescriptor {
  id: number
  rule?: 'repeated' | 'required'
  /** A ScalarType, or the name of another message of DESCRIPTORS. */
  type: string
}

export interface MessageDescriptor {
  fields: Record<string, FieldDescriptor>
}

export const DESCRIPTORS = {
  CoreEntry: {
    fields: {
      tc: {id: 3, type: 'TaskCoreEntry'},
    },
  },
  FdinfoEntry: {
    fields: {
      fd: {id: 4, rule: 'required', type: 'uint32'},
      id: {id: 1, rule: 'required', type: 'uint32'},
    },
  },
  FileEntry: {
    fields: {
      id: {id: 2, rule: 'required', type: 'uint32'},
      type: {id: 1, rule: 'required', type: 'uint32'},
    },
  },
  FsEntry: {
    fields: {
      cwdId: {id: 1, rule: 'required', type: 'uint32'},
      rootId: {id: 2, rule: 'required', type: 'uint32'},
    },
  },
  InventoryEntry: {
    fields: {
      imgVersion: {id: 1, rule: 'required', type: 'uint32'},
      nsPerId: {id: 4, type: 'bool'},
      rootIds: {id: 3, type: 'TaskKobjIdsEntry'},
    },
  },
  NetDeviceEntry: {
    fields: {
      ifindex: {id: 2, rule: 'required', type: 'uint32'},
      name: {id: 5, rule: 'required', type: 'string'},
      peerIfindex: {id: 12, type: 'uint32'},
      peerNsid: {id: 13, type: 'uint32'},
      type: {id: 1, rule: 'required', type: 'uint32'},
    },
  },
  NetnsEntry: {
    fields: {
      extKey: {id: 8, type: 'string'},
    },
  },
  PagemapEntry: {
    fields: {
      compatNrPages: {id: 2, rule: 'required', type: 'uint32'},
      flags: {id: 4, type: 'uint32'},
      inParent: {id: 3, type: 'bool'},
      nrPages: {id: 5, type: 'uint64'},
      vaddr: {id: 1, rule: 'required', type: 'uint64'},
    },
  },
  PagemapHead: {
    fields: {
      pagesId: {id: 1, rule: 'required', type: 'uint32'},
    },
  },
  PstreeEntry: {
    fields: {
      pgid: {id: 3, rule: 'required', type: 'uint32'},
      pid: {id: 1, rule: 'required', type: 'uint32'},
      ppid: {id: 2, rule: 'required', type: 'uint32'},
      sid: {id: 4, rule: 'required', type: 'uint32'},
      threads: {id: 5, rule: 'repeated', type: 'uint32'},
    },
  },
  // images/stats.proto: what CRIU measured (times in microseconds), written to the work dir
  // as stats-dump / stats-restore.
  StatsEntry: {
    fields: {
      dump: {id: 1, type: 'DumpStatsEntry'},
      restore: {id: 2, type: 'RestoreStatsEntry'},
    },
  },
  DumpStatsEntry: {
    fields: {
      freezingTime: {id: 1, rule: 'required', type: 'uint32'},
      frozenTime: {id: 2, rule: 'required', type: 'uint32'},
      memdumpTime: {id: 3, rule: 'required', type: 'uint32'},
      memwriteTime: {id: 4, rule: 'required', type: 'uint32'},
      pagesLazy: {id: 9, rule: 'required', type: 'uint64'},
      pagesScanned: {id: 5, rule: 'required', type: 'uint64'},
      pagesSkippedParent: {id: 6, rule: 'required', type: 'uint64'},
      pagesWritten: {id: 7, rule: 'required', type: 'uint64'},
    },
  },
  RestoreStatsEntry: {
    fields: {
      forkingTime: {id: 3, rule: 'required', type: 'uint32'},
      pagesCompared: {id: 1, rule: 'required', type: 'uint64'},
      pagesRestored: {id: 5, type: 'uint64'},
      pagesSkippedCow: {id: 2, rule: 'required', type: 'uint64'},
      restoreTime: {id: 4, rule: 'required', type: 'uint32'},
    },
  },
  TaskCoreEntry: {
    fields: {
      taskState: {id: 1, rule: 'required', type: 'uint32'},
    },
  },
  TaskKobjIdsEntry: {
    fields: {
      cgroupNsId: {id: 11, type: 'uint32'},
      filesId: {id: 2, rule: 'required', type: 'uint32'},
      fsId: {id: 3, rule: 'required', type: 'uint32'},
      ipcNsId: {id: 7, type: 'uint32'},
      mntNsId: {id: 9, type: 'uint32'},
      netNsId: {id: 6, type: 'uint32'},
      pidNsId: {id: 5, type: 'uint32'},
      sighandId: {id: 4, rule: 'required', type: 'uint32'},
      timeNsId: {id: 12, type: 'uint32'},
      userNsId: {id: 10, type: 'uint32'},
      utsNsId: {id: 8, type: 'uint32'},
      vmId: {id: 1, rule: 'required', type: 'uint32'},
    },
  },
  UtsnsEntry: {
    fields: {
      domainname: {id: 2, rule: 'required', type: 'string'},
      nodename: {id: 1, rule: 'required', type: 'string'},
    },
  },
} satisfies Record<string, MessageDescriptor>

/** One message as the decoder reads it: its name, its fields by name and by number. */
export interface MessageSchema {
  byId: ReadonlyMap<number, {field: FieldDescriptor; name: string}>
  fields: Readonly<Record<string, FieldDescriptor>>
  name: keyof typeof DESCRIPTORS
  /** The names of its required fields. */
  required: readonly string[]
}

const schemas = new Map<string, MessageSchema>()

/** The schema of a message named in DESCRIPTORS (built once, on first use). */
export function messageSchema(name: keyof typeof DESCRIPTORS): MessageSchema {
  let schema = schemas.get(name)
  if (!schema) {
    const {fields} = DESCRIPTORS[name] as MessageDescriptor
    schema = {
      byId: new Map(Object.entries(fields).map(([fieldName, field]) => [field.id, {field, name: fieldName}])),
      fields,
      name,
      required: Object.entries(fields).filter(([, f]) => f.rule === 'required').map(([fieldName]) => fieldName),
    }
    schemas.set(name, schema)
  }

  return schema
}

export const isMessageType = (type: string): type is keyof typeof DESCRIPTORS => Object.hasOwn(DESCRIPTORS, type)

export interface PstreeEntry {
  pgid: number
  pid: number
  ppid: number
  sid: number
  threads: number[]
}

export interface TaskKobjIdsEntry {
  cgroupNsId?: number
  filesId?: number
  ipcNsId?: number
  mntNsId?: number
  netNsId?: number
  pidNsId?: number
  timeNsId?: number
  userNsId?: number
  utsNsId?: number
}

export interface InventoryEntry {
  imgVersion: number
  nsPerId?: boolean
  rootIds?: TaskKobjIdsEntry
}

export interface UtsnsEntry {
  domainname: string
  nodename: string
}

export interface NetDeviceEntry {
  ifindex: number
  name: string
  /** A veth's other end: its ifindex, and the CRIU id of its net namespace when that was dumped too. */
  peerIfindex?: number
  peerNsid?: number
  type: number
}

/** images/netdev.proto nd_type */
export const ND_TYPE = {BRIDGE: 6, EXTLINK: 4, LOOPBACK: 1, MACVLAN: 7, SIT: 8, TUN: 3, VENET: 5, VETH: 2} as const

export interface DumpStatsEntry {
  freezingTime: number
  frozenTime: number
  memdumpTime: number
  memwriteTime: number
  pagesLazy: number
  pagesScanned: number
  pagesSkippedParent: number
  pagesWritten: number
}

export interface RestoreStatsEntry {
  forkingTime: number
  pagesCompared: number
  pagesRestored?: number
  pagesSkippedCow: number
  restoreTime: number
}

export interface StatsEntry {
  dump?: DumpStatsEntry
  restore?: RestoreStatsEntry
}

export interface CoreEntry {
  tc?: {taskState: number}
}

/** criu/include/task-state (compel): a zombie is dumped as TASK_DEAD and has no memory images. */
export const TASK_DEAD = 2

export interface PagemapHead {
  pagesId: number
}

export interface PagemapEntry {
  compatNrPages: number
  flags?: number
  inParent?: boolean
  nrPages?: number
  vaddr: number
}

/** criu/include/pagemap.h: the entry's pages are in pages-N.img (not in a parent, not lazy). */
export const PE_PRESENT = 1 << 2
export const PE_PARENT = Math.trunc(1)
/** The entry's pages are left to the lazy-pages daemon (dump with --lazy-pages). */
export const PE_LAZY = 1 << 1

/** fdinfo-N.img: one open fd of a task; `id` is its file's entry in files.img. */
export interface FdinfoEntry {
  fd: number
  id: number
}

export interface FileEntry {
  id: number
  type: number
}

/** fs-PID.img: the task's cwd and root, as entries of files.img. */
export interface FsEntry {
  cwdId: number
  rootId: number
}

export const MESSAGES = {
  core: messageSchema('CoreEntry'),
  fdinfo: messageSchema('FdinfoEntry'),
  file: messageSchema('FileEntry'),
  fs: messageSchema('FsEntry'),
  ids: messageSchema('TaskKobjIdsEntry'),
  inventory: messageSchema('InventoryEntry'),
  netdev: messageSchema('NetDeviceEntry'),
  netns: messageSchema('NetnsEntry'),
  pagemap: messageSchema('PagemapEntry'),
  pagemapHead: messageSchema('PagemapHead'),
  pstree: messageSchema('PstreeEntry'),
  stats: messageSchema('StatsEntry'),
  utsns: messageSchema('UtsnsEntry'),
}
