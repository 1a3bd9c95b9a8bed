# osbuild — the two set-up commands are `make demo` and `make test` (see README.md).
SWIFT       ?= swift
BOARD       ?= qemu-x86-64
RELEASE_BIN := .build/release/osbuild
export SWIFT_BACKTRACE ?= enable=no

.PHONY: all deps build release test demo bench clean-build kernel-source

all: build

deps:
	./scripts/install-deps.sh

build: deps
	$(SWIFT) build

# Static Swift runtime: ~5 ms less process start-up, which dominates a no-op build.
release: deps
	$(SWIFT) build -c release --static-swift-stdlib --product osbuild

# Everything CI runs: install, build, all tests (oracle tools included).
test: deps
	./scripts/test-setup.sh
	$(SWIFT) build --build-tests
	$(SWIFT) test --skip-build

# Build osbuild and the default board end to end, then say where the artifacts are.
demo: release
	$(RELEASE_BIN) make $(BOARD)
	$(RELEASE_BIN) status $(BOARD)

bench: release
	@for s in bench/*.sh; do echo "== $$s"; $$s || exit 1; done

clean-build:
	rm -rf .build build

# generic-aarch64 booted under qemu-system-aarch64 -M virt with AAVMF (TCG) to the
# osbuild-boot-ok marker (needs `osbuild test boot`).
boot-test-aarch64:
	$(MAKE) boot-test BOARD=generic-aarch64
