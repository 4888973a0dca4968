/**
 * The library behind the commands, usable without oclif.
 */
export {findProblems} from './lib/checks.js'
export type {JoinOptions, Problem} from './lib/checks.js'
export {
  containerJoins, joinContainer, parseContainerRef, RESOLVE_CONTAINER_EVENT, resolveContainer,
} from './lib/containers.js'
export type {ContainerRef, HostAnswer, ResolvedContainer} from './lib/containers.js'
export {criuVersion, findCriu, MIN_CRIU} from './lib/criu.js'
export {
  CriuPluginError, FailedError, InterruptedError, RefusedError,
} from './lib/errors.js'
export {formatJoinNs, JoinNsError, parseJoinNs} from './lib/join-ns.js'
export type {JoinNsSpec, JoinTargetRef} from './lib/join-ns.js'
export {
  JOINABLE, namespaceByFlag, namespaceByName, NAMESPACES, parseNamespaceList, POD_SHARED,
} from './lib/namespaces.js'
export type {NamespaceDesc, NamespaceName} from './lib/namespaces.js'
export {
  inspectPath, PinnedNamespace, pinPath, pinPid, probeHwBreakpoints, spawnJoined, waitPid,
} from './lib/native.js'
export {dryRunRestore, planRestore, runRestore} from './lib/restore.js'
export type {RestorePlan, RestoreRequest, RestoreResult} from './lib/restore.js'
