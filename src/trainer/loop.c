/* The fit, validate and test loops, with Lightning's order of events:
 * sanity validation, then per epoch: training steps (forward, backward,
 * optimizer step, log every log_every_n_steps), fit evaluators, validation
 * every check_val_every_n_epoch epochs, epoch-interval schedulers. The
 * callbacks (callbacks/callback.h) run at Lightning's hooks; what a
 * checkpoint keeps of the loop and the pause are in loop_state.c. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fulgur/autograd.h"
#include "fulgur/error.h"
#include "trainer/trainer.h"
#include "util/xalloc.h"

/* The batch-size total riding with the loss sums when ranks add theirs up
 * (not a loss key: those are identifiers, this is not). */
#define DDP_WEIGHT_KEY "fulgur weight"

static int64_t limit_batches(const fg_trainer_opts *o, fg_split s, int64_t n) {
  if (o->limit_is_count[s]) return o->limit[s] < (double)n ? (int64_t)o->limit[s] : n;
  int64_t k = (int64_t)((double)n * o->limit[s]);
  if (k == 0 && o->limit[s] > 0 && n > 0) k = 1;
  return k;
}

static int cancelled(const fg_loop *l, char **err) {
  if (fg__loop_cancel_requested(l)) return fg_err_set(err, FG_ECANCELED, "run cancelled");
  return 0;
}

/* Suffix for several dataloaders of one split, as evaluator keys get. */
static char *loader_key(const char *split, const char *key, size_t idx, size_t n) {
  return n > 1 ? fg__xasprintf("%s/%s_%zu", split, key, idx) : fg__xasprintf("%s/%s", split, key);
}

/* One evaluation dataloader: the loss means weighted by batch size, per
 * loss key in first-seen order, summed over the ranks, into metrics. */
static int eval_loader(fg_loop *l, fg_split split, size_t idx, size_t n_loaders, bool sanity,
                       fg_value *metrics, char **err) {
  const char *sname = fg_split_names[split];
  fg_dataloader *dl = l->overfit_val;
  int rc;
  if (dl == NULL && (rc = fg_datamodule_loader(l->dm, sname, idx, &dl, err))) return rc;
  if ((rc = fg_dataloader_start_epoch(dl, 0, err))) return rc;
  char *step_action = fg__xasprintf("[Strategy]%s.%s_step", l->ddp ? "DDPStrategy" : "SingleDeviceStrategy",
                                    split == FG_SPLIT_VAL ? "validation" : sname);
  char *next_action = fg__xasprintf("[_EvaluationLoop].%s_next", sname);
  int64_t nb = limit_batches(l->opts, split, fg_dataloader_num_batches(dl));
  if (sanity && l->opts->num_sanity_val_steps >= 0 && nb > l->opts->num_sanity_val_steps)
    nb = l->opts->num_sanity_val_steps;
  fg_value *sums = fg_value_dict();
  double weight = 0;
  for (int64_t b = 0; b < nb; b++) {
    if ((rc = cancelled(l, err))) break;
    fg_value *batch = NULL;
    double t0 = fg__profiler_start(l->profiler);
    if ((rc = fg_dataloader_next(dl, &batch, err)) || batch == NULL) break;
    fg__profiler_stop(l->profiler, next_action, t0);
    fg_step_result r;
    t0 = fg__profiler_start(l->profiler);
    rc = fg__loop_forward_step(l, split, idx, batch, &r, err);
    fg__profiler_stop(l->profiler, step_action, t0);
    fg_value_free(batch);
    if (rc) {
      fg_err_prefix(err, rc, "%s batch %lld", sname, (long long)b);
      break;
    }
    for (size_t k = 0; k < fg_value_len(r.loss_dict) && rc == 0; k++) {
      double v;
      if ((rc = fg_tensor_item(fg_value_as_tensor(fg_value_dict_value_at(r.loss_dict, k)), &v, err)))
        break;
      const char *key = fg_value_dict_key_at(r.loss_dict, k);
      const fg_value *old = fg_value_dict_get(sums, key);
      double acc = (old ? fg_value_as_double(old) : 0) + v * (double)r.batch_size;
      fg_value_dict_set(sums, key, fg_value_double(acc));
    }
    weight += (double)r.batch_size;
    fg_step_result_clear(&r);
    if (rc) break;
    if (!sanity) {
      fg_event ev = fg__loop_event(l, FG_EVENT_PROGRESS, split);
      ev.batch_idx = b;
      ev.num_batches = nb;
      fg_events_emit(l->events, &ev);
    }
  }
  if (rc == 0 && l->ddp && !sanity) {
    /* The whole split: every rank's sums and batch sizes. */
    fg_value_dict_set(sums, DDP_WEIGHT_KEY, fg_value_double(weight));
    if ((rc = fg__ddp_sum_dict(l->ddp, &sums, err)) == 0) {
      fg_value *w = fg_value_dict_take(sums, DDP_WEIGHT_KEY);
      weight = w ? fg_value_as_double(w) : 0;
      fg_value_free(w);
    }
  }
  for (size_t k = 0; rc == 0 && k < fg_value_len(sums) && weight > 0; k++) {
    char *key = loader_key(sname, fg_value_dict_key_at(sums, k), idx, n_loaders);
    fg_value_dict_set(metrics, key,
                      fg_value_double(fg_value_as_double(fg_value_dict_value_at(sums, k)) / weight));
    free(key);
  }
  fg_value_free(sums);
  free(step_action);
  free(next_action);
  return rc;
}

