#!/usr/bin/env bash
# Tests `make install` / `make uninstall` (run by `make test-install`, which CI runs):
# installs BINARY into a temporary PREFIX, checks each installed file, runs
# `systemd-analyze verify` on the installed unit (it must pass with no message at all) and
# checks the hardening the unit promises, then uninstalls and checks that exactly the
# installed files are gone (a file that was there before stays).
# Usage: scripts/test-install.sh BINARY   Prints "N passed, N failed" last.
set -euo pipefail
die() { echo "test-install: error: $*" >&2; exit 1; }
[ $# -eq 1 ] && [ -x "$1" ] || die "usage: $0 BINARY (an executable codara)"
bin=$(cd "$(dirname "$1")" && pwd)/$(basename "$1")
cd "$(dirname "$0")/.."

if ! command -v systemd-analyze >/dev/null; then
    [ "$(id -u)" = 0 ] || die "systemd-analyze is missing (apt-get install systemd)"
    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends systemd
fi

passed=0
failed=0
check() { # check DESCRIPTION COMMAND...
    local what=$1; shift
    if "$@" >/dev/null 2>&1; then passed=$((passed + 1)); echo "ok    $what"; else failed=$((failed + 1)); echo "FAIL  $what"; fi
}

prefix=$(mktemp -d /tmp/codara-test-install.XXXXXX)
trap 'rm -rf "$prefix"' EXIT
mkdir -p "$prefix/bin"
echo keep >"$prefix/bin/someone-elses-tool"

make --no-print-directory install PREFIX="$prefix" INSTALL_BIN="$bin" >"$prefix.log" 2>&1 || { cat "$prefix.log"; rm -f "$prefix.log"; die "make install failed"; }
rm -f "$prefix.log"
unit="$prefix/lib/systemd/system/codara.service"
check "binary installed and runs" "$prefix/bin/codara" version
check "example config installed unchanged" cmp codara.toml.example "$prefix/share/codara/codara.toml.example"
check "sysusers.d entry for the codara user" grep -qx 'u codara - "Codara gateway" /var/lib/codara' "$prefix/lib/sysusers.d/codara.conf"
check "unit runs the installed binary" grep -qx "ExecStart=$prefix/bin/codara serve" "$unit"
for directive in User=codara StateDirectory= WorkingDirectory=/var/lib/codara ProtectSystem=strict \
    ProtectHome=yes PrivateTmp=yes NoNewPrivileges=yes ReadWritePaths=/var/lib/codara \
    CapabilityBoundingSet= UMask=0077; do
    check "unit sets $directive" grep -q "^$directive" "$unit"
done
check "unit sets no SystemCallFilter (Landlock's syscalls must stay reachable)" \
    bash -c "! grep -q '^SystemCallFilter' '$unit'"
verify=$(systemd-analyze verify "$unit" 2>&1) && status=0 || status=$?
if [ "$status" = 0 ] && [ -z "$verify" ]; then
    passed=$((passed + 1)); echo "ok    systemd-analyze verify (systemd $(systemd-analyze --version | head -1 | cut -d' ' -f2)) on the installed unit"
else
    failed=$((failed + 1)); echo "FAIL  systemd-analyze verify (exit $status):"; echo "$verify" | sed 's/^/      | /'
fi

make --no-print-directory uninstall PREFIX="$prefix" >/dev/null
left=$(cd "$prefix" && find . -type f | sort | tr '\n' ' ')
check "uninstall removed exactly the installed files (left: $left)" test "$left" = "./bin/someone-elses-tool "
check "uninstall removed share/codara" test ! -e "$prefix/share/codara"

echo "test-install: $passed passed, $failed failed"
[ "$failed" = 0 ]
