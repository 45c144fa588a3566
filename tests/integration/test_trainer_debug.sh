#!/usr/bin/env bash
# Lightning's debugging and speed arguments of the Trainer, driven through
# the real binary: fast_dev_run, overfit_batches, barebones, profiler
# (simple, pytorch), reload_dataloaders_every_n_epochs, max_time across a
# resume, and the DataLoader arguments of dataloader_cfg.
source "$(dirname "$0")/lib.sh"
PY=${FG_PYTHON:-/usr/bin/python3}

small_classifier_yaml 3 "$WORK/runs" >"$WORK/base.yaml"
CBS="[{class_path: ModelCheckpoint, init_args: {monitor: val/loss, save_last: true}},
      {class_path: EarlyStopping, init_args: {monitor: val/loss, mode: max, patience: 0}}]"
# calls ACTION FILE : the Num calls column of a SimpleProfiler row.
calls() { awk -F'\t' -v a="|  $1" '{ sub(/ +$/, "", $1) } $1 == a { gsub(/[| ]/, "", $3); print $3 }' "$2"; }
ckpts() { find "$1" -name '*.ckpt' | wc -l; }

# ---- fast_dev_run ----
run "fast_dev_run: 2 with checkpoint and early stopping callbacks" 0 "$FULGUR" fit --config "$WORK/base.yaml" \
  --trainer.default_root_dir "$WORK/fdr" --trainer.max_epochs 10 --trainer.fast_dev_run 2 \
  --trainer.callbacks "$CBS" --trainer.profiler simple
expect "fast_dev_run says what it does" "$ERR" \
  "Running in \`fast_dev_run\` mode: will run the requested loop using 2 batch(es). Logging and checkpointing is suppressed."
[[ ! -e $WORK/fdr/version_0/metrics.csv ]] && pass "fast_dev_run: no logger writes" || fail "metrics.csv written"
[[ $(ckpts "$WORK/fdr") == 0 ]] && pass "fast_dev_run: no checkpoint" || fail "checkpoints written" "$(find "$WORK/fdr")"
P=$WORK/fdr/version_0/fit-profiler.txt
[[ $(calls run_training_epoch "$P") == 1 && $(calls run_training_batch "$P") == 2 &&
   $(calls "[Strategy]SingleDeviceStrategy.validation_step" "$P") == 2 ]] \
  && pass "fast_dev_run: one epoch of 2 training and 2 validation batches, no sanity check" || fail "batches run" "$(cat "$P")"
grep -q "EarlyStopping\|ModelCheckpoint" "$P" && fail "idle callbacks ran their hooks" "$(cat "$P")" \
  || pass "fast_dev_run: ModelCheckpoint and EarlyStopping are idle"
run "fast_dev_run: true" 0 "$FULGUR" fit --config "$WORK/base.yaml" --trainer.default_root_dir "$WORK/fdt" \
  --trainer.fast_dev_run true --trainer.profiler simple
[[ $(calls run_training_batch "$WORK/fdt/version_0/fit-profiler.txt") == 1 ]] && pass "fast_dev_run: true is 1 batch" \
  || fail "fast_dev_run true" "$(cat "$WORK/fdt/version_0/fit-profiler.txt")"
run "validate, full" 0 "$FULGUR" validate --config "$WORK/base.yaml" --trainer.default_root_dir "$WORK/v" --json
full=$OUT
run "validate, limit_val_batches 2" 0 "$FULGUR" validate --config "$WORK/base.yaml" --trainer.default_root_dir "$WORK/v" \
  --trainer.limit_val_batches 2 --json
two=$OUT
run "validate, fast_dev_run 2" 0 "$FULGUR" validate --config "$WORK/base.yaml" --trainer.default_root_dir "$WORK/v" \
  --trainer.fast_dev_run 2 --json
