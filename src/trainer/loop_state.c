/* The loop's state in a checkpoint, beside checkpoint.c's file layout:
 * what "fulgur_loop" keeps, saving a checkpoint of the run and announcing
 * it, the pause (a checkpoint a resume continues from exactly), and the
 * cancel and pause requests the loops poll. */
#include <stdlib.h>

#include "fulgur/error.h"
#include "trainer/callbacks/callback.h"
#include "trainer/trainer.h"
#include "util/xalloc.h"

bool fg__loop_cancel_requested(const fg_loop *l) {
  return (l->cancel && *l->cancel) || (l->pause_cancels && l->pause && *l->pause);
}

bool fg__loop_pause_requested(const fg_loop *l) { return l->pause && *l->pause; }

/* What "fulgur_loop" keeps beside the position (see checkpoint.c): the
 * seed, the global generator, the latest metrics and the fit's elapsed
 * seconds (max_time) in every checkpoint;
 * after a pause also what the interrupted epoch has gathered so far:
 * gradients of an unfinished accumulation window, fit evaluator states,
 * and every checkpoint saver's state (a paused run goes on as the same
 * run, so its top-k continues). */
int fg__loop_state(fg_loop *l, bool pause, fg_value **out, char **err) {
  fg_value *st = fg_value_dict();
  fg_value_dict_set(st, "seed", fg_value_int((int64_t)l->seed));
  fg_tensor *rng = NULL;
  int rc = fg_torch_get_rng_state(&rng, err);
  if (rc == 0) fg_value_dict_set(st, "rng_state", fg_value_tensor(rng));
  fg_value_dict_set(st, "last_metrics", fg_value_copy(l->last_metrics));
  fg_value_dict_set(st, "time_elapsed", fg_value_double(fg__loop_fit_elapsed(l)));
  /* How many rows the run's loggers had when this was taken: a run
   * continued in the same folder drops the rows logged after it. */
  fg_value_dict_set(st, "log_rows", fg_value_int(l->log_rows));
  if (l->threads > 0) fg_value_dict_set(st, "threads", fg_value_int(l->threads));
  if (rc == 0 && pause) {
    fg_value_dict_set(st, "paused", fg_value_bool(true));
    fg_value *grads = fg_value_dict();
    fg_value_dict_set(st, "grads", grads);
    for (size_t i = 0; i < fg_module_num_params(l->module) && rc == 0; i++) {
      fg_tensor *g = NULL, *d = NULL;
      if ((rc = fg_tensor_grad(fg_module_param(l->module, i), &g, err)) || g == NULL) continue;
      if ((rc = fg_tensor_clone(g, &d, err)) == 0)
        fg_value_dict_set(grads, fg_module_param_name(l->module, i), fg_value_tensor(d));
      fg_tensor_free(g);
    }
    fg_value *evs = fg_value_list();
    fg_value_dict_set(st, "fit_evaluators", evs);
    for (size_t i = 0; i < fg_module_num_evaluators(l->module, FG_SPLIT_FIT) && rc == 0; i++) {
      fg_metric *ev = fg_module_evaluator(l->module, FG_SPLIT_FIT, i);
      fg_value *es = NULL;
      if (fg_metric_has_state(ev)) {
        rc = fg_metric_state_dict(ev, &es, err);
      } else if (l->pos.batches_done > 0) {
        fg_events_log(l->events, FG_LOG_WARNING,
                      "pause: the fit evaluator %s cannot save its state; after a resume its "
                      "epoch %lld value covers only the batches after the pause",
                      fg_metric_name(ev), (long long)l->pos.epoch);
      }
      fg_value_list_append(evs, es ? es : fg_value_none());
    }
    fg_value_dict_set(st, "model_checkpoints", fg__callbacks_saver_states(l));
  }
  if (rc) {
    fg_value_free(st);
    return rc;
  }
  *out = st;
  return 0;
}

