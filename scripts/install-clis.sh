#!/usr/bin/env bash
# Installs the pinned agent CLIs (codex, gemini, opencode) that the integration tests drive
# against a loopback mock model. Source of truth: scripts/clis/package.json + package-lock.json.
# Target: .clis/ at the repo root (git-ignored); binaries end up in .clis/node_modules/.bin/.
#
# Usage: scripts/install-clis.sh [--force]
#   Skips the install when all three binaries exist and the lock file has not changed since the
#   last successful install (its sha256 is kept in .clis/.lock.sha256). --force reinstalls.
#
# Install scripts stay enabled on purpose: opencode-ai's postinstall links its platform binary.
set -euo pipefail

die() {
    echo "install-clis: error: $*" >&2
    exit 1
}

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/scripts/clis"
dest="$root/.clis"
stamp="$dest/.lock.sha256"
bins=(codex gemini opencode)

force=0
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        -h | --help)
            sed -n '2,9p' "${BASH_SOURCE[0]}"
            exit 0
            ;;
        *) die "unknown argument: $arg" ;;
    esac
done

command -v node >/dev/null || die "node is not installed (need node >= 20)"
command -v npm >/dev/null || die "npm is not installed"
command -v sha256sum >/dev/null || die "sha256sum is not installed"
node_major="$(node -p 'process.versions.node.split(".")[0]')"
[ "$node_major" -ge 20 ] || die "node >= 20 is required (gemini-cli), found $(node --version)"
[ -f "$src/package.json" ] || die "missing $src/package.json"
[ -f "$src/package-lock.json" ] || die "missing $src/package-lock.json"

want="$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -d' ' -f1)"

all_present() {
    local bin
    for bin in "${bins[@]}"; do
        [ -x "$dest/node_modules/.bin/$bin" ] || return 1
    done
}

if [ "$force" = 0 ] && all_present && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "install-clis: up to date in $dest (lock unchanged; --force to reinstall)"
    exit 0
fi

echo "install-clis: installing into $dest"
start="$(date +%s)"
mkdir -p "$dest"
rm -f "$stamp"
cp "$src/package.json" "$src/package-lock.json" "$dest/"
# --no-audit/--no-fund: no extra registry calls; scripts stay enabled (opencode postinstall).
(cd "$dest" && npm ci --no-audit --no-fund --loglevel=warn) ||
    die "npm ci failed in $dest (is scripts/clis/package-lock.json complete? regenerate it with: cd scripts/clis && npm install --package-lock-only)"

all_present || die "npm ci finished but a binary is missing in $dest/node_modules/.bin (want: ${bins[*]})"
for bin in "${bins[@]}"; do
    version="$("$dest/node_modules/.bin/$bin" --version </dev/null 2>&1)" ||
        die "$bin --version failed: $version"
    echo "install-clis: $bin $version"
done

echo "$want" >"$stamp"
echo "install-clis: done in $(($(date +%s) - start)) s, $(du -sh "$dest" | cut -f1) on disk"
