# SPDX-License-Identifier: Apache-2.0
# Thin wrapper around CMake. `make run` and `make test` are the two commands in README.md.
BUILD      ?= build
JOBS       ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_ARGS ?=
# CI builds with -Werror; locally too unless WERROR=0.
WERROR     ?= 1
VAR        ?= $(CURDIR)/var
HOST       ?= 127.0.0.1
PORT       ?= 8080

.PHONY: all deps deps-test build run demo test test-unit test-e2e bench clean

all: build

deps:
	@scripts/install-deps.sh

# the packages, and the tests' tools that are no Debian package (helm: scripts/install-helm.sh)
deps-test:
	@scripts/install-deps.sh test

$(BUILD)/Makefile: CMakeLists.txt
	cmake -S . -B $(BUILD) -DAIMEDRES_WERROR=$(if $(filter 1,$(WERROR)),ON,OFF) $(CMAKE_ARGS)

build: $(BUILD)/Makefile
	cmake --build $(BUILD) -j $(JOBS)

# Demo models (synthetic cohorts, trained by `aimedres model train`) are created once.
demo: build
	@$(BUILD)/aimedres demo init --dir $(VAR)

# HOST and PORT (make variables or the environment, as the server reads them) move it.
run: deps build demo
	MODEL_STORAGE_PATH=$(VAR)/models DATABASE_URL=sqlite://$(VAR)/aimedres.db \
	  exec $(BUILD)/aimedres serve --host $(HOST) --port $(PORT)

test: deps-test build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)

test-unit: build
	cd $(BUILD) && ctest --output-on-failure -R '^[a-z]+/test_' -E '^e2e/'

test-e2e: build
	cd $(BUILD) && ctest --output-on-failure -R '^e2e/'

bench: deps build
	@scripts/install-deps.sh bench
	bench/run.sh

# reliability (issue 7): libFuzzer targets (clang) and the whole suite under ASan+UBSan.
FUZZ_SECONDS ?= 25
.PHONY: fuzz test-sanitize
fuzz: deps
	FUZZ_SECONDS=$(FUZZ_SECONDS) WERROR=$(WERROR) scripts/fuzz.sh

test-sanitize: deps-test
	WERROR=$(WERROR) scripts/test-sanitize.sh

# image (opt-in: root + podman, a few minutes, not in `make test`): build and run deploy/compose/Dockerfile
.PHONY: test-image
test-image: build
	scripts/test-image.sh --bin $(BUILD)/aimedres

clean:
	rm -rf $(BUILD)