[[ -n $two && $OUT == "$two" && $OUT != "$full" ]] && pass "fast_dev_run 2 validates 2 batches" \
  || fail "validate under fast_dev_run" "full $full" "two $two" "fdr $OUT"

# ---- overfit_batches ----
for sh in true false; do
  run "overfit_batches 2, shuffle $sh" 0 "$FULGUR" fit --config "$WORK/base.yaml" --trainer.max_epochs 2 \
    --trainer.default_root_dir "$WORK/of_$sh" --trainer.overfit_batches 2 \
    --data.init_args.dataloader_cfg "{batch_size: 8, shuffle: $sh}"
  eval "err_$sh=\$ERR"
done
n=$(grep -c "You requested to overfit but enabled train dataloader shuffling" <<<"$err_true")
[[ $n == 1 ]] && pass "overfit with shuffle warns once" || fail "overfit warning printed $n times" "$err_true"
grep -q "requested to overfit" <<<"$err_false" && fail "warned without shuffle" || pass "no warning without shuffle"
cmp -s "$WORK/of_true/version_0/metrics.csv" "$WORK/of_false/version_0/metrics.csv" \
  && pass "overfit turns shuffling off (same rows as shuffle: false)" \
  || fail "overfit rows differ with shuffle" "$(diff "$WORK/of_true/version_0/metrics.csv" "$WORK/of_false/version_0/metrics.csv")"
M=$WORK/of_false/version_0/metrics.csv
steps=$(awk -F, 'NR == 1 { for (i = 1; i <= NF; i++) if ($i == "step") c = i; next } { s = $c } END { print s }' "$M")
[[ $steps == 3 ]] && pass "overfit: 2 training batches an epoch (last step 3)" || fail "last step $steps" "$(cat "$M")"
# Validation ran on the first 2 training batches: a validate of the same
# weights over the fit dataset's first 2 batches gives the logged value.
h=$(head -n 1 "$M")
col=$(tr , '\n' <<<"$h" | grep -nx "val/loss" | cut -d: -f1)
logged=$(awk -F, -v c="$col" '$c != "" { v = $c } END { print v }' "$M")
ck=$(find "$WORK/of_false/version_0/checkpoints" -name 'epoch=1*.ckpt' | head -n 1)
run "validate the overfit weights on the fit data" 0 "$FULGUR" validate --config "$WORK/base.yaml" \
  --trainer.default_root_dir "$WORK/v" --ckpt_path "$ck" --trainer.limit_val_batches 2 --json \
  --data.init_args.dataset_cfg.val "{class_path: fulgur.data.Synthetic, init_args: {num_samples: 64, shape: [10], num_classes: 3, seed: 1}}"
"$PY" - "$logged" "$OUT" <<'PY' && pass "overfit validation is the training batches' ($logged)" || fail "overfit val" "$logged" "$OUT"
import json, sys
got = json.loads(sys.argv[2])["val/loss"]
assert abs(float(sys.argv[1]) - got) < 1e-6, (sys.argv[1], got)
PY

# ---- barebones ----
cat >"$WORK/bare.yaml" <<YAML
__base__: base.yaml
trainer:
  barebones: true
  log_every_n_steps: null
  num_sanity_val_steps: 0
  enable_progress_bar: false
YAML
run "barebones fit" 0 "$FULGUR" fit --config "$WORK/bare.yaml" --trainer.default_root_dir "$WORK/bb"
expect "barebones says so" "$ERR" "You are running in \`Trainer(barebones=True)\` mode"
[[ ! -e $WORK/bb/version_0/metrics.csv && $(ckpts "$WORK/bb") == 0 ]] && pass "barebones: no logs, no checkpoints" \
  || fail "barebones wrote" "$(find "$WORK/bb")"
