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

# small_classifier_yaml MAX_EPOCHS [ROOT] : prints the small config the
# trainer-option tests share: an MLP 10-12-3 on 64 synthetic samples in
# batches of 8 (8 optimizer steps per epoch), SGD lr 0.05, a 32-sample val
# split, one thread, logging every step.
small_classifier_yaml() {
  cat <<YAML
seed_everything: 4
trainer:
  max_epochs: $1
${2:+  default_root_dir: $2
}  enable_progress_bar: false
  num_sanity_val_steps: 0
  num_threads: 1
  log_every_n_steps: 1
model:
  class_path: fulgur.ClassificationModule
  init_args:
    model:
      class_path: fulgur.models.MLP
      init_args: {in_features: 10, hidden: [12], out_features: 3}
optimizer_config:
  optimizer: {class_path: torch.optim.SGD, init_args: {lr: 0.05}}
data:
  class_path: fulgur.DataModule
  init_args:
    dataset_cfg:
      fit:
        class_path: fulgur.data.Synthetic
        init_args: {num_samples: 64, shape: [10], num_classes: 3, seed: 1}
      val:
        init_args: {num_samples: 32, seed: 2}
    dataloader_cfg: {batch_size: 8}
YAML
}

finish() {
  echo "$PASSED passed, $FAILED failed"
  [[ $FAILED -eq 0 ]]
}
