#!/usr/bin/env bash
# ModelCheckpoint as Lightning 2.x names and links its files: filename
# templates (format specs, '/' in metric names, auto_insert_metric_name, a
# key nobody logged), the version counter, save_last: link,
# lightning_template's ModelCheckpointWithLinkBest (best.ckpt),
# every_n_train_steps, and the options a config cannot express. The expected
# names are formatted by Python's format() from the logged values.
source "$(dirname "$0")/lib.sh"
PY=${FG_PYTHON:-/usr/bin/python3}

# 64 samples in batches of 8: 8 optimizer steps per epoch; val/loss falls
# every epoch at this lr.
small_classifier_yaml 3 >"$WORK/base.yaml"

# lightning_template's default_runtime.yaml callback, as its configs write it.
run "ModelCheckpointWithLinkBest fit" 0 "$FULGUR" fit --config "$WORK/base.yaml" --trainer.default_root_dir "$WORK/lb" \
  --trainer.callbacks '[{class_path: lightning_template.utils.callbacks.model_checkpoint.ModelCheckpointWithLinkBest, init_args: {monitor: val/loss, filename: "epoch:{epoch:03d}-val_loss:{val/loss:.4g}", save_top_k: 2, save_last: link, save_best: true, mode: min, auto_insert_metric_name: false}}]'
"$PY" - "$WORK/lb/version_0" <<'PY' && pass "template names, top-2, last.ckpt and best.ckpt links as Lightning's" || fail "ModelCheckpointWithLinkBest files" "$(ls -la "$WORK/lb/version_0/checkpoints" 2>&1)"
import csv, os, sys, torch
run = sys.argv[1]; d = os.path.join(run, "checkpoints")
rows = [r for r in csv.DictReader(open(os.path.join(run, "metrics.csv"))) if r.get("val/loss")]
loss = {int(r["epoch"]): float(r["val/loss"]) for r in rows}
assert sorted(loss) == [0, 1, 2], loss
name = lambda e: "epoch:%s-val_loss:%s.ckpt" % (format(e, "03d"), format(loss[e], ".4g"))
best = min(loss, key=loss.get)
kept = sorted(sorted(loss, key=loss.get)[:2])
files = sorted(f for f in os.listdir(d) if not os.path.islink(os.path.join(d, f)))
assert files == sorted(name(e) for e in kept), (files, loss)
assert os.readlink(os.path.join(d, "last.ckpt")) == name(2), os.readlink(os.path.join(d, "last.ckpt"))
assert os.readlink(os.path.join(d, "best.ckpt")) == name(best), os.readlink(os.path.join(d, "best.ckpt"))
for link, epoch in (("last.ckpt", 2), ("best.ckpt", best)):
    ck = torch.load(os.path.join(d, link))
    assert ck["epoch"] == epoch and ck["state_dict"], (link, ck["epoch"])
    st = ck["callbacks"]["ModelCheckpoint"]
    assert os.path.basename(st["best_model_path"]) == name(best), st
PY
run "resume from the last.ckpt link" 0 "$FULGUR" fit --config "$WORK/base.yaml" --trainer.default_root_dir "$WORK/lb2" \
  --trainer.max_epochs 4 --ckpt_path "$WORK/lb/version_0/checkpoints/last.ckpt"

# auto_insert_metric_name keeps the '/' of val/loss: a folder, as in Lightning.
# A key nobody logged formats as the integer 0 (Lightning's torch.tensor(0)).
run "auto_insert_metric_name with / and a missing key" 0 "$FULGUR" fit --config "$WORK/base.yaml" \
  --trainer.default_root_dir "$WORK/ai" \
  --trainer.callbacks '[{class_path: lightning.pytorch.callbacks.ModelCheckpoint, init_args: {monitor: val/loss, filename: "{epoch}-{val/loss:.3f}-{nope:.2f}", save_top_k: 1, save_last: true}}]'
"$PY" - "$WORK/ai/version_0" <<'PY' && pass "epoch=2-val/loss=<.3f>-nope=0.00.ckpt, last.ckpt a copy" || fail "auto_insert names" "$(find "$WORK/ai/version_0/checkpoints" 2>&1)"
import csv, os, sys, torch
run = sys.argv[1]; d = os.path.join(run, "checkpoints")
rows = [r for r in csv.DictReader(open(os.path.join(run, "metrics.csv"))) if r.get("val/loss")]
loss = float(rows[-1]["val/loss"])
p = os.path.join(d, "epoch=2-val", "loss=%s-nope=%s.ckpt" % (format(loss, ".3f"), format(0, ".2f")))
assert os.path.isfile(p), p
assert torch.load(p)["epoch"] == 2
last = os.path.join(d, "last.ckpt")
assert os.path.isfile(last) and not os.path.islink(last)
found = [os.path.join(r, f) for r, _, fs in os.walk(d) for f in fs]
assert sorted(found) == sorted([p, last]), found
PY

