/* The fit, validate and test loops, with Lightning's order of events:
 * sanity validation, then per epoch: training steps (scalars logged every
 * log_every_n_steps), fit evaluators, validation every
 * check_val_every_n_epoch epochs, checkpoint callbacks. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fulgur/error.h"
#include "trainer/trainer.h"
#include "util/xalloc.h"

static int64_t limit_batches(const fg_trainer_opts *o, fg_split s, int64_t n) {
  if (o->limit_is_count[s]) return o->limit[s] < (double)n ? (int64_t)o->limit[s] : n;
  int64_t k = (int64_t)((double)n * o->limit[s]);
  if (k == 0 && o->limit[s] > 0 && n > 0) k = 1;
  return k;
}

static fg_event base_event(const fg_loop *l, fg_event_kind kind, fg_split split) {
  return (fg_event){.kind = kind,
                    .split = fg_split_names[split],
                    .epoch = l->pos.epoch,
                    .global_step = l->pos.global_step,
                    .batch_idx = -1,
                    .num_batches = -1,
                    .max_epochs = l->opts->max_epochs,
                    .max_steps = l->opts->max_steps};
}

/* Emits the doubles of a dict as one STEP or EPOCH event and remembers
 * them as the latest values. */
static void emit_scalars(fg_loop *l, fg_event_kind kind, fg_split split, const fg_value *d) {
  size_t n = fg_value_len(d);
  if (n == 0) return;
  const char **keys = fg__xmalloc(n * sizeof *keys);
  double *vals = fg__xmalloc(n * sizeof *vals);
  for (size_t i = 0; i < n; i++) {
    keys[i] = fg_value_dict_key_at(d, i);
    vals[i] = fg_value_as_double(fg_value_dict_value_at(d, i));
    fg_value_dict_set(l->last_metrics, keys[i], fg_value_double(vals[i]));
  }
  fg_event ev = base_event(l, kind, split);
  ev.n_values = n;
  ev.keys = keys;
  ev.values = vals;
  fg_events_emit(l->events, &ev);
  free(keys);
  free(vals);
}

static int cancelled(const fg_loop *l, char **err) {
  if (l->cancel && *l->cancel) return fg_err_set(err, FG_ECANCELED, "run cancelled");
  return 0;
}

/* Suffix for several dataloaders of one split, as evaluator keys get. */
static char *loader_key(const char *split, const char *key, size_t idx, size_t n) {
  return n > 1 ? fg__xasprintf("%s/%s_%zu", split, key, idx) : fg__xasprintf("%s/%s", split, key);
}

int fg__loop_eval(fg_loop *l, fg_split split, bool sanity, char **err) {
  const char *sname = fg_split_names[split];
  size_t n_loaders = fg_datamodule_num_loaders(l->dm, sname);
  if (n_loaders == 0)
    return fg_err_set(err, FG_ECONFIG, "data: no %s dataset is configured", sname);
  bool was = fg_torch_set_grad_enabled(false);
  fg_value *metrics = fg_value_dict();
  int rc = 0;
  for (size_t idx = 0; idx < n_loaders && rc == 0; idx++) {
    fg_dataloader *dl = NULL;
    if ((rc = fg_datamodule_loader(l->dm, sname, idx, &dl, err))) break;
    if ((rc = fg_dataloader_start_epoch(dl, 0, err))) break;
    int64_t nb = limit_batches(l->opts, split, fg_dataloader_num_batches(dl));
    if (sanity && l->opts->num_sanity_val_steps >= 0 && nb > l->opts->num_sanity_val_steps)
      nb = l->opts->num_sanity_val_steps;
    /* Epoch means weighted by batch size, per loss key, in first-seen order. */
    fg_value *sums = fg_value_dict();
    double weight = 0;
    for (int64_t b = 0; b < nb; b++) {
      if ((rc = cancelled(l, err))) break;
      fg_value *batch = NULL;
      if ((rc = fg_dataloader_next(dl, &batch, err)) || batch == NULL) break;
      fg_step_result r;
      rc = fg_module_forward_step(l->module, split, idx, batch, &r, err);
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
        fg_event ev = base_event(l, FG_EVENT_PROGRESS, split);
        ev.batch_idx = b;
        ev.num_batches = nb;
        fg_events_emit(l->events, &ev);
      }
    }
    for (size_t k = 0; rc == 0 && k < fg_value_len(sums) && weight > 0; k++) {
      char *key = loader_key(sname, fg_value_dict_key_at(sums, k), idx, n_loaders);
      fg_value_dict_set(metrics, key,
                        fg_value_double(fg_value_as_double(fg_value_dict_value_at(sums, k)) / weight));
      free(key);
    }
    fg_value_free(sums);
  }
  if (rc == 0) {
    if (sanity) {
      fg_module_evaluators_reset(l->module, split);
    } else if ((rc = fg_module_evaluators_epoch_end(l->module, split, metrics, err)) == 0) {
      emit_scalars(l, FG_EVENT_EPOCH, split, metrics);
    }
  } else {
    fg_module_evaluators_reset(l->module, split);
  }
  fg_value_free(metrics);
  fg_torch_set_grad_enabled(was);
  return rc;
}

