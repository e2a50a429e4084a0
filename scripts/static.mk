# Fully static musl builds of codara. Included by the top-level Makefile.
#   make static        -> dist/codara-x86_64-linux-musl
#   make static-arm64  -> dist/codara-aarch64-linux-musl
#   make test-static   -> both built (once), then proven: scripts/test-static.sh
#
# Two routes, chosen per target when make runs:
#   rustup  when `rustup target list --installed` has the musl target: rustup's own musl std,
#           self-contained link (static-pie). Only musl-tools (and, for aarch64, the cross gcc
#           and musl-dev:arm64 for the C code) come from Debian.
#   debian  otherwise: Debian's Rust 1.96 builds std itself (-Z build-std) and links with
#           musl-gcc plus LLVM's libunwind (scripts/static-shim.sh). The machines of this project
#           cannot add rustup targets (only package registries are reachable), so this is the
#           route CI takes; see shared/reference/static-build.md for why each flag is there.
# STATIC_ROUTE=debian|rustup forces one. Both use the `release` profile (panic = "unwind" on
# purpose: pooled jobs run in catch_unwind), so build-std builds panic_unwind.

STATIC_BIN      := codara
STATIC_PROFILE  := release
STATIC_DEB_ENV  := PATH=/usr/bin:/bin RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
STATIC_BUILDSTD := -Z build-std=std,panic_unwind
STATIC_SHIM     := $(CURDIR)/target/static-shim
STATIC_TDIR     := target/static
STATIC_MUSL_RF  := -C link-self-contained=no -C relocation-model=static
STATIC_CARGO    := /usr/bin/cargo build $(STATIC_BUILDSTD) --profile $(STATIC_PROFILE) --target-dir $(STATIC_TDIR)
# The rustup route keeps its own target dir: its artefacts are not interchangeable with build-std's.
STATIC_RUSTUP_TDIR := target/static-rustup
STATIC_RUSTUP_CARGO = $(CARGO) build --profile $(STATIC_PROFILE) --target-dir $(STATIC_RUSTUP_TDIR)

# Which musl targets rustup has here (empty when rustup is missing).
STATIC_RUSTUP_TARGETS := $(shell rustup target list --installed 2>/dev/null)
ifeq ($(STATIC_ROUTE),)
STATIC_ROUTE_X86   := $(if $(filter x86_64-unknown-linux-musl,$(STATIC_RUSTUP_TARGETS)),rustup,debian)
STATIC_ROUTE_ARM64 := $(if $(filter aarch64-unknown-linux-musl,$(STATIC_RUSTUP_TARGETS)),rustup,debian)
else
STATIC_ROUTE_X86   := $(STATIC_ROUTE)
STATIC_ROUTE_ARM64 := $(STATIC_ROUTE)
endif

# $(1) = binary path: fail unless truly static (no PT_INTERP, no NEEDED library), then print its size.
define static_verify
	@file $(1)
	@if readelf -l $(1) | grep -i 'interp'; then echo "error: $(1) has a PT_INTERP" >&2; exit 1; fi
	@if readelf -d $(1) | grep -q NEEDED; then echo "error: $(1) needs shared libraries" >&2; exit 1; fi
	@echo "$(1): $$(stat -c %s $(1)) bytes"
endef

.PHONY: static static-arm64 static-deps static-arm64-deps test-static \
	static-x86-debian static-x86-rustup static-arm64-debian static-arm64-rustup

static-deps:
	scripts/install-static-deps.sh $(if $(filter rustup,$(STATIC_ROUTE_X86)),rustup)

static-arm64-deps:
	scripts/install-static-deps.sh arm64 $(if $(filter rustup,$(STATIC_ROUTE_ARM64)),rustup)

static: static-x86-$(STATIC_ROUTE_X86)
	$(call static_verify,dist/$(STATIC_BIN)-x86_64-linux-musl)

static-arm64: static-arm64-$(STATIC_ROUTE_ARM64)
	$(call static_verify,dist/$(STATIC_BIN)-aarch64-linux-musl)

static-x86-debian: static-deps
	@echo "static (x86_64): Debian Rust 1.96 + -Z build-std"
	scripts/static-shim.sh amd64 $(STATIC_SHIM)/amd64
	$(STATIC_DEB_ENV) \
	CC_x86_64_unknown_linux_musl=x86_64-linux-musl-gcc \
	CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER=x86_64-linux-musl-gcc \
	CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="$(STATIC_MUSL_RF) -L $(STATIC_SHIM)/amd64" \
	$(STATIC_CARGO) --target x86_64-unknown-linux-musl
	mkdir -p dist
	cp $(STATIC_TDIR)/x86_64-unknown-linux-musl/$(STATIC_PROFILE)/$(STATIC_BIN) dist/$(STATIC_BIN)-x86_64-linux-musl

static-x86-rustup: static-deps
	@echo "static (x86_64): rustup's x86_64-unknown-linux-musl std"
	CC_x86_64_unknown_linux_musl=x86_64-linux-musl-gcc \
	$(STATIC_RUSTUP_CARGO) --target x86_64-unknown-linux-musl
	mkdir -p dist
	cp $(STATIC_RUSTUP_TDIR)/x86_64-unknown-linux-musl/$(STATIC_PROFILE)/$(STATIC_BIN) dist/$(STATIC_BIN)-x86_64-linux-musl

static-arm64-debian: static-arm64-deps
	@echo "static (aarch64): Debian Rust 1.96 + -Z build-std"
	scripts/static-shim.sh arm64 $(STATIC_SHIM)/arm64
	$(STATIC_DEB_ENV) \
	CC_aarch64_unknown_linux_musl=aarch64-linux-musl-gcc \
	AR_aarch64_unknown_linux_musl=aarch64-linux-gnu-ar \
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-musl-gcc \
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="$(STATIC_MUSL_RF) -L $(STATIC_SHIM)/arm64" \
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER=qemu-aarch64-static \
	$(STATIC_CARGO) --target aarch64-unknown-linux-musl
	mkdir -p dist
	cp $(STATIC_TDIR)/aarch64-unknown-linux-musl/$(STATIC_PROFILE)/$(STATIC_BIN) dist/$(STATIC_BIN)-aarch64-linux-musl

# rustup's aarch64 musl std links self-contained (its own crt objects and libc.a); the cross gcc
# only drives the link, and aarch64-linux-musl-gcc compiles the C code (SQLite, ring) for musl.
static-arm64-rustup: static-arm64-deps
	@echo "static (aarch64): rustup's aarch64-unknown-linux-musl std"
	CC_aarch64_unknown_linux_musl=aarch64-linux-musl-gcc \
	AR_aarch64_unknown_linux_musl=aarch64-linux-gnu-ar \
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc \
	CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUNNER=qemu-aarch64-static \
	$(STATIC_RUSTUP_CARGO) --target aarch64-unknown-linux-musl
	mkdir -p dist
	cp $(STATIC_RUSTUP_TDIR)/aarch64-unknown-linux-musl/$(STATIC_PROFILE)/$(STATIC_BIN) dist/$(STATIC_BIN)-aarch64-linux-musl

# Builds each binary once (a no-op for cargo when nothing changed) and proves it: see the script.
test-static: static static-arm64
	scripts/test-static.sh dist/$(STATIC_BIN)-x86_64-linux-musl dist/$(STATIC_BIN)-aarch64-linux-musl
