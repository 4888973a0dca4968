import {Args, Flags} from '@oclif/core'

import {CriuCommand} from '../lib/base-command.js'
import {NETWORK_LOCK_METHODS, runCheckpoint} from '../lib/checkpoint.js'
import {commandLine} from '../lib/cli-names.js'
import {externalNs, imagesDirOf, logLimit, stallTimeout} from '../lib/flags.js'
import {stdoutWidth, wrap} from '../lib/screen.js'

export default class Checkpoint extends CriuCommand {
  static override args = {
    pid: Args.integer({description: 'Root of the process tree to checkpoint.', ignoreStdin: true, min: 1, required: true}),
    dir: Args.directory({description: 'The folder for the images, as -D gives it (give one or the other).', ignoreStdin: true}),
  }
  static override description = [
    'Dumps the process tree rooted at PID with CRIU into --images-dir, ready for `restore`. Without --leave-running the tree is gone afterwards (CRIU ends it once dumped).',
    'With --external-ns net, the net namespace the tree shares with a holder (a pod, a container) is left out of the images; `restore -J net:TARGET` then puts the tree into TARGET\'s network namespace.',
    'Before CRIU starts, the tree is scanned for kernel objects CRIU cannot dump (io_uring rings, which Node.js 22 and newer make at start-up; perf events, userfaultfds): such a tree is refused with the process, the object and what to do, and is left running untouched.',
    'The folder is created when missing and must be empty unless --force. A failed dump removes the folder it created. Once CRIU has finished, a manifest of every file\'s size and XXH64 digest is written into the folder (oclif-plugin-criu.manifest.json); `<%= config.bin %> restore` and `<%= config.bin %> checkpoint<%= config.topicSeparator %>verify` check the checkpoint against it. CRIU\'s log goes to --work-dir (default: a new temporary folder).',
    'Exit codes: 0 checkpointed; 1 CRIU failed, timed out, its log grew past --log-limit, or this machine cannot do it; 2 refused before anything started; 130 interrupted.',
  ].join('\n\n')
  static override enableJsonFlag = true
  static override examples = [
    {command: '<%= config.bin %> <%= command.id %> 1234 -D ./ckpt', description: 'Checkpoint process 1234 (and its children); it ends once dumped.'},
    {command: '<%= config.bin %> <%= command.id %> 1234 -D ./ckpt --leave-running', description: 'Checkpoint and let it run on.'},
    {command: '<%= config.bin %> <%= command.id %> 1234 -D ./ckpt --external-ns net', description: 'Leave the pod\'s network namespace out; restore later with -J net:<holder>.'},
  ]
  static override flags = {
    'criu-path': Flags.string({helpGroup: 'CRIU', summary: 'CRIU binary to run (default: $CRIU_PATH, then criu on PATH; nothing else is searched).'}),
    'dry-run': Flags.boolean({summary: 'Check everything and print the exact CRIU command; dump nothing.'}),
    'ext-unix-sk': Flags.boolean({helpGroup: 'CRIU', summary: 'Allow external unix sockets (CRIU --ext-unix-sk).'}),
    'external-ns': externalNs(),
    'file-locks': Flags.boolean({helpGroup: 'CRIU', summary: 'Dump file locks (CRIU --file-locks).'}),
    force: Flags.boolean({summary: 'Write into --images-dir even when it is not empty.'}),
    'images-dir': Flags.directory({char: 'D', summary: 'Folder for the checkpoint images (created when missing); or give it as the argument DIR.'}),
    'leave-running': Flags.boolean({summary: 'Let the tree run on after the dump (CRIU --leave-running).'}),
    'log-limit': logLimit(),
    'network-lock': Flags.option({helpGroup: 'CRIU', options: NETWORK_LOCK_METHODS, summary: 'How CRIU locks the network namespace it dumps (CRIU --network-lock); `<%= config.bin %> criu<%= config.topicSeparator %>check` shows which work here.'})(),
    'shell-job': Flags.boolean({char: 'j', helpGroup: 'CRIU', summary: 'The tree is a shell job with a terminal (CRIU --shell-job).'}),
    'stall-timeout': stallTimeout(),
    'tcp-established': Flags.boolean({helpGroup: 'CRIU', summary: 'Dump established TCP connections (CRIU --tcp-established).'}),
    timeout: Flags.integer({min: 1, summary: 'Seconds to let CRIU run; then it is killed and the command fails.'}),
    verbose: Flags.integer({char: 'v', default: 4, helpGroup: 'CRIU', max: 4, min: 0, summary: 'CRIU log level, 0-4 (CRIU -v).'}),
    'work-dir': Flags.directory({char: 'W', summary: 'Folder for CRIU\'s log (default: a new temporary folder).'}),
  }
  // Short enough for one line at 80 columns; the flags are listed below it.
  static override usage = '<%= command.id %> PID [-D] DIR [FLAGS]'
  static override summary = 'Checkpoint a process tree with CRIU.'

  public async run() {
    const {args, flags} = await this.parse(Checkpoint)
    const imagesDir = imagesDirOf(flags['images-dir'], args.dir, commandLine(this.id ?? 'checkpoint', '1234 -D ./ckpt'))
    const result = await runCheckpoint(
      {
        criuPath: flags['criu-path'],
        dryRun: flags['dry-run'],
        extUnixSk: flags['ext-unix-sk'],
        externalNs: flags['external-ns'] ?? [],
        fileLocks: flags['file-locks'],
        force: flags.force,
        imagesDir,
        launchCommand: `${this.config.bin} launch`,
        leaveRunning: flags['leave-running'],
        logLimit: flags['log-limit'],
        stallSeconds: flags['stall-timeout'],
        stats: this.jsonEnabled(),
        networkLock: flags['network-lock'],
        pid: args.pid,
        shellJob: flags['shell-job'],
        tcpEstablished: flags['tcp-established'],
        timeout: flags.timeout,
        verbosity: flags.verbose,
        workDir: flags['work-dir'],
      },
      {...this.criuIO(), note: text => this.warning(text)},
    )
    if (flags['dry-run']) {
      this.log(result.command)
      if (result.note) this.log(wrap(result.note, stdoutWidth()))
      // A dry run measured nothing and wrote nothing: no duration, no log.
      return {dryRun: true, ...result, durationMs: undefined}
    }

    this.log(`Checkpointed process ${result.pid} into ${result.imagesDir} (CRIU ${result.criuVersion}, ${result.durationMs} ms)${result.leftRunning ? '; it runs on' : ''}`)
    for (const e of result.external) this.log(`  ${e.type} namespace (inode ${e.inode}) left out as ${e.key}: restore with -J ${e.type}:TARGET`)
    this.log(`  manifest: ${result.manifest} (${result.manifestFiles} files, xxh64)`)
    if (result.logFile) this.log(`  log: ${result.logFile}`)
    return {dryRun: false, ...result}
  }
}