# every_n_train_steps alone: no epoch-end saves (Lightning's __init_triggers);
# {epoch} alone repeats, so the version counter names -v1.
run "every_n_train_steps" 0 "$FULGUR" fit --config "$WORK/base.yaml" --trainer.default_root_dir "$WORK/st" \
  --trainer.max_epochs 2 \
  --trainer.callbacks '[{class_path: ModelCheckpoint, init_args: {every_n_train_steps: 3, save_top_k: -1, save_last: link}}, {class_path: ModelCheckpoint, init_args: {dirpath: '"$WORK/st/ep"', filename: "{epoch}", every_n_train_steps: 4, save_top_k: -1}}]'
"$PY" - "$WORK/st/version_0/checkpoints" "$WORK/st/ep" <<'PY' && pass "saves after steps 3, 6, ..., 15; -v1 for a repeated name; last links the newest" || fail "every_n_train_steps files" "$(ls -la "$WORK/st/version_0/checkpoints" "$WORK/st/ep" 2>&1)"
import os, sys, torch
d, ep = sys.argv[1:]
want = ["epoch=%d-step=%d.ckpt" % ((s - 1) // 8, s) for s in (3, 6, 9, 12, 15)]
files = sorted(f for f in os.listdir(d) if f != "last.ckpt")
assert files == sorted(want), files
assert os.readlink(os.path.join(d, "last.ckpt")) == "epoch=1-step=15.ckpt"
ck = torch.load(os.path.join(d, "epoch=0-step=6.ckpt"))
assert ck["global_step"] == 6 and ck["epoch"] == 0, (ck["global_step"], ck["epoch"])
assert sorted(os.listdir(ep)) == ["epoch=0-v1.ckpt", "epoch=0.ckpt", "epoch=1-v1.ckpt", "epoch=1.ckpt"], os.listdir(ep)
PY
run "resume inside an epoch from a step checkpoint" 0 "$FULGUR" fit --config "$WORK/base.yaml" \
  --trainer.default_root_dir "$WORK/st2" --trainer.max_epochs 2 --ckpt_path "$WORK/st/version_0/checkpoints/epoch=0-step=6.ckpt"
[[ -f "$WORK/st2/version_0/checkpoints/last.ckpt" ]] && pass "the resumed run finished and saved" || fail "resume from a step checkpoint" "$ERR"

# save_on_train_epoch_end: false saves after each validation of the fit:
# with val_check_interval 0.5, twice an epoch (mid-epoch at step 4).
run "save_on_train_epoch_end false" 0 "$FULGUR" fit --config "$WORK/base.yaml" --trainer.default_root_dir "$WORK/ve" \
  --trainer.max_epochs 1 --trainer.val_check_interval 0.5 \
  --trainer.callbacks '[{class_path: ModelCheckpoint, init_args: {save_on_train_epoch_end: false, save_top_k: -1}}]'
got=$(ls "$WORK/ve/version_0/checkpoints" | sort | tr '\n' ' ')
[[ $got == "epoch=0-step=4.ckpt epoch=0-step=8.ckpt " ]] && pass "saved at each validation" || fail "save_on_train_epoch_end false: $got"

run "train_time_interval" 2 "$FULGUR" fit --config "$WORK/base.yaml" \
  --trainer.callbacks '[{class_path: ModelCheckpoint, init_args: {train_time_interval: "1:00:00"}}]'
expect "train_time_interval is named" "$ERR" "trainer.callbacks.0.init_args.train_time_interval"
expect "train_time_interval says why" "$ERR" "timedelta"
run "save_last: copy" 2 "$FULGUR" fit --config "$WORK/base.yaml" \
  --trainer.callbacks '[{class_path: ModelCheckpoint, init_args: {save_last: copy}}]'
expect "save_last is named" "$ERR" "expected true, false, null or 'link', got 'copy'"
run "bad format spec" 2 "$FULGUR" fit --config "$WORK/base.yaml" --trainer.default_root_dir "$WORK/bs" --trainer.max_epochs 1 \
  --trainer.callbacks '[{class_path: ModelCheckpoint, init_args: {filename: "{epoch:.3q}"}}]'
expect "bad format spec is named" "$ERR" "invalid format spec '.3q' for the integer epoch"
finish
