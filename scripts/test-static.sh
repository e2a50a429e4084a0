#!/usr/bin/env bash
# Proves the static binaries are what the README promises (run by `make test-static`, which
# builds them first):
#   - no PT_INTERP and no NEEDED entry (nothing for a dynamic loader to do);
#   - in an empty chroot (the binary and the directories `serve` writes, no libc, no /etc, no
#     /proc): `version` prints the version, and `serve` starts on a loopback port, answers
#     GET /healthz with 200, and exits 0 on SIGTERM;
#   - the aarch64 binary the same, run by qemu-aarch64-static copied into its chroot (that
#     emulator is itself static, so the chroot still holds no libc).
# Usage: scripts/test-static.sh X86_64_BINARY [AARCH64_BINARY]
# Needs root for chroot(2), else unprivileged user namespaces (`unshare -r`). Loopback only;
# every wait is bounded. Prints "N passed, N failed" last.
set -euo pipefail

die() { echo "test-static: error: $*" >&2; exit 1; }
[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: $0 X86_64_BINARY [AARCH64_BINARY]"

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok    $*"; }
bad() { failed=$((failed + 1)); echo "FAIL  $*"; }

# Absolute paths: the commands run under `env -i`, which leaves no PATH.
chroot_bin=$(command -v chroot || echo /usr/sbin/chroot)
if [ "$(id -u)" = 0 ]; then
    in_root=("$chroot_bin")
else
    in_root=("$(command -v unshare)" --user --map-root-user "$chroot_bin")
fi

work=$(mktemp -d /tmp/codara-test-static.XXXXXX)
server_pid=
cleanup() {
    if [ -n "$server_pid" ] && kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT

# GET http://ADDR/healthz with bash's /dev/tcp (no curl needed); prints the status line.
healthz() {
    local addr=$1 host port line
    host=${addr%:*}
    port=${addr##*:}
    exec 3<>"/dev/tcp/$host/$port" || return 1
    printf 'GET /healthz HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$addr" >&3
    IFS= read -r -t 10 line <&3 || { exec 3<&-; return 1; }
    exec 3<&-
    printf '%s\n' "${line%$'\r'}"
}

# check_elf NAME BINARY
check_elf() {
    local name=$1 bin=$2
    if readelf -l "$bin" | grep -qi interp; then
        bad "$name: has a PT_INTERP (needs a dynamic loader)"
    elif readelf -d "$bin" 2>/dev/null | grep -q NEEDED; then
        bad "$name: has NEEDED shared libraries"
    else
        ok "$name: no PT_INTERP, no NEEDED ($(file -b "$bin" | cut -d, -f1-2))"
    fi
}

# run_in_chroot NAME BINARY [EMULATOR]: version + serve/healthz/SIGTERM in an empty root.
run_in_chroot() {
    local name=$1 bin=$2 emulator=${3:-} root runner=() out
    root="$work/$name"
    mkdir -p "$root"
    cp "$bin" "$root/codara"
    if [ -n "$emulator" ]; then
        cp "$(command -v "$emulator")" "$root/emulator"
        runner=(/emulator)
    fi
    echo "      chroot $name holds: $(cd "$root" && echo *)"

    if out=$(timeout 60 env -i "${in_root[@]}" "$root" "${runner[@]}" /codara version 2>&1); then
        if [[ $out == codara\ * ]]; then ok "$name: version in an empty chroot: $out"; else bad "$name: version printed: $out"; fi
    else
        bad "$name: version failed in an empty chroot: $out"
    fi

    # serve: the data dir, workspaces and logs land under the chroot's / (its working dir).
    local stdout="$work/$name.stdout" stderr="$work/$name.stderr" addr= line status
    env -i "${in_root[@]}" "$root" "${runner[@]}" /codara serve --host 127.0.0.1 --port 0 \
        >"$stdout" 2>"$stderr" &
    server_pid=$!
    for _ in $(seq 1 600); do # up to 60 s: qemu is slow to start a server
        if line=$(grep -m1 'listening on http://' "$stdout" 2>/dev/null); then
            addr=${line##*http://}
            break
        fi
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    if [ -z "$addr" ]; then
        bad "$name: serve did not start in an empty chroot"
        sed 's/^/      | /' "$stdout" "$stderr" | tail -20
        kill -KILL "$server_pid" 2>/dev/null || true
        server_pid=
        return
    fi
    if status=$(healthz "$addr") && [[ $status == *" 200 "* ]]; then
        ok "$name: serve in an empty chroot answered /healthz: $status"
    else
        bad "$name: /healthz on $addr answered: ${status:-nothing}"
    fi
    kill -TERM "$server_pid"
    local code=0
    for _ in $(seq 1 300); do
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$server_pid" 2>/dev/null; then
        kill -KILL "$server_pid" 2>/dev/null || true
        bad "$name: serve did not stop within 30 s of SIGTERM"
    else
        wait "$server_pid" || code=$?
        if [ "$code" = 0 ]; then ok "$name: serve exited 0 on SIGTERM"; else bad "$name: serve exited $code on SIGTERM"; fi
    fi
    server_pid=
    if [ -f "$root/data/codara.db" ] && [ -f "$root/data/operator.secret" ]; then
        ok "$name: serve wrote its state under the chroot (data/codara.db, data/operator.secret)"
    else
        bad "$name: no data/codara.db or data/operator.secret in the chroot"
    fi
}

[ -f "$1" ] || die "$1 not found (make static builds it)"
check_elf x86_64 "$1"
run_in_chroot x86_64 "$1"

if [ $# -ge 2 ]; then
    [ -f "$2" ] || die "$2 not found (make static-arm64 builds it)"
    command -v qemu-aarch64-static >/dev/null || die "qemu-aarch64-static not found (apt-get install qemu-user-static)"
    check_elf aarch64 "$2"
    if file -b "$2" | grep -q aarch64; then ok "aarch64: the binary is an aarch64 ELF"; else bad "aarch64: $(file -b "$2")"; fi
    run_in_chroot aarch64 "$2" qemu-aarch64-static
fi

echo "test-static: $passed passed, $failed failed"
[ "$failed" = 0 ]
