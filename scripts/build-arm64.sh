#!/usr/bin/env bash
# Cross-compile the native module for linux-arm64 into prebuilds/linux-arm64, next to the
# host's own prebuild, so that the package loads on arm64 without running an install script
# (npm 11 blocks them). Part of `npm run build:native`.
#
# Installs what it needs when missing (root, Debian/Ubuntu): g++-aarch64-linux-gnu for the
# build, and qemu-user-static, which test/native/arm64.test.ts runs the arm64 Node under.
# Headers: the same Node headers the host build uses (npm's nodedir, else those of the
# running Node); Node-API's headers do not depend on the CPU, and node-gyp must not download
# anything (nodejs.org is not reachable everywhere this runs).
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

if [[ "$(node -p process.arch)" == arm64 ]]; then
  echo "build-arm64: this machine is arm64; prebuildify's own build is the linux-arm64 prebuild" >&2
  exit 0
fi

missing=()
command -v aarch64-linux-gnu-g++ >/dev/null || missing+=(g++-aarch64-linux-gnu)
command -v qemu-aarch64-static >/dev/null || missing+=(qemu-user-static)
if ((${#missing[@]})); then
  if [[ "$(id -u)" != 0 ]] || ! command -v apt-get >/dev/null; then
    echo "build-arm64: missing ${missing[*]}; install them (Debian: apt-get install ${missing[*]}) or run this as root" >&2
    exit 1
  fi
  echo "build-arm64: installing ${missing[*]}" >&2
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
fi

nodedir=${npm_config_nodedir:-$(dirname "$(dirname "$(node -p process.execPath)")")}
if [[ ! -f "$nodedir/include/node/node_api.h" ]]; then
  echo "build-arm64: no Node headers in $nodedir/include/node (set npm_config_nodedir to a folder with include/node/node_api.h)" >&2
  exit 1
fi

# gyp's make output takes the target compilers from CC/CXX and links with CXX; prebuildify
# strips with PREBUILD_STRIP_BIN and names the folder after --arch.
CC=aarch64-linux-gnu-gcc CXX=aarch64-linux-gnu-g++ npm_config_nodedir=$nodedir \
  npx --no-install prebuildify --napi --strip --arch arm64 --strip-bin aarch64-linux-gnu-strip

out=prebuilds/linux-arm64/oclif-plugin-criu.node
[[ "$(od -An -tx1 -j18 -N2 "$out" | tr -d ' ')" == b700 ]] || {
  echo "build-arm64: $out is not an aarch64 ELF file" >&2
  exit 1
}
