#!/usr/bin/env bash
# The fulgur command end to end on small synthetic data: runs, files,
# metrics, checkpoints, resume, errors and exit codes.
source "$(dirname "$0")/lib.sh"

cat >"$WORK/tiny.yaml" <<YAML
seed_everything: 7
trainer:
  max_epochs: 2
  default_root_dir: $WORK/runs
  log_every_n_steps: 4
  enable_progress_bar: false
  num_threads: 1
model:
  class_path: fulgur.ClassificationModule
  init_args:
    model:
      class_path: fulgur.models.MLP
      init_args: {in_features: 20, hidden: [16], out_features: 4}
    evaluator_cfg:
      class_path: fulgur.metrics.Accuracy
      init_args: {task: multiclass, num_classes: 4}
optimizer_config:
  optimizer:
    class_path: torch.optim.SGD
    init_args: {lr: 0.1, momentum: 0.9}
data:
  class_path: fulgur.DataModule
  init_args:
    dataset_cfg:
      fit:
        class_path: fulgur.data.Synthetic
        init_args: {num_samples: 256, shape: [20], num_classes: 4, seed: 1}
      val:
        init_args: {num_samples: 64, seed: 2}
    dataloader_cfg: {batch_size: 32, num_workers: 1}
YAML

# ---- a fit run and what it leaves behind ----
run "fit tiny" 0 "$FULGUR" fit --config "$WORK/tiny.yaml" --json
RUN="$WORK/runs/version_0"
expect "fit --json has val/Accuracy" "$OUT" '"val/Accuracy": '
expect "fit --json has fit/loss" "$OUT" '"fit/loss": '
"${FG_PYTHON:-/usr/bin/python3}" -c 'import json,sys; d=json.loads(sys.argv[1]); assert 0 <= d["val/Accuracy"] <= 1' "$OUT" \
  && pass "fit --json is one JSON object" || fail "fit --json is one JSON object" "$OUT"
for f in config.yaml metrics.csv checkpoints/epoch=1-step=16.ckpt checkpoints/last.ckpt; do
  [[ -s "$RUN/$f" ]] && pass "run dir has $f" || fail "run dir has $f" "$(ls -R "$WORK/runs")"
done
[[ ! -e "$RUN/checkpoints/epoch=0-step=8.ckpt" ]] && pass "save_top_k=1 keeps one epoch checkpoint" \
  || fail "save_top_k=1 keeps one epoch checkpoint" "$(ls "$RUN/checkpoints")"
header=$(head -n 1 "$RUN/metrics.csv")
[[ $header == "epoch,fit/Accuracy,fit/ce_loss,fit/loss,step,val/Accuracy,val/ce_loss,val/loss" ]] \
  && pass "metrics.csv header is Lightning's (sorted)" || fail "metrics.csv header" "$header"
# 16 steps logged every 4 -> 4 step rows, plus 2 fit-epoch and 2 val rows.
rows=$(($(wc -l <"$RUN/metrics.csv") - 1))
[[ $rows -eq 8 ]] && pass "metrics.csv has 8 rows" || fail "metrics.csv rows: $rows" "$(cat "$RUN/metrics.csv")"
grep -q '^seed_everything: 7$' "$RUN/config.yaml" && pass "config.yaml keeps the seed" \
  || fail "config.yaml keeps the seed" "$(head -n 5 "$RUN/config.yaml")"
grep -q 'max_steps: -1' "$RUN/config.yaml" && pass "config.yaml has defaults filled" \
  || fail "config.yaml has defaults filled"

# ---- determinism and resume ----
run "fit 4 epochs" 0 "$FULGUR" fit --config "$WORK/tiny.yaml" --trainer.max_epochs=4 \
  --trainer.default_root_dir "$WORK/full"
run "fit 2 epochs" 0 "$FULGUR" fit --config "$WORK/tiny.yaml" --trainer.default_root_dir "$WORK/half"
run "resume 2 more" 0 "$FULGUR" fit --config "$WORK/tiny.yaml" --trainer.max_epochs=4 \
  --trainer.default_root_dir "$WORK/half" --ckpt_path "$WORK/half/version_0/checkpoints/last.ckpt"
