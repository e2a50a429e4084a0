#!/usr/bin/env bash
# Installs the pinned official OpenAI Python SDK that the integration tests use as a real client
# (retry behaviour, Responses event parsing). Source of truth: scripts/sdk/requirements.txt.
# Target: .sdk/ at the repo root (git-ignored); the interpreter is .sdk/bin/python.
#
# Usage: scripts/install-sdk.sh [--force]
#   Skips the install when .sdk/bin/python imports openai and the requirements have not changed
#   since the last successful install (their sha256 is kept in .sdk/.requirements.sha256).
set -euo pipefail

die() {
    echo "install-sdk: error: $*" >&2
    exit 1
}

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
requirements="$root/scripts/sdk/requirements.txt"
dest="$root/.sdk"
stamp="$dest/.requirements.sha256"

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

command -v python3 >/dev/null || die "python3 is not installed (need Python >= 3.9)"
[ -f "$requirements" ] || die "missing $requirements"
want="$(sha256sum "$requirements" | cut -d' ' -f1)"

if [ "$force" = 0 ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] &&
    "$dest/bin/python" -c 'import openai' 2>/dev/null; then
    echo "install-sdk: up to date in $dest (requirements unchanged; --force to reinstall)"
    exit 0
fi

echo "install-sdk: installing into $dest"
rm -rf "$dest"
python3 -m venv "$dest" || die "python3 -m venv failed (Debian: apt-get install python3-venv)"
"$dest/bin/pip" install --quiet --disable-pip-version-check --no-input -r "$requirements" ||
    die "pip install failed"
version="$("$dest/bin/python" -c 'import openai; print(openai.__version__)')" ||
    die "openai does not import after the install"
echo "install-sdk: openai $version"
echo "$want" >"$stamp"
