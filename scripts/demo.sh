#!/usr/bin/env bash
# A real checkpoint and restore into joined namespaces, for a person to watch:
#   1. a holder process sits in new net+uts+ipc namespaces (hostname "blue-pod"),
#   2. a small workload (a counter writing to a file) runs on the host,
#   3. CRIU checkpoints the workload,
#   4. `mycli restore -J net:<holder> -J uts:<holder> -J ipc:<holder>` restores it there,
#   5. its /proc/<pid>/ns/* are compared with the holder's, and it is shown counting on,
#   6. everything started here is ended by PID.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
[[ $(id -u) -eq 0 ]] || { echo "demo: run as root (namespaces and CRIU need it)" >&2; exit 1; }

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "Preparing: build and CRIU"
[[ -d node_modules ]] || npm ci --no-audit --no-fund
npm run --silent build >/dev/null
criu=$(bash scripts/provision-criu.sh | tail -n1)
export CRIU_PATH=$criu
echo "CRIU: $criu ($("$criu" --version | head -n1))"

work=$(mktemp -d /tmp/mycli-demo-XXXXXX)
holder='' workload='' restored=''
cleanup() {
  exec 2>/dev/null
  for pid in $restored $workload $holder; do kill -KILL "$pid" 2>/dev/null || true; done
  rm -rf "$work"
}
trap cleanup EXIT

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
sleep 0.6
echo "workload PID $workload, count $(cat "$work/count"), hostname it sees: $(hostname)"

step "3. Checkpoint it with CRIU"
mkdir "$work/ckpt"
# Reap it after the dump: a zombie would still hold the PID the restore needs. (The shell's
# own stderr is muted meanwhile, or it reports the job as "Killed".)
exec 3>&2 2>/dev/null
"$criu" dump -t "$workload" -D "$work/ckpt" -o dump.log -v2 2>&3
wait "$workload" || true
exec 2>&3 3>&-
echo "checkpoint in $work/ckpt: $(ls "$work/ckpt" | wc -l) files; the workload is gone: $(kill -0 "$workload" 2>/dev/null && echo no || echo yes)"
workload=''

step "4. mycli restore -D $work/ckpt -J net:$holder -J uts:$holder -J ipc:$holder"
node bin/run.js restore -D "$work/ckpt" -J "net:$holder" -J "uts:$holder" -J "ipc:$holder" --pidfile "$work/restored.pid"
restored=$(cat "$work/restored.pid")

step "5. The restored process is in the holder's namespaces"
printf '%-5s %-22s %-22s %s\n' ns holder restored same
for ns in net uts ipc mnt pid; do
  a=$(readlink "/proc/$holder/ns/$ns") b=$(readlink "/proc/$restored/ns/$ns")
  printf '%-5s %-22s %-22s %s\n' "$ns" "$a" "$b" "$([[ $a == "$b" ]] && echo yes || echo 'no (not joined)')"
done
before=$(cat "$work/count"); sleep 0.7; after=$(cat "$work/count")
echo "it goes on counting: $before -> $after; hostname in its namespace: $(nsenter -t "$restored" -u hostname)"

step "6. Cleaning up (by PID)"