grep -q "Trainable params" <<<"$ERR" && fail "barebones printed the model summary" || pass "barebones: no model summary"
bare_bad() { # NAME ARGS EXPECTED
  run "barebones error: $1" 2 "$FULGUR" fit --config "$WORK/bare.yaml" $2
  expect "barebones error: $1 names it" "$ERR" "$3"
}
bare_bad "log_every_n_steps" "--trainer.log_every_n_steps 5" "trainer.log_every_n_steps: logging can't be enabled when barebones is true"
bare_bad "enable_checkpointing" "--trainer.enable_checkpointing true" "trainer.enable_checkpointing: checkpointing can't be enabled"
bare_bad "profiler" "--trainer.profiler simple" "trainer.profiler: profiling can't be enabled"
bare_bad "detect_anomaly" "--trainer.detect_anomaly true" "trainer.detect_anomaly: anomaly detection can't be enabled"
run "barebones error: a ModelCheckpoint" 2 "$FULGUR" fit --config "$WORK/bare.yaml" \
  --trainer.callbacks "[{class_path: ModelCheckpoint}]"
expect "barebones with ModelCheckpoint names it" "$ERR" "trainer.callbacks: a checkpoint callback is configured, but barebones: true"
run "barebones error: base.yaml's own log_every_n_steps" 2 "$FULGUR" fit --config "$WORK/base.yaml" --trainer.barebones true
expect "placed in base.yaml" "$ERR" "base.yaml:8:22: trainer.log_every_n_steps: logging can't be enabled when barebones is true"

# ---- profiler ----
run "profiler simple" 0 "$FULGUR" fit --config "$WORK/base.yaml" --trainer.default_root_dir "$WORK/ps" \
  --trainer.max_epochs 1 --trainer.profiler simple
P=$WORK/ps/version_0/fit-profiler.txt
expect "the report is printed" "$ERR" "FIT Profiler Report"
head -n 4 "$P" | grep -q "|  Action.*|  Mean duration (s)	|  Num calls      	|  Total time (s) 	|  Percentage %   	|" \
  && pass "Lightning's columns" || fail "columns" "$(cat "$P")"
[[ $(calls run_training_batch "$P") == 8 && $(calls "[Strategy]SingleDeviceStrategy.training_step" "$P") == 8 &&
   $(calls "[Callback]ModelCheckpoint.on_train_epoch_end" "$P") == 1 &&
   $(calls "[_TrainingEpochLoop].train_dataloader_next" "$P") == 8 ]] && pass "hooks counted per call" || fail "counts" "$(cat "$P")"
total=$(calls Total "$P")
sum=$(awk -F'\t' 'NR > 6 && /^\|  / { gsub(/[| ]/, "", $3); s += $3 } END { print s }' "$P")
[[ $total == "$sum" ]] && pass "Total counts every call ($total)" || fail "total $total, sum $sum" "$(cat "$P")"
run "profiler pytorch" 0 "$FULGUR" fit --config "$WORK/base.yaml" --trainer.default_root_dir "$WORK/pp" \
  --trainer.max_epochs 1 --trainer.profiler pytorch
"$PY" - "$WORK/pp/version_0/fit.pt.trace.json" <<'PY' && pass "pytorch: a Chrome trace of aten ops" || fail "trace"
import json, sys
t = json.load(open(sys.argv[1]))
ev = t["traceEvents"] if isinstance(t, dict) else t
names = {e.get("name", "") for e in ev}
assert any(n.startswith("aten::") for n in names), sorted(names)[:20]
assert all("ph" in e for e in ev if e.get("name", "").startswith("aten::"))
PY
# lightning_template's default_runtime.yaml profiler block, as written there.
cat >"$WORK/ptprof.yaml" <<YAML
__base__: base.yaml
trainer:
  max_epochs: 1
  profiler:
    class_path: lightning.pytorch.profilers.PyTorchProfiler
    init_args:
      dirpath: $WORK/profile
      filename: pytorch_profiler
    dict_kwargs:
      use_cuda: true
      record_shapes: true
