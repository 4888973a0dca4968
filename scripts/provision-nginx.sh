#!/usr/bin/env bash
# Give the tests a real multi-process server, Debian's nginx, and print its path as the last line.
#
# The package of the system's own release is fetched through a private apt state (the system's
# sources are read, its package lists, cache and status are not touched) and unpacked with
# `dpkg -x` into .nginx/ (git-ignored). Nothing is installed system-wide. Needs root (apt-get)
# and a Debian-family system; the unpacked binary uses the system's own libraries.
#
# Idempotent: when .nginx/ already holds a working copy, this takes well under a second.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dest=${NGINX_PROVISION_DIR:-$repo/.nginx}
nginx=$dest/root/usr/sbin/nginx

say() { echo "provision-nginx: $*" >&2; }
die() { say "error: $*"; exit 1; }

if [[ -x "$nginx" ]] && "$nginx" -v >/dev/null 2>&1; then
  echo "$nginx"
  exit 0
fi

[[ $(id -u) -eq 0 ]] || die "provisioning nginx needs root (apt-get)"
command -v apt-get >/dev/null || die "no apt-get here: this script fetches Debian's nginx package"

state=$dest/apt
rm -rf "$dest/root"
mkdir -p "$state/lists/partial" "$state/cache/archives/partial" "$dest/debs"
apt_opts=(
  -o "Dir::State::Lists=$state/lists"
  -o "Dir::State::status=/dev/null"
  -o "Dir::Cache=$state/cache"
  -o "APT::Sandbox::User=root"
)
say "fetching package lists of the system's apt sources (privately)"
apt-get "${apt_opts[@]}" -qq update >&2 || die "apt-get update failed"
rm -f "$dest"/debs/*.deb
(cd "$dest/debs" && apt-get "${apt_opts[@]}" -qq download nginx >&2) || die "apt-get download nginx failed"
mkdir -p "$dest/root"
dpkg -x "$dest"/debs/nginx_*.deb "$dest/root"
[[ -x "$nginx" ]] || die "the nginx package did not contain usr/sbin/nginx"
missing=$(ldd "$nginx" 2>&1 | grep 'not found' || true)
[[ -z "$missing" ]] || die "libraries missing for nginx (install them, or use a matching release): $missing"
"$nginx" -v >/dev/null 2>&1 || die "$nginx does not run"
rm -rf "$dest/debs" "$state/cache"
say "$("$nginx" -v 2>&1)"
echo "$nginx"
