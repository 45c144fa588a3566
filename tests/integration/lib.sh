# Helpers for the integration tests: each test script sources this file,
# runs the real `fulgur` binary ($FULGUR, set by ctest) and checks what a
# user would see (exit status, stdout, stderr, files).
set -uo pipefail
: "${FULGUR:?FULGUR must name the fulgur binary}"
: "${FG_SOURCE_DIR:?}"
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
PASSED=0
FAILED=0

pass() { PASSED=$((PASSED + 1)); echo "ok - $1"; }
fail() { FAILED=$((FAILED + 1)); echo "not ok - $1"; shift; for l in "$@"; do echo "    $l"; done; }

# run NAME EXPECTED_STATUS CMD... : runs CMD, keeps stdout/stderr in $OUT/$ERR.
run() {
  local name=$1 want=$2
  shift 2
  "$@" >"$WORK/out" 2>"$WORK/err"
  STATUS=$?
  OUT=$(cat "$WORK/out")
  ERR=$(cat "$WORK/err")
  if [[ $STATUS -eq $want ]]; then
    pass "$name (exit $STATUS)"
  else
    fail "$name: exit $STATUS, expected $want" "stdout: ${OUT:0:2000}" "stderr: ${ERR:0:2000}"
  fi
}

# expect NAME HAYSTACK NEEDLE : HAYSTACK contains NEEDLE (fixed string).
expect() {
  if grep -qF -- "$3" <<<"$2"; then pass "$1"; else fail "$1: missing '$3'" "in: ${2:0:2000}"; fi
}

finish() {
  echo "$PASSED passed, $FAILED failed"
  [[ $FAILED -eq 0 ]]
}
