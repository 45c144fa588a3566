# Thin wrapper: every target first makes sure the Debian packages are there
# (deploy/install-deps.sh is idempotent), then drives CMake.
BUILD ?= build
CMAKE_FLAGS ?=
JOBS ?= 2

.PHONY: all deps configure build demo test bench clean asan-test fuzz faults-long

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

# The unit tests under AddressSanitizer + UBSan, in a build tree of their own.
asan-test:
	@$(MAKE) --no-print-directory test BUILD=build-asan CMAKE_FLAGS="-DFG_ASAN=ON -DCMAKE_BUILD_TYPE=Debug"

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
	rm -rf $(BUILD) build-asan build-fuzz
