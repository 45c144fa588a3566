#!/usr/bin/env bash
# usage: kernel_parity.sh CORE — the parity tests against python3-torch
# under the OpenBLAS kernel set CORE, one of those fulgur may choose
# (src/util/blas_kernel.c). First fulgur is shown to choose CORE itself:
# OpenBLAS is made to "report" Prescott and the CPU to "have" only CORE's
# instructions (the test-only FULGUR_TEST_BLAS_CORENAME and
# FULGUR_TEST_CPU_FLAGS). Then the parity tests run with
# OPENBLAS_CORETYPE=CORE for both sides, so python3-torch, the reference,
# computes with the same kernels: different kernel sets sum in different
# orders, and a few steps of resnet18 at a high learning rate grow that
# rounding past the tests' 1e-4 (3 steps: 9e-3 between Sandybridge and
# Cooperlake), which says nothing about fulgur. Exit 77 (skipped) when
# this CPU cannot run CORE.
set -uo pipefail
: "${FULGUR:?}" "${FG_SOURCE_DIR:?}" "${FG_PYTHON:?}"
core=${1:?usage: kernel_parity.sh CORE}
avx512="avx512f avx512dq avx512cd avx512bw avx512vl"
case $core in
  Sandybridge) flags="pni avx" ;;
  Haswell) flags="pni avx avx2 fma" ;;
  SkylakeX) flags="pni avx avx2 fma $avx512" ;;
  Cooperlake) flags="pni avx avx2 fma $avx512 avx512_bf16" ;;
  *) echo "unknown kernel set '$core'" >&2; exit 2 ;;
esac
cpu=" $(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2) "
for f in $flags; do
  if [[ $cpu != *" $f "* ]]; then
    echo "skipped: this CPU has no $f, which $core needs"
    exit 77
  fi
done
unset OPENBLAS_CORETYPE FULGUR_BLAS_FALLBACK FULGUR_BLAS_CHOSEN_BY
export FULGUR_TEST_BLAS_CORENAME=Prescott FULGUR_TEST_CPU_FLAGS="$flags"

# First, that fulgur does run CORE here: the run's log says so.
# (lib.sh: small_classifier_yaml, and $WORK, removed at exit.)
source "$FG_SOURCE_DIR/tests/integration/lib.sh"
small_classifier_yaml 1 "$WORK/runs" >"$WORK/c.yaml"
log=$("$FULGUR" fit --config "$WORK/c.yaml" 2>&1)
want="BLAS kernels: OpenBLAS $core, chosen by fulgur"
if ! grep -qF "$want" <<<"$log"; then
  echo "not ok - fulgur does not run $core: $log"
  exit 1
fi
echo "ok - $want"
unset FULGUR_TEST_BLAS_CORENAME FULGUR_TEST_CPU_FLAGS
export OPENBLAS_CORETYPE=$core
status=0
for t in test_optimizer_parity test_torchscript test_model_state test_torchvision; do
  echo "# $t under $core"
  "$FG_PYTHON" "$FG_SOURCE_DIR/tests/interop/$t.py" || status=1
done
exit $status
