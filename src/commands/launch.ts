import {Flags} from '@oclif/core'

import {CriuCommand} from '../lib/base-command.js'
import {commandLine} from '../lib/cli-names.js'
import {RefusedError} from '../lib/errors.js'
import {
  JOIN_NS_EXAMPLE_FLAGS, JOIN_NS_TARGETS_HELP, joinableTypesHelp, joinNsFor,
} from '../lib/flags.js'
import {runLaunch} from '../lib/launch.js'

export default class Launch extends CriuCommand {
  static override criuJoinChecks = 'plain' as const
  static override description = [
    'Starts COMMAND the way `checkpoint` needs it: in a session of its own (setsid), stdin, stdout and stderr on files or /dev/null instead of this terminal, and io_uring denied to it and everything it starts by a seccomp filter (io_uring_setup fails with ENOSYS, as on a kernel without io_uring). CRIU cannot dump io_uring rings, and libuv in Node.js 22 and newer makes three at start-up; denied, it falls back to epoll. Nothing system-wide changes (unlike sysctl kernel.io_uring_disabled=2).',
    'With -J the command starts inside those namespaces (joined in the forked child, as `<%= config.bin %> ns<%= config.topicSeparator %>exec` does).',
    'Prints the PID (with --json: the PID, the command, the stdio files and the joins) and returns at once; the program runs on.',
    'Exit codes: 0 started; 1 it could not be started (a join or the filter failed); 2 refused before anything started (bad flag, missing command, a stdio file that cannot be opened).',
  ].join('\n\n')
  static override enableJsonFlag = true
  static override examples = [
    {command: '<%= config.bin %> <%= command.id %> --stdout app.log --stderr app.log -- node server.js', description: 'Start a Node.js server that can be checkpointed later.'},
    {command: '<%= config.bin %> <%= command.id %> -J net:/run/netns/blue -- node server.js', description: 'Start it inside a named network namespace.'},
    {command: 'PID=$(<%= config.bin %> <%= command.id %> -- node server.js) && <%= config.bin %> checkpoint $PID -D ./ckpt', description: 'Start it, then checkpoint it.'},
  ]
  static override flags = {
    cwd: Flags.directory({exists: true, summary: 'Run the command in this folder (default: the current one).'}),
    'join-ns': joinNsFor('exec')({
      description: [JOIN_NS_TARGETS_HELP, 'Only user takes UID and GID: the IDs the program runs as inside that user namespace.', joinableTypesHelp(false, 'exec')].join('\n\n'),
      summary: `A namespace to start the program in (e.g. ${JOIN_NS_EXAMPLE_FLAGS}).`,
    }),
    stderr: Flags.file({summary: 'Append the command\'s stderr to this file (default: /dev/null).'}),
    stdin: Flags.file({summary: 'Read the command\'s stdin from this file (default: /dev/null).'}),
    stdout: Flags.file({summary: 'Append the command\'s stdout to this file (default: /dev/null).'}),
  }
  static override strict = false
  static override summary = 'Start a program so that it can be checkpointed later (no terminal, no io_uring).'
  // No space inside an option, so that oclif breaks a long line between options.
  static override usage = '<%= command.id %> [-J NS:TARGET...] [--stdout=FILE] [--stderr=FILE] [--stdin=FILE] [--cwd=DIR] -- CMD [ARG...]'

  public async run() {
    const {argv, flags} = await this.parse(Launch)
    const [command, ...args] = argv as string[]
    if (!command) throw new RefusedError(`give the command to start after --, e.g. ${commandLine(this.id ?? 'launch', '-- node server.js')}`)
    const result = runLaunch({
      args,
      command,
      cwd: flags.cwd,
      joinNs: flags['join-ns'] ?? [],
      stderr: flags.stderr,
      stdin: flags.stdin,
      stdout: flags.stdout,
    })
    this.log(String(result.pid))
    return result
  }
}
