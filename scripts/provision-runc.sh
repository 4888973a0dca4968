#!/usr/bin/env bash
# Give the container tests a real OCI runtime and a static shell for its root file system:
# Debian's `runc` and `busybox-static`, installed with apt when missing. Prints two lines:
# the runc path, then the static busybox path.
#
# --no-install-recommends: runc recommends criu, and Debian 12's criu (3.17.1) cannot run on
# recent kernels; the tests use the CRIU that scripts/provision-criu.sh provides.
# Idempotent: when both are there, this takes a few milliseconds and changes nothing.
set -euo pipefail

say() { echo "provision-runc: $*" >&2; }
die() { say "error: $*"; exit 1; }

static_busybox() {
  local b
  for b in /bin/busybox /usr/bin/busybox; do
    # A static binary has no program interpreter; ldd says so.
    if [[ -x "$b" ]] && ! ldd "$b" >/dev/null 2>&1; then
      echo "$b"
      return 0
    fi
  done
  return 1
}

if ! command -v runc >/dev/null 2>&1 || ! static_busybox >/dev/null; then
  [[ $(id -u) == 0 ]] || die "runc or a static busybox is missing and installing them needs root"
  command -v apt-get >/dev/null 2>&1 || die "no apt-get: install runc and a statically linked busybox yourself"
  say "installing runc and busybox-static with apt (no recommends)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq >&2 || die "apt-get update failed"
  apt-get install -y -qq --no-install-recommends runc busybox-static >&2 || die "apt-get install runc busybox-static failed"
fi

runc=$(command -v runc) || die "runc is still missing"
busybox=$(static_busybox) || die "no statically linked busybox after installing busybox-static"
"$runc" --version >/dev/null || die "$runc --version failed"
echo "$runc"
echo "$busybox"