/* "epoch={epoch}-step={step}" with {name} and {name:fmt} filled from the
 * loop position and the latest metrics; Lightning's auto_insert_metric_name
 * writes "name=" before each value. '/' in names becomes '_' so a metric
 * such as val/loss does not create folders. */
static int format_name(const fg_loop *l, const fg_ckpt_callback *c, char **out, char **err) {
  const char *tpl = c->filename ? c->filename : "{epoch}-{step}";
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  int rc = 0;
  for (const char *p = tpl; *p; p++) {
    if (*p != '{') {
      fputc(*p == '/' ? '_' : *p, f);
      continue;
    }
    const char *end = strchr(p, '}');
    if (end == NULL) {
      fputc(*p, f);
      continue;
    }
    char *spec = fg__xstrndup(p + 1, (size_t)(end - p - 1));
    char *fmt = strchr(spec, ':');
    if (fmt) *fmt++ = '\0';
    if (c->auto_insert_metric_name) {
      for (char *s = spec; *s; s++) fputc(*s == '/' ? '_' : *s, f);
      fputc('=', f);
    }
    if (strcmp(spec, "epoch") == 0) {
      fprintf(f, "%lld", (long long)l->pos.epoch);
    } else if (strcmp(spec, "step") == 0) {
      fprintf(f, "%lld", (long long)l->pos.global_step);
    } else {
      const fg_value *v = fg_value_dict_get(l->last_metrics, spec);
      if (v == NULL) {
        rc = fg_err_set(err, FG_ECONFIG, "ModelCheckpoint: filename names '%s', which was never logged", spec);
        free(spec);
        break;
      }
      char cfmt[32] = "%.4f";
      if (fmt && strlen(fmt) < 16 && strspn(fmt, "0123456789.efgEG") == strlen(fmt))
        snprintf(cfmt, sizeof cfmt, "%%%s", fmt);
      fprintf(f, cfmt, fg_value_as_double(v));
    }
    free(spec);
    p = end;
  }
  fclose(f);
  if (rc) {
    free(buf);
    return rc;
  }
  *out = buf;
  return 0;
}

static fg_value *ckpt_state(const fg_ckpt_callback *c, const char *dir) {
  fg_value *d = fg_value_dict();
  fg_value_dict_set(d, "monitor", c->monitor ? fg_value_string(c->monitor) : fg_value_none());
  fg_value_dict_set(d, "best_model_score", c->best_path ? fg_value_double(c->best_score) : fg_value_none());
  fg_value_dict_set(d, "best_model_path", fg_value_string(c->best_path ? c->best_path : ""));
  fg_value_dict_set(d, "last_model_path", fg_value_string(c->last_path ? c->last_path : ""));
  fg_value_dict_set(d, "dirpath", fg_value_string(dir));
  fg_value *k = fg_value_dict();
  for (size_t i = 0; i < c->n_kept; i++)
    fg_value_dict_set(k, c->kept_paths[i], fg_value_double(c->kept_scores[i]));
  fg_value_dict_set(d, "best_k_models", k);
  return d;
}

static bool better(const fg_ckpt_callback *c, double a, double b) {
  if (isnan(b)) return !isnan(a);
  return c->mode_max ? a > b : a < b;
}

