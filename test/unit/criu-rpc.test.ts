import {expect} from 'chai'
import fc from 'fast-check'
import protobuf from 'protobufjs'

import {decodeResponse, encodeNotifyReply, encodeRestoreRequest, REQ, RpcRestoreOptions} from '../../src/lib/criu-rpc.js'

/**
 * The RPC codec is written by hand; the reference is protobufjs's reflection over the part of
 * CRIU's images/rpc.proto the plugin speaks (field numbers and types as there). What ours
 * writes, protobufjs must read as the request CRIU expects; what protobufjs writes as CRIU's
 * answer, ours must read. (rpc.proto is proto2: a field set to false or 0 is on the wire.)
 */
const proto2 = (messages: Record<string, object>) => Object.fromEntries(Object.entries(messages).map(([name, m]) => [name, {...m, edition: 'proto2'}])) as NonNullable<protobuf.INamespace['nested']>
const reference = protobuf.Root.fromJSON({
  nested: proto2({
    criuNotify: {fields: {pid: {id: 2, type: 'int32'}, script: {id: 1, type: 'string'}}},
    criuOpts: {
      fields: {
        emptyNs: {id: 38, type: 'uint32'},
        extUnixSk: {id: 4, type: 'bool'},
        fileLocks: {id: 8, type: 'bool'},
        imagesDirFd: {id: 1, rule: 'required', type: 'int32'},
        inheritFd: {id: 27, rule: 'repeated', type: 'inheritFd'},
        joinNs: {id: 39, rule: 'repeated', type: 'joinNamespace'},
        lazyPages: {id: 48, type: 'bool'},
        logFile: {id: 10, type: 'string'},
        logLevel: {id: 9, type: 'int32'},
        manageCgroupsMode: {id: 34, type: 'uint32'},
        notifyScripts: {id: 12, type: 'bool'},
        shellJob: {id: 7, type: 'bool'},
        tcpEstablished: {id: 5, type: 'bool'},
        workDirFd: {id: 17, type: 'int32'},
      },
    },
    criuReq: {
      fields: {
        notifySuccess: {id: 3, type: 'bool'},
        opts: {id: 2, type: 'criuOpts'},
        type: {id: 1, rule: 'required', type: 'uint32'},
      },
    },
    criuResp: {
      fields: {
        crErrmsg: {id: 9, type: 'string'},
        crErrno: {id: 7, type: 'int32'},
        notify: {id: 5, type: 'criuNotify'},
        restore: {id: 4, type: 'criuRestoreResp'},
        status: {id: 11, type: 'int32'},
        success: {id: 2, rule: 'required', type: 'bool'},
        type: {id: 1, rule: 'required', type: 'uint32'},
      },
    },
    criuRestoreResp: {fields: {pid: {id: 1, rule: 'required', type: 'int32'}}},
    inheritFd: {fields: {fd: {id: 2, rule: 'required', type: 'int32'}, key: {id: 1, rule: 'required', type: 'string'}}},
    joinNamespace: {
      fields: {extraOpt: {id: 3, type: 'string'}, ns: {id: 1, rule: 'required', type: 'string'}, nsFile: {id: 2, rule: 'required', type: 'string'}},
    },
  }),
})
const Req = reference.lookupType('criuReq')
const Resp = reference.lookupType('criuResp')
/**
 * The request as protobufjs decodes it: the fields on the wire are own properties of the
 * message objects (also a false or a 0), the others are not.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- protobufjs's messages are untyped
const read = (bytes: Uint8Array) => Req.decode(bytes) as any
const present = (message: object, field: string) => Object.hasOwn(message, field)
/** The object without its undefined fields, as protobufjs reads it back. */
const defined = <T extends object>(o: T) => Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined))

const text = fc.string({maxLength: 30, unit: 'grapheme'})
const fd = fc.integer({max: 1023, min: 0})
const options: fc.Arbitrary<RpcRestoreOptions> = fc.record({
  emptyNs: fc.constantFrom(0, 0x40_00_00_00),
  extUnixSk: fc.boolean(),
  fileLocks: fc.boolean(),
  imagesDirFd: fd,
  inheritFds: fc.array(fc.record({fd, key: text}), {maxLength: 3}),
  joins: fc.array(fc.record({extra: fc.option(text, {nil: undefined}), file: text, ns: fc.constantFrom('net', 'uts', 'ipc', 'user')}), {maxLength: 4}),
  lazyPages: fc.boolean(),
  logFile: text,
  logLevel: fc.integer({max: 4, min: 0}),
  manageCgroups: fc.constantFrom(undefined, 'full', 'ignore', 'none', 'props', 'soft', 'strict'),
  shellJob: fc.boolean(),
  tcpEstablished: fc.boolean(),
  workDirFd: fd,
})

