import {Args, Flags, ux} from '@oclif/core'

import {CriuCommand} from '../lib/base-command.js'
import {findProblems} from '../lib/checks.js'
import {commandLine} from '../lib/cli-names.js'
import {stdoutColours} from '../lib/colour.js'
import {describeContainer, hostResolver, joinContainer, ResolvedContainer} from '../lib/containers.js'
import {formatVersion, MIN_CRIU} from '../lib/criu.js'
import {
  emptyNs, imagesDirOf, JOIN_CONTAINER_HELP, JOIN_NS_TARGETS_HELP, joinableTypesHelp, joinContainer as joinContainerFlag, joinNs, RESTORE_JOIN_NS_EXAMPLE_FLAGS,
  logLimit, stallTimeout,
} from '../lib/flags.js'
import {JoinNsSpec} from '../lib/join-ns.js'
import {progressBar} from '../lib/lazy-pages.js'
import {namesOf, POD_SHARED} from '../lib/namespaces.js'
import {
  dryRunRestore, JoinedNamespace, RestoreRequest, RestoreResult, MANAGE_CGROUPS_MODES, runRestore,
} from '../lib/restore.js'
import {VerifiedTask} from '../lib/restored-tree.js'
import {GAP, plainTable, stdoutWidth, wrap} from '../lib/screen.js'

/** How the restored root ended, in words. */
const ending = (exit: RestoreResult['treeExit']) => (exit?.signal ? `killed by signal ${exit.signal}` : `exit code ${exit?.code}`)