YAML
run "PyTorchProfiler object" 0 "$FULGUR" fit --config "$WORK/ptprof.yaml" --trainer.default_root_dir "$WORK/po"
[[ -s $WORK/profile/fit-pytorch_profiler.pt.trace.json ]] && pass "PyTorchProfiler writes <dirpath>/fit-<filename>.pt.trace.json" \
  || fail "no trace in dirpath" "$(ls -R "$WORK/profile" 2>&1)"
for w in "ptprof.yaml:10:17: trainer.profiler.dict_kwargs.use_cuda: has no effect: this build's libtorch is CPU-only" \
  "ptprof.yaml:11:22: trainer.profiler.dict_kwargs.record_shapes: has no effect"; do
  n=$(grep -cF -- "$w" <<<"$ERR")
  [[ $n == 1 ]] && pass "warned once: $w" || fail "'$w' printed $n times" "$ERR"
done
run "SimpleProfiler object" 0 "$FULGUR" fit --config "$WORK/base.yaml" --trainer.default_root_dir "$WORK/so" \
  --trainer.max_epochs 1 --trainer.profiler "{class_path: SimpleProfiler, init_args: {dirpath: $WORK/sp, filename: perf}}"
[[ $(calls run_training_batch "$WORK/sp/fit-perf.txt") == 8 ]] && pass "SimpleProfiler writes <dirpath>/fit-<filename>.txt" \
  || fail "SimpleProfiler file" "$(ls -R "$WORK/sp" 2>&1)"
run "PassThroughProfiler" 0 "$FULGUR" fit --config "$WORK/base.yaml" --trainer.default_root_dir "$WORK/pt" \
  --trainer.max_epochs 1 --trainer.profiler "{class_path: pytorch_lightning.profilers.PassThroughProfiler}"
[[ -z $(find "$WORK/pt" -name 'fit*profiler*' -o -name '*.pt.trace.json') ]] && pass "PassThroughProfiler profiles nothing" \
  || fail "PassThroughProfiler wrote" "$(find "$WORK/pt")"
run "AdvancedProfiler is an error" 2 "$FULGUR" fit --config "$WORK/base.yaml" \
  --trainer.profiler "{class_path: lightning.pytorch.profilers.AdvancedProfiler}"
expect "AdvancedProfiler names what to use" "$ERR" "trainer.profiler.class_path: 'lightning.pytorch.profilers.AdvancedProfiler' profiles Python"
run "a profiler's unknown argument is an error" 2 "$FULGUR" fit --config "$WORK/base.yaml" \
  --trainer.profiler "{class_path: SimpleProfiler, init_args: {dir_path: x}}"
expect "unknown profiler argument named" "$ERR" "trainer.profiler.init_args.dir_path: unknown key 'dir_path' (did you mean 'dirpath'?)"
printf '__base__: base.yaml\ntrainer:\n  profiler: advanced\n' >"$WORK/adv.yaml"
run "profiler advanced is an error" 2 "$FULGUR" fit --config "$WORK/adv.yaml"
expect "advanced names what to use" "$ERR" "adv.yaml:3:13: trainer.profiler: 'advanced' profiles Python"

# ---- reload_dataloaders_every_n_epochs: the data files are read again ----
"$PY" - "$WORK" <<'PY'
import random, sys
random.seed(0)
for name, n in (("fit", 32), ("val", 16)):
    with open(f"{sys.argv[1]}/{name}.csv", "w") as f:
        f.write(",".join(f"x{i}" for i in range(10)) + ",label\n")
        for _ in range(n):
            f.write(",".join(f"{random.gauss(0, 1):.4f}" for _ in range(10)) + f",{random.randrange(3)}\n")
PY
cat >"$WORK/csv.yaml" <<YAML
__base__: base.yaml
data:
  __delete__: true
  class_path: fulgur.DataModule
  init_args:
    dataset_cfg:
      fit: {class_path: fulgur.data.CSV, init_args: {path: $WORK/fit.csv, target: label}}
      val: {class_path: fulgur.data.CSV, init_args: {path: $WORK/val.csv, target: label}}
    dataloader_cfg: {batch_size: 8}
