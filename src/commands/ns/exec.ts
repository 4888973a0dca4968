import {Flags} from '@oclif/core'

import {CriuCommand} from '../../lib/base-command.js'
import {commandLine} from '../../lib/cli-names.js'
import {hostResolver, joinContainer} from '../../lib/containers.js'
import {RefusedError} from '../../lib/errors.js'
import {runExec} from '../../lib/exec.js'
import {
  JOIN_CONTAINER_HELP, JOIN_NS_EXAMPLE_FLAGS, JOIN_NS_TARGETS_HELP, joinableTypesHelp, joinContainer as joinContainerFlag, joinNsFor,
} from '../../lib/flags.js'
import {namesOf, POD_SHARED} from '../../lib/namespaces.js'

export default class NsExec extends CriuCommand {
  static override criuJoinChecks = 'plain' as const
  static override description = [
    'Like `nsenter`, with the -J grammar and checks of `restore`: every target is opened and type-checked first, and the command is started in exactly those namespaces (joined in a forked child, never in this process; user is joined after the others and before the credential switch).',
    'The exit status is the command\'s own (128+N when killed by signal N); 126 when it cannot be run, 127 when it is not found, 1 when a join fails, 2 when the request is refused.',
  ].join('\n\n')
  // --json is parsed (so that every refusal, the hook's included, is one JSON object on stdout
  // as for the other commands), then refused: the command's own output is the output.
  static override enableJsonFlag = true
  static override examples = [
    {command: '<%= config.bin %> <%= command.id %> -J net:1234 -J uts:1234 -- ip addr', description: 'What `nsenter -t 1234 -n -u ip addr` does.'},
    {command: '<%= config.bin %> <%= command.id %> -J user:1234:1000:1000 -J net:1234 -- id', description: 'Join a user namespace as uid/gid 1000 inside it.'},
    {command: '<%= config.bin %> <%= command.id %> -J net:/run/netns/blue -- ping -c1 10.0.0.1', description: 'Run in a named network namespace.'},
    {command: '<%= config.bin %> <%= command.id %> --join-container web -- ss -ltn', description: 'The listening sockets of the running container web, seen from its network namespace with the host\'s tools.'},
  ]
  static override flags = {
    json: Flags.boolean({hidden: true, summary: 'Refused: the command\'s own output and exit status are what ns exec gives.'}),
    gid: Flags.integer({max: 4_294_967_294, min: 0, summary: 'Switch to this GID (default: the user join\'s GID option, else unchanged).'}),
    'join-container': joinContainerFlag({
      description: ['The command runs in the namespaces of the running container\'s init, as if each were given with -J.', JOIN_CONTAINER_HELP].join('\n\n'),
      summary: `A running container to run the command in (default types: ${namesOf(POD_SHARED)}).`,
    }),
    'join-ns': joinNsFor('exec')({
      description: [
        JOIN_NS_TARGETS_HELP,
        'Only user takes UID and GID: the IDs the command runs as inside that user namespace (--uid and --gid take precedence). The form NS:TARGET,UID,GID is accepted too.',
        joinableTypesHelp(false, 'exec'),
      ].join('\n\n'),
      summary: `A namespace to run the command in (e.g. ${JOIN_NS_EXAMPLE_FLAGS}).`,
    }),
    uid: Flags.integer({max: 4_294_967_294, min: 0, summary: 'Switch to this UID (default: the user join\'s UID option, else unchanged).'}),
  }
  static override strict = false
  static override summary = 'Run a command inside joined namespaces.'
  // oclif puts the host's bin and this command's id in front; no spaces inside an option, so
  // that a long line breaks between options.
  static override usage = '<%= command.id %> [-J NS:TARGET...] [--join-container=ID[:TYPES]] [--uid=N] [--gid=N] -- CMD [ARG...]'

  public async run(): Promise<void> {
    const {argv, flags} = await this.parse(NsExec)
    const example = commandLine(this.id ?? 'ns:exec', '-J net:1234 -- ip addr')
    if (this.jsonEnabled()) {
      throw new RefusedError(
        `--json: ${commandLine(this.id ?? 'ns:exec')} gives the command this terminal's stdin, stdout and stderr and exits with the command's own status, so there is no JSON of its own to print`,
        `run it without --json (${example}); for the namespaces as JSON: ${commandLine('ns:inspect', 'PID --json')}`,
      )
    }

    const [command, ...args] = argv as string[]
    if (!command) throw new RefusedError(`give the command to run after --, e.g. ${example}`)
    const ref = flags['join-container']
    if (!ref && !flags['join-ns']) throw new RefusedError('give the namespaces to join: -J NS:PID|NS_FILE or --join-container ID', `e.g. ${example}`)
    const joins = flags['join-ns'] ?? []
    const joined = ref ? (await joinContainer(ref, {joinNs: joins}, {host: hostResolver(this.config)})).joins : []
    this.exit(await runExec({args, command, gid: flags.gid, joinNs: [...joins, ...joined], uid: flags.uid}))
  }
}
