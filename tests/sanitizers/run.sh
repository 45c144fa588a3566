#!/usr/bin/env bash
# Builds fulgur under a sanitizer, in a tree of its own, and runs ctest
# there with every report of every process caught, the Python- and
# bash-driven suites' subprocesses (fulgurd, its checker and workers, the
# fulgur CLI, ranks) included.
#
#   run.sh --kind asan|tsan [--build DIR] [-R REGEX] [-E REGEX] [--no-build]
#
# asan: AddressSanitizer + LeakSanitizer + UBSan, over the whole suite.
# tsan: ThreadSanitizer over the daemon's threads (gRPC thread, libuv loop,
#       SQLite commits, worker pipes: the daemon tests) and the predict
#       engine's pool (default -R below).
# Each test runs with a log folder of its own (DIR/sanitizer-logs/TEST):
# the runtimes write their reports there (log_path) rather than to stderr,
# where a test reading a child's stderr, or a subprocess whose stderr is
# thrown away, would hide them. The run fails when a test fails or any
# report exists, and names the test and the report. The suppressions are
# tests/sanitizers/*.supp, each with why it is not ours.
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SOURCE=$(cd "$HERE/../.." && pwd)
KIND=
BUILD=
targets=()
INCLUDE=
BUILD_IT=1
# Not run under the sanitizers: fuzz/smoke builds and runs its own clang
# tree, already under ASan+UBSan; kernel_parity_* re-runs the parity tests
# with another OpenBLAS kernel set, which changes only uninstrumented code.
EXCLUDE='^fuzz/|^interop/kernel_parity_'
while (($#)); do
  case $1 in
    --kind) KIND=$2; shift 2 ;;
    --build) BUILD=$2; shift 2 ;;
    -R) INCLUDE=$2; shift 2 ;;
    -E) EXCLUDE="$EXCLUDE|$2"; shift 2 ;;
    --no-build) BUILD_IT=0; shift ;;
    -h|--help) sed -n '2,19p' "$0"; exit 0 ;;
    *) echo "sanitizers: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
done
JOBS=${JOBS:-2}

case $KIND in
  asan)
    flag=-DFG_ASAN=ON
    : "${BUILD:=build-asan}"
    ;;
  tsan)
    flag=-DFG_TSAN=ON
    : "${BUILD:=build-tsan}"
    # What those tests run; the engine's unit tests are not among them.
    targets=(--target fulgurd fulgur_worker fulgur_rank fulgur_cli fulgur_local test_daemon_services example_plugin)
    # The daemon (fulgurd loads no libtorch) and the predict engine. Not
    # unit/test_daemon_services: Criterion's runner cannot map its shared
    # arena under TSan ("Could not initialize inheritable arena"), and the
    # handlers it tests run on one thread.
    : "${INCLUDE:=^interop/test_daemon_|^interop/test_ddp_daemon\$|^integration/test_remote_cli\$|^interop/test_progress\$|^interop/test_predict\$|^interop/test_ddp_predict\$}"
    ;;
  *) echo "sanitizers: --kind must be asan or tsan" >&2; exit 2 ;;
esac

if ((BUILD_IT)); then
  launcher=()
  if command -v ccache >/dev/null; then
    launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
  fi
  if ! cmake -S "$SOURCE" -B "$BUILD" "$flag" -DCMAKE_BUILD_TYPE=Debug "${launcher[@]}" \
       >"$BUILD.configure.log" 2>&1; then
    cat "$BUILD.configure.log" >&2
    echo "sanitizers: configuring $BUILD failed" >&2
    exit 1
  fi
  if ! nice cmake --build "$BUILD" "${targets[@]}" -j"$JOBS" >"$BUILD.build.log" 2>&1; then
    tail -40 "$BUILD.build.log" >&2
    echo "sanitizers: building $BUILD failed (log: $BUILD.build.log)" >&2
    exit 1
  fi
fi
BUILD=$(cd "$BUILD" && pwd)
LOGS=$BUILD/sanitizer-logs
mkdir -p "$LOGS"

# Common to every runtime: reports to the test's folder, with stacks, and
# the process fails on the first error.
supp=$HERE
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1:suppressions=$supp/ubsan.supp"
export LSAN_OPTIONS="suppressions=$supp/lsan.supp:print_suppressions=0"
# One intra-op thread: libtorch's OpenMP pool is not instrumented, and TSan
# cannot see its barriers (tests/sanitizers/tsan.supp).
if [[ $KIND == tsan ]]; then export OMP_NUM_THREADS=1; fi

mapfile -t tests < <(cd "$BUILD" && ctest -N ${INCLUDE:+-R "$INCLUDE"} -E "$EXCLUDE" |
                     sed -n 's/^ *Test *#[0-9]*: //p')
if ((${#tests[@]} == 0)); then
  echo "sanitizers: no test matches" >&2
  exit 1
fi
echo "sanitizers ($KIND): ${#tests[@]} tests in $BUILD, $JOBS at a time"

# one TEST: runs it with its own log folder; prints one line.
one() {
  local t=$1 dir
  dir=$LOGS/${t//\//_}
  rm -rf "$dir"
  mkdir -p "$dir"
  local o="log_path=$dir/report:log_exe_name=1"
  local start=$SECONDS
  ASAN_OPTIONS="halt_on_error=1:detect_leaks=1:$o" \
  TSAN_OPTIONS="halt_on_error=0:second_deadlock_stack=1:suppressions=$supp/tsan.supp:$o" \
  UBSAN_OPTIONS="$UBSAN_OPTIONS:$o" \
    ctest --test-dir "$BUILD" -R "^${t}\$" --output-on-failure >"$dir/ctest.log" 2>&1
  local rc=$? n
  n=$(find "$dir" -name 'report*' | wc -l)
  if ((rc == 0 && n == 0)); then
    echo "ok     $t ($((SECONDS - start)) s)"
  else
    echo "FAILED $t ($((SECONDS - start)) s, ctest rc $rc, $n report(s))"
  fi
}
export -f one
export BUILD LOGS supp

start=$SECONDS
results=$(mktemp)
trap 'rm -f "$results"' EXIT
printf '%s\n' "${tests[@]}" | xargs -P "$JOBS" -I{} bash -c 'one "$@"' _ {} | tee "$results"

failed=0
for t in "${tests[@]}"; do
  dir=$LOGS/${t//\//_}
  if grep -q "^FAILED $t " "$results"; then
    failed=$((failed + 1))
    echo "---- $t: ctest (tail) ----"
    tail -30 "$dir/ctest.log"
  fi
  for r in "$dir"/report*; do
    [[ -e $r ]] || continue
    echo "---- $t: $(basename "$r") ----"
    head -60 "$r"
  done
done
echo "sanitizers ($KIND): $((${#tests[@]} - failed)) of ${#tests[@]} tests clean in $((SECONDS - start)) s"
((failed == 0))
