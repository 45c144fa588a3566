#!/usr/bin/env bash
# The seed's model-level ckpt_path (non-strict loads at fit start, in
# order, missing files warned about) and finetune_cfg (name patterns pick
# what trains; the rest stays frozen and stays out of the optimizer).
source "$(dirname "$0")/lib.sh"
PY=${FG_PYTHON:-/usr/bin/python3}

cat >"$WORK/base.yaml" <<YAML
seed_everything: 3
trainer:
  max_epochs: 1
  default_root_dir: $WORK/runs
  enable_progress_bar: false
  num_threads: 1
model:
  class_path: fulgur.ClassificationModule
  init_args:
    model:
      class_path: fulgur.models.MLP
      init_args: {in_features: 12, hidden: [16], out_features: 3}
optimizer_config:
  optimizer:
    class_path: torch.optim.Adam
    init_args: {lr: 0.01}
data:
  class_path: fulgur.DataModule
  init_args:
    dataset_cfg:
      class_path: fulgur.data.Synthetic
      init_args: {num_samples: 96, shape: [12], num_classes: 3, seed: 1}
    dataloader_cfg: {batch_size: 16}
YAML

run "pretrain" 0 "$FULGUR" fit --config "$WORK/base.yaml" --trainer.default_root_dir "$WORK/pre"
PRE="$WORK/pre/version_0/checkpoints/last.ckpt"

# Start from the pretrained weights (after a missing file, which only
# warns), freeze everything but the head (layers.2).
run "finetune the head" 0 "$FULGUR" fit --config "$WORK/base.yaml" \
  --trainer.default_root_dir "$WORK/ft" \
  --model.init_args.ckpt_path "[$WORK/missing.ckpt, $PRE]" \
  --model.init_args.finetune_cfg "{finetune: true, params: [layers.2, nothing.matches]}"
expect "a missing ckpt_path file is a warning" "$ERR" "warning: model.init_args.ckpt_path: '$WORK/missing.ckpt' does not exist; skipped"
expect "the existing file loads" "$ERR" "loaded weights from $PRE"
expect "a pattern that matches nothing is a warning" "$ERR" "finetune_cfg: 'nothing.matches' matches no parameter name"
expect "frozen parameters are reported" "$ERR" "2 of 4 parameters train"

"$PY" - "$PRE" "$WORK/ft/version_0/checkpoints/last.ckpt" <<'PY' && pass "frozen layers kept the loaded weights, the head trained, the optimizer saw only the head" || fail "finetune weights"
import sys, torch
pre = torch.load(sys.argv[1])["state_dict"]
ck = torch.load(sys.argv[2])
post = ck["state_dict"]
for k in ("model.layers.0.weight", "model.layers.0.bias"):
    assert torch.equal(pre[k], post[k]), k + " changed"
for k in ("model.layers.2.weight", "model.layers.2.bias"):
    assert not torch.equal(pre[k], post[k]), k + " did not train"
groups = ck["optimizer_states"][0]["param_groups"]
assert sum(len(g["params"]) for g in groups) == 2, groups
assert len(ck["optimizer_states"][0]["state"]) == 2
PY

# The opposite: finetune false freezes the matches.
run "finetune false freezes the matches" 0 "$FULGUR" fit --config "$WORK/base.yaml" \
  --trainer.default_root_dir "$WORK/ft2" --model.init_args.finetune_cfg "{finetune: false, params: layers.0}"
"$PY" - "$WORK/ft2/version_0/checkpoints/last.ckpt" <<'PY' && pass "finetune false: two parameters in the optimizer" || fail "finetune false"
import sys, torch
ck = torch.load(sys.argv[1])
assert sum(len(g["params"]) for g in ck["optimizer_states"][0]["param_groups"]) == 2
PY

# A bare state dict saved from Python loads too; keys it lacks are named.
"$PY" - "$WORK/bare.pt" <<'PY'
import sys, torch
torch.manual_seed(0)
torch.save({"model.layers.0.weight": torch.zeros(16, 12), "model.extra": torch.ones(1)}, sys.argv[1])
PY
run "bare state dict" 0 "$FULGUR" fit --config "$WORK/base.yaml" --trainer.default_root_dir "$WORK/bare" \
  --trainer.max_steps 1 --model.init_args.ckpt_path "$WORK/bare.pt"
expect "missing and unexpected keys are warned about" "$ERR" \
  "missing keys (3): model.layers.0.bias, model.layers.2.weight, model.layers.2.bias; unexpected keys (1): model.extra"

# Bad input.
"$PY" -c 'import sys, torch; torch.save({"state_dict": {"model.layers.0.weight": torch.zeros(5, 5)}}, sys.argv[1])' "$WORK/shape.ckpt"
run "shape mismatch" 1 "$FULGUR" fit --config "$WORK/base.yaml" --trainer.default_root_dir "$WORK/bad" \
  --model.init_args.ckpt_path "$WORK/shape.ckpt"
expect "shape mismatch names file and key" "$ERR" "shape.ckpt: the state_dict does not fit the model: missing keys (3): model.layers.0.bias, model.layers.2.weight, model.layers.2.bias; shape mismatches (1): 'model.layers.0.weight' has shape [5, 5] in the checkpoint, [16, 12] in the model"
printf 'not a checkpoint' >"$WORK/junk.ckpt"
run "not a checkpoint" 1 "$FULGUR" fit --config "$WORK/base.yaml" --trainer.default_root_dir "$WORK/bad" \
  --model.init_args.ckpt_path "$WORK/junk.ckpt"
expect "not a checkpoint names the file" "$ERR" "junk.ckpt: not a checkpoint"
run "finetune_cfg of the wrong type" 2 "$FULGUR" fit --config "$WORK/base.yaml" \
  --model.init_args.finetune_cfg 3
expect "finetune_cfg type error names the key" "$ERR" "model.init_args.finetune_cfg: expected"
run "finetune_cfg unknown key" 2 "$FULGUR" fit --config "$WORK/base.yaml" \
  --model.init_args.finetune_cfg "{params: a, finetun: false}"
expect "finetune_cfg unknown key is named" "$ERR" "model.init_args.finetune_cfg.finetun: unknown key 'finetun'"

finish
