#!/usr/bin/env bash
# The OpenBLAS kernel choice (src/util/blas_kernel.h) as a user sees it:
# the run's log names the kernels and who chose them; on a CPU OpenBLAS
# does not know (played with the test-only FULGUR_TEST_BLAS_CORENAME and
# FULGUR_TEST_CPU_FLAGS), fulgur-local executes itself once with a better
# set, the `fulgur` launcher and fulgurd set it before the engine starts,
# a user's OPENBLAS_CORETYPE wins, and training gives the same loss under
# every set fulgur may choose. OpenBLAS's own report (OPENBLAS_VERBOSE=2
# prints "Core: NAME" each time the library initialises) is the witness
# of which kernels ran and how many times the engine started.
source "$(dirname "$0")/lib.sh"
LOCAL="$FG_BUILD_DIR/fulgur-local"
small_classifier_yaml 2 "$WORK/runs" >"$WORK/c.yaml"
FLAGS=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
has() { for f in "$@"; do [[ $FLAGS == *" $f "* ]] || return 1; done; }
AVX512="avx512f avx512dq avx512cd avx512bw avx512vl"

# clean CMD...: CMD without any kernel choice in its environment (env
# execs CMD, so a background one's $! is CMD's pid).
CLEAN=(env -u OPENBLAS_CORETYPE -u FULGUR_BLAS_FALLBACK -u FULGUR_BLAS_CHOSEN_BY
  -u FULGUR_TEST_BLAS_CORENAME -u FULGUR_TEST_CPU_FLAGS OPENBLAS_VERBOSE=2)
clean() { "${CLEAN[@]}" "$@"; }
cores() { grep -o 'Core: [A-Za-z0-9_]*' <<<"$OUT$ERR" | cut -d' ' -f2 | tr '\n' ' '; }

# ---- a CPU OpenBLAS knows: its own choice, reported, no second start ----
run "defaults: fit runs" 0 clean "$LOCAL" fit --config "$WORK/c.yaml"
OWN=$(cores)
OWN=${OWN% }
[[ $OWN != *" "* && -n $OWN ]] && pass "defaults: OpenBLAS started once ($OWN)" \
  || fail "defaults: OpenBLAS started '$OWN'" "$ERR"
expect "defaults: the log names OpenBLAS's own choice" "$ERR" \
  "fulgur: info: BLAS kernels: OpenBLAS $OWN (OpenBLAS's own choice on this CPU)"

if ! has avx avx2 fma; then
  echo "ok - skipped: the re-execution cases need a CPU with AVX2 and FMA"
  finish
  exit $?
fi
# An "unknown CPU": OpenBLAS "says" Prescott, and the CPU "has" AVX2 and FMA
# only, so the best set is Haswell, which OpenBLAS would not pick here itself.
UNKNOWN=(FULGUR_TEST_BLAS_CORENAME=Prescott "FULGUR_TEST_CPU_FLAGS=pni avx avx2 fma")

# ---- fulgur-local, run directly, executes itself once with Haswell ----
run "unknown CPU, fulgur-local: fit runs" 0 clean "${UNKNOWN[@]}" "$LOCAL" fit --config "$WORK/c.yaml" --json
expect "unknown CPU, fulgur-local: the log says who chose what instead of what" "$ERR" \
  "fulgur: info: BLAS kernels: OpenBLAS Haswell, chosen by fulgur-local (executed again): OpenBLAS's own choice on this CPU, Prescott, is a fallback"
[[ $(cores) == "$OWN Haswell " ]] && pass "unknown CPU, fulgur-local: started twice, then with Haswell" \
  || fail "unknown CPU, fulgur-local: OpenBLAS started as '$(cores)'" "$ERR"
LOSS_HASWELL=$OUT

# ---- the fulgur launcher chooses before the engine starts ----
run "unknown CPU, fulgur: fit runs" 0 clean "${UNKNOWN[@]}" "$FULGUR" fit --config "$WORK/c.yaml"
expect "unknown CPU, fulgur: chosen by the launcher" "$ERR" \
  "fulgur: info: BLAS kernels: OpenBLAS Haswell, chosen by fulgur: OpenBLAS's own choice on this CPU, Prescott, is a fallback"