/* libtorch 1.13's TorchScript executor, once a module has trained, runs
 * its autodiff plan under inference mode too and fails ("Inference
 * tensors cannot be saved for backward"; Python's torch 1.13 does the
 * same). Under inference mode the trainable parameters are therefore
 * marked as not requiring grad, which selects the plan without autodiff,
 * and marked back after. *frozen: the indices changed (the caller frees). */
static int freeze_params(fg_module *m, size_t **frozen, size_t *n, char **err) {
  *frozen = fg__xcalloc(fg_module_num_params(m) + 1, sizeof **frozen);
  *n = 0;
  int rc = 0;
  for (size_t i = 0; i < fg_module_num_params(m) && rc == 0; i++) {
    fg_tensor *p = fg_module_param(m, i);
    if (!fg_tensor_requires_grad(p)) continue;
    if ((rc = fg_tensor_set_requires_grad(p, false, err)) == 0) (*frozen)[(*n)++] = i;
  }
  return rc;
}

static int thaw_params(fg_module *m, size_t *frozen, size_t n, char **err) {
  int rc = 0;
  for (size_t k = 0; k < n; k++) {
    int r = fg_tensor_set_requires_grad(fg_module_param(m, frozen[k]), true, rc ? NULL : err);
    if (rc == 0) rc = r;
  }
  free(frozen);
  return rc;
}

int fg__loop_eval(fg_loop *l, fg_split split, bool sanity, char **err) {
  const char *sname = fg_split_names[split];
  size_t n_loaders = l->overfit_val ? 1 : fg_datamodule_num_loaders(l->dm, sname);
  if (n_loaders == 0)
    return fg_err_set(err, FG_ECONFIG, "data: no %s dataset is configured", sname);
  /* reload_dataloaders_every_n_epochs: the fit's validation loaders are
   * built again once that many epochs have passed since they were. */
  int64_t every = l->opts->reload_every;
  if (l->stage == FG_STAGE_FIT && split == FG_SPLIT_VAL && !sanity && every > 0 && !l->overfit_val) {
    if (l->val_loaded_epoch >= 0 && l->pos.epoch - l->val_loaded_epoch >= every)
      fg_datamodule_reload(l->dm, sname);
    if (l->val_loaded_epoch < 0 || l->pos.epoch - l->val_loaded_epoch >= every)
      l->val_loaded_epoch = l->pos.epoch;
  }
  /* Lightning: eval() and no gradients for validation (the sanity check
   * too) and test, then the mode the caller had (train() inside fit). */
  bool was_training = fg_module_is_training(l->module);
  int rc = l->ddp ? fg__ddp_broadcast_buffers(l->ddp, l->module, err) : 0;
  if (rc) return rc;
  fg_module_train(l->module, false);
  size_t *frozen = NULL, n_frozen = 0;
  if (l->opts->inference_mode && (rc = freeze_params(l->module, &frozen, &n_frozen, err))) {
    thaw_params(l->module, frozen, n_frozen, NULL);
    return rc;
  }
  fg_grad_mode *nograd = fg_torch_no_grad_begin(l->opts->inference_mode);
  l->sanity_checking = sanity;
  fg_value *metrics = fg_value_dict();
  for (size_t idx = 0; idx < n_loaders && rc == 0; idx++)
    rc = eval_loader(l, split, idx, n_loaders, sanity, metrics, err);
  if (rc == 0) {
    if (sanity) {
      fg_module_evaluators_reset(l->module, split);
    } else if ((rc = l->ddp ? fg__ddp_reduce_evaluators(l->ddp, l->module, split, l->events, err) : 0) == 0 &&
               (rc = fg_module_evaluators_epoch_end(l->module, split, metrics, err)) == 0 &&
               (rc = fg__loop_keep_artifacts(l, split, metrics, err)) == 0) {
      fg__loop_log_scalars(l, FG_EVENT_EPOCH, split, metrics);
    }
  } else {
    fg_module_evaluators_reset(l->module, split);
  }
  fg_value_free(metrics);
  fg_torch_no_grad_end(nograd);
  int trc = l->opts->inference_mode ? thaw_params(l->module, frozen, n_frozen, rc ? NULL : err) : 0;
  if (rc == 0) rc = trc;
  if (rc == 0 && split == FG_SPLIT_VAL) rc = fg__callbacks_on_validation_end(l, err);
  l->sanity_checking = false;
  fg_module_train(l->module, was_training);
  return rc;
}