static int run_checkpoint(fg_loop *l, fg_ckpt_callback *c, char **err) {
  if ((l->pos.epoch + 1) % c->every_n_epochs != 0) return 0;
  char *dir = c->dirpath ? fg__xstrdup(c->dirpath) : fg__xasprintf("%s/checkpoints", l->run_dir);
  int rc = fg__mkdirs(dir, err);
  double score = NAN;
  if (rc == 0 && c->monitor) {
    const fg_value *v = fg_value_dict_get(l->last_metrics, c->monitor);
    if (v == NULL) {
      /* Lightning raises here too: a typo in monitor must not go unseen. */
      char *keys = fg__xstrdup("");
      for (size_t i = 0; i < fg_value_len(l->last_metrics); i++) {
        char *k2 = fg__xasprintf("%s%s%s", keys, i ? ", " : "", fg_value_dict_key_at(l->last_metrics, i));
        free(keys);
        keys = k2;
      }
      rc = fg_err_set(err, FG_ECONFIG,
                      "ModelCheckpoint(monitor='%s'): no such logged metric (logged: %s)",
                      c->monitor, keys);
      free(keys);
    } else {
      score = fg_value_as_double(v);
    }
  }
  char *name = NULL, *path = NULL;
  if (rc == 0) rc = format_name(l, c, &name, err);
  if (rc == 0) path = fg__xasprintf("%s/%s.ckpt", dir, name);
  bool save = false;
  size_t replace = (size_t)-1;
  if (rc == 0 && c->save_top_k != 0) {
    if (c->save_top_k < 0 || (int64_t)c->n_kept < c->save_top_k) {
      save = true;
    } else if (!c->monitor) {
      save = true;
      replace = 0; /* no monitor: keep the latest */
    } else {
      size_t worst = 0;
      for (size_t i = 1; i < c->n_kept; i++)
        if (better(c, c->kept_scores[worst], c->kept_scores[i])) worst = i;
      if (better(c, score, c->kept_scores[worst])) {
        save = true;
        replace = worst;
      }
    }
  }
  if (save) {
    if (c->monitor && (c->best_path == NULL || better(c, score, c->best_score))) {
      free(c->best_path);
      c->best_path = fg__xstrdup(path);
      c->best_score = score;
    } else if (!c->monitor) {
      free(c->best_path);
      c->best_path = fg__xstrdup(path);
    }
    fg_value *cbs = fg_value_dict();
    fg_value_dict_set(cbs, "ModelCheckpoint", ckpt_state(c, dir));
    rc = fg__checkpoint_save(path, l->module, l->opt, l->sched, &l->pos, cbs, err);
    fg_value_free(cbs);
    if (rc == 0) {
      fg_event ev = base_event(l, FG_EVENT_ARTIFACT, FG_SPLIT_FIT);
      ev.text = "checkpoint";
      ev.path = path;
      fg_events_emit(l->events, &ev);
      if (replace != (size_t)-1) {
        if (strcmp(c->kept_paths[replace], path) != 0) remove(c->kept_paths[replace]);
        free(c->kept_paths[replace]);
        c->kept_paths[replace] = fg__xstrdup(path);
        c->kept_scores[replace] = score;
      } else {
        c->kept_paths = fg__xrealloc(c->kept_paths, (c->n_kept + 1) * sizeof *c->kept_paths);
        c->kept_scores = fg__xrealloc(c->kept_scores, (c->n_kept + 1) * sizeof *c->kept_scores);
        c->kept_paths[c->n_kept] = fg__xstrdup(path);
        c->kept_scores[c->n_kept] = score;
        c->n_kept++;
      }
    }
  }
  if (rc == 0 && c->save_last) {
    char *last = fg__xasprintf("%s/last.ckpt", dir);
    fg_value *cbs = fg_value_dict();
    free(c->last_path);
    c->last_path = fg__xstrdup(last);
    fg_value_dict_set(cbs, "ModelCheckpoint", ckpt_state(c, dir));
    rc = fg__checkpoint_save(last, l->module, l->opt, l->sched, &l->pos, cbs, err);
    fg_value_free(cbs);
    if (rc == 0) {
      fg_event ev = base_event(l, FG_EVENT_ARTIFACT, FG_SPLIT_FIT);
      ev.text = "checkpoint";
      ev.path = last;
      fg_events_emit(l->events, &ev);
    }
    free(last);
  }
  free(name);
  free(path);
  free(dir);
  return rc;
}

