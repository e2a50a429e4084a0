# syntax=docker/dockerfile:1
# Codara: the fully static musl binary (built the way `make static` builds it: Debian's Rust 1.96,
# -Z build-std, musl; see scripts/static.mk), on the official Node 22 image with the three agent
# CLIs pinned in scripts/clis (gemini-cli needs node >= 20; Debian bookworm's nodejs is 18).
#   docker compose up -d        (see docker-compose.yml, .env.example, config/codara.toml)
# The builder cross-compiles on the build host's platform; images for linux/amd64 and
# linux/arm64 (`docker buildx build --platform linux/arm64 .`) come from an amd64 build host.

# Debian's Rust 1.96 (rustc-web) comes from bookworm-security, which the image's sources include.
FROM --platform=$BUILDPLATFORM debian:bookworm AS builder
ARG TARGETARCH
WORKDIR /src
COPY scripts/install-static-deps.sh scripts/install-static-deps.sh
# The apt lists stay in this stage: scripts/static-shim.sh `apt-get download`s libunwind.
# Unpinned apt packages (DL3008): bookworm only takes security fixes, which a pin would block.
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends make ca-certificates \
 && if [ "$TARGETARCH" = arm64 ]; then scripts/install-static-deps.sh arm64; else scripts/install-static-deps.sh; fi
COPY . .
RUN case "$TARGETARCH" in \
      amd64|"") make static STATIC_ROUTE=debian && cp dist/codara-x86_64-linux-musl /codara ;; \
      arm64) make static-arm64 STATIC_ROUTE=debian && cp dist/codara-aarch64-linux-musl /codara ;; \
      *) echo "unsupported TARGETARCH $TARGETARCH (amd64 or arm64)" >&2; exit 1 ;; \
    esac

FROM node:22-bookworm-slim
# git: workspaces are repositories and every turn is snapshotted with git; tini: PID 1 that
# forwards SIGTERM (graceful stop) and reaps what the agent CLIs leave behind.
# Unpinned apt packages (DL3008): bookworm only takes security fixes, which a pin would block.
# hadolint ignore=DL3008
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends git ca-certificates tini \
 && rm -rf /var/lib/apt/lists/*
# The CLIs exactly as the tests pin them (package-lock.json); install scripts stay on
# (opencode-ai's postinstall links its platform binary).
WORKDIR /opt/codara-clis
COPY scripts/clis/package.json scripts/clis/package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund \
 && npm cache clean --force \
 && ./node_modules/.bin/codex --version && ./node_modules/.bin/gemini --version \
 && ./node_modules/.bin/opencode --version
ENV PATH=/opt/codara-clis/node_modules/.bin:$PATH
COPY --from=builder /codara /usr/local/bin/codara
# The volumes' mount points, owned by the unprivileged user the server runs as (the official
# image's `node`, uid/gid 1000, numeric so the host resolves it the same): named volumes start
# with this ownership.
RUN mkdir -p /data /workspaces /logs /config \
 && chown 1000:1000 /data /workspaces /logs \
 && chmod 0700 /data
COPY config/codara.toml /config/codara.toml
USER 1000:1000
WORKDIR /data
ENV CODARA_CONFIG=/config/codara.toml \
    HOME=/home/node
VOLUME ["/data", "/workspaces", "/logs"]
EXPOSE 8000
# node is in the image anyway (no curl in -slim); the port follows CODARA_PORT when set.
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.CODARA_PORT || 8000) + '/healthz').then(r => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--", "codara"]
CMD ["serve"]