YAML
# Opens per read come from the run that never reloads.
if command -v strace >/dev/null; then
  declare -A opens
  for every in 0 1 2; do
    # LeakSanitizer cannot run under ptrace: a sanitized build's leak check
    # is off for the traced runs only (every other run here keeps it).
    ASAN_OPTIONS="${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0" \
    strace -f -qq -e trace=openat -o "$WORK/trace_$every" "$FULGUR" fit --config "$WORK/csv.yaml" \
      --trainer.default_root_dir "$WORK/rl" --trainer.reload_dataloaders_every_n_epochs $every >/dev/null 2>"$WORK/err" || fail "reload $every run" "$(cat "$WORK/err")"
    opens[fit_$every]=$(grep -c 'fit.csv"' "$WORK/trace_$every")
    opens[val_$every]=$(grep -c 'val.csv"' "$WORK/trace_$every")
  done
  f0=${opens[fit_0]} v0=${opens[val_0]}
  [[ $f0 -ge 1 && $v0 -ge 1 ]] && pass "the data files are opened ($f0, $v0 times a read)" || fail "no opens seen"
  [[ ${opens[fit_1]} == $((3 * f0)) && ${opens[val_1]} == $((3 * v0)) ]] \
    && pass "reload every epoch: both files read in each of the 3 epochs" \
    || fail "every 1: fit ${opens[fit_1]}, val ${opens[val_1]} opens"
  [[ ${opens[fit_2]} == $((2 * f0)) && ${opens[val_2]} == $((2 * v0)) ]] \
    && pass "reload every 2 epochs: read in epochs 0 and 2" || fail "every 2: fit ${opens[fit_2]}, val ${opens[val_2]} opens"
else
  fail "strace is not installed (deploy/install-deps.sh installs it)"
fi

# ---- max_time goes on counting after a resume ----
run "fit 3 epochs" 0 "$FULGUR" fit --config "$WORK/base.yaml" --trainer.default_root_dir "$WORK/mt"
E=$("$PY" -c 'import sys, torch; print(torch.load(sys.argv[1])["fulgur_loop"]["time_elapsed"])' \
  "$WORK/mt/version_0/checkpoints/last.ckpt" 2>/dev/null)
[[ -n $E ]] && pass "the checkpoint keeps the fit's elapsed time ($E s)" || fail "no fulgur_loop.time_elapsed"
# A limit the first run's time already spent: the resumed run stops after
# its first step, whatever the machine's speed.
run "resume with max_time already spent" 0 "$FULGUR" fit --config "$WORK/base.yaml" --trainer.default_root_dir "$WORK/mt" \
  --trainer.max_epochs 6 --trainer.max_time "{seconds: $E}" --ckpt_path "$WORK/mt/version_0/checkpoints/last.ckpt"
expect "the resumed run's timer counts the first run's time" "$ERR" "max_time: time limit reached"
"$PY" - "$WORK/mt/version_1/checkpoints/last.ckpt" <<'PY' && pass "resumed run stopped after one step (25)" || fail "resumed step"
import sys, torch
ck = torch.load(sys.argv[1])
assert ck["global_step"] == 25, ck["global_step"]
PY

# ---- DataLoader arguments ----
cat >"$WORK/dl.yaml" <<YAML
__base__: base.yaml
data:
  init_args:
    dataloader_cfg:
      batch_size: 8
      pin_memory: true
      prefetch_factor: null
      persistent_workers: false
      timeout: 0
      sampler: null
      batch_sampler: null
      collate_fn: null
      worker_init_fn: null
      generator: null
      multiprocessing_context: null
      pin_memory_device: ""
      in_order: true
