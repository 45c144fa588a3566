#!/usr/bin/env bash
# lightning_template's utility callbacks: their class paths, their argument
# checks, the one warning of each that cannot act on this backend, the
# progress bar's rules, SaveAndLogConfigCallback's file.
source "$(dirname "$0")/lib.sh"

small_classifier_yaml 3 "$WORK/runs" >"$WORK/base.yaml"
LT=lightning_template.utils.callbacks

# callbacks CONFIG_NAME YAML_LIST: a config with these callbacks.
callbacks() {
  { echo "__base__: base.yaml"; echo "trainer:"; echo "  callbacks:"; sed 's/^/    /' <<<"$2"; } >"$WORK/$1.yaml"
}

callbacks all "- class_path: $LT.set_precision_and_cudnn_callback.SetPrecisionAndCudnnCallback
  init_args: {float32_matmul_precision: high, allow_fp16_reduced_precision_reduction: true,
              deterministic_debug_mode: default, cudnn_enabled: true}
- class_path: $LT.set_wandb_logger_callback.SetWandbLoggerCallback
  init_args: {watch_model_cfg: {log: all}}
- class_path: $LT.custom_repr.CustomReprCallback
- class_path: $LT.set_sharing_strategy_callback.SetSharingStrategyCallback
- class_path: $LT.save_and_log_config_callback.SaveAndLogConfigCallback
  init_args: {config_filename: saved.yaml}
- class_path: lightning_template.utils.progress.rich_progress.RichProgressBar
  init_args: {show_version: false, show_eta_time: true}"
# base.yaml turns the bar off, which a progress-bar callback may not meet.
run "every utility callback in one fit (3 epochs)" 0 "$FULGUR" fit --config "$WORK/all.yaml" \
  --trainer.default_root_dir "$WORK/all" --trainer.enable_progress_bar true
for w in "all.yaml:5:18: trainer.callbacks.0.init_args: SetPrecisionAndCudnnCallback: float32_matmul_precision, allow_fp16_reduced_precision_reduction, cudnn_enabled have no effect" \
  "trainer.callbacks.1.init_args: SetWandbLoggerCallback does nothing" \
  "trainer.callbacks.2.init_args: CustomReprCallback does nothing" \
  "trainer.callbacks.3.init_args: SetSharingStrategyCallback does nothing"; do
  n=$(grep -cF -- "$w" <<<"$ERR")
  [[ $n == 1 ]] && pass "warned once: ${w:0:60}" || fail "warned $n times: $w" "$ERR"
done
n=$(grep -c deterministic_debug_mode <<<"$ERR")
[[ $n == 0 ]] && pass "deterministic_debug_mode: default says nothing" || fail "deterministic_debug_mode warned" "$ERR"
n=$(grep -c "RichProgressBar" <<<"$ERR")
[[ $n == 0 ]] && pass "RichProgressBar with its defaults warns nothing" || fail "RichProgressBar warned" "$ERR"
if cmp -s "$WORK/all/version_0/saved.yaml" "$WORK/all/version_0/config.yaml"; then
  pass "SaveAndLogConfigCallback wrote the merged config as saved.yaml"
else
  fail "saved.yaml is not the run's config.yaml" "$(ls "$WORK/all/version_0")"
fi
expect "the saved config is the merged one" "$(cat "$WORK/all/version_0/saved.yaml" 2>/dev/null)" "SaveAndLogConfigCallback"

callbacks sharing "- {class_path: SetSharingStrategyCallback, init_args: {strategy: nope}}
- {class_path: RichProgressBar, init_args: {theme: {description: red}}}"
run "an unknown sharing strategy runs" 0 "$FULGUR" fit --config "$WORK/sharing.yaml" --trainer.max_epochs 1 \
  --trainer.default_root_dir "$WORK/sh" --trainer.enable_progress_bar true
expect "and says it is not Linux's" "$ERR" "'nope' is not one of Linux's strategies, file_descriptor and file_system"
expect "Lightning's RichProgressBar theme is a warned no-op" "$ERR" "RichProgressBar: theme has no effect"

# bad NAME YAML_LIST NEEDLE [ARGS...]: a config error (exit 2) naming NEEDLE.
bad() {
  callbacks bad "$2"
  run "$1" 2 "$FULGUR" fit --config "$WORK/bad.yaml" "${@:4}"
  expect "$1: says where and what" "$ERR" "$3"
}
bad "float32_matmul_precision: low" "- {class_path: SetPrecisionAndCudnnCallback, init_args: {float32_matmul_precision: low}}" \
  "bad.yaml:4:88: trainer.callbacks.0.init_args.float32_matmul_precision: expected 'highest', 'high' or 'medium'"
bad "deterministic_debug_mode: 5" "- {class_path: SetPrecisionAndCudnnCallback, init_args: {deterministic_debug_mode: 5}}" \
  "trainer.callbacks.0.init_args.deterministic_debug_mode: expected 'default', 'warn', 'error' or 0, 1, 2"
bad "a progress bar with enable_progress_bar: false" "- {class_path: RichProgressBar}" \
  "bad.yaml:4:7: trainer.callbacks.0: a progress bar callback with trainer.enable_progress_bar: false"
bad "two progress bars" "- {class_path: RichProgressBar}
- {class_path: TQDMProgressBar}" "trainer.callbacks.1: a second progress bar callback" \
  --trainer.enable_progress_bar true
bad "refresh_rate: -1" "- {class_path: RichProgressBar, init_args: {refresh_rate: -1}}" \
  "trainer.callbacks.0.init_args.refresh_rate: expected a refresh rate >= 0"
bad "SaveAndLogConfigCallback multifile" "- {class_path: SaveAndLogConfigCallback, init_args: {multifile: true}}" \
  "trainer.callbacks.0.init_args.multifile: true is not available"
bad "SaveAndLogConfigCallback config_filename with a folder" \
  "- {class_path: SaveAndLogConfigCallback, init_args: {config_filename: a/b.yaml}}" \
  "trainer.callbacks.0.init_args.config_filename: expected a file name inside the run directory"
bad "an unknown argument" "- {class_path: CustomReprCallback, init_args: {clases: [torch.Tensor]}}" \
  "trainer.callbacks.0.init_args.clases: unknown key 'clases' (did you mean 'classes'?)"
finish