/* Clipping, the optimizer step and lightning_template's manual
 * schedulers, which step inside optimizer_step when the global step (not
 * yet counted) is a multiple of their frequency. */
static int optimizer_step(fg_loop *l, size_t i, char **err) {
  const fg_trainer_opts *o = l->opts;
  fg_optimizer *opt = l->optim->opts[i];
  int rc = 0;
  if (!isnan(o->gradient_clip_val))
    rc = o->clip_by_value ? fg_optimizer_clip_grad_value(opt, o->gradient_clip_val, err)
                          : fg_optimizer_clip_grad_norm(opt, o->gradient_clip_val, NULL, err);
  if (rc == 0) rc = fg_optimizer_step(opt, err);
  fg_sched_set *sc = l->optim->scheds[i];
  if (rc == 0 && sc && sc->warmup && l->pos.global_step % sc->warmup_frequency == 0)
    rc = fg_lr_scheduler_step(sc->warmup, NAN, err);
  return rc;
}

/* A training step boundary: batch b of the epoch is the next to run. */
static int step_boundary(fg_loop *l, int64_t b, char **err) {
  int rc = cancelled(l, err);
  if (rc == 0 && l->ddp && fg__loop_pause_requested(l))
    return fg_err_set(err, FG_ECANCELED, "run cancelled (pause is not supported under strategy ddp yet)");
  /* Checkpoint now, before a pause asked for at the same time: both are
   * served. The flag is cleared before the write, so a request that comes
   * during it is served at the next boundary. */
  if (rc == 0 && l->checkpoint && *l->checkpoint) {
    *l->checkpoint = 0;
    rc = fg__loop_manual_checkpoint(l, b, err);
  }
  if (rc == 0 && fg__loop_pause_requested(l)) rc = fg__loop_pause(l, b, err);
  return rc;
}

/* Validation batches between training batches (val_check_interval). */
static int64_t val_check_batch(const fg_trainer_opts *o, int64_t nb) {
  if (o->val_check_is_count) return (int64_t)o->val_check_interval;
  int64_t v = (int64_t)((double)nb * o->val_check_interval);
  return v < 1 ? 1 : v;
}

/* The step's log row: step_log (what callbacks put there) and the losses. */
static int log_step(fg_loop *l, const fg_step_result *r, fg_value *step_log, char **err) {
  int rc = 0;
  for (size_t k = 0; k < fg_value_len(r->loss_dict) && rc == 0; k++) {
    double v;
    rc = fg_tensor_item(fg_value_as_tensor(fg_value_dict_value_at(r->loss_dict, k)), &v, err);
    char *key = fg__xasprintf("fit/%s", fg_value_dict_key_at(r->loss_dict, k));
    fg_value_dict_set(step_log, key, fg_value_double(v));
    free(key);
  }
  if (rc == 0) fg__loop_log_scalars(l, FG_EVENT_STEP, FG_SPLIT_FIT, step_log);
  return rc;
}

/* One training batch (taken): forward and backward; at the end of an
 * accumulation window the optimizer step, the step's log, the
 * step-interval schedulers and the progress event. *stepped: the
 * optimizers stepped (the global step counts it). */