YAML
run "every DataLoader argument at its default, pin_memory true" 0 "$FULGUR" fit --config "$WORK/dl.yaml" \
  --trainer.default_root_dir "$WORK/dl0" --trainer.max_epochs 1
n=$(grep -c "pin_memory: true has no effect" <<<"$ERR")
[[ $n == 1 ]] && pass "pin_memory warns once for every split" || fail "pin_memory warned $n times" "$ERR"
expect "the warning is placed" "$ERR" "dl.yaml:6:19: data.init_args.dataloader_cfg: pin_memory: true has no effect"
run "workers with prefetch_factor, persistent_workers, timeout" 0 "$FULGUR" fit --config "$WORK/dl.yaml" \
  --trainer.default_root_dir "$WORK/dl1" --trainer.max_epochs 1 \
  --data.init_args.dataloader_cfg "{batch_size: 8, num_workers: 2, prefetch_factor: 3, persistent_workers: true, timeout: 60, multiprocessing_context: spawn}"
expect "multiprocessing_context warns" "$ERR" "multiprocessing_context: has no effect: the workers are threads"
cmp -s "$WORK/dl0/version_0/metrics.csv" "$WORK/dl1/version_0/metrics.csv" && pass "threaded loading gives the same rows" \
  || fail "rows differ with workers" "$(diff "$WORK/dl0/version_0/metrics.csv" "$WORK/dl1/version_0/metrics.csv")"
dl_bad() { # VALUE EXPECTED
  printf '__base__: base.yaml\ndata:\n  init_args:\n    dataloader_cfg: {batch_size: 8, %s}\n' "$1" >"$WORK/dlbad.yaml"
  run "DataLoader error: $1" 2 "$FULGUR" fit --config "$WORK/dlbad.yaml"
  expect "DataLoader error: $1 is placed and named" "$ERR" "$2"
}
dl_bad "prefetch_factor: 2" "dlbad.yaml:4:54: data.init_args.dataloader_cfg.fit.prefetch_factor: prefetch_factor option could only be specified in multiprocessing"
dl_bad "persistent_workers: true" "data.init_args.dataloader_cfg.fit.persistent_workers: persistent_workers option needs num_workers > 0"
dl_bad "multiprocessing_context: fork" "multiprocessing_context can only be used with multi-process loading"
dl_bad "collate_fn: my.collate" "dataloader_cfg.fit.collate_fn: takes a Python object, which cannot run here; batches are collated as default_collate does"
dl_bad "sampler: {class_path: torch.utils.data.RandomSampler}" "dataloader_cfg.fit.sampler: takes a Python object, which cannot run here; use shuffle"
dl_bad "batch_sampler: x" "batch_sampler: takes a Python object, which cannot run here; use batch_size, shuffle and drop_last"
dl_bad "worker_init_fn: f" "worker_init_fn: takes a Python object"
dl_bad "generator: g" "generator: takes a Python object, which cannot run here; the shuffle order comes from seed_everything"
dl_bad "timeout: -1" "dataloader_cfg.fit.timeout: timeout option should be non-negative"
dl_bad "pin_memory_device: cuda" "pin_memory_device: 'cuda': this build's libtorch is CPU-only"
dl_bad "prefetch_factor: 0, num_workers: 1" "prefetch_factor: expected null or a number of batches >= 1"
dl_bad "pin_memorry: true" "dlbad.yaml:4:50: data.init_args.dataloader_cfg.fit.pin_memorry: unknown key 'pin_memorry' (did you mean 'pin_memory'?)"
printf '__base__: base.yaml\ndata:\n  init_args:\n    dataloader_cfg: {batch_size: null}\n' >"$WORK/dlbad.yaml"
run "DataLoader error: batch_size null" 2 "$FULGUR" fit --config "$WORK/dlbad.yaml"
expect "batch_size null names batch_size: N" "$ERR" "batch_size: null (no automatic batching) is not supported"

finish