describe('CRIU RPC codec (criu-rpc.ts) against protobufjs reflection', () => {
  it('a restore request reads back as the options it was made from, with notifyScripts on', () => {
    const modes: Record<string, number> = {full: 4, ignore: 0, none: 1, props: 2, soft: 3, strict: 5}
    fc.assert(fc.property(options, o => {
      const req = read(encodeRestoreRequest(o))
      expect(req.type).to.equal(REQ.RESTORE)
      const {opts} = req
      expect(opts.imagesDirFd).to.equal(o.imagesDirFd)
      expect(opts.workDirFd).to.equal(o.workDirFd)
      expect(opts.logFile).to.equal(o.logFile)
      expect(opts.logLevel).to.equal(o.logLevel)
      expect(opts.notifyScripts).to.equal(true)
      // A false option is left out, as CRIU's own clients do (proto2: absent means false).
      const flags = {extUnixSk: o.extUnixSk, fileLocks: o.fileLocks, lazyPages: o.lazyPages, shellJob: o.shellJob, tcpEstablished: o.tcpEstablished}
      for (const [field, value] of Object.entries(flags)) {
        expect(present(opts, field) ? opts[field] : false, field).to.equal(value)
        if (present(opts, field)) expect(opts[field], field).to.equal(true)
      }

      expect(present(opts, 'emptyNs') ? opts.emptyNs : 0).to.equal(o.emptyNs)
      expect(present(opts, 'manageCgroupsMode') ? opts.manageCgroupsMode : undefined).to.equal(o.manageCgroups === undefined ? undefined : modes[o.manageCgroups])
      expect(opts.inheritFd.map((f: {fd: number; key: string}) => ({fd: f.fd, key: f.key}))).to.deep.equal(o.inheritFds.map(({fd, key}) => ({fd, key})))
      expect(opts.joinNs.map((j: {extraOpt: string; ns: string; nsFile: string}) => ({ns: j.ns, nsFile: j.nsFile, ...(present(j, 'extraOpt') ? {extraOpt: j.extraOpt} : {})})))
      .to.deep.equal(o.joins.map(j => ({ns: j.ns, nsFile: j.file, ...(j.extra === undefined ? {} : {extraOpt: j.extra})})))
    }))
  })

  it('the answer to a stage says success or not', () => {
    for (const success of [true, false]) {
      const reply = read(encodeNotifyReply(success))
      expect(reply.type).to.equal(REQ.NOTIFY)
      expect(present(reply, 'notifySuccess'), 'written also when false').to.equal(true)
      expect(reply.notifySuccess).to.equal(success)
      expect(present(reply, 'opts')).to.equal(false)
    }
  })

  it('reads what CRIU answers: stages, the restored PID (also -1), errors; unknown fields skipped', () => {
    const answer = fc.record({
      crErrmsg: fc.option(fc.string({maxLength: 30, minLength: 1}), {nil: undefined}),
      crErrno: fc.option(fc.integer({max: 200, min: 1}), {nil: undefined}),
      notify: fc.option(fc.record({
        pid: fc.option(fc.integer({max: 4_194_304, min: 1}), {nil: undefined}),
        script: fc.string({maxLength: 30, minLength: 1}),
      }), {nil: undefined}),
      restore: fc.option(fc.record({pid: fc.oneof(fc.constant(-1), fc.integer({max: 4_194_304, min: 1}))}), {nil: undefined}),
      status: fc.option(fc.integer({max: 255, min: 1}), {nil: undefined}),
      success: fc.boolean(),
      type: fc.constantFrom(REQ.NOTIFY, REQ.RESTORE),
    })
    fc.assert(fc.property(answer, a => {
      const bytes = Resp.encode(Resp.fromObject(defined(a))).finish()
      const got = decodeResponse(bytes)
      expect(got.type).to.equal(a.type)
      expect(got.success).to.equal(a.success)
      expect(got.restoredPid).to.equal(a.restore?.pid)
      expect(got.errno).to.equal(a.crErrno)
      expect(got.errmsg).to.equal(a.crErrmsg)
      expect(got.notify).to.deep.equal(a.notify && defined(a.notify))
    }))
  })

  it('refuses what is not a whole answer: cut short, or without type and success', () => {
    const whole = Resp.encode(Resp.fromObject({notify: {pid: 1234, script: 'post-restore'}, success: true, type: REQ.NOTIFY})).finish()
    // type (2 bytes), success (2 bytes), then notify: cut after success it is a whole answer without notify.
    for (let cut = 1; cut < whole.length; cut++) {
      if (cut === 4) expect(decodeResponse(whole.subarray(0, cut)).notify).to.equal(undefined)
      else expect(() => decodeResponse(whole.subarray(0, cut)), `cut at ${cut}`).to.throw()
    }

    expect(() => decodeResponse(new Uint8Array())).to.throw('lacks its type or success')
  })
})
