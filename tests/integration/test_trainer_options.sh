#!/usr/bin/env bash
# Trainer options beyond the basics: EarlyStopping (and its state in
# checkpoints), val_check_interval, deterministic, and their bad input.
source "$(dirname "$0")/lib.sh"
PY=${FG_PYTHON:-/usr/bin/python3}

small_classifier_yaml 10 "$WORK/runs" >"$WORK/base.yaml"

# val/loss falls every epoch, so mode max sees no improvement after the first.
run "EarlyStopping stops" 0 "$FULGUR" fit --config "$WORK/base.yaml" --trainer.default_root_dir "$WORK/es" \
  --trainer.callbacks "[{class_path: EarlyStopping, init_args: {monitor: val/loss, mode: max, patience: 1}}]"
expect "EarlyStopping says why" "$ERR" "EarlyStopping: monitor val/loss did not improve in 1 checks"
last_epoch=$(tail -n 1 "$WORK/es/version_0/metrics.csv" | cut -d, -f1)
[[ $last_epoch == 1 ]] && pass "training ended after epoch 1 of 10" || fail "last epoch $last_epoch" "$(cat "$WORK/es/version_0/metrics.csv")"
"$PY" - "$WORK/es/version_0/checkpoints/last.ckpt" <<'PY' && pass "EarlyStopping state is in the checkpoint under Lightning's key" || fail "EarlyStopping state"
import sys, torch
ck = torch.load(sys.argv[1])
st = ck["callbacks"]["EarlyStopping{'monitor': 'val/loss', 'mode': 'max'}"]
assert st["wait_count"] == 1 and st["stopped_epoch"] == 1 and st["patience"] == 1, st
assert ck["epoch"] == 1
PY

run "stopping_threshold" 0 "$FULGUR" fit --config "$WORK/base.yaml" --trainer.default_root_dir "$WORK/thr" \
  --trainer.callbacks "[{class_path: EarlyStopping, init_args: {monitor: val/loss, stopping_threshold: 100.0}}]"
expect "stopping_threshold stops at once" "$ERR" "reached the stopping threshold 100"

run "EarlyStopping on a metric never logged" 1 "$FULGUR" fit --config "$WORK/base.yaml" \
  --trainer.default_root_dir "$WORK/bad" --trainer.callbacks "[{class_path: EarlyStopping, init_args: {monitor: val/acc}}]"
expect "missing monitor is named" "$ERR" "EarlyStopping(monitor='val/acc'): no such logged metric"
run "EarlyStopping without monitor" 2 "$FULGUR" fit --config "$WORK/base.yaml" \
  --trainer.callbacks "[{class_path: EarlyStopping}]"
expect "missing monitor key is named" "$ERR" "trainer.callbacks.0.init_args.monitor: missing required key 'monitor'"

# val_check_interval: 8 batches per epoch.
val_rows() { awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "val/loss") c = i } NR > 1 && $c != "" { n++ } END { print n + 0 }' "$1"; }
run "val_check_interval 0.5" 0 "$FULGUR" fit --config "$WORK/base.yaml" --trainer.default_root_dir "$WORK/v05" \
  --trainer.max_epochs 2 --trainer.val_check_interval 0.5
n=$(val_rows "$WORK/v05/version_0/metrics.csv")
[[ $n == 4 ]] && pass "0.5: two validations per epoch" || fail "0.5: $n validations" "$(cat "$WORK/v05/version_0/metrics.csv")"
run "val_check_interval 3" 0 "$FULGUR" fit --config "$WORK/base.yaml" --trainer.default_root_dir "$WORK/v3" \
  --trainer.max_epochs 1 --trainer.val_check_interval 3
n=$(val_rows "$WORK/v3/version_0/metrics.csv")
[[ $n == 2 ]] && pass "3 batches: validations after batches 3 and 6, not at 8" || fail "3: $n validations" "$(cat "$WORK/v3/version_0/metrics.csv")"

run "deterministic" 0 "$FULGUR" fit --config "$WORK/base.yaml" --trainer.default_root_dir "$WORK/det" \
  --trainer.max_epochs 1 --trainer.deterministic true

# evaluator_as_submodule: evaluator states in the checkpoint's state_dict.
ACC="{class_path: fulgur.metrics.Accuracy, init_args: {task: multiclass, num_classes: 3}}"
run "evaluator_as_submodule" 0 "$FULGUR" fit --config "$WORK/base.yaml" --trainer.default_root_dir "$WORK/sub" \
  --trainer.max_epochs 1 --model.init_args.evaluator_cfg "$ACC" --model.init_args.evaluator_as_submodule true
run "without evaluator_as_submodule" 0 "$FULGUR" fit --config "$WORK/base.yaml" --trainer.default_root_dir "$WORK/nosub" \
  --trainer.max_epochs 1 --model.init_args.evaluator_cfg "$ACC"
"$PY" - "$WORK/sub/version_0/checkpoints/last.ckpt" "$WORK/nosub/version_0/checkpoints/last.ckpt" <<'PY' && pass "evaluator states are saved under _evaluators. only when asked" || fail "evaluator_as_submodule state"
import sys, torch
sub = torch.load(sys.argv[1])["state_dict"]
nosub = torch.load(sys.argv[2])["state_dict"]
for k in ("_evaluators.fit.0.correct", "_evaluators.fit.0.total", "_evaluators.val.0.correct", "_evaluators.test.0.total"):
    assert k in sub and sub[k].dtype == torch.float64, (k, sorted(sub))