static int train_batch(fg_loop *l, fg_value *batch, int64_t b, int64_t nb, fg_value *step_log,
                       bool *stepped, char **err) {
  const fg_trainer_opts *o = l->opts;
  const fg_optim_set *os = l->optim;
  /* Gradients add up over accumulate_grad_batches batches (the last,
   * shorter window of an epoch included), each loss divided by that
   * count as Lightning does; the optimizer steps at the window's end. */
  int64_t acc = o->accumulate_grad_batches;
  bool do_step = (b + 1) % acc == 0 || b + 1 == nb;
  int rc = 0;
  *stepped = false;
  double t0 = fg__profiler_start(l->profiler);
  if (b % acc == 0)
    for (size_t i = 0; i < os->n && rc == 0; i++)
      if (fg_optim_set_active(os, i, b)) rc = fg_optimizer_zero_grad(os->opts[i], err);
  if (b % acc == 0) fg__profiler_stop(l->profiler, "[LightningModule].optimizer_zero_grad", t0);
  fg_step_result r;
  /* torch DDP's broadcast_buffers: every rank's forward from rank 0's
   * running statistics. */
  if (rc == 0 && l->ddp) rc = fg__ddp_broadcast_buffers(l->ddp, l->module, err);
  t0 = fg__profiler_start(l->profiler);
  if (rc == 0) rc = fg__loop_forward_step(l, FG_SPLIT_FIT, 0, batch, &r, err);
  fg__profiler_stop(l->profiler, l->ddp ? "[Strategy]DDPStrategy.training_step"
                                        : "[Strategy]SingleDeviceStrategy.training_step", t0);
  fg_value_free(batch);
  if (rc) return fg_err_prefix(err, rc, "fit epoch %lld batch %lld", (long long)l->pos.epoch, (long long)b);

  t0 = fg__profiler_start(l->profiler);
  if (acc > 1) {
    fg_tensor *scaled = NULL;
    if ((rc = fg_op_mul_scalar(r.loss, 1.0 / (double)acc, &scaled, err)) == 0)
      rc = fg_tensor_backward(scaled, err);
    fg_tensor_free(scaled);
  } else {
    rc = fg_tensor_backward(r.loss, err);
  }
  /* DDP: the gradients averaged over the ranks, once per window, on the
   * step that applies them. */
  if (rc == 0 && do_step && l->ddp) rc = fg__ddp_sync_grads(l->ddp, l->module, err);
  fg__profiler_stop(l->profiler, l->ddp ? "[Strategy]DDPStrategy.backward"
                                        : "[Strategy]SingleDeviceStrategy.backward", t0);
  /* One forward and backward; every optimizer whose turn it is
   * (frequency) steps its own parameters. */
  t0 = fg__profiler_start(l->profiler);
  for (size_t i = 0; i < os->n && rc == 0 && do_step; i++)
    if (fg_optim_set_active(os, i, b)) rc = optimizer_step(l, i, err);
  if (do_step) fg__profiler_stop(l->profiler, "[LightningModule].optimizer_step", t0);
  if (rc || !do_step) {
    fg_step_result_clear(&r);
    return rc ? fg_err_prefix(err, rc, "fit epoch %lld batch %lld", (long long)l->pos.epoch, (long long)b) : 0;
  }
  l->pos.global_step++;
  l->pos.epoch_done = false;
  *stepped = true;

  double loss = NAN;
  rc = fg_tensor_item(r.loss, &loss, err);
  /* log_every_n_steps 0 (barebones): no step rows. */
  if (rc == 0 && o->log_every_n_steps > 0 && l->pos.global_step % o->log_every_n_steps == 0)
    rc = log_step(l, &r, step_log, err);
  fg_step_result_clear(&r);
  /* Step-interval schedulers, after the batch as Lightning does. */
  for (size_t i = 0; i < os->n && rc == 0; i++) {
    fg_sched_set *sc = os->scheds[i];
    if (sc && sc->scheduler && sc->interval_step && fg_optim_set_active(os, i, b) &&
        l->pos.global_step % sc->frequency == 0)
      rc = fg_lr_scheduler_step(sc->scheduler, NAN, err);
  }
  if (rc) return rc;
  static const char *const loss_key = "loss";
  fg_event ev = fg__loop_event(l, FG_EVENT_PROGRESS, FG_SPLIT_FIT);
  ev.batch_idx = b;
  ev.num_batches = nb;
  ev.n_values = 1;
  ev.keys = &loss_key;
  ev.values = &loss;
  fg_events_emit(l->events, &ev);
  return 0;
}