export default class Restore extends CriuCommand {
  static override args = {
    dir: Args.directory({description: 'The checkpoint folder, as -D gives it (give one or the other).', ignoreStdin: true}),
  }
  static override description = [
    'Restores the process tree CRIU checkpointed in --images-dir, joining the namespaces given with -J instead of creating new ones: the way to move a checkpointed process into a running container\'s or pod\'s network, UTS, IPC, time or user namespace.',
    'Before CRIU starts, every -J target is opened and type-checked, and CRIU is told to join exactly the namespace that was checked (through this process\'s open file descriptor), so a target that exits or a PID that is reused in between cannot redirect the join. After the restore, the restored task\'s /proc/PID/ns/* is compared with each target.',
    `Needs root and CRIU ${formatVersion(MIN_CRIU)} or newer (the first with time namespaces); tested with CRIU 4.2.1. CRIU is found through --criu-path, then $CRIU_PATH, then PATH.`,
    'Without --work-dir, CRIU\'s log, pidfile and stats go to a new temporary folder, so the checkpoint folder is never written to.',
    'Exit codes: 0 restored and verified; 1 the restore failed (CRIU error, timeout, CRIU\'s log past --log-limit, verification, a pages image that does not match the manifest) or this machine cannot do it (not root, no CRIU); 2 the request was refused before anything started (bad -J value, conflicting options, a target or folder that is not what the flag needs, a damaged checkpoint); 130 interrupted.',
  ].join('\n\n')
  static override enableJsonFlag = true
  static override examples = [
    {command: '<%= config.bin %> <%= command.id %> -D ./ckpt -J net:1234 -J uts:1234 -J ipc:1234', description: 'Restore into the network, UTS and IPC namespaces of process 1234.'},
    {command: '<%= config.bin %> <%= command.id %> -D ./ckpt -J net:/run/netns/blue', description: 'Restore into a named network namespace (ip netns add blue).'},
    {command: '<%= config.bin %> <%= command.id %> -D ./ckpt -J user:1234 --allow-user-ns', description: 'Join the user namespace of process 1234; the restored tasks keep the credentials of the checkpoint.'},
    {command: '<%= config.bin %> <%= command.id %> -D ./ckpt --join-container web', description: 'Restore into the network, IPC and UTS namespaces of the running container web (runc, Docker, containerd or crun; a unique start of the ID works).'},
    {command: '<%= config.bin %> <%= command.id %> -D ./ckpt --join-container web:net -J uts:/run/netns/blue', description: 'Only the container\'s network namespace; UTS from elsewhere.'},
    {command: '<%= config.bin %> <%= command.id %> -D ./ckpt -J net:1234 --dry-run', description: 'Check the targets, show what happens to each namespace type and the CRIU command line; run nothing.'},
  ]
  static override flags = {
    'allow-overwrite': Flags.boolean({
      description: 'When the checkpoint had its own UTS, IPC or net namespace, CRIU writes that namespace\'s state into the namespace it joins: the hostname, the IPC sysctls and SysV objects, the network devices and addresses. restore refuses such joins unless this flag is given. --dry-run shows which namespaces the checkpoint carries.',
      helpGroup: 'NAMESPACE',
      summary: 'Join even where the checkpoint\'s own namespace state would overwrite the joined namespace\'s.',
    }),
    'allow-untrusted-images': Flags.boolean({
      description: 'CRIU restores, as root, whatever the images say: credentials, memory, the files the tree opens. Whoever can change them can therefore run code as root. restore refuses an images folder, or an image in it, that is owned by or writable by another user than root or you, that sits under a folder another user can change, or that is a symbolic link out of the folder. With this flag it restores from such a folder anyway; better copy the checkpoint into a folder you own (cp -rL DIR NEW) and restore from there.',
      summary: 'Restore from an images folder another user could have changed (they could run code as root).',
    }),
    'allow-user-ns': Flags.boolean({
      description: 'CRIU calls joining a user namespace dangerous: the restored tree gets the target\'s UID/GID mappings. Without this flag a user join goes ahead with a warning.',
      helpGroup: 'NAMESPACE',
      summary: 'Acknowledge that joining a user namespace is dangerous (silences the warning).',
    }),
    'criu-path': Flags.string({
      helpGroup: 'CRIU',
      summary: 'CRIU binary to run (default: $CRIU_PATH, then criu on PATH; nothing else is searched).',
    }),
    'dry-run': Flags.boolean({
      summary: 'Check everything and print the plan and the exact CRIU command; restore nothing.',
    }),
    'empty-ns': emptyNs(),
    'ext-unix-sk': Flags.boolean({helpGroup: 'CRIU', summary: 'Allow external unix sockets (CRIU --ext-unix-sk).'}),
    'file-locks': Flags.boolean({helpGroup: 'CRIU', summary: 'Restore file locks (CRIU --file-locks).'}),
    'images-dir': Flags.directory({
      char: 'D',
      summary: 'Folder with the checkpoint images (must contain inventory.img); or give it as the argument DIR.',
    }),
    'join-container': joinContainerFlag({
      description: ['The restored tree joins the namespaces of the running container\'s init, as if each were given with -J.', JOIN_CONTAINER_HELP].join('\n\n'),
      summary: `Join the namespaces of a running container (default: ${namesOf(POD_SHARED)}).`,
    }),
    'join-ns': joinNs({
      description: [
        JOIN_NS_TARGETS_HELP,
        'Only user takes UID and GID: the credentials CRIU switches to after joining it (CRIU\'s own NS:TARGET,UID,GID form is accepted too). CRIU 4.2.1 switches the UID first and then cannot switch the GID, so a UID other than 0 is refused; the restored tasks take their credentials from the checkpoint anyway.',
        joinableTypesHelp(true),
      ].join('\n\n'),
      summary: `Join an existing namespace instead of creating one (e.g. ${RESTORE_JOIN_NS_EXAMPLE_FLAGS}).`,
    }),
    'lazy-pages': Flags.boolean({
      description: [
        'CRIU\'s lazy-pages daemon is started for the images (in the same --work-dir), the tree is restored with its memory left behind, and the daemon delivers the pages through userfaultfd while the tree already runs: a process holding much memory answers long before an eager restore would have read it all. The joins are verified as for any restore.',
        'By default the command then waits until every page has arrived (the daemon exits 0), with a progress bar on a terminal, and reports the time to restored, the time to all pages and the memory served. If the daemon fails, or the command is interrupted or times out (--timeout counts until all pages arrived), the restored tree is ended before the daemon, so that it never runs on a missing page. The images are only read.',
        'Refused when lazy pages cannot work here (`criu check --feature uffd-noncoop` fails, or CRIU is too old), and with --no-restore-detached.',
      ].join('\n\n'),
      summary: 'Restore at once and let the memory follow (CRIU lazy pages).',
    }),
    'log-file': Flags.file({
      char: 'o',
      helpGroup: 'CRIU',
      summary: 'Where CRIU writes its log (default: restore.log in the work dir).',
    }),
    'log-limit': logLimit(),
    'manage-cgroups': Flags.option({
      helpGroup: 'CRIU',
      options: MANAGE_CGROUPS_MODES,
      summary: 'How CRIU restores cgroups (CRIU --manage-cgroups).',
    })(),
    pidfile: Flags.file({summary: 'Also write the restored root PID to this file.'}),
    'restore-detached': Flags.boolean({
      allowNo: true,
      char: 'd',
      default: true,
      description: 'On (the default), CRIU exits once the tree is restored and the tree goes on alone. With --no-restore-detached, this command prints the PID once the restore is verified, then waits until the tree\'s root has ended and says how (its exit code, or the signal that ended it; in --json: treeExit).\n\n-d is CRIU\'s own short form (criu restore -d), kept so that CRIU command lines can be pasted; as detached is the default here, it changes nothing.',
      summary: 'Let the restored tree run on its own once restored (the default; -d, as in CRIU, changes nothing).',
    }),
    'shell-job': Flags.boolean({char: 'j', helpGroup: 'CRIU', summary: 'The tree was a shell job with a terminal (CRIU --shell-job).'}),
    'stall-timeout': stallTimeout(),
    'tcp-established': Flags.boolean({helpGroup: 'CRIU', summary: 'Restore established TCP connections (CRIU --tcp-established).'}),
    timeout: Flags.integer({
      min: 1,
      summary: 'Seconds to let CRIU run; then it is killed and the restore fails with nothing left running.',
    }),
    'verify-images': Flags.boolean({
      allowNo: true,
      default: true,
      description: 'With a manifest (written by `checkpoint`), every file\'s size and XXH64 digest must match it: the small images before CRIU starts, the pages images while CRIU reads them (a mismatch found then kills the restored tree, exit 1). Without one (a plain `criu dump`), the images the process tree needs must be there, their headers and records must decode, and the pages images must be as long as the pagemaps say. --no-verify-images skips both. `<%= config.bin %> checkpoint<%= config.topicSeparator %>verify` runs the same checks without restoring.',
      summary: 'Check the checkpoint for damage before the restored tree runs (default on).',
    }),
    verbose: Flags.integer({
      char: 'v',
      default: 4,
      helpGroup: 'CRIU',
      max: 4,
      min: 0,
      summary: 'CRIU log level, 0-4 (CRIU -v).',
    }),
    'wait-pages': Flags.boolean({
      allowNo: true,
      default: true,
      description: 'With --no-wait-pages the command returns once the tree is restored and verified, printing the daemon\'s PID and log; the daemon goes on delivering pages and exits by itself when done. Until then the tree depends on it and on the images: if the daemon is killed, the machine reboots, or the images folder goes away, the tree finds zero-filled pages where its memory was (or is gone, after a reboot). Keep the images until the daemon has exited.',
      summary: 'With --lazy-pages, wait until every page has arrived.',
    }),
    'work-dir': Flags.directory({
      char: 'W',
      summary: 'Folder for CRIU\'s log, pidfile and stats (default: a new temporary folder).',
    }),
  }
  // Short enough for one line at 80 columns; the flags are listed below it.
  static override usage = '<%= command.id %> [-D] DIR [-J NS:PID|NS_FILE[:UID[:GID]]]... [FLAGS]'
  static override summary = 'Restore a CRIU checkpoint into existing namespaces.'

