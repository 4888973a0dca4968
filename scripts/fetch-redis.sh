#!/usr/bin/env bash
# Give the tests a Redis server and print the folder holding `redis-server` and `redis-cli` as
# the last line. The system's when both are on PATH; otherwise Debian's redis-tools (which
# holds both; redis-server is its redis-check-rdb under another name) and the libraries the
# system lacks (libjemalloc2, liblzf1), fetched with `apt-get download` and unpacked with
# `dpkg -x` into .redis/ (git-ignored). Nothing is installed system-wide and no service starts.
# Idempotent: a provisioned copy answers at once.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=${REDIS_PROVISION_DIR:-$repo/.redis}
say() { echo "fetch-redis: $*" >&2; }

if command -v redis-server >/dev/null && command -v redis-cli >/dev/null; then
  dirname "$(command -v redis-server)"
  exit 0
fi
if [[ -x "$dest/bin/redis-server" ]] && "$dest/bin/redis-server" --version >/dev/null 2>&1; then
  echo "$dest/bin"
  exit 0
fi

[[ $(id -u) -eq 0 ]] || { say "needs root (apt-get download) or redis-server and redis-cli on PATH"; exit 1; }
triplet=$(gcc -dumpmachine 2>/dev/null || echo "$(uname -m)-linux-gnu")
rm -rf "$dest"
mkdir -p "$dest/debs" "$dest/bin"
cd "$dest/debs"
packages=(redis-tools redis-server libjemalloc2 liblzf1)
if ! apt-get download "${packages[@]}" >&2 2>/dev/null; then
  say "apt-get download failed; updating the package lists first"
  apt-get update >&2
  apt-get download "${packages[@]}" >&2
fi
for deb in *.deb; do dpkg -x "$deb" "$dest/root"; done
for tool in redis-server redis-cli; do
  # exec keeps the PID: the process CRIU dumps is redis itself.
  printf '#!/bin/sh\nLD_LIBRARY_PATH=%s exec %s "$@"\n' "$dest/root/usr/lib/$triplet" "$dest/root/usr/bin/$tool" > "$dest/bin/$tool"
  chmod +x "$dest/bin/$tool"
done
"$dest/bin/redis-server" --version >&2
echo "$dest/bin"
