#!/usr/bin/env bash
# Install the Debian packages that `make static` / `make static-arm64` need (run as root).
# Why: no Debian package ships a musl Rust std, so we build std with Debian's Rust 1.96
# (rustc-web/cargo-web + rust-web-src, -Z build-std) and link with musl-gcc; see
# shared/reference/static-build.md. With `rustup` (rustup has the musl target: scripts/static.mk
# decides), Debian's Rust is not needed, only the C side.
# Usage: scripts/install-static-deps.sh [arm64] [rustup]
# Idempotent: only installs what is missing; retries `apt-get update` once on "Mirror sync".
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
want_arm64=0
want_debian_rust=1
for arg in "$@"; do
  case "$arg" in
    arm64) want_arm64=1 ;;
    rustup) want_debian_rust=0 ;;
    *) echo "usage: $0 [arm64] [rustup]" >&2; exit 2 ;;
  esac
done
if [ "$(id -u)" -ne 0 ]; then echo "$0: must run as root" >&2; exit 1; fi

# file + binutils (readelf) for the checks; qemu-user-static runs the aarch64 binary in tests.
pkgs=(musl-tools file binutils ca-certificates)
if [ "$want_debian_rust" = 1 ]; then
  pkgs+=(rustc-web cargo-web rust-web-src)
fi
if [ "$want_arm64" = 1 ]; then
  pkgs+=(gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu musl-dev:arm64 qemu-user-static)
fi

missing=()
for p in "${pkgs[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ "${#missing[@]}" -eq 0 ]; then echo "static deps already installed"; exit 0; fi

if [ "$want_arm64" = 1 ] && ! dpkg --print-foreign-architectures | grep -qx arm64; then
  dpkg --add-architecture arm64
fi

apt_update() {
  local log; log=$(mktemp)
  if apt-get update 2>&1 | tee "$log" && ! grep -q 'Mirror sync in progress' "$log"; then
    rm -f "$log"; return 0
  fi
  if grep -q 'Mirror sync in progress' "$log"; then
    echo "apt-get update hit a mirror sync; retrying once" >&2
    rm -f "$log"; sleep 5; apt-get update; return
  fi
  rm -f "$log"; return 1
}
apt_update
apt-get -o DPkg::Lock::Timeout=300 install -y "${missing[@]}"
echo "installed: ${missing[*]}"
