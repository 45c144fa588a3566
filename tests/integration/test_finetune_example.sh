#!/usr/bin/env bash
# examples/fashion_mnist/finetune.yaml on the real Fashion-MNIST files, cut
# short with limits: pretrain briefly with mlp.yaml, then fine-tune from
# that checkpoint with everything but the head frozen, a linear warmup and
# MultiStepLR.
source "$(dirname "$0")/lib.sh"
PY=${FG_PYTHON:-/usr/bin/python3}
EX="$FG_SOURCE_DIR/examples/fashion_mnist"
SHORT=(--trainer.limit_train_batches 20 --trainer.limit_val_batches 2 --trainer.num_sanity_val_steps 0
       --trainer.enable_progress_bar false --trainer.log_every_n_steps 5)

run "pretrain (short)" 0 "$FULGUR" fit --config "$EX/mlp.yaml" --trainer.default_root_dir "$WORK/pre" \
  --trainer.max_epochs 1 "${SHORT[@]}"
PRE="$WORK/pre/version_0/checkpoints/last.ckpt"
run "finetune example (short)" 0 "$FULGUR" fit --config "$EX/finetune.yaml" \
  --trainer.default_root_dir "$WORK/ft" --trainer.max_epochs 4 --model.init_args.ckpt_path "$PRE" \
  --optimizer_config.lr_scheduler.warmup_config.warmup_iters 30 "${SHORT[@]}"
expect "starts from the pretrained weights" "$ERR" "loaded weights from $PRE"
expect "only the head trains" "$ERR" "finetune_cfg: 2 of 6 parameters train"
"$PY" - "$PRE" "$WORK/ft/version_0" <<'PY' && pass "frozen layers unchanged, head trained, lr warmed up then decayed at epoch 3" || fail "finetune example results"
import csv, sys, torch
pre = torch.load(sys.argv[1])["state_dict"]
post = torch.load(sys.argv[2] + "/checkpoints/last.ckpt")["state_dict"]
for k in pre:
    same = torch.equal(pre[k], post[k])
    assert same == (not k.startswith("model.layers.6")), k
rows = [r for r in csv.DictReader(open(sys.argv[2] + "/metrics.csv")) if r.get("lr-SGD")]
lrs = [(int(r["step"]), float(r["lr-SGD"])) for r in rows]
# linear warmup from 1% of 0.01 over 30 steps: 0.01 * (1 - (1 - s/30) * 0.99)
assert all(abs(lr - 0.01 * (1 - (1 - s / 30) * 0.99)) < 1e-12 for s, lr in lrs if s <= 30), lrs
assert any(abs(lr - 0.01) < 1e-12 for s, lr in lrs if 30 <= s < 60), lrs   # warmed up
assert all(abs(lr - 0.001) < 1e-12 for s, lr in lrs if s >= 60), lrs       # MultiStepLR at epoch 3
PY
finish
