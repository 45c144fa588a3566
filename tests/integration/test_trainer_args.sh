#!/usr/bin/env bash
# Lightning 2.x's Trainer arguments beyond the basics: min_epochs and
# min_steps holding back EarlyStopping, max_time, the no-ops' one warning,
# the errors for what this build cannot run, and lightning_template's own
# default_runtime.yaml trainer options.
source "$(dirname "$0")/lib.sh"
PY=${FG_PYTHON:-/usr/bin/python3}

small_classifier_yaml 10 "$WORK/runs" >"$WORK/base.yaml"
# val/loss falls every epoch, so mode max asks to stop after epoch 1.
ES="[{class_path: EarlyStopping, init_args: {monitor: val/loss, mode: max, patience: 1}}]"
last_col() { tail -n 1 "$1" | cut -d, -f"$2"; }

run "min_epochs holds EarlyStopping back" 0 "$FULGUR" fit --config "$WORK/base.yaml" \
  --trainer.default_root_dir "$WORK/mine" --trainer.callbacks "$ES" --trainer.min_epochs 4
expect "the deferred stop is said once" "$ERR" "min_epochs=4 or min_steps=0 has not been met; training continues"
n=$(grep -c "has not been met" <<<"$ERR")
[[ $n == 1 ]] && pass "deferral note printed once" || fail "deferral note printed $n times"
e=$(last_col "$WORK/mine/version_0/metrics.csv" 1)
[[ $e == 3 ]] && pass "fit ended after epoch 3 (4 epochs), not 1 nor 9" || fail "last epoch $e" "$(cat "$WORK/mine/version_0/metrics.csv")"

# 8 steps an epoch: the stop asked at step 16 waits for step 20, mid-epoch.
run "min_steps holds EarlyStopping back" 0 "$FULGUR" fit --config "$WORK/base.yaml" \
  --trainer.default_root_dir "$WORK/mins" --trainer.callbacks "$ES" --trainer.min_steps 20
"$PY" - "$WORK/mins/version_0/checkpoints/last.ckpt" <<'PY' && pass "fit stopped at global step 20, in epoch 2" || fail "min_steps stop"
import sys, torch
ck = torch.load(sys.argv[1])
assert ck["global_step"] == 20 and ck["epoch"] == 2, (ck["global_step"], ck["epoch"])
PY

# max_time with no epoch limit: only the timer can end this fit.
for mt in '"00:00:00:01"' '{seconds: 1}'; do
  run "max_time $mt ends an unlimited fit" 0 "$FULGUR" fit --config "$WORK/base.yaml" \
    --trainer.default_root_dir "$WORK/mt" --trainer.max_epochs null --trainer.max_time "$mt"
  expect "max_time $mt says why it stopped" "$ERR" "max_time: time limit reached"
done
run "max_time with min_epochs" 0 "$FULGUR" fit --config "$WORK/base.yaml" --trainer.default_root_dir "$WORK/mtm" \
  --trainer.max_time '{milliseconds: 1}' --trainer.min_epochs 2
e=$(last_col "$WORK/mtm/version_0/metrics.csv" 1)
[[ $e == 1 ]] && pass "max_time waits for min_epochs 2" || fail "last epoch $e"

# The no-ops: accepted, one warning per run (not per step or epoch).
cat >"$WORK/noop.yaml" <<YAML
__base__: base.yaml
trainer:
  max_epochs: 3
  accelerator: cpu
  devices: auto
  benchmark: true
  inference_mode: false
  use_distributed_sampler: false
  plugins: null
  min_epochs: null
  max_time: null
YAML
run "no-op arguments run" 0 "$FULGUR" fit --config "$WORK/noop.yaml" --trainer.default_root_dir "$WORK/noop"
for w in "noop.yaml:6:14: trainer.benchmark: true has no effect" \
  "noop.yaml:4:16: trainer.accelerator: 'cpu' has no effect" \
  "noop.yaml:5:12: trainer.devices: 'auto' has no effect"; do
  n=$(grep -cF -- "$w" <<<"$ERR")
  [[ $n == 1 ]] && pass "warned once: $w" || fail "'$w' printed $n times" "$ERR"
done
run "defaults warn nothing" 0 "$FULGUR" fit --config "$WORK/base.yaml" --trainer.default_root_dir "$WORK/quiet" \
  --trainer.max_epochs 1
grep -q "has no effect" <<<"$ERR" && fail "a default warned" "$ERR" || pass "unwritten defaults do not warn"

# Errors: each at its file:line:col, naming what to use instead.
bad() { # NAME LINE EXPECTED
  printf '__base__: base.yaml\ntrainer:\n  %s\n' "$1" >"$WORK/bad.yaml"
  run "error: $1" 2 "$FULGUR" fit --config "$WORK/bad.yaml"
  expect "error: $1 is placed and named" "$ERR" "bad.yaml:3:$2"
}
bad "accelerator: gpu" "16: trainer.accelerator: 'gpu' is not available: this build's libtorch is CPU-only; use accelerator: cpu"
bad "accelerator: mps" "16: trainer.accelerator: 'mps' is not available"
bad "precision: 16-mixed" "14: trainer.precision: '16-mixed': CPU has no fp16 autocast in this build; use precision: 32-true"
bad "precision: 64" "14: trainer.precision: '64': float64 training is not in this build; use precision: 32-true"
bad "fast_dev_run: -1" "17: trainer.fast_dev_run: fast_dev_run=-1 is not a valid configuration. It should be >= 0"
bad "overfit_batches: 1.5" "20: trainer.overfit_batches: expected a fraction in [0.0, 1.0] or a batch count"
bad "profiler: [simple]" "13: trainer.profiler: expected null, 'simple', 'pytorch' or a profiler object"
bad "reload_dataloaders_every_n_epochs: -1" "38: trainer.reload_dataloaders_every_n_epochs: expected an integer >= 0"
bad "plugins: [x]" "12: trainer.plugins: accepts only null here"
bad "max_time: '12:00'" "13: trainer.max_time: expected \"DD:HH:MM:SS\""
bad "max_time: {hour: 1}" "20: trainer.max_time: unknown key 'hour'"
bad "min_epochs: -1" "15: trainer.min_epochs: expected an integer >= 0"

# lightning_template's own default_runtime.yaml: its Trainer arguments
# (all but its callbacks, logger and its own num_folds) as written.
RT=$FG_SOURCE_DIR/../shared/lightning_template/toy_project/configs/default_runtime.yaml
[[ -f $RT ]] || RT=/dev/null
{ echo "__base__: base.yaml"; echo "trainer:"
  awk '/^  # train len/ { on = 1 } /^# seed/ { on = 0 } on && !/num_folds/' "$RT"; } >"$WORK/runtime.yaml"
if [[ $RT != /dev/null ]]; then
  run "lightning_template's trainer options" 0 "$FULGUR" fit --config "$WORK/runtime.yaml" \
    --trainer.default_root_dir "$WORK/lt" --trainer.max_epochs 1 --trainer.enable_progress_bar false
  expect "its accelerator: auto is a warned no-op" "$ERR" "trainer.accelerator: 'auto' has no effect"
fi

finish
