/* Running a config: the engine's entry point, used in-process by the
 * `fulgur` command and by a daemon's worker process alike. */
#ifndef FULGUR_RUN_H
#define FULGUR_RUN_H

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>

#include "fulgur/config.h"
#include "fulgur/events.h"
#include "fulgur/stage.h"
#include "fulgur/value.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
  fg_stage stage;
  /* Events go here (borrowed; may be NULL). The run adds its own loggers
   * (CSV) behind it. */
  fg_events *events;
  /* Polled at every step boundary; non-zero stops the run with
   * FG_ECANCELED. May be NULL. */
  volatile sig_atomic_t *cancel;
  /* Polled where cancel is; may be NULL. In fit, non-zero stops the run at
   * the next training step boundary (between two batches, never inside a
   * validation) with FG_EPAUSED, after writing
   * <run_dir>/checkpoints/pause.ckpt (announced by an ARTIFACT event of
   * kind "checkpoint") and a STATE event "paused". Fitting again with that
   * file as ckpt_path continues exactly where the run stopped, also in the
   * middle of an epoch: the weights, metrics, scheduler states and
   * global_step at the end are those of a run never paused. In validate,
   * test and predict, which have nothing to resume, pause is a cancel
   * (FG_ECANCELED). */
  volatile sig_atomic_t *pause;
  /* Where a progress bar may draw (a terminal), or NULL for none. The bar
   * is drawn only when trainer.enable_progress_bar is also true. */
  FILE *progress;
  /* (The fields below came after progress, whose offset stays.)
   * Polled where pause is; may be NULL. In fit, non-zero asks for a
   * checkpoint now: at the next training step boundary the run writes
   * <run_dir>/checkpoints/manual-step=S.ckpt with the full resume state of
   * a pause (announced by an ARTIFACT event of kind "checkpoint"), sets the
   * flag back to 0 and trains on. Fitting with that file as ckpt_path
   * continues exactly as the run went on. Elsewhere it is ignored. */
  volatile sig_atomic_t *checkpoint;
  /* Continue this run directory instead of making a new version (fit):
   * metrics.csv keeps the rows the checkpoint's run had logged before the
   * checkpoint and the run appends to them, TensorBoard's events go to the
   * same folder, checkpoints to the same checkpoints/. Without a
   * ckpt_path the run starts over in it. NULL: a new run directory, unless
   * trainer.continue_run is true and ckpt_path lies in a run directory's
   * checkpoints/ folder (then that run directory). */
  const char *run_dir;
  /* A fork (fit from ckpt_path): the config's optimizer and scheduler
   * arguments (lr, weight_decay, momentum, step_size, gamma ...) replace
   * those the checkpoint saved; weights, buffers, optimizer state (the
   * momentum buffers) and the position carry over. Checkpoint savers start
   * fresh: their top-k belongs to the run forked from. */
  bool fork;
} fg_run_opts;

/* Loads the shared objects the config's `plugins:` list names
 * (fulgur/plugin.h): the step before fg_config_check, since the classes they
 * add are what the rest of the config names. A path loaded before is not
 * loaded again. A `plugins` that is not a list of strings loads nothing
 * (fg_config_check names the problem). A plugin that fails to load is
 * FG_ECONFIG naming "plugins.N". */
int fg_config_load_plugins(const fg_node *config, char **err);

/* Validates the whole config in place (top-level keys, trainer options,
 * every object's class and init_args, split configs expanded); with
 * fill_defaults, every omitted option gets its default so the tree shows
 * the config exactly as a run uses it. Errors are FG_ECONFIG with
 * "file:line:col: key.path: ..." messages. No side effects beyond the tree:
 * plugins must be loaded first (fg_config_load_plugins). Objects checked
 * with fill_defaults are not checked again when created. */
int fg_config_check(fg_node *config, bool fill_defaults, char **err);
/* fg_config_check and what running `stage` needs besides (fit: an
 * optimizer_config). */
int fg_config_check_stage(fg_node *config, fg_stage stage, bool fill_defaults, char **err);

/* Runs a stage of a merged config (not yet checked: fg_run checks it).
 * *final_metrics (may be NULL) receives a dict of the last value of every
 * logged scalar; the caller frees it. Returns FG_ECONFIG for config errors,
 * FG_ECANCELED when cancelled, FG_EPAUSED when paused (*err then reads
 * "run paused at epoch E batch B (global step S); resume from PATH"),
 * other codes for run failures. */
int fg_run(const fg_node *config, const fg_run_opts *opts,
           fg_value **final_metrics, char **err);

#ifdef __cplusplus
}
#endif
#endif