int fg__loop_restore(fg_loop *l, const fg_value *st, char **err) {
  if (st == NULL) return 0;
  const fg_value *seed = fg_value_dict_get(st, "seed");
  if (seed && fg_value_kind_of(seed) == FG_VALUE_INT && (uint64_t)fg_value_as_int(seed) != l->seed) {
    /* The data order of the epochs to come is the checkpoint's run's. */
    fg_events_log(l->events, FG_LOG_INFO,
                  "resuming with the checkpoint's seed %llu for the data order (the config's is %llu)",
                  (unsigned long long)fg_value_as_int(seed), (unsigned long long)l->seed);
    l->seed = (uint64_t)fg_value_as_int(seed);
    fg_datamodule_set_seed(l->dm, l->seed);
  }
  int rc = 0;
  const fg_value *rng = fg_value_dict_get(st, "rng_state");
  if (rng && fg_value_kind_of(rng) == FG_VALUE_TENSOR &&
      (rc = fg_torch_set_rng_state(fg_value_as_tensor(rng), err)))
    return fg_err_prefix(err, rc, "fulgur_loop.rng_state");
  const fg_value *lm = fg_value_dict_get(st, "last_metrics");
  for (size_t i = 0; lm && fg_value_kind_of(lm) == FG_VALUE_DICT && i < fg_value_len(lm); i++) {
    const fg_value *v = fg_value_dict_value_at(lm, i);
    if (fg_value_kind_of(v) == FG_VALUE_DOUBLE || fg_value_kind_of(v) == FG_VALUE_INT)
      fg_value_dict_set(l->last_metrics, fg_value_dict_key_at(lm, i),
                        fg_value_double(fg_value_as_double(v)));
  }
  /* max_time goes on counting from where the checkpoint's run stopped. */
  const fg_value *te = fg_value_dict_get(st, "time_elapsed");
  if (te && (fg_value_kind_of(te) == FG_VALUE_DOUBLE || fg_value_kind_of(te) == FG_VALUE_INT))
    l->time_before = fg_value_as_double(te);
  const fg_value *rows = fg_value_dict_get(st, "log_rows");
  l->log_rows = rows && fg_value_kind_of(rows) == FG_VALUE_INT ? fg_value_as_int(rows) : -1;
  /* num_threads auto's choice, which a resume reuses (threads.c). */
  const fg_value *th = fg_value_dict_get(st, "threads");
  if (th && fg_value_kind_of(th) == FG_VALUE_INT && fg_value_as_int(th) > 0 &&
      fg_value_as_int(th) <= 4096)
    l->threads = (int)fg_value_as_int(th);
  const fg_value *paused = fg_value_dict_get(st, "paused");
  if (paused == NULL || fg_value_kind_of(paused) != FG_VALUE_BOOL || !fg_value_as_bool(paused))
    return 0;
  const fg_value *grads = fg_value_dict_get(st, "grads");
  for (size_t i = 0; i < fg_module_num_params(l->module) && rc == 0; i++) {
    const fg_value *g = grads && fg_value_kind_of(grads) == FG_VALUE_DICT
                            ? fg_value_dict_get(grads, fg_module_param_name(l->module, i)) : NULL;
    if (g && fg_value_kind_of(g) == FG_VALUE_TENSOR &&
        (rc = fg_tensor_set_grad(fg_module_param(l->module, i), fg_value_as_tensor(g), err)))
      fg_err_prefix(err, rc, "fulgur_loop.grads.%s", fg_module_param_name(l->module, i));
  }
  const fg_value *evs = fg_value_dict_get(st, "fit_evaluators");
  size_t n_ev = fg_module_num_evaluators(l->module, FG_SPLIT_FIT);
  for (size_t i = 0; rc == 0 && evs && fg_value_kind_of(evs) == FG_VALUE_LIST && i < n_ev &&
                     i < fg_value_len(evs); i++) {
    const fg_value *es = fg_value_list_at(evs, i);
    fg_metric *ev = fg_module_evaluator(l->module, FG_SPLIT_FIT, i);
    if (fg_value_kind_of(es) == FG_VALUE_DICT && fg_metric_has_state(ev) &&
        (rc = fg_metric_load_state_dict(ev, es, err)))
      fg_err_prefix(err, rc, "fulgur_loop.fit_evaluators.%zu", i);
  }
  /* A fork's savers start their own top-k: the saved one names the files
   * of the run it was forked from. */
  if (rc == 0 && !l->fork)
    rc = fg__callbacks_load_saver_states(l->opts, fg_value_dict_get(st, "model_checkpoints"), err);
  return rc;
}

