# Thin wrapper: every target first makes sure the Debian packages are there
# (deploy/install-deps.sh is idempotent), then drives CMake.
BUILD ?= build
CMAKE_FLAGS ?=
JOBS ?= 2

.PHONY: all deps configure build demo test bench clean asan-test tsan-test fuzz faults-long

all: build

deps:
	@bash deploy/install-deps.sh

configure: deps
	@cmake -S . -B $(BUILD) $(CMAKE_FLAGS) >/dev/null

build: configure
	@cmake --build $(BUILD) -j$(JOBS)

demo: build
	@bash examples/fashion_mnist/demo.sh $(BUILD)/fulgur

test: build
	@cd $(BUILD) && ctest --output-on-failure -j$(JOBS)

bench: build
	@bash bench/run.sh $(BUILD)

# The whole suite (unit, integration, daemon, interop) under AddressSanitizer,
# LeakSanitizer and UBSan, and the daemon's threads and the predict engine
# under ThreadSanitizer, each in a build tree of its own; a report from any
# process, subprocesses of the script tests included, fails the run
# (tests/sanitizers/run.sh). Long: not part of `make test`.
asan-test: deps
	@JOBS=$(JOBS) bash tests/sanitizers/run.sh --kind asan --build build-asan

tsan-test: deps
	@JOBS=$(JOBS) bash tests/sanitizers/run.sh --kind tsan --build build-tsan

# libFuzzer over every reader of outside bytes, FUZZ_SECONDS per target
# (default 60), in a clang tree of its own (tests/fuzz/run.sh).
FUZZ_SECONDS ?= 60
fuzz: deps
	@bash tests/fuzz/run.sh --build build-fuzz --seconds $(FUZZ_SECONDS)

# The fault tests' long form: fulgurd killed 20 times during a resumable
# job (make test kills it 3 times; tests/interop/test_daemon_chaos.py).
faults-long: build
	@cd $(BUILD) && FG_CHAOS_KILLS=20 ctest -R interop/test_daemon_chaos --output-on-failure

clean:
	rm -rf $(BUILD) build-asan build-tsan build-fuzz
