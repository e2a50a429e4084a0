# syntax=docker/dockerfile:1
# Codara: fully static musl binary built with Debian's toolchain (see scripts/static.mk),
# shipped on bookworm-slim next to the Node-based CLIs it drives.

FROM debian:bookworm AS builder
WORKDIR /src
COPY scripts/install-static-deps.sh scripts/install-static-deps.sh
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends make \
 && scripts/install-static-deps.sh
COPY . .
RUN make static && rm -rf target

FROM debian:bookworm-slim
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends nodejs npm git ca-certificates \
 && rm -rf /var/lib/apt/lists/*
# The CLIs (codex, gemini, opencode) are pinned in scripts/clis/package.json when it exists.
COPY scripts/ /tmp/codara-scripts/
RUN if [ -f /tmp/codara-scripts/clis/package.json ]; then \
      mkdir -p /opt/codara-clis \
      && cp /tmp/codara-scripts/clis/package*.json /opt/codara-clis/ \
      && if [ -f /opt/codara-clis/package-lock.json ]; then \
           npm ci --prefix /opt/codara-clis --omit=dev; \
         else \
           npm install --prefix /opt/codara-clis --omit=dev; \
         fi \
      && npm cache clean --force; \
    else \
      echo "scripts/clis/package.json not found: no CLIs installed"; \
    fi \
 && rm -rf /tmp/codara-scripts
ENV PATH=/opt/codara-clis/node_modules/.bin:$PATH
COPY --from=builder /src/dist/codara-x86_64-linux-musl /usr/local/bin/codara
COPY scripts/docker/codara.toml /etc/codara/codara.toml
RUN mkdir -p /data /workspaces /logs /config
VOLUME ["/data", "/workspaces", "/logs", "/config"]
# Point CODARA_CONFIG at /config/codara.toml once you mount one there.
ENV CODARA_CONFIG=/etc/codara/codara.toml
EXPOSE 8000
CMD ["codara", "serve", "--host", "0.0.0.0"]