  public async run() {
    const {args, flags} = await this.parse(Restore)
    const imagesDir = imagesDirOf(flags['images-dir'], args.dir, commandLine(this.id ?? 'restore', '-D ./ckpt -J net:1234'))
    const joined = flags['join-container']
      ? await joinContainer(flags['join-container'], {emptyNs: flags['empty-ns'], joinNs: flags['join-ns'] ?? []}, {host: hostResolver(this.config)})
      : undefined
    const container = joined?.container
    const request = {
      allowOverwrite: flags['allow-overwrite'],
      allowUntrustedImages: flags['allow-untrusted-images'],
      allowUserNs: flags['allow-user-ns'],
      criuPath: flags['criu-path'],
      detached: flags['restore-detached'],
      dryRun: flags['dry-run'],
      emptyNs: flags['empty-ns'] ?? [],
      extUnixSk: flags['ext-unix-sk'],
      fileLocks: flags['file-locks'],
      imagesDir,
      joinNs: [...(flags['join-ns'] ?? []), ...(joined?.joins ?? [])],
      lazyPages: flags['lazy-pages'],
      logFile: flags['log-file'],
      logLimit: flags['log-limit'],
      stallSeconds: flags['stall-timeout'],
      stats: this.jsonEnabled(),
      manageCgroups: flags['manage-cgroups'],
      pidfile: flags.pidfile,
      shellJob: flags['shell-job'],
      tcpEstablished: flags['tcp-established'],
      timeout: flags.timeout,
      verbosity: flags.verbose,
      verifyImages: flags['verify-images'],
      waitPages: flags['wait-pages'],
      workDir: flags['work-dir'],
    }

    if (request.dryRun) return this.dryRun(request, container)

    const bar = Boolean(process.stderr.isTTY) && !this.jsonEnabled()
    const result = await runRestore(request, {
      ...this.criuIO(),
      pages(arrived, total) {
        if (!bar) return
        if (arrived === 0) ux.action.start('Pages arriving')
        ux.action.status = progressBar(arrived, total)
        if (arrived >= total) ux.action.stop('all arrived')
      },
      restored: (pid, namespaces, tasks) => this.report(pid, namespaces, tasks, container),
    })
    if (request.detached) {
      this.report(result.pid, result.namespaces, result.tasks, container)
      this.log(`  CRIU ${result.criuVersion}, ${result.durationMs} ms${result.logFile ? `; log: ${result.logFile}` : ''}`)
      const lazy = result.lazyPages
      if (lazy) {
        const mib = (lazy.bytes / 1024 / 1024).toFixed(1)
        this.log(lazy.waited
          ? `  lazy pages: restored after ${lazy.restoredMs} ms, all ${mib} MiB arrived after ${lazy.allPagesMs} ms`
          : `  lazy pages: restored after ${lazy.restoredMs} ms; the daemon (PID ${lazy.daemon.pid}) is still delivering ${mib} MiB; log: ${lazy.daemon.logFile}. Keep the images until it has exited.`)
      }
    } else {
      this.log(`The restored tree (PID ${result.pid}) has ended (${ending(result.treeExit)}), ${result.durationMs} ms after the restore began${result.logFile ? `; log: ${result.logFile}` : ''}`)
    }

    return {dryRun: false, ...result, ...withContainer(container), ...this.warnings(request)}
  }

