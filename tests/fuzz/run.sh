#!/usr/bin/env bash
# Builds the libFuzzer harnesses (tests/fuzz/CMakeLists.txt) in a clang
# tree of their own and runs each for a while on its corpus.
#
#   run.sh [--build DIR] [--seconds N] [TARGET...]
#
# N is seconds per target (default $FUZZ_SECONDS, else 60). Each target's
# corpus is its committed seeds (tests/fuzz/corpus/TARGET, with every crash
# ever found), the fixtures its CMake line names and what seeds.py makes;
# new inputs go to DIR/corpus/TARGET and stay for the next run. A crash, a
# leak, a timeout or an allocation past the limit fails the run, naming the
# target and the reproducer. Exits 77 without clang (the fuzz/smoke test
# is then skipped).
set -uo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
SOURCE=$(cd "$HERE/../.." && pwd)
BUILD=build-fuzz
SECONDS_EACH=${FUZZ_SECONDS:-60}
TARGETS=()
while (($#)); do
  case $1 in
    --build) BUILD=$2; shift 2 ;;
    --seconds) SECONDS_EACH=$2; shift 2 ;;
    -h|--help) sed -n '2,14p' "$0"; exit 0 ;;
    *) TARGETS+=("$1"); shift ;;
  esac
done
PY=${FG_PYTHON:-/usr/bin/python3}

CC=$(command -v clang-14 || command -v clang || true)
CXX=$(command -v clang++-14 || command -v clang++ || true)
if [[ -z $CC || -z $CXX ]]; then
  echo "fuzz: clang not found (deploy/install-deps.sh installs clang-14); skipping" >&2
  exit 77
fi

launcher=()
if command -v ccache >/dev/null; then
  launcher=(-DCMAKE_C_COMPILER_LAUNCHER=ccache -DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
fi
if ! cmake -S "$SOURCE" -B "$BUILD" -DFG_FUZZ=ON -DCMAKE_BUILD_TYPE=RelWithDebInfo \
     -DCMAKE_C_COMPILER="$CC" -DCMAKE_CXX_COMPILER="$CXX" "${launcher[@]}" >"$BUILD.configure.log" 2>&1; then
  cat "$BUILD.configure.log" >&2
  echo "fuzz: configuring $BUILD failed" >&2
  exit 1
fi
if ! nice cmake --build "$BUILD" --target fuzz -j"${JOBS:-2}" >"$BUILD.build.log" 2>&1; then
  tail -40 "$BUILD.build.log" >&2
  echo "fuzz: building the harnesses failed (log: $BUILD.build.log)" >&2
  exit 1
fi
BUILD=$(cd "$BUILD" && pwd)

if ((${#TARGETS[@]} == 0)); then
  mapfile -t TARGETS < <(cut -f1 "$BUILD/tests/fuzz/targets.txt")
fi

failed=()
summary=()
for t in "${TARGETS[@]}"; do
  line=$(awk -F'\t' -v t="$t" '$1 == t' "$BUILD/tests/fuzz/targets.txt")
  if [[ -z $line ]]; then
    echo "fuzz: no target '$t' (targets: $(cut -f1 "$BUILD/tests/fuzz/targets.txt" | tr '\n' ' '))" >&2
    exit 2
  fi
  work="$BUILD/corpus/$t"
  seeds="$BUILD/seeds/$t"
  crashes="$BUILD/crashes"
  mkdir -p "$work" "$seeds" "$crashes"
  # Fixture seeds (globs relative to the source tree).
  read -r -a globs <<<"$(cut -f2 <<<"$line")"
  (cd "$SOURCE" && for g in "${globs[@]}"; do
     for f in $g; do [[ -f $f ]] && cp "$f" "$seeds/$(tr / _ <<<"$f")"; done
   done)
  # Generated seeds (torch.save, gzip, protobuf): made once per tree.
  if [[ ! -e $seeds/.generated ]]; then
    if "$PY" "$HERE/seeds.py" "$t" "$seeds" >"$seeds/.log" 2>&1; then touch "$seeds/.generated"
    else echo "fuzz: $t: seeds.py failed, fuzzing without its seeds:" >&2; cat "$seeds/.log" >&2; fi
  fi
  dirs=("$work" "$seeds")
  [[ -d $HERE/corpus/$t ]] && dirs+=("$HERE/corpus/$t")
  log="$BUILD/fuzz_$t.log"
  echo "fuzz: $t for ${SECONDS_EACH}s ..." >&2
  # -malloc_limit_mb: one allocation past it is a failure; every reader
  # must size what it allocates by its input, and inputs here are small.
  (cd "$BUILD" && TMPDIR=${TMPDIR:-/tmp} nice "$BUILD/tests/fuzz/fuzz_$t" \
      -max_total_time="$SECONDS_EACH" -timeout=20 -rss_limit_mb=2560 -malloc_limit_mb=512 \
      -print_final_stats=1 -artifact_prefix="$crashes/$t-" "${dirs[@]}") >"$log" 2>&1
  rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  if ((rc != 0)); then
    repro=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    grep -m5 -E "ERROR: |SUMMARY: |runtime error|property failed|out-of-memory|timeout" "$log" >&2
    echo "fuzz: $t FAILED (exit $rc): reproducer ${repro:-none written} (log $log;" \
         "rerun: $BUILD/tests/fuzz/fuzz_$t ${repro:-<input>})" >&2
    failed+=("$t")
    summary+=("$(printf '%-8s %12s execs %8s/s  FAILED %s' "$t" "${execs:-?}" "${rate:-?}" "${repro:-}")")
  else
    summary+=("$(printf '%-8s %12s execs %8s/s  ok' "$t" "${execs:-?}" "${rate:-?}")")
  fi
done

printf '%s\n' "${summary[@]}"
if ((${#failed[@]})); then
  echo "fuzz: failed: ${failed[*]}" >&2
  exit 1
fi