static double monotonic_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double fg__loop_fit_elapsed(const fg_loop *l) {
  return l->time_before + (l->fit_started > 0 ? monotonic_now() - l->fit_started : 0);
}

/* Lightning's Timer (max_time), after each training batch and at an
 * epoch's end: once the fit has run that long it asks for a stop. Every
 * rank takes the same decision (any rank over the limit stops all). */
static int check_max_time(fg_loop *l, char **err) {
  if (isnan(l->opts->max_time) || l->should_stop) return 0;
  double elapsed = fg__loop_fit_elapsed(l);
  bool over = elapsed >= l->opts->max_time;
  int rc = l->ddp ? fg__ddp_any(l->ddp, &over, err) : 0;
  if (rc == 0 && over) {
    fg_events_log(l->events, FG_LOG_INFO, "max_time: time limit reached (%.1f s of %g s); signaling the trainer to stop",
                  elapsed, l->opts->max_time);
    l->should_stop = true;
  }
  return rc;
}

/* Lightning's _can_stop_early: a requested stop (EarlyStopping, max_time)
 * ends the fit only once min_epochs epochs have completed and min_steps
 * optimizer steps have run; until then the request stays and training
 * goes on. epochs_done: complete epochs so far. */
static bool stop_now(fg_loop *l, int64_t epochs_done) {
  if (!l->should_stop) return false;
  const fg_trainer_opts *o = l->opts;
  if (epochs_done >= o->min_epochs && l->pos.global_step >= o->min_steps) return true;
  if (!l->min_told) {
    fg_events_log(l->events, FG_LOG_INFO,
                  "the trainer was signaled to stop but min_epochs=%lld or min_steps=%lld has not "
                  "been met; training continues",
                  (long long)o->min_epochs, (long long)o->min_steps);
    l->min_told = true;
  }
  return false;
}

static int train_epoch(fg_loop *l, fg_dataloader *dl, bool *complete, char **err) {
  const fg_trainer_opts *o = l->opts;
  int64_t nb = limit_batches(o, FG_SPLIT_FIT, fg_dataloader_num_batches(dl));
  *complete = false;
  /* A resume inside the epoch starts at the batch the pause stopped
   * before; what ran before it (the epoch's start hooks included) is in
   * the checkpoint's run. */
  int64_t first = l->pos.batches_done;
  l->pos.batches_done = 0;
  if (first > nb)
    return fg_err_set(err, FG_EDATA,
                      "the checkpoint stopped after batch %lld of epoch %lld, which now has only "
                      "%lld batches (did the data or batch size change?)",
                      (long long)first, (long long)l->pos.epoch, (long long)nb);
  int rc = 0;
  if (first == 0 && (rc = step_boundary(l, 0, err))) return rc;
  if ((rc = fg_dataloader_start_epoch_at(dl, l->pos.epoch, first, err))) return rc;
  if (first == 0 && (rc = fg__callbacks_on_train_epoch_start(l, err))) return rc;
  int64_t b;
  for (b = first; b < nb; b++) {
    if (o->max_steps >= 0 && l->pos.global_step >= o->max_steps) break;
    if (b > 0 && (rc = step_boundary(l, b, err))) return rc;
    fg_value *batch = NULL;
    double t0 = fg__profiler_start(l->profiler);
    if ((rc = fg_dataloader_next(dl, &batch, err))) return rc;
    if (batch == NULL) break;
    fg__profiler_stop(l->profiler, "[_TrainingEpochLoop].train_dataloader_next", t0);
    fg_value *step_log = fg_value_dict();
    bool stepped = false;
    rc = fg__callbacks_on_train_batch_start(l, b, step_log, err);
    t0 = fg__profiler_start(l->profiler);
    if (rc == 0) rc = train_batch(l, batch, b, nb, step_log, &stepped, err);
    else fg_value_free(batch);
    fg__profiler_stop(l->profiler, "run_training_batch", t0);
    fg_value_free(step_log);
    if (rc == 0) rc = fg__callbacks_on_train_batch_end(l, b, err);
    if (rc == 0 && stepped) rc = check_max_time(l, err);
    if (rc) return rc;
    /* val_check_interval: validation inside the epoch after an optimizer
     * step; the epoch's end is the fit loop's. */
    if (stepped && l->val_this_epoch && b + 1 < nb && (b + 1) % val_check_batch(o, nb) == 0) {
      if ((rc = fg__loop_eval(l, FG_SPLIT_VAL, false, err))) return rc;
    }
    if (stop_now(l, l->pos.epoch)) {
      b++;
      break;
    }
  }
  *complete = b == nb;
  return 0;
}

