#!/usr/bin/env bash
# Build OUTDIR/libunwind.a for static *-linux-musl links with Debian's Rust toolchain.
# Why: std built with -Z build-std for musl links `-l static=unwind`, but Debian ships no musl
# libunwind, and gcc's libgcc_eh.a needs glibc's _dl_find_object. So we take LLVM's libunwind.a
# from libunwind-14-dev (apt-get download + dpkg -x: no install, avoiding the libunwind-dev
# conflict and the amd64/arm64 path clash) and add a tiny __fprintf_chk stub that musl lacks.
# Usage: scripts/static-shim.sh amd64|arm64|armhf OUTDIR   (idempotent: skips if already built)
set -euo pipefail
if [ $# -ne 2 ]; then echo "usage: $0 amd64|arm64|armhf OUTDIR" >&2; exit 2; fi
arch="$1"
out="$2"
case "$arch" in
  amd64) cc=x86_64-linux-musl-gcc;    ar=ar ;;
  arm64) cc=aarch64-linux-musl-gcc;   ar=aarch64-linux-gnu-ar ;;
  armhf) cc=arm-linux-musleabihf-gcc; ar=arm-linux-gnueabihf-ar ;;
  *) echo "unknown arch $arch (want amd64|arm64|armhf)" >&2; exit 2 ;;
esac
here=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$out"; out=$(cd "$out" && pwd)
stamp="$out/.shim-ok"
if [ -f "$out/libunwind.a" ] && [ -f "$stamp" ] && [ "$stamp" -nt "$here/musl_fortify_shim.c" ]; then
  echo "up to date: $out/libunwind.a"; exit 0
fi
tmp=$(mktemp -d); chmod 755 "$tmp"; trap 'rm -rf "$tmp"' EXIT
( cd "$tmp" && apt-get download "libunwind-14-dev:$arch" >/dev/null && dpkg -x libunwind-14-dev_*.deb x )
rm -f "$out/libunwind.a" "$stamp"
cp "$tmp/x/usr/lib/llvm-14/lib/libunwind.a" "$tmp/libunwind.a"; chmod u+w "$tmp/libunwind.a"
"$cc" -O2 -c "$here/musl_fortify_shim.c" -o "$tmp/fortify.o"
"$ar" r "$tmp/libunwind.a" "$tmp/fortify.o"
mv "$tmp/libunwind.a" "$out/libunwind.a"
touch "$stamp"
echo "built $out/libunwind.a"