  /** The plan of a --dry-run, printed; with --json, returned. */
  private async dryRun(request: RestoreRequest, container: ResolvedContainer | undefined) {
    const plan = await dryRunRestore(request)
    const width = stdoutWidth()
    if (container) this.log(`Joining ${describeContainer(container)}.`)
    this.log(`Images: ${stdoutColours().green(plan.integrity.verdict)}`)
    this.log(`CRIU ${plan.criuVersion}. Namespaces of the restored tree:`)
    const rows = plan.plan.namespaces.map(row => [row.type, row.action, row.detail])
    this.log(plainTable(rows, [6, 24, Math.max(20, width - 2 - 6 - 24 - (2 * GAP))]).map(line => `  ${line}`).join('\n'))
    // The commands stay on one line each, to be copied whole.
    if (plan.lazyPagesCommand) this.log(`Lazy-pages daemon, started first, in the same shell:\n  ${plan.lazyPagesCommand}`)
    this.log(`Command:\n  ${plan.command}`)
    this.log(wrap(plan.note, width))
    for (const warning of plan.warnings ?? []) this.warning(warning)
    const warnings = [...(this.warnings(request).warnings ?? []), ...(plan.warnings ?? [])]
    return {dryRun: true as const, ...plan, ...withContainer(container), ...(warnings.length > 0 ? {warnings} : {})}
  }

  /**
   * With --json the prerun hook prints no warnings (stderr stays empty): they are in the JSON.
   * Without, they were printed before the command ran.
   */
  private warnings(request: {allowUserNs?: boolean; joinNs: readonly JoinNsSpec[]}): {warnings?: string[]} {
    if (!this.jsonEnabled()) return {}
    const warnings = findProblems({allowUserNs: request.allowUserNs, joinNs: request.joinNs}).filter(p => p.severity === 'warning').map(p => p.message)
    return warnings.length > 0 ? {warnings} : {}
  }

  private report(pid: number, namespaces: JoinedNamespace[], tasks: VerifiedTask[], container?: ResolvedContainer): void {
    this.log(`Restored PID ${pid}`)
    if (container) this.log(`  into ${describeContainer(container)}`)
    const verified = stdoutColours().green('verified')
    for (const ns of namespaces) this.log(`  ${ns.type.padEnd(5)} joined ${ns.source} (inode ${ns.inode}): ${verified}`)
    if (tasks.length === 0) return
    const threads = tasks.reduce((n, t) => n + 1 + t.threads.length, 0)
    this.log(`  every task ${verified} before it was resumed: PID ${tasks.map(t => t.pid).join(', ')} (${tasks.length} ${tasks.length === 1 ? 'process' : 'processes'}, ${threads} ${threads === 1 ? 'thread' : 'threads'})`)
  }
}

/** The container in --json output, when one was joined. */
function withContainer(container?: ResolvedContainer): {container?: ResolvedContainer} {
  return container ? {container} : {}
}
