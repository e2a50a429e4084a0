#!/usr/bin/env bash
# Installs what the dashboard's browser tests drive: Debian's chromium (apt, when missing and run
# as root) and the pinned playwright-core (npm, no bundled browser) into .browser/ at the repo
# root (git-ignored). Source of truth: scripts/browser/package.json + package-lock.json.
#
# Usage: scripts/install-browser.sh [--force]
#   Skips the npm install when playwright-core is present and the lock file has not changed since
#   the last successful install (its sha256 is kept in .browser/.lock.sha256). --force reinstalls.
set -euo pipefail

die() {
    echo "install-browser: error: $*" >&2
    exit 1
}

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
src="$root/scripts/browser"
dest="$root/.browser"
stamp="$dest/.lock.sha256"

force=0
for arg in "$@"; do
    case "$arg" in
        --force) force=1 ;;
        -h | --help)
            sed -n '2,8p' "${BASH_SOURCE[0]}"
            exit 0
            ;;
        *) die "unknown argument: $arg" ;;
    esac
done

# Debian's chromium: the tests never download a browser build of their own.
if ! command -v chromium >/dev/null; then
    [ "$(id -u)" = 0 ] || die "chromium is not installed and this is not root: apt-get install chromium"
    echo "install-browser: installing Debian's chromium"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null ||
        die "apt-get install chromium failed"
fi
echo "install-browser: $(chromium --version 2>/dev/null | head -1)"

command -v node >/dev/null || die "node is not installed (need node >= 20)"
command -v npm >/dev/null || die "npm is not installed"
command -v sha256sum >/dev/null || die "sha256sum is not installed"

want="$(cat "$src/package.json" "$src/package-lock.json" | sha256sum | cut -d' ' -f1)"
module="$dest/node_modules/playwright-core/package.json"
if [ "$force" = 0 ] && [ -f "$module" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
    echo "install-browser: playwright-core up to date in $dest (lock unchanged; --force to reinstall)"
    exit 0
fi

echo "install-browser: installing playwright-core into $dest"
mkdir -p "$dest"
rm -f "$stamp"
cp "$src/package.json" "$src/package-lock.json" "$dest/"
# No install scripts: playwright-core has none that matter, and it must never fetch a browser.
(cd "$dest" && PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD=1 npm ci --no-audit --no-fund --ignore-scripts --loglevel=warn) ||
    die "npm ci failed in $dest"
[ -f "$module" ] || die "npm ci finished but $module is missing"
echo "install-browser: playwright-core $(node -p "require('$module').version")"
echo "$want" >"$stamp"