assert not any(k.startswith("_evaluators.") for k in nosub)
PY
run "resume with evaluator_as_submodule" 0 "$FULGUR" fit --config "$WORK/base.yaml" --trainer.default_root_dir "$WORK/sub" \
  --trainer.max_epochs 2 --model.init_args.evaluator_cfg "$ACC" --model.init_args.evaluator_as_submodule true \
  --ckpt_path "$WORK/sub/version_0/checkpoints/last.ckpt"
# AUROC keeps every score; with evaluator_as_submodule they are its state
# (TorchMetrics' names preds and target), as lightning_template's default
# evaluator_as_submodule: true needs for its AUROC and AveragePrecision.
run "evaluator_as_submodule with AUROC" 0 "$FULGUR" fit --config "$WORK/base.yaml" --trainer.default_root_dir "$WORK/auroc" \
  --trainer.max_epochs 1 --model.init_args.evaluator_as_submodule true \
  --model.init_args.evaluator_cfg "{class_path: torchmetrics.AUROC, init_args: {task: multiclass, num_classes: 3}}"
"$PY" - "$WORK/auroc/version_0/checkpoints/last.ckpt" <<'PY' && pass "AUROC's kept scores are saved as _evaluators.<split>.0.preds/target" || fail "AUROC state"
import sys, torch
sd = torch.load(sys.argv[1])["state_dict"]
p, t = sd["_evaluators.val.0.preds"], sd["_evaluators.val.0.target"]
assert p.dtype == torch.float64 and p.ndim == 2 and p.shape[1] == 3, p.shape
assert t.dtype == torch.int64 and t.shape == (p.shape[0],), t.shape
PY

# A ConfusionMatrix (inside a MetricCollection) is an artifact file, not a scalar.
COLL="{class_path: fulgur.metrics.MetricCollection, init_args: {metrics: [$ACC, {class_path: fulgur.metrics.ConfusionMatrix, init_args: {task: multiclass, num_classes: 3}}]}}"
run "ConfusionMatrix as an artifact" 0 "$FULGUR" fit --config "$WORK/base.yaml" --trainer.default_root_dir "$WORK/cm" \
  --trainer.max_epochs 1 --model.init_args.evaluator_cfg "$COLL" --json
CM="$WORK/cm/version_0/artifacts/val-ConfusionMatrix-epoch=0-step=8.csv"
[[ -s $CM ]] && pass "val confusion matrix written as CSV" || fail "no $CM" "$(ls -R "$WORK/cm/version_0")"
"$PY" - "$CM" "$OUT" <<'PY' && pass "3x3 counts over the 32 val samples, diagonal sum = accuracy" || fail "confusion matrix contents"
import json, sys
rows = [[float(v) for v in line.split(",")] for line in open(sys.argv[1]).read().split()]
assert len(rows) == 3 and all(len(r) == 3 for r in rows), rows
total = sum(map(sum, rows))
assert total == 32, total
acc = json.loads(sys.argv[2])["val/Accuracy"]
assert abs(sum(rows[i][i] for i in range(3)) / total - acc) < 1e-12
assert not any("ConfusionMatrix" in k for k in json.loads(sys.argv[2]))
PY
grep -q ConfusionMatrix "$WORK/cm/version_0/metrics.csv" && fail "ConfusionMatrix leaked into metrics.csv" || pass "metrics.csv keeps scalars only"

# Several val dataloaders, one evaluator each: keys get _<idx>.
run "two val dataloaders" 0 "$FULGUR" fit --config "$WORK/base.yaml" --trainer.default_root_dir "$WORK/twoval" \
  --trainer.max_epochs 1 --data.init_args.dataset_cfg.val "[{}, {init_args: {num_samples: 16, seed: 9}}]" \
  --model.init_args.evaluator_cfg "{fit: $ACC, val: [{}, {init_args: {top_k: 2}}]}" --json
for k in val/loss_0 val/loss_1 val/Accuracy_0 val/Accuracy_1 fit/Accuracy; do
  expect "two val dataloaders log $k" "$OUT" "\"$k\": "
done

# A checkpoint cut short is a clear error, not a crash.
head -c 3000 "$WORK/sub/version_0/checkpoints/last.ckpt" >"$WORK/cut.ckpt"
run "truncated checkpoint" 1 "$FULGUR" test --config "$WORK/base.yaml" --ckpt_path "$WORK/cut.ckpt"
expect "truncated checkpoint is named" "$ERR" "cut.ckpt: not a checkpoint"

run "bad clip algorithm" 2 "$FULGUR" fit --config "$WORK/base.yaml" --trainer.gradient_clip_algorithm norms
expect "bad clip algorithm is named" "$ERR" "trainer.gradient_clip_algorithm: expected 'norm' or 'value', got 'norms'"
run "bad accumulate" 2 "$FULGUR" fit --config "$WORK/base.yaml" --trainer.accumulate_grad_batches 0
expect "bad accumulate is named" "$ERR" "trainer.accumulate_grad_batches"

finish