/* ReduceLROnPlateau at an epoch's end, with the latest value of its
 * monitor (Lightning's callback_metrics). */
static int step_plateau(fg_loop *l, fg_sched_set *sc, char **err) {
  const fg_value *v = fg_value_dict_get(l->last_metrics, sc->monitor);
  if (v == NULL) {
    if (!sc->strict) {
      fg_events_log(l->events, FG_LOG_WARNING,
                    "ReduceLROnPlateau: metric '%s' is not available; skipped", sc->monitor);
      return 0;
    }
    size_t n = fg_value_len(l->last_metrics), len = 1;
    for (size_t i = 0; i < n; i++) len += strlen(fg_value_dict_key_at(l->last_metrics, i)) + 2;
    char *avail = fg__xcalloc(len, 1);
    for (size_t i = 0; i < n; i++) {
      if (i) strcat(avail, ", ");
      strcat(avail, fg_value_dict_key_at(l->last_metrics, i));
    }
    int rc = fg_err_set(err, FG_ERUN,
                        "optimizer_config.lr_scheduler.monitor: ReduceLROnPlateau watches '%s', "
                        "which is never logged (logged: %s)",
                        sc->monitor, n ? avail : "nothing yet");
    free(avail);
    return rc;
  }
  return fg_lr_scheduler_step(sc->scheduler, fg_value_as_double(v), err);
}

/* The epoch-interval schedulers of a complete epoch e: the plain ones
 * before the epoch's validation, ReduceLROnPlateau (plateau) after it. */
static int step_epoch_schedulers(fg_loop *l, int64_t e, bool plateau, char **err) {
  int rc = 0;
  for (size_t i = 0; i < l->optim->n && rc == 0; i++) {
    fg_sched_set *sc = l->optim->scheds[i];
    if (!sc || !sc->scheduler || (e + 1) % sc->frequency != 0) continue;
    if (plateau && fg_lr_scheduler_is_plateau(sc->scheduler))
      rc = step_plateau(l, sc, err);
    else if (!plateau && !sc->interval_step && !fg_lr_scheduler_is_plateau(sc->scheduler))
      rc = fg_lr_scheduler_step(sc->scheduler, NAN, err);
  }
  return rc;
}

/* The fit evaluators' epoch values (reduced over the ranks). */
static int fit_epoch_metrics(fg_loop *l, char **err) {
  fg_value *m = fg_value_dict();
  int rc = l->ddp ? fg__ddp_reduce_evaluators(l->ddp, l->module, FG_SPLIT_FIT, l->events, err) : 0;
  if (rc == 0) rc = fg_module_evaluators_epoch_end(l->module, FG_SPLIT_FIT, m, err);
  if (rc == 0) rc = fg__loop_keep_artifacts(l, FG_SPLIT_FIT, m, err);
  if (rc == 0) fg__loop_log_scalars(l, FG_EVENT_EPOCH, FG_SPLIT_FIT, m);
  fg_value_free(m);
  return rc;
}

/* overfit_batches: the loader validation reads instead of the val split's:
 * the fit dataset in order, this rank's shard of it under ddp. */
static int overfit_val_loader(fg_loop *l, char **err) {
  fg_dataloader *fit = NULL;
  int rc = fg_datamodule_loader(l->dm, "fit", 0, &fit, err);
  if (rc) return rc;
  fg_dataloader_opts vo = {.batch_size = fg_dataloader_batch_size(fit)};
  if (l->ddp && l->opts->use_distributed_sampler) {
    vo.rank = fg__ddp_rank(l->ddp);
    vo.world_size = fg__ddp_world(l->ddp);
  }
  return fg_dataloader_create(fg_dataloader_dataset(fit), &vo, &l->overfit_val, err);
}

static int fit_loop(fg_loop *l, char **err);

/* Lightning's detect_anomaly wraps the whole fit stage; the overfit
 * loader lives as long as the fit. */
int fg__loop_fit(fg_loop *l, char **err) {
  bool anomaly = fg_torch_set_anomaly_enabled(l->opts->detect_anomaly);
  l->fit_loaded_epoch = l->val_loaded_epoch = -1;
  int rc = l->opts->overfit_batches > 0 ? overfit_val_loader(l, err) : 0;
  if (rc == 0) rc = fit_loop(l, err);
  fg_dataloader_free(l->overfit_val);
  l->overfit_val = NULL;
  fg_torch_set_anomaly_enabled(anomaly);
  return rc;
}

