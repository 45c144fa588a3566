/* The callback interface: what the loops call at Lightning's hooks, and
 * what each callback (one file each beside this header) implements.
 *
 * A callback object starts with a fg_callback whose ops point at its
 * class's table; a hook left NULL does nothing. The loops call every
 * callback's hook in the order of the trainer's callback list, which is
 * the config's order with the checkpoint savers moved last, as Lightning's
 * _reorder_callbacks does (EarlyStopping decides before ModelCheckpoint
 * saves its state). A hook that fails fails the run: the hooks after it are
 * not called.
 *
 * Where the fit loop calls them (Lightning's order, see loop.c):
 *   setup(stage)                 before any loop of any stage
 *   on_fit_start                 before the sanity check
 *   on_validation_end            after every validation loop (the sanity
 *                                check's and the validate stage's too)
 *   on_train_epoch_start         when an epoch starts (not when a resume
 *                                starts inside one: that run had it)
 *   on_train_batch_start         before a training batch; step_log takes
 *                                scalars for the row of the step
 *   on_train_batch_end           after every training batch, whether the
 *                                optimizer stepped or not
 *   on_train_epoch_end           after the epoch's validation and
 *                                epoch-interval schedulers
 *   on_fit_end                   after the last epoch of a fit that ends
 *                                normally (not on an error or a pause)
 *
 * Adding a callback: a file with its fg_class (init_args, create) and its
 * ops, and one entry in callbacks.c's table. */
#ifndef FG_TRAINER_CALLBACKS_CALLBACK_H
#define FG_TRAINER_CALLBACKS_CALLBACK_H

#include "fulgur/registry.h"
#include "trainer/trainer.h"

typedef struct fg_callback_ops fg_callback_ops;

struct fg_callback {
  const fg_callback_ops *ops;
};

struct fg_callback_ops {
  const char *name; /* Lightning's class name, for messages */
  /* Writes checkpoints (ModelCheckpoint): runs after the other callbacks.
   * Savers share the state key; a checkpoint's "callbacks" entry holds the
   * state of the saver that wrote it, and a saver's state comes back only
   * when a paused run resumes (fulgur_loop.model_checkpoints): any other
   * resume is a new run directory, whose top-k starts empty. */
  bool saves_checkpoints;
  /* Does nothing under fast_dev_run, as Lightning's EarlyStopping skips
   * its check there (savers are idle there too). */
  bool idle_in_fast_dev_run;

  int (*setup)(fg_callback *cb, fg_loop *l, fg_stage stage, char **err);
  int (*on_fit_start)(fg_callback *cb, fg_loop *l, char **err);
  int (*on_train_epoch_start)(fg_callback *cb, fg_loop *l, char **err);
  /* step_log is a dict the loop emits, followed by the step's losses, as
   * the STEP event of this batch's optimizer step when that step logs
   * (global_step + 1 is a multiple of log_every_n_steps). */
  int (*on_train_batch_start)(fg_callback *cb, fg_loop *l, int64_t batch_idx, fg_value *step_log,
                              char **err);
  int (*on_train_batch_end)(fg_callback *cb, fg_loop *l, int64_t batch_idx, char **err);
  int (*on_validation_end)(fg_callback *cb, fg_loop *l, char **err);
  int (*on_train_epoch_end)(fg_callback *cb, fg_loop *l, char **err);
  int (*on_fit_end)(fg_callback *cb, fg_loop *l, char **err);

  /* Lightning's state_key, state_dict and load_state_dict: the entry of a
   * checkpoint's "callbacks" dict. state_key is malloc'd; state_dict
   * returns a new dict (the caller owns it). NULL state_dict: stateless. */
  char *(*state_key)(const fg_callback *cb);
  fg_value *(*state_dict)(const fg_callback *cb, const fg_loop *l);
  int (*load_state_dict)(fg_callback *cb, const fg_value *state, char **err);

  void (*free)(fg_callback *cb); /* frees the object and what it owns */
};

/* ---- the built-in callbacks (one file each; their table is callbacks.c) ------- */

/* The default ModelCheckpoint (enable_checkpointing without one
 * configured). */
fg_callback *fg__model_checkpoint_default(void);
/* ModelSummary(max_depth=1), what enable_model_summary adds when the list
 * has no ModelSummary or RichModelSummary (fg__callbacks_have_summary). */
fg_callback *fg__model_summary_default(void);
bool fg__callbacks_have_summary(const fg_trainer_opts *o);

/* Lightning's progress-bar rules (progress_bar_cb.c). The check, over the
 * checked trainer section: at most one progress-bar callback, none with
 * enable_progress_bar false (config errors at the callback). Configure,
 * over the built list: a bar with refresh_rate 0 turns the bar off. */
int fg__progress_bar_check(const fg_node *trainer, char **err);
void fg__progress_bar_configure(fg_trainer_opts *o);

/* init_args checks the callbacks share with the trainer section. */
int fg__check_mode(const fg_node *v, const char *keypath, char **err); /* "min" or "max" */
int fg__check_count(const fg_node *v, const char *keypath, char **err); /* int >= -1 */
int fg__check_null_or_positive(const fg_node *v, const char *keypath, char **err);

#endif