# The launcher's own probe of libopenblas, then the engine, once.
[[ $(cores) == "$OWN Haswell " ]] && pass "unknown CPU, fulgur: the engine started once, with Haswell" \
  || fail "unknown CPU, fulgur: OpenBLAS started as '$(cores)'" "$ERR"

# ---- the user's OPENBLAS_CORETYPE wins, with a warning when it is slower ----
run "user's Prescott: fit runs" 0 clean "${UNKNOWN[@]}" OPENBLAS_CORETYPE=Prescott "$LOCAL" fit --config "$WORK/c.yaml"
expect "user's Prescott: kept, with a warning naming the better set" "$ERR" \
  "fulgur: warning: BLAS kernels: OpenBLAS Prescott (OPENBLAS_CORETYPE, set by the user); this CPU runs Haswell, which is faster"
[[ $(cores) == "Prescott " ]] && pass "user's Prescott: no second start" \
  || fail "user's Prescott: OpenBLAS started as '$(cores)'" "$ERR"
run "user's unknown name: fit runs" 0 clean OPENBLAS_CORETYPE=NoSuchCore "$LOCAL" fit --config "$WORK/c.yaml"
# What OpenBLAS falls back to for a name it does not know is its own
# business (on a Zen it picks Haswell, not the Zen it picks by itself):
# the warning names whatever it then ran, as its own report says.
FALLBACK=$(cores)
FALLBACK=${FALLBACK% }
expect "user's unknown name: the warning says OpenBLAS ignored it" "$ERR" \
  "fulgur: warning: BLAS kernels: OpenBLAS $FALLBACK: it does not know OPENBLAS_CORETYPE=NoSuchCore (set by the user)"
[[ -n $FALLBACK && $FALLBACK != *" "* ]] && pass "user's unknown name: OpenBLAS started once ($FALLBACK)" \
  || fail "user's unknown name: OpenBLAS started as '$FALLBACK'" "$ERR"

# ---- the same loss under every set fulgur may choose on this CPU ----
# (The interop parity tests run under each too: interop/kernel_parity_*.)
check_loss() { # NAME CPU_FLAGS
  run "$1: fit runs" 0 clean FULGUR_TEST_BLAS_CORENAME=Prescott "FULGUR_TEST_CPU_FLAGS=$2" \
    "$LOCAL" fit --config "$WORK/c.yaml" --json
  expect "$1: chosen" "$ERR" "BLAS kernels: OpenBLAS $1, chosen by"
  "$FG_PYTHON" - "$LOSS_HASWELL" "$OUT" <<'PY' && pass "$1: metrics equal Haswell's to 1e-5" || fail "$1: metrics differ" "Haswell $LOSS_HASWELL" "$1 $OUT"
import json, sys
a, b = json.loads(sys.argv[1]), json.loads(sys.argv[2])
sys.exit(0 if a.keys() == b.keys() and all(abs(a[k] - b[k]) <= 1e-5 * max(1, abs(a[k])) for k in a) else 1)
PY
}
check_loss Sandybridge "pni avx"
has $AVX512 && check_loss SkylakeX "pni avx avx2 fma $AVX512"
has $AVX512 avx512_bf16 && check_loss Cooperlake "pni avx avx2 fma $AVX512 avx512_bf16"

# ---- fulgurd sets the choice for its workers ----
FULGURD="$FG_BUILD_DIR/fulgurd"
SOCK="$WORK/d.sock"
"${CLEAN[@]}" "${UNKNOWN[@]}" "$FULGURD" --state-dir "$WORK/state" --listen "unix:$SOCK" --root "$WORK" \
  2>"$WORK/fulgurd.log" &
DPID=$!
trap 'kill -9 $DPID 2>/dev/null; rm -rf "$WORK"' EXIT
for _ in $(seq 200); do [[ -S $SOCK ]] && break; sleep 0.05; done
run "daemon: the job succeeds" 0 env FULGUR_SERVER="unix:$SOCK" "$FULGUR" submit fit --config "$WORK/c.yaml" --watch
expect "daemon: the job's log says fulgurd chose Haswell" "$OUT$ERR" \
  "BLAS kernels: OpenBLAS Haswell, chosen by fulgurd: OpenBLAS's own choice on this CPU, Prescott, is a fallback"
kill -TERM $DPID
wait $DPID
[[ $? -eq 0 ]] && pass "daemon: stops cleanly" || fail "daemon: exit status on SIGTERM" "$(cat "$WORK/fulgurd.log")"
finish