/* LearningRateMonitor's keys: lr-<Optimizer>, with /pg<N> for several
 * parameter groups (Lightning's names). */
static void add_lrs(const fg_loop *l, fg_value *d) {
  size_t n = fg_optimizer_num_groups(l->opt);
  for (size_t g = 0; g < n; g++) {
    char *key = n > 1 ? fg__xasprintf("lr-%s/pg%zu", l->opt_class, g + 1)
                      : fg__xasprintf("lr-%s", l->opt_class);
    fg_value_dict_set(d, key, fg_value_double(fg_optimizer_get_lr(l->opt, g)));
    free(key);
  }
}

/* Whether the monitor logs at steps (else at epoch starts). With
 * logging_interval null it follows the scheduler's interval. */
static bool lr_logged_per_step(const fg_loop *l) {
  const fg_callback *mon = l->opts->lr_monitor;
  if (mon->lr_interval == FG_LR_LOG_STEP) return true;
  if (mon->lr_interval == FG_LR_LOG_EPOCH) return false;
  return l->sched == NULL || l->sched->scheduler == NULL || l->sched->interval_step;
}

static int train_epoch(fg_loop *l, fg_dataloader *dl, bool *complete, char **err) {
  const fg_trainer_opts *o = l->opts;
  fg_sched_set *sc = l->sched;
  int64_t nb = limit_batches(o, FG_SPLIT_FIT, fg_dataloader_num_batches(dl));
  *complete = false;
  int rc = fg_dataloader_start_epoch(dl, l->pos.epoch, err);
  if (rc) return rc;
  bool lr_steps = o->lr_monitor && lr_logged_per_step(l);
  if (o->lr_monitor && !lr_steps) {
    /* Logged at the epoch's start, in the row of the step about to run. */
    fg_value *d = fg_value_dict();
    add_lrs(l, d);
    l->pos.global_step++;
    emit_scalars(l, FG_EVENT_STEP, FG_SPLIT_FIT, d);
    l->pos.global_step--;
    fg_value_free(d);
  }
  static const char *const loss_key = "loss";
  int64_t b;
  for (b = 0; b < nb; b++) {
    if (o->max_steps >= 0 && l->pos.global_step >= o->max_steps) break;
    if ((rc = cancelled(l, err))) return rc;
    fg_value *batch = NULL;
    if ((rc = fg_dataloader_next(dl, &batch, err))) return rc;
    if (batch == NULL) break;
    /* The lr this step uses, read before any scheduler moves it. */
    fg_value *lrs = NULL;
    if (lr_steps && (l->pos.global_step + 1) % o->log_every_n_steps == 0) {
      lrs = fg_value_dict();
      add_lrs(l, lrs);
    }
    fg_step_result r;
    if ((rc = fg_optimizer_zero_grad(l->opt, err)) == 0)
      rc = fg_module_forward_step(l->module, FG_SPLIT_FIT, 0, batch, &r, err);
    fg_value_free(batch);
    if (rc) return fg_err_prefix(err, rc, "fit epoch %lld batch %lld", (long long)l->pos.epoch,
                                 (long long)b);
    if ((rc = fg_tensor_backward(r.loss, err)) == 0) rc = fg_optimizer_step(l->opt, err);
    /* lightning_template's manual schedulers: stepped inside optimizer_step,
     * when the global step (not yet counted) is a multiple of their
     * frequency. */
    if (rc == 0 && sc && sc->warmup && l->pos.global_step % sc->warmup_frequency == 0)
      rc = fg_lr_scheduler_step(sc->warmup, NAN, err);
    if (rc) {
      fg_step_result_clear(&r);
      fg_value_free(lrs);
      return fg_err_prefix(err, rc, "fit epoch %lld batch %lld", (long long)l->pos.epoch,
                           (long long)b);
    }
    l->pos.global_step++;
    l->pos.epoch_done = false;
    double loss = NAN;
    rc = fg_tensor_item(r.loss, &loss, err);
    if (rc == 0 && l->pos.global_step % o->log_every_n_steps == 0) {
      fg_value *d = lrs ? lrs : fg_value_dict();
      lrs = NULL;
      for (size_t k = 0; k < fg_value_len(r.loss_dict) && rc == 0; k++) {
        double v;
        rc = fg_tensor_item(fg_value_as_tensor(fg_value_dict_value_at(r.loss_dict, k)), &v, err);
        char *key = fg__xasprintf("fit/%s", fg_value_dict_key_at(r.loss_dict, k));
        fg_value_dict_set(d, key, fg_value_double(v));
        free(key);
      }
      if (rc == 0) emit_scalars(l, FG_EVENT_STEP, FG_SPLIT_FIT, d);
      fg_value_free(d);
    }
    fg_step_result_clear(&r);
    fg_value_free(lrs);
    /* Step-interval schedulers, after the batch as Lightning does. */
    if (rc == 0 && sc && sc->scheduler && sc->interval_step &&
        l->pos.global_step % sc->frequency == 0)
      rc = fg_lr_scheduler_step(sc->scheduler, NAN, err);
    if (rc) return rc;
    fg_event ev = base_event(l, FG_EVENT_PROGRESS, FG_SPLIT_FIT);
    ev.batch_idx = b;
    ev.num_batches = nb;
    ev.n_values = 1;
    ev.keys = &loss_key;
    ev.values = &loss;
    fg_events_emit(l->events, &ev);
  }
  *complete = b == nb;
  return 0;
}

