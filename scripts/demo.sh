#!/usr/bin/env bash
# A real checkpoint and restore into joined namespaces, for a person to watch:
#   1. a holder process sits in new net+uts+ipc namespaces (hostname "blue-pod"),
#   2. a small workload (a counter writing to a file) runs on the host,
#   3. the plugin's own `checkpoint` dumps it with CRIU,
#   4. `restore -J net:<holder> -J uts:<holder> -J ipc:<holder>` restores it there,
#   5. all eight /proc/<pid>/ns/* of the restored task are compared with the holder's and the
#      host's, and it is shown counting on,
#   6. everything started here is ended by PID.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
[[ $(id -u) -eq 0 ]] || { echo "demo: run as root (namespaces and CRIU need it)" >&2; exit 1; }

# Bold headings on a terminal only: plain text in pipes and logs, and never with NO_COLOR.
if [[ -t 1 && -z "${NO_COLOR:-}" ]]; then bold=$'\033[1m' plain=$'\033[0m'; else bold='' plain=''; fi
step() { printf '\n%s== %s%s\n' "$bold" "$*" "$plain"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/oclif-plugin-criu-demo-XXXXXX")
holder='' workload='' restored='' restorer=''
cleanup() {
  local status=$?
  exec 2>/dev/null
  for pid in $restored $workload $holder; do kill -KILL "$pid" 2>/dev/null || true; done
  # The restorer (CRIU's parent, see step 4) ends once the restored task has ended.
  [[ -z "$restorer" ]] || wait "$restorer" || true
  [[ -z "$holder" ]] || wait "$holder" || true
  rm -rf "$work"
  exit "$status"
}
trap cleanup EXIT

step "Preparing: install, build, CRIU"
# Build output goes to a log that is shown only when something fails.
quiet() {
  "$@" >"$work/build.log" 2>&1 || { cat "$work/build.log" >&2; echo "demo: '$*' failed" >&2; exit 1; }
}
[[ -d node_modules ]] || quiet npm ci --no-audit --no-fund
quiet npm run --silent build
criu=$(bash scripts/provision-criu.sh 2>"$work/provision.log" | tail -n1) || { cat "$work/provision.log" >&2; exit 1; }
export CRIU_PATH=$criu
echo "CRIU: $criu ($("$criu" --version | head -n1))"
mycli() { node bin/run.js "$@"; }

step "1. A holder in new net, uts and ipc namespaces"
unshare --net --uts --ipc sh -c 'hostname blue-pod; ip link set lo up; exec sleep 100000' &
holder=$!
for _ in $(seq 100); do [[ "$(cat /proc/$holder/comm 2>/dev/null)" == sleep ]] && break; sleep 0.02; done
echo "holder PID $holder, hostname $(nsenter -t "$holder" -u hostname)"

step "2. A workload on the host: counts once every 0.2 s into $work/count"
# One process, no children: PID 1 here does not reap orphans, and an orphaned zombie child
# would keep the workload's session ID, and so its PID, taken after the checkpoint.
setsid python3 -c '
import sys, time
i = 0
while True:
    i += 1
    with open(sys.argv[1], "w") as f:
        f.write(str(i))
    time.sleep(0.2)
' "$work/count" </dev/null >/dev/null 2>&1 &
workload=$!
for _ in $(seq 250); do [[ -s "$work/count" ]] && break; sleep 0.02; done
sleep 0.4
echo "workload PID $workload, count $(cat "$work/count"), hostname it sees: $(hostname)"
declare -A host_ns
for ns in cgroup ipc mnt net pid time user uts; do host_ns[$ns]=$(readlink "/proc/$workload/ns/$ns"); done

step "3. mycli checkpoint $workload -D $work/ckpt"
# Reap it after the dump: a zombie would still hold the PID the restore needs. (The shell's
# own stderr is muted meanwhile, or it reports the job as "Killed"; the command's is not.)
exec 3>&2 2>/dev/null
node bin/run.js checkpoint "$workload" -D "$work/ckpt" 2>&3
wait "$workload" || true
exec 2>&3 3>&-
echo "the workload is gone: $(kill -0 "$workload" 2>/dev/null && echo no || echo yes)"
workload=''

step "4. mycli restore -D $work/ckpt -J net:$holder -J uts:$holder -J ipc:$holder"
# --no-restore-detached keeps CRIU as the restored task's parent, so that the task is reaped
# when the demo ends it (PID 1 here does not reap orphans). The command prints the verified
# joins, then waits in the background until the task has ended.
mycli restore -D "$work/ckpt" -J "net:$holder" -J "uts:$holder" -J "ipc:$holder" \
  --no-restore-detached --pidfile "$work/restored.pid" &
restorer=$!
for _ in $(seq 500); do [[ -s "$work/restored.pid" ]] && break; kill -0 "$restorer" 2>/dev/null || break; sleep 0.02; done
[[ -s "$work/restored.pid" ]] || { wait "$restorer"; restorer=''; echo "demo: the restore failed" >&2; exit 1; }
restored=$(cat "$work/restored.pid")
sleep 0.3 # let the command print its verified joins first

step "5. The restored process, namespace by namespace"
printf '%-7s %-20s %-20s %-20s %s\n' type host holder restored 'restored task is in'
for ns in cgroup ipc mnt net pid time user uts; do
  h=${host_ns[$ns]} k=$(readlink "/proc/$holder/ns/$ns") r=$(readlink "/proc/$restored/ns/$ns")
  if [[ $r == "$k" && $r != "$h" ]]; then where="the holder's (joined)"
  elif [[ $r == "$h" ]]; then where="the host's (same as before)"
  else where='a new one (made by CRIU)'
  fi
  printf '%-7s %-20s %-20s %-20s %s\n' "$ns" "${h#*:}" "${k#*:}" "${r#*:}" "$where"
done
before=$(cat "$work/count"); sleep 0.7; after=$(cat "$work/count")
echo "it goes on counting: $before -> $after; hostname in its namespace: $(nsenter -t "$restored" -u hostname)"

step "6. Cleaning up (by PID)"