int fg__loop_save_checkpoint(fg_loop *l, const char *path, const fg_callback *saver,
                             const fg_value *loop_state, int64_t batch_idx, char **err) {
  fg_value *cbs = fg__callbacks_state_dict(l, saver);
  int rc = fg__checkpoint_save(path, l->module, l->optim, &l->pos, cbs, loop_state, err);
  fg_value_free(cbs);
  if (rc == 0) {
    fg_event ev = fg__loop_event(l, FG_EVENT_ARTIFACT, FG_SPLIT_FIT);
    ev.batch_idx = batch_idx;
    ev.text = "checkpoint";
    ev.path = path;
    fg_events_emit(l->events, &ev);
  }
  return rc;
}

/* The state a resume continues from exactly, at a step boundary before
 * batch b, as <run dir>/checkpoints/<name>. *path is the caller's. */
static int save_resume_point(fg_loop *l, int64_t b, const char *name, char **path, char **err) {
  char *dir = fg__xasprintf("%s/checkpoints", l->run_dir);
  *path = fg__xasprintf("%s/%s", dir, name);
  fg_ckpt_pos saved = l->pos;
  l->pos.epoch_done = false;
  l->pos.batches_done = b;
  fg_value *st = NULL;
  int rc = fg__mkdirs(dir, err);
  if (rc == 0) rc = fg__loop_state(l, true, &st, err);
  /* The "callbacks" entry's ModelCheckpoint state is the first saver's. */
  if (rc == 0) rc = fg__loop_save_checkpoint(l, *path, fg__callbacks_first_saver(l->opts), st, b, err);
  if (rc) fg_err_prefix(err, rc, "writing %s", *path);
  l->pos = saved;
  fg_value_free(st);
  free(dir);
  return rc;
}

int fg__loop_pause(fg_loop *l, int64_t b, char **err) {
  char *path = NULL;
  int rc = save_resume_point(l, b, "pause.ckpt", &path, err);
  if (rc == 0)
    rc = fg_err_set(err, FG_EPAUSED, "run paused at epoch %lld batch %lld (global step %lld); resume from %s",
                    (long long)l->pos.epoch, (long long)b, (long long)l->pos.global_step, path);
  else
    fg_err_prefix(err, rc, "pause");
  free(path);
  return rc;
}

int fg__loop_manual_checkpoint(fg_loop *l, int64_t b, char **err) {
  /* Only rank 0 writes, and resuming mid-epoch needs every rank's state
   * (fit evaluators, unsynchronized gradients), which only rank 0 would
   * save: refused under ddp, as the pause is. */
  if (l->ddp) {
    fg_events_log(l->events, FG_LOG_WARNING,
                  "checkpoint now: not supported under strategy ddp yet; no checkpoint written");
    return 0;
  }
  char *name = fg__xasprintf("manual-step=%lld.ckpt", (long long)l->pos.global_step);
  char *path = NULL;
  int rc = save_resume_point(l, b, name, &path, err);
  if (rc == 0)
    fg_events_log(l->events, FG_LOG_INFO, "checkpoint now: %s (epoch %lld batch %lld, global step %lld)",
                  path, (long long)l->pos.epoch, (long long)b, (long long)l->pos.global_step);
  else
    fg_err_prefix(err, rc, "checkpoint now");
  free(path);
  free(name);
  return rc;
}