[[ -s "$WORK/half/version_1/checkpoints/epoch=3-step=32.ckpt" ]] && pass "resume continues at epoch 2, step 16" \
  || fail "resume continues at epoch 2, step 16" "$(ls -R "$WORK/half")"
run "test full run" 0 "$FULGUR" test --config "$WORK/tiny.yaml" --data.init_args.dataset_cfg.test.init_args.seed=3 \
  --trainer.default_root_dir "$WORK/t" --ckpt_path "$WORK/full/version_0/checkpoints/last.ckpt" --json
full=$OUT
run "test resumed run" 0 "$FULGUR" test --config "$WORK/tiny.yaml" --data.init_args.dataset_cfg.test.init_args.seed=3 \
  --trainer.default_root_dir "$WORK/t" --ckpt_path "$WORK/half/version_1/checkpoints/last.ckpt" --json
[[ -n $full && $full == "$OUT" ]] && pass "4 epochs == 2 + resumed 2 (same test metrics)" \
  || fail "4 epochs == 2 + resumed 2" "full:    $full" "resumed: $OUT"
expect "test --json has test/Accuracy" "$OUT" '"test/Accuracy": '
run "validate" 0 "$FULGUR" validate --config "$WORK/tiny.yaml" --trainer.default_root_dir "$WORK/t" \
  --ckpt_path "$WORK/full/version_0/checkpoints/last.ckpt"
expect "validate prints val/Accuracy" "$OUT" "val/Accuracy"

# ---- max_steps and limits ----
run "max_steps stops mid-epoch" 0 "$FULGUR" fit --config "$WORK/tiny.yaml" --trainer.max_steps=5 \
  --trainer.max_epochs=null --trainer.default_root_dir "$WORK/ms"
[[ -s "$WORK/ms/version_0/checkpoints/epoch=0-step=5.ckpt" ]] && pass "max_steps=5 ends at step 5" \
  || fail "max_steps=5 ends at step 5" "$(ls -R "$WORK/ms")"
run "limit_train_batches=3" 0 "$FULGUR" fit --config "$WORK/tiny.yaml" --trainer.limit_train_batches=3 \
  --trainer.default_root_dir "$WORK/lim"
[[ -s "$WORK/lim/version_0/checkpoints/epoch=1-step=6.ckpt" ]] && pass "limit_train_batches=3 gives 3 steps per epoch" \
  || fail "limit_train_batches=3" "$(ls -R "$WORK/lim")"

# ---- config errors: exit 2 with file:line:col and the key path ----
run "key typo" 2 "$FULGUR" fit --config "$WORK/tiny.yaml" --trainer.max_epoch=3
expect "key typo names the key and suggests" "$ERR" "trainer.max_epoch: unknown key 'max_epoch' (did you mean 'max_epochs'?)"
sed 's/class_path: fulgur.models.MLP/class_path: fulgur.models.MPL/' "$WORK/tiny.yaml" >"$WORK/typo.yaml"
run "unknown class_path" 2 "$FULGUR" fit --config "$WORK/typo.yaml"
expect "unknown class names file:line:col" "$ERR" "typo.yaml:12:19: model.init_args.model.class_path: unknown class 'fulgur.models.MPL' (did you mean 'fulgur.models.MLP'?)"
run "wrong type" 2 "$FULGUR" fit --config "$WORK/tiny.yaml" --trainer.max_epochs=three
expect "wrong type names the key" "$ERR" "trainer.max_epochs: "
run "missing config file" 2 "$FULGUR" fit --config "$WORK/nope.yaml"
expect "missing config names the file" "$ERR" "nope.yaml"
run "no command" 2 "$FULGUR"
run "unknown command" 2 "$FULGUR" frobnicate --config "$WORK/tiny.yaml"
run "fit without optimizer" 2 "$FULGUR" fit --config "$WORK/tiny.yaml" --optimizer_config=null
expect "fit without optimizer says so" "$ERR" "optimizer_config"

# ---- run failures: exit 1 with a clear message ----
run "data/model shape mismatch" 1 "$FULGUR" fit --config "$WORK/tiny.yaml" \
  --model.init_args.model.init_args.in_features=21 --trainer.default_root_dir "$WORK/bad"
