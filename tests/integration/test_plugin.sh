#!/usr/bin/env bash
# C plugins: examples/plugin's shared object adds a module class (two hooks
# overridden, the rest inherited) and a dataset; fulgur loads it from the
# config's `plugins:` list. Bad plugins are config errors naming them.
source "$(dirname "$0")/lib.sh"
: "${FG_BUILD_DIR:?}"
PY=${FG_PYTHON:-/usr/bin/python3}
SO="$FG_BUILD_DIR/libexample_plugin.so"
CFG="$FG_SOURCE_DIR/examples/plugin/xor.yaml"
FAST=(--trainer.enable_progress_bar false --trainer.num_threads 1)

run "fit with the example plugin" 0 "$FULGUR" fit --config "$CFG" --plugins "[$SO, $SO]" \
  --trainer.default_root_dir "$WORK/xor" --trainer.max_epochs 15 --trainer.log_every_n_steps 1 "${FAST[@]}" --json
"$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); assert d["val/Accuracy"] >= 0.9, d' "$OUT" \
  && pass "the plugin's module learns the plugin's XOR data (val/Accuracy >= 0.9)" || fail "XOR accuracy" "$OUT"
"$PY" -c 'import json,sys; d=json.loads(sys.argv[1]); assert abs(d["val/error_rate"] + d["val/Accuracy"] - 1) < 1e-12, d' "$OUT" \
  && pass "the plugin's compute_evaluator hook adds val/error_rate" || fail "compute_evaluator hook" "$OUT"
# Inherited loss_weights: the same first step with weight 1 and 0.01.
for w in 1.0 0.01; do
  "$FULGUR" fit --config "$CFG" --plugins "[$SO]" --trainer.default_root_dir "$WORK/w$w" --trainer.max_steps 1 \
    --trainer.log_every_n_steps 1 --model.init_args.loss_weights "{penalty_loss: $w}" "${FAST[@]}" 2>/dev/null
done
"$PY" - "$WORK/w1.0/version_0/metrics.csv" "$WORK/w0.01/version_0/metrics.csv" <<'PY' && pass "inherited loss_weights weigh the plugin's loss terms; loss is their sum" || fail "loss weights"
import csv, sys
one, small = (next(r for r in csv.DictReader(open(p)) if r.get("fit/penalty_loss")) for p in sys.argv[1:])
assert abs(float(small["fit/penalty_loss"]) - 0.01 * float(one["fit/penalty_loss"])) < 1e-7, (one, small)
for r in (one, small):
    assert abs(float(r["fit/loss"]) - float(r["fit/ce_loss"]) - float(r["fit/penalty_loss"])) < 1e-6, r
PY


# The plugin's predict hooks (by name): a probs task over a scores dependency.
run "predict with the plugin's hooks" 0 "$FULGUR" predict --config "$CFG" --plugins "[$SO]" "${FAST[@]}" \
  --ckpt_path "$WORK/xor/version_0/checkpoints/last.ckpt" --model.init_args.predict_tasks "[probs]"
"$PY" - "$WORK/xor/version_0/visualization/probs/predictions.pt" <<'PY' && pass "the plugin's predictions load in Python: 128 rows of probabilities" || fail "plugin predictions"
import sys, torch
p = torch.cat(torch.load(sys.argv[1]))
assert p.shape == (128, 2), p.shape
assert torch.allclose(p.sum(1), torch.ones(128), atol=1e-6)
PY

run "plugin classes need the plugin" 2 "$FULGUR" fit --config "$CFG" "${FAST[@]}"
expect "unknown plugin class is named" "$ERR" "model.class_path: unknown class 'example.PenalizedClassifier'"
run "missing plugin" 2 "$FULGUR" fit --config "$CFG" --plugins "[$WORK/nope.so]"
expect "missing plugin is named" "$ERR" "plugins.0: plugin '$WORK/nope.so' does not exist"
run "not a plugin" 2 "$FULGUR" fit --config "$CFG" --plugins "[$FG_BUILD_DIR/libfulgur.so]"
expect "not a plugin says what is missing" "$ERR" "is not a fulgur plugin: it lacks FG_PLUGIN_DECLARE()"
cat >"$WORK/old.c" <<'C'
__attribute__((visibility("default"))) const int fulgur_plugin_abi = 999;
__attribute__((visibility("default"))) int fulgur_plugin_init(char **err) { (void)err; return 0; }
C
cc -shared -fPIC "$WORK/old.c" -o "$WORK/old.so"
run "plugin for another ABI" 2 "$FULGUR" fit --config "$CFG" --plugins "[$WORK/old.so]"
expect "ABI mismatch is explained" "$ERR" "was built for fulgur plugin ABI 999; this fulgur has ABI 2: rebuild it"
finish