/* ReduceLROnPlateau at an epoch's end, with the latest value of its
 * monitor (Lightning's callback_metrics). */
static int step_plateau(fg_loop *l, char **err) {
  fg_sched_set *sc = l->sched;
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

int fg__loop_fit(fg_loop *l, char **err) {
  const fg_trainer_opts *o = l->opts;
  size_t n_val = fg_datamodule_num_loaders(l->dm, "val");
  bool do_val = n_val > 0 && !(o->limit[FG_SPLIT_VAL] == 0);
  int rc = 0;
  if (do_val && o->num_sanity_val_steps != 0 && (rc = fg__loop_eval(l, FG_SPLIT_VAL, true, err)))
    return fg_err_prefix(err, rc, "sanity check");
  fg_dataloader *dl = NULL;
  if (fg_datamodule_num_loaders(l->dm, "fit") == 0)
    return fg_err_set(err, FG_ECONFIG, "data: no fit dataset is configured");
  if ((rc = fg_datamodule_loader(l->dm, "fit", 0, &dl, err))) return rc;
  int64_t first = l->pos.epoch_done && l->pos.global_step > 0 ? l->pos.epoch + 1 : l->pos.epoch;
  for (int64_t e = first; o->max_epochs < 0 || e < o->max_epochs; e++) {
    if (o->max_steps >= 0 && l->pos.global_step >= o->max_steps) break;
    l->pos.epoch = e;
    bool complete = false;
    if ((rc = train_epoch(l, dl, &complete, err))) return rc;
    fg_sched_set *sc = l->sched;
    bool plateau = sc && sc->scheduler && fg_lr_scheduler_is_plateau(sc->scheduler);
    if (complete && sc && sc->scheduler && !sc->interval_step && !plateau &&
        (e + 1) % sc->frequency == 0 && (rc = fg_lr_scheduler_step(sc->scheduler, NAN, err)))
      return rc;
    fg_value *m = fg_value_dict();
    rc = fg_module_evaluators_epoch_end(l->module, FG_SPLIT_FIT, m, err);
    if (rc == 0) emit_scalars(l, FG_EVENT_EPOCH, FG_SPLIT_FIT, m);
    fg_value_free(m);
    if (rc) return rc;
    l->pos.epoch_done = true;
    if (do_val && (e + 1) % o->check_val_every_n_epoch == 0 &&
        (rc = fg__loop_eval(l, FG_SPLIT_VAL, false, err)))
      return rc;
    if (complete && plateau && (e + 1) % sc->frequency == 0 && (rc = step_plateau(l, err)))
      return rc;
    for (size_t i = 0; i < o->n_ckpts; i++)
      if ((rc = run_checkpoint(l, o->ckpts[i], err))) return rc;
  }
  return 0;
}