expect "shape mismatch explains" "$ERR" "in_features=21"
run "missing IDX file" 1 "$FULGUR" fit --config "$WORK/tiny.yaml" --trainer.default_root_dir "$WORK/bad" \
  --data.init_args.dataset_cfg "{class_path: fulgur.data.IDX, init_args: {images: $WORK/none-images.gz, labels: $WORK/none-labels.gz}}"
expect "missing IDX names the file" "$ERR" "none-images.gz"
printf 'a,b,label\n1,2,0\n3,x,1\n' >"$WORK/bad.csv"
run "malformed CSV" 1 "$FULGUR" fit --config "$WORK/tiny.yaml" --trainer.default_root_dir "$WORK/bad" \
  --data.init_args.dataset_cfg "{class_path: fulgur.data.CSV, init_args: {path: $WORK/bad.csv, target: label}}"
expect "malformed CSV names file and line" "$ERR" "bad.csv:3"
run "missing checkpoint" 2 "$FULGUR" test --config "$WORK/tiny.yaml" --trainer.default_root_dir "$WORK/bad" \
  --ckpt_path "$WORK/none.ckpt"
expect "missing checkpoint names it" "$ERR" "none.ckpt"

# ---- print-config ----
run "print-config" 0 "$FULGUR" print-config --config "$WORK/tiny.yaml"
expect "print-config expands splits" "$OUT" "predict:"
expect "print-config fills defaults" "$OUT" "num_sanity_val_steps: 2"
run "print-config --no-validate" 0 "$FULGUR" print-config --config "$WORK/tiny.yaml" --trainer.bogus=1 --no-validate
expect "--no-validate only merges" "$OUT" "bogus: 1"

# ---- --json numbers: integral values in full, as Python's json reads them ----
# An identity model on one sample whose logits are (0, -100) with label 1:
# its cross entropy is 100 + log(1 + e^-100), exactly 100.0 in float32. The
# old writer printed it as 1e+02.
printf 'f0,f1,label\n0,-100,1\n' >"$WORK/hundred.csv"
"${FG_PYTHON:-/usr/bin/python3}" - "$WORK/identity.ckpt" <<'PY'
import sys, torch
torch.save({"epoch": 0, "global_step": 0, "state_dict": {
    "model.layers.0.weight": torch.eye(2), "model.layers.0.bias": torch.zeros(2)},
    "optimizer_states": [], "lr_schedulers": [], "callbacks": {}}, sys.argv[1])
PY
cat >"$WORK/hundred.yaml" <<YAML
trainer: {default_root_dir: $WORK/h, enable_progress_bar: false, num_threads: 1}
model:
  class_path: fulgur.ClassificationModule
  init_args:
    model: {class_path: fulgur.models.MLP, init_args: {in_features: 2, hidden: [], out_features: 2}}
optimizer_config: {optimizer: {class_path: torch.optim.SGD, init_args: {lr: 0.1}}}
data:
  class_path: fulgur.DataModule
  init_args:
    dataset_cfg: {class_path: fulgur.data.CSV, init_args: {path: $WORK/hundred.csv, target: label}}
    dataloader_cfg: {batch_size: 1}
YAML
run "test --json on the identity model" 0 "$FULGUR" test --config "$WORK/hundred.yaml" \
  --ckpt_path "$WORK/identity.ckpt" --json
expect "--json writes 100 as 100" "$OUT" '"test/loss": 100}'

# ---- cancellation: SIGINT stops at a step boundary with exit 130 ----
"$FULGUR" fit --config "$WORK/tiny.yaml" --trainer.max_epochs=100000 --trainer.default_root_dir "$WORK/c" \
  >"$WORK/out" 2>"$WORK/err" &
pid=$!
# A background job of a script starts with SIGINT ignored until fulgur
# installs its handler: wait until it is training (its run directory
# exists), or a loaded machine's slow start-up would swallow the signal.
for _ in $(seq 1200); do [[ -d $WORK/c/version_0 ]] && break; sleep 0.1; done
sleep 0.5
kill -INT $pid
wait $pid
st=$?
[[ $st -eq 130 ]] && pass "SIGINT cancels with exit 130" || fail "SIGINT cancels: exit $st" "$(cat "$WORK/err")"

finish
