/* trainer.num_folds > 1: lightning_template's KFoldLoop
 * (lightning_template/utils/loop/kfold.py), which its Trainer puts in place
 * of the fit loop. The fit dataset is split with sklearn's KFold(num_folds)
 * (no shuffling; fg_datamodule_set_fold); for each fold:
 *   - `current_fold` (0-based) is logged at the current global step;
 *   - the fit's epochs run from epoch 0, training on the other folds and
 *     validating on this one (the global step keeps counting, as
 *     Lightning's does);
 *   - the checkpoint <run dir>/fold_checkpoints/model_fold_<fold + 1>.pt is
 *     saved (KFoldLoop counts the fold before it saves);
 *   - the module gets back the weights it had when the folds started, and
 *     the optimizers and schedulers are built again from optimizer_config
 *     (after the last fold too: the fit ends with the starting weights).
 * The sanity check, on_fit_start and on_fit_end run once around all folds,
 * the callbacks (ModelCheckpoint's top-k among them) carry over from fold
 * to fold, as in Python. Unlike Python, an EarlyStopping stop ends only its
 * fold: KFoldLoop leaves trainer.should_stop set, which skips every later
 * fold. A k-fold fit does not resume from a checkpoint: the folds after it
 * would start from the resumed weights, not the starting ones. */
#include <stdlib.h>

#include "fulgur/error.h"
#include "trainer/trainer.h"
#include "util/xalloc.h"

/* A copy of the module's state_dict that training does not touch. */
static int snapshot(const fg_module *m, fg_value **out, char **err) {
  fg_value *live = fg_value_dict();
  int rc = fg_module_state_dict(m, live, err);
  fg_value *copy = fg_value_dict();
  for (size_t i = 0; rc == 0 && i < fg_value_len(live); i++) {
    const fg_value *v = fg_value_dict_value_at(live, i);
    if (fg_value_kind_of(v) != FG_VALUE_TENSOR) {
      fg_value_dict_set(copy, fg_value_dict_key_at(live, i), fg_value_copy(v));
      continue;
    }
    fg_tensor *t = NULL;
    if ((rc = fg_tensor_clone(fg_value_as_tensor(v), &t, err)) == 0)
      fg_value_dict_set(copy, fg_value_dict_key_at(live, i), fg_value_tensor(t));
  }
  fg_value_free(live);
  if (rc) {
    fg_value_free(copy);
    return rc;
  }
  *out = copy;
  return 0;
}

/* Logged at the step the next optimizer step gets, as KFoldLoop's
 * log_metrics(step=trainer.global_step). */
static void log_fold(fg_loop *l, int64_t fold) {
  fg_value *d = fg_value_dict();
  fg_value_dict_set(d, "current_fold", fg_value_double((double)fold));
  l->pos.global_step++;
  fg__loop_log_scalars(l, FG_EVENT_STEP, FG_SPLIT_FIT, d);
  l->pos.global_step--;
  fg_value_free(d);
}

static int save_fold(fg_loop *l, int64_t fold, char **err) {
  if (!l->rank_zero || l->run_dir == NULL) return 0;
  char *dir = fg__xasprintf("%s/fold_checkpoints", l->run_dir);
  char *path = fg__xasprintf("%s/model_fold_%lld.pt", dir, (long long)fold + 1);
  int rc = fg__mkdirs(dir, err);
  if (rc == 0) rc = fg__loop_save_checkpoint(l, path, NULL, NULL, -1, err);
  if (rc) fg_err_prefix(err, rc, "trainer.num_folds: saving %s", path);
  free(path);
  free(dir);
  return rc;
}

/* KFoldLoop.on_advance_end: the starting weights, fresh optimizers. */
static int restart(fg_loop *l, const fg_value *start, char **err) {
  int rc = fg_module_load_state_dict(l->module, start, true, "trainer.num_folds", NULL, err);
  if (rc) return rc;
  const fg_node *oc = l->config ? fg_node_get(l->config, "optimizer_config") : NULL;
  if (l->optim == NULL || oc == NULL || fg_node_kind_of(oc) == FG_NODE_NULL) return 0;
  fg_optim_set_free(l->optim);
  l->optim = NULL;
  return fg_optim_set_build(oc, "optimizer_config", l->module, &l->optim, err);
}

int fg__loop_fit_folds(fg_loop *l, char **err) {
  int64_t k = l->opts->num_folds;
  if (l->pos.global_step > 0 || l->pos.epoch > 0 || l->pos.epoch_done)
    return fg_err_set(err, FG_ECONFIG,
                      "trainer.num_folds: a k-fold fit cannot resume from a checkpoint (its later "
                      "folds would start from the resumed weights); fit again without ckpt_path");
  fg_value *start = NULL;
  int rc = snapshot(l->module, &start, err);
  for (int64_t fold = 0; fold < k && rc == 0; fold++) {
    if ((rc = fg_datamodule_set_fold(l->dm, k, fold, err))) break;
    fg_events_log(l->events, FG_LOG_INFO, "fold %lld of %lld", (long long)fold + 1, (long long)k);
    log_fold(l, fold);
    l->pos.epoch = 0;
    l->pos.epoch_done = false;
    l->pos.batches_done = 0;
    l->should_stop = false;
    if ((rc = fg__loop_fit_epochs(l, err))) break;
    if ((rc = save_fold(l, fold, err))) break;
    rc = restart(l, start, err); /* after the last fold too, as KFoldLoop */
  }
  fg_value_free(start);
  /* Test and predict after the fit read the configured datasets again. */
  int crc = fg_datamodule_set_fold(l->dm, 1, 0, rc == 0 ? err : NULL);
  return rc ? rc : crc;
}
