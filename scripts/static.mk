# Fully static musl builds of codara with Debian's Rust 1.96 (-Z build-std), no rustup targets.
# Why this way: see shared/reference/static-build.md. Included by the top-level Makefile.
#   make static        -> dist/codara-x86_64-linux-musl
#   make static-arm64  -> dist/codara-aarch64-linux-musl
# Uses the `release` profile (panic = "unwind" on purpose), so std is built with panic_unwind.

STATIC_BIN      := codara
STATIC_PROFILE  := release
STATIC_DEB_ENV  := PATH=/usr/bin:/bin RUSTC=/usr/bin/rustc RUSTDOC=/usr/bin/rustdoc RUSTC_BOOTSTRAP=1
STATIC_BUILDSTD := -Z build-std=std,panic_unwind
STATIC_SHIM     := $(CURDIR)/target/static-shim
STATIC_TDIR     := target/static
STATIC_MUSL_RF  := -C link-self-contained=no -C relocation-model=static
STATIC_CARGO    := /usr/bin/cargo build $(STATIC_BUILDSTD) --profile $(STATIC_PROFILE) --target-dir $(STATIC_TDIR)

# $(1) = binary path: fail unless truly static (no PT_INTERP), then print its size.
define static_verify
	@file $(1)
	@file $(1) | grep -q 'statically linked' || { echo "error: $(1) is not statically linked" >&2; exit 1; }
	@if readelf -l $(1) | grep -i interp; then echo "error: $(1) has a PT_INTERP" >&2; exit 1; fi
	@echo "$(1): $$(stat -c %s $(1)) bytes"
endef

.PHONY: static static-arm64 static-deps static-arm64-deps

static-deps:
	scripts/install-static-deps.sh

static-arm64-deps:
	scripts/install-static-deps.sh arm64

static: static-deps
	scripts/static-shim.sh amd64 $(STATIC_SHIM)/amd64
	$(STATIC_DEB_ENV) \
	CC_x86_64_unknown_linux_musl=x86_64-linux-musl-gcc \
	CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_LINKER=x86_64-linux-musl-gcc \
	CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="$(STATIC_MUSL_RF) -L $(STATIC_SHIM)/amd64" \
	$(STATIC_CARGO) --target x86_64-unknown-linux-musl
	mkdir -p dist
	cp $(STATIC_TDIR)/x86_64-unknown-linux-musl/$(STATIC_PROFILE)/$(STATIC_BIN) dist/$(STATIC_BIN)-x86_64-linux-musl
	$(call static_verify,dist/$(STATIC_BIN)-x86_64-linux-musl)

static-arm64: static-arm64-deps
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
	$(call static_verify,dist/$(STATIC_BIN)-aarch64-linux-musl)