static int fit_loop(fg_loop *l, char **err) {
  const fg_trainer_opts *o = l->opts;
  size_t n_val = l->overfit_val ? 1 : fg_datamodule_num_loaders(l->dm, "val");
  bool do_val = n_val > 0 && !(o->limit[FG_SPLIT_VAL] == 0);
  int rc = fg__callbacks_on_fit_start(l, err);
  if (rc) return rc;
  if (do_val && o->num_sanity_val_steps != 0 && (rc = fg__loop_eval(l, FG_SPLIT_VAL, true, err)))
    return fg_err_prefix(err, rc, "sanity check");
  /* lightning_template's KFoldLoop replaces the epochs, not the sanity
   * check or the fit's start and end hooks. */
  rc = o->num_folds > 1 ? fg__loop_fit_folds(l, err) : fg__loop_fit_epochs(l, err);
  return rc ? rc : fg__callbacks_on_fit_end(l, err);
}

int fg__loop_fit_epochs(fg_loop *l, char **err) {
  const fg_trainer_opts *o = l->opts;
  size_t n_val = fg_datamodule_num_loaders(l->dm, "val");
  bool do_val = n_val > 0 && !(o->limit[FG_SPLIT_VAL] == 0);
  int rc;
  fg_dataloader *dl = NULL;
  if (fg_datamodule_num_loaders(l->dm, "fit") == 0)
    return fg_err_set(err, FG_ECONFIG, "data: no fit dataset is configured");
  if ((rc = fg_datamodule_loader(l->dm, "fit", 0, &dl, err))) return rc;
  fg_module_train(l->module, true);
  l->fit_started = monotonic_now();
  int64_t first = l->pos.epoch_done && l->pos.global_step > 0 ? l->pos.epoch + 1 : l->pos.epoch;
  for (int64_t e = first; o->max_epochs < 0 || e < o->max_epochs; e++) {
    if (o->max_steps >= 0 && l->pos.global_step >= o->max_steps) break;
    l->pos.epoch = e;
    l->val_this_epoch = do_val && (e + 1) % o->check_val_every_n_epoch == 0;
    /* reload_dataloaders_every_n_epochs: a fresh fit loader (its dataset
     * read again) at the epochs Lightning reloads it. */
    if (o->reload_every > 0) {
      if (l->fit_loaded_epoch >= 0 && e - l->fit_loaded_epoch >= o->reload_every) {
        fg_datamodule_reload(l->dm, "fit");
        if ((rc = fg_datamodule_loader(l->dm, "fit", 0, &dl, err))) return rc;
      }
      if (l->fit_loaded_epoch < 0 || e - l->fit_loaded_epoch >= o->reload_every) l->fit_loaded_epoch = e;
    }
    int64_t nb = limit_batches(o, FG_SPLIT_FIT, fg_dataloader_num_batches(dl));
    bool complete = false;
    double t0 = fg__profiler_start(l->profiler);
    rc = train_epoch(l, dl, &complete, err);
    fg__profiler_stop(l->profiler, "run_training_epoch", t0);
    if (rc) return rc;
    if (complete && (rc = step_epoch_schedulers(l, e, false, err))) return rc;
    if ((rc = fit_epoch_metrics(l, err))) return rc;
    l->pos.epoch_done = true;
    /* The epoch's last validation, unless val_check_interval's checks do
     * not land on the last batch (Lightning validates at batches whose
     * index + 1 is a multiple of the interval). */
    if (complete && l->val_this_epoch && nb > 0 && nb % val_check_batch(o, nb) == 0 &&
        (rc = fg__loop_eval(l, FG_SPLIT_VAL, false, err)))
      return rc;
    if (complete && (rc = step_epoch_schedulers(l, e, true, err))) return rc;
    l->epoch_complete = complete;
    if ((rc = fg__callbacks_on_train_epoch_end(l, err))) return rc;
    if ((rc = check_max_time(l, err))) return rc;
    if (stop_now(l, e + 1)) break;
  }
  /* Every rank ends with rank 0's buffers, as it has rank 0's weights. */
  return l->ddp ? fg__ddp_broadcast_buffers(l->ddp, l->module, err) : 0;
}
