# Codara — build, run, test, package. `make help` lists the targets.
#
# The two set-up commands of the README:
#   make serve   build and run on embedded defaults (./data, ./workspaces, generated secret)
#   make test    every test: unit + integration against the real binary

CARGO   ?= cargo
PREFIX  ?= /usr/local
DESTDIR ?=
ARGS    ?=

.PHONY: help build release serve test clis sdk browser lint fmt bench install uninstall clean

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
	@echo "make install       install to \$$(PREFIX) (default /usr/local)"
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
	$(CARGO) bench --bench gateway
	$(CARGO) bench --bench turns

install: release
	install -Dm755 target/release/codara $(DESTDIR)$(PREFIX)/bin/codara
	install -Dm644 codara.toml.example $(DESTDIR)$(PREFIX)/share/codara/codara.toml.example
	sed 's#/usr/local/bin/codara#$(PREFIX)/bin/codara#' scripts/codara.service > codara.service.tmp
	install -Dm644 codara.service.tmp $(DESTDIR)$(PREFIX)/lib/systemd/system/codara.service
	rm -f codara.service.tmp
	@echo "installed $(DESTDIR)$(PREFIX)/bin/codara"

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/codara $(DESTDIR)$(PREFIX)/lib/systemd/system/codara.service
	rm -rf $(DESTDIR)$(PREFIX)/share/codara

clean:
	$(CARGO) clean
	rm -rf dist

include scripts/static.mk
