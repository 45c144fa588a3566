/* The fit, validate and test loops, with Lightning's order of events:
 * sanity validation, then per epoch: training steps (scalars logged every
 * log_every_n_steps), fit evaluators, validation every
 * check_val_every_n_epoch epochs, checkpoint callbacks. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fulgur/error.h"
#include "trainer/trainer.h"
#include "util/assert.h"
#include "util/numfmt.h"
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

/* Writes a tensor as CSV: one line per row (a vector is one line). */
static int write_tensor_csv(const char *path, const fg_tensor *t, char **err) {
  int64_t rows = fg_tensor_ndim(t) == 2 ? fg_tensor_size(t, 0) : 1;
  int64_t n = fg_tensor_numel(t), cols = rows ? n / rows : 0;
  double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
  if (v == NULL) return fg_err_set(err, FG_ENOMEM, "artifact %s: out of memory", path);
  int rc = fg_tensor_copy_out(t, FG_FLOAT64, v, (size_t)n * sizeof *v, err);
  size_t cap = (size_t)n * 26 + (size_t)rows + 1, len = 0;
  char *text = rc == 0 ? malloc(cap) : NULL;
  if (rc == 0 && text == NULL) rc = fg_err_set(err, FG_ENOMEM, "artifact %s: out of memory", path);
  for (int64_t i = 0; rc == 0 && i < n; i++) {
    char num[32];
    fg__shortest_double(v[i], num, sizeof num);
    len += (size_t)snprintf(text + len, cap - len, "%s%s", num, (i + 1) % cols == 0 ? "\n" : ",");
  }
  if (rc == 0) rc = fg__write_file_atomic(path, text, len, err);
  free(text);
  free(v);
  return rc;
}

/* Evaluator results that are not scalars (ConfusionMatrix) leave the
 * metrics as files in <run dir>/artifacts, each announced by an artifact
 * event, as Lightning users log figures and tables beside their scalars. */
static int keep_artifacts(fg_loop *l, fg_split split, fg_value *metrics, char **err) {
  int rc = 0;
  for (size_t i = 0; i < fg_value_len(metrics) && rc == 0;) {
    const fg_value *v = fg_value_dict_value_at(metrics, i);
    if (fg_value_kind_of(v) != FG_VALUE_TENSOR) {
      i++;
      continue;
    }
    char *key = fg__xstrdup(fg_value_dict_key_at(metrics, i));
    fg_value *t = fg_value_dict_take(metrics, key);
    if (!l->rank_zero) {
      /* Other ranks computed the same (reduced) result; rank 0 keeps it. */
      fg_value_free(t);
      free(key);
      continue;
    }
    char *dir = fg__xasprintf("%s/artifacts", l->run_dir);
    char *flat = fg__xstrdup(key);
    for (char *c = flat; *c; c++)
      if (*c == '/') *c = '-';
    bool small = fg_tensor_ndim(fg_value_as_tensor(t)) <= 2;
    char *path = fg__xasprintf("%s/%s-epoch=%lld-step=%lld.%s", dir, flat, (long long)l->pos.epoch,
                               (long long)l->pos.global_step, small ? "csv" : "pt");
    rc = fg__mkdirs(dir, err);
    if (rc == 0 && small) {
      rc = write_tensor_csv(path, fg_value_as_tensor(t), err);
    } else if (rc == 0) {
      char *buf = NULL;
      size_t len = 0;
      if ((rc = fg_value_pickle(t, &buf, &len, err)) == 0) rc = fg__write_file_atomic(path, buf, len, err);
      free(buf);
    }
    if (rc == 0) {
      fg_event ev = base_event(l, FG_EVENT_ARTIFACT, split);
      ev.text = key;
      ev.path = path;
      fg_events_emit(l->events, &ev);
    }
    free(path);
    free(flat);
    free(dir);
    free(key);
    fg_value_free(t);
  }
  return rc;
}

bool fg__loop_cancel_requested(const fg_loop *l) {
  return (l->cancel && *l->cancel) || (l->pause_cancels && l->pause && *l->pause);
}

static int cancelled(const fg_loop *l, char **err) {
  if (fg__loop_cancel_requested(l)) return fg_err_set(err, FG_ECANCELED, "run cancelled");
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
  }
  if (rc == 0) {
    if (sanity) {
      fg_module_evaluators_reset(l->module, split);
    } else if ((rc = l->ddp ? fg__ddp_reduce_evaluators(l->ddp, l->module, split, l->events, err) : 0) == 0 &&
               (rc = fg_module_evaluators_epoch_end(l->module, split, metrics, err)) == 0 &&
               (rc = keep_artifacts(l, split, metrics, err)) == 0) {
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

/* Lightning's state key of an EarlyStopping callback. */
static char *es_key(const fg_early_stopping *e) {
  return fg__xasprintf("EarlyStopping{'monitor': '%s', 'mode': '%s'}", e->monitor,
                       e->mode_max ? "max" : "min");
}

/* Every callback's state, as a checkpoint's "callbacks" entry; the
 * ModelCheckpoint entry (taken) is the saving callback's, or absent when
 * ckpt_state_value is NULL. */
static fg_value *callback_states(const fg_loop *l, fg_value *ckpt_state_value) {
  fg_value *cbs = fg_value_dict();
  if (ckpt_state_value) fg_value_dict_set(cbs, "ModelCheckpoint", ckpt_state_value);
  for (size_t i = 0; i < l->opts->n_callbacks; i++) {
    const fg_callback *cb = l->opts->callbacks[i];
    if (cb->type != FG_CB_EARLY_STOPPING) continue;
    fg_value *st = fg_value_dict();
    fg_value_dict_set(st, "wait_count", fg_value_int(cb->es.wait));
    fg_value_dict_set(st, "stopped_epoch", fg_value_int(cb->es.stopped_epoch));
    fg_value_dict_set(st, "best_score", fg_value_double(cb->es.best));
    fg_value_dict_set(st, "patience", fg_value_int(cb->es.patience));
    char *key = es_key(&cb->es);
    fg_value_dict_set(cbs, key, st);
    free(key);
  }
  return cbs;
}

void fg__callbacks_restore(const fg_value *cbs, fg_trainer_opts *o) {
  if (cbs == NULL || fg_value_kind_of(cbs) != FG_VALUE_DICT) return;
  for (size_t i = 0; i < o->n_callbacks; i++) {
    fg_callback *cb = o->callbacks[i];
    if (cb->type != FG_CB_EARLY_STOPPING) continue;
    char *key = es_key(&cb->es);
    const fg_value *st = fg_value_dict_get(cbs, key);
    free(key);
    if (st == NULL || fg_value_kind_of(st) != FG_VALUE_DICT) continue;
    const fg_value *w = fg_value_dict_get(st, "wait_count");
    const fg_value *b = fg_value_dict_get(st, "best_score");
    const fg_value *s = fg_value_dict_get(st, "stopped_epoch");
    if (w && fg_value_kind_of(w) == FG_VALUE_INT) cb->es.wait = fg_value_as_int(w);
    if (s && fg_value_kind_of(s) == FG_VALUE_INT) cb->es.stopped_epoch = fg_value_as_int(s);
    if (b) cb->es.best = fg_value_as_double(b);
  }
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

static char *ckpt_dir(const fg_loop *l, const fg_ckpt_callback *c) {
  return c->dirpath ? fg__xstrdup(c->dirpath) : fg__xasprintf("%s/checkpoints", l->run_dir);
}

/* Puts back what ckpt_state saved: the kept files with their scores (in
 * order: which one is replaced next depends on it), the best and the last. */
static void ckpt_restore(fg_ckpt_callback *c, const fg_value *st) {
  const fg_value *k = fg_value_dict_get(st, "best_k_models");
  if (k && fg_value_kind_of(k) == FG_VALUE_DICT) {
    for (size_t i = 0; i < c->n_kept; i++) free(c->kept_paths[i]);
    c->n_kept = 0;
    size_t n = fg_value_len(k);
    c->kept_paths = fg__xrealloc(c->kept_paths, (n ? n : 1) * sizeof *c->kept_paths);
    c->kept_scores = fg__xrealloc(c->kept_scores, (n ? n : 1) * sizeof *c->kept_scores);
    for (size_t i = 0; i < n; i++) {
      const fg_value *v = fg_value_dict_value_at(k, i);
      bool num = fg_value_kind_of(v) == FG_VALUE_DOUBLE || fg_value_kind_of(v) == FG_VALUE_INT;
      c->kept_paths[c->n_kept] = fg__xstrdup(fg_value_dict_key_at(k, i));
      c->kept_scores[c->n_kept++] = num ? fg_value_as_double(v) : NAN;
    }
  }
  const fg_value *bp = fg_value_dict_get(st, "best_model_path");
  const fg_value *bs = fg_value_dict_get(st, "best_model_score");
  const fg_value *lp = fg_value_dict_get(st, "last_model_path");
  if (bp && fg_value_kind_of(bp) == FG_VALUE_STRING) {
    free(c->best_path);
    c->best_path = *fg_value_as_string(bp) ? fg__xstrdup(fg_value_as_string(bp)) : NULL;
  }
  if (bs && (fg_value_kind_of(bs) == FG_VALUE_DOUBLE || fg_value_kind_of(bs) == FG_VALUE_INT))
    c->best_score = fg_value_as_double(bs);
  if (lp && fg_value_kind_of(lp) == FG_VALUE_STRING) {
    free(c->last_path);
    c->last_path = *fg_value_as_string(lp) ? fg__xstrdup(fg_value_as_string(lp)) : NULL;
  }
}

/* What "fulgur_loop" keeps beside the position (see checkpoint.c): the
 * seed, the global generator and the latest metrics in every checkpoint;
 * after a pause also what the interrupted epoch has gathered so far:
 * gradients of an unfinished accumulation window, fit evaluator states,
 * and every ModelCheckpoint's state (a paused run goes on as the same
 * run, so its top-k continues). */
static int loop_state(fg_loop *l, bool pause, fg_value **out, char **err) {
  fg_value *st = fg_value_dict();
  fg_value_dict_set(st, "seed", fg_value_int((int64_t)l->seed));
  fg_tensor *rng = NULL;
  int rc = fg_torch_get_rng_state(&rng, err);
  if (rc == 0) fg_value_dict_set(st, "rng_state", fg_value_tensor(rng));
  fg_value_dict_set(st, "last_metrics", fg_value_copy(l->last_metrics));
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
    fg_value *cks = fg_value_list();
    fg_value_dict_set(st, "model_checkpoints", cks);
    for (size_t i = 0; i < l->opts->n_ckpts; i++) {
      char *dir = ckpt_dir(l, l->opts->ckpts[i]);
      fg_value_list_append(cks, ckpt_state(l->opts->ckpts[i], dir));
      free(dir);
    }
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
  const fg_value *cks = fg_value_dict_get(st, "model_checkpoints");
  for (size_t i = 0; rc == 0 && cks && fg_value_kind_of(cks) == FG_VALUE_LIST &&
                     i < l->opts->n_ckpts && i < fg_value_len(cks); i++)
    if (fg_value_kind_of(fg_value_list_at(cks, i)) == FG_VALUE_DICT)
      ckpt_restore(l->opts->ckpts[i], fg_value_list_at(cks, i));
  return rc;
}

/* The pause: at a step boundary, the checkpoint a resume continues from
 * (batch b of the current epoch is the next to run), then FG_EPAUSED. */
static int pause_now(fg_loop *l, int64_t b, char **err) {
  char *dir = fg__xasprintf("%s/checkpoints", l->run_dir);
  char *path = fg__xasprintf("%s/pause.ckpt", dir);
  fg_ckpt_pos saved = l->pos;
  l->pos.epoch_done = false;
  l->pos.batches_done = b;
  fg_value *st = NULL, *cbs = NULL;
  int rc = fg__mkdirs(dir, err);
  if (rc == 0) rc = loop_state(l, true, &st, err);
  if (rc == 0) {
    fg_value *mc = NULL;
    if (l->opts->n_ckpts > 0) {
      char *d0 = ckpt_dir(l, l->opts->ckpts[0]);
      mc = ckpt_state(l->opts->ckpts[0], d0);
      free(d0);
    }
    cbs = callback_states(l, mc);
    rc = fg__checkpoint_save(path, l->module, l->optim, &l->pos, cbs, st, err);
  }
  if (rc == 0) {
    fg_event ev = base_event(l, FG_EVENT_ARTIFACT, FG_SPLIT_FIT);
    ev.batch_idx = b;
    ev.text = "checkpoint";
    ev.path = path;
    fg_events_emit(l->events, &ev);
    rc = fg_err_set(err, FG_EPAUSED, "run paused at epoch %lld batch %lld (global step %lld); resume from %s",
                    (long long)l->pos.epoch, (long long)b, (long long)l->pos.global_step, path);
  } else {
    fg_err_prefix(err, rc, "pause: writing %s", path);
  }
  l->pos = saved;
  fg_value_free(cbs);
  fg_value_free(st);
  free(path);
  free(dir);
  return rc;
}

/* A training step boundary: batch b of the epoch is the next to run. */
static int step_boundary(fg_loop *l, int64_t b, char **err) {
  int rc = cancelled(l, err);
  if (rc == 0 && l->ddp && l->pause && *l->pause)
    return fg_err_set(err, FG_ECANCELED, "run cancelled (pause is not supported under strategy ddp yet)");
  if (rc == 0 && l->pause && *l->pause) rc = pause_now(l, b, err);
  return rc;
}

static bool better(const fg_ckpt_callback *c, double a, double b) {
  if (isnan(b)) return !isnan(a);
  return c->mode_max ? a > b : a < b;
}

static int run_checkpoint(fg_loop *l, fg_ckpt_callback *c, char **err) {
  if (!l->rank_zero) return 0; /* rank 0 alone writes checkpoints */
  if ((l->pos.epoch + 1) % c->every_n_epochs != 0) return 0;
  char *dir = ckpt_dir(l, c);
  fg_value *st = NULL;
  int rc = fg__mkdirs(dir, err);
  if (rc == 0) rc = loop_state(l, false, &st, err);
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
    fg_value *cbs = callback_states(l, ckpt_state(c, dir));
    rc = fg__checkpoint_save(path, l->module, l->optim, &l->pos, cbs, st, err);
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
    free(c->last_path);
    c->last_path = fg__xstrdup(last);
    fg_value *cbs = callback_states(l, ckpt_state(c, dir));
    rc = fg__checkpoint_save(last, l->module, l->optim, &l->pos, cbs, st, err);
    fg_value_free(cbs);
    if (rc == 0) {
      fg_event ev = base_event(l, FG_EVENT_ARTIFACT, FG_SPLIT_FIT);
      ev.text = "checkpoint";
      ev.path = last;
      fg_events_emit(l->events, &ev);
    }
    free(last);
  }
  fg_value_free(st);
  free(name);
  free(path);
  free(dir);
  return rc;
}

/* LearningRateMonitor's keys: lr-<Optimizer>, with /pg<N> for several
 * parameter groups (Lightning's names). */
static void add_lrs(const fg_loop *l, fg_value *d) {
  for (size_t o = 0; o < l->optim->n; o++) {
    fg_optimizer *opt = l->optim->opts[o];
    const char *base = l->optim->monitor_names[o];
    size_t n = fg_optimizer_num_groups(opt);
    for (size_t g = 0; g < n; g++) {
      char *key = n > 1 ? fg__xasprintf("%s/pg%zu", base, g + 1) : fg__xstrdup(base);
      double lr;
      int rc = fg_optimizer_get_lr(opt, g, &lr, NULL);
      FG_ASSERT(rc == 0); /* g < fg_optimizer_num_groups */
      fg_value_dict_set(d, key, fg_value_double(lr));
      free(key);
    }
  }
}

/* Whether the monitor logs at steps (else at epoch starts). With
 * logging_interval null it follows the scheduler's interval. */
static bool lr_logged_per_step(const fg_loop *l) {
  const fg_callback *mon = l->opts->lr_monitor;
  if (mon->lr_interval == FG_LR_LOG_STEP) return true;
  if (mon->lr_interval == FG_LR_LOG_EPOCH) return false;
  bool any = false;
  for (size_t o = 0; o < l->optim->n; o++) {
    const fg_sched_set *sc = l->optim->scheds[o];
    if (sc && sc->scheduler) {
      any = true;
      if (sc->interval_step) return true;
    }
  }
  return !any;
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

/* EarlyStopping's check (Lightning's _evaluate_stopping_criteria). */
static int early_stopping_check(fg_loop *l, fg_early_stopping *e, char **err) {
  const fg_value *v = fg_value_dict_get(l->last_metrics, e->monitor);
  if (v == NULL) {
    if (!e->strict) return 0;
    return fg_err_set(err, FG_ERUN,
                      "EarlyStopping(monitor='%s'): no such logged metric; set strict: false "
                      "to allow it",
                      e->monitor);
  }
  double cur = fg_value_as_double(v);
  const char *why = NULL;
  char buf[160];
#define ES_BETTER(a, b) (e->mode_max ? (a) > (b) : (a) < (b))
  if (e->check_finite && !isfinite(cur)) {
    snprintf(buf, sizeof buf, "monitor %s = %g is not finite", e->monitor, cur);
    why = buf;
  } else if (!isnan(e->stopping_threshold) && ES_BETTER(cur, e->stopping_threshold)) {
    snprintf(buf, sizeof buf, "monitor %s = %g reached the stopping threshold %g", e->monitor,
             cur, e->stopping_threshold);
    why = buf;
  } else if (!isnan(e->divergence_threshold) && ES_BETTER(-cur, -e->divergence_threshold)) {
    snprintf(buf, sizeof buf, "monitor %s = %g diverged past %g", e->monitor, cur,
             e->divergence_threshold);
    why = buf;
  } else if (ES_BETTER(cur - e->min_delta, e->best)) {
    e->best = cur;
    e->wait = 0;
  } else if (++e->wait >= e->patience) {
    snprintf(buf, sizeof buf, "monitor %s did not improve in %lld checks (best %g)", e->monitor,
             (long long)e->wait, e->best);
    why = buf;
  }
#undef ES_BETTER
  if (why) {
    l->should_stop = true;
    e->stopped_epoch = l->pos.epoch;
    fg_events_log(l->events, FG_LOG_INFO, "EarlyStopping: %s; stopping", why);
  }
  return 0;
}

static int run_early_stopping(fg_loop *l, char **err) {
  int rc = 0;
  bool any = false;
  for (size_t i = 0; i < l->opts->n_callbacks && rc == 0; i++)
    if (l->opts->callbacks[i]->type == FG_CB_EARLY_STOPPING) {
      any = true;
      rc = early_stopping_check(l, &l->opts->callbacks[i]->es, err);
    }
  /* A monitor may be rank-local (a training loss): the ranks stop together
   * when any of them says so, as Lightning's reduce_boolean_decision. */
  if (rc == 0 && any && l->ddp) rc = fg__ddp_any(l->ddp, &l->should_stop, err);
  return rc;
}

/* Validation batches between training batches (val_check_interval). */
static int64_t val_check_batch(const fg_trainer_opts *o, int64_t nb) {
  if (o->val_check_is_count) return (int64_t)o->val_check_interval;
  int64_t v = (int64_t)((double)nb * o->val_check_interval);
  return v < 1 ? 1 : v;
}

static int train_epoch(fg_loop *l, fg_dataloader *dl, bool *complete, char **err) {
  const fg_trainer_opts *o = l->opts;
  const fg_optim_set *os = l->optim;
  int64_t nb = limit_batches(o, FG_SPLIT_FIT, fg_dataloader_num_batches(dl));
  *complete = false;
  /* A resume inside the epoch starts at the batch the pause stopped
   * before; what ran before it (the epoch-start lr log included) is in the
   * checkpoint's run. */
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
  bool lr_steps = o->lr_monitor && lr_logged_per_step(l);
  if (o->lr_monitor && !lr_steps && first == 0) {
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
  for (b = first; b < nb; b++) {
    if (o->max_steps >= 0 && l->pos.global_step >= o->max_steps) break;
    if (b > 0 && (rc = step_boundary(l, b, err))) return rc;
    fg_value *batch = NULL;
    if ((rc = fg_dataloader_next(dl, &batch, err))) return rc;
    if (batch == NULL) break;
    /* The lr this step uses, read before any scheduler moves it. */
    fg_value *lrs = NULL;
    if (lr_steps && (l->pos.global_step + 1) % o->log_every_n_steps == 0) {
      lrs = fg_value_dict();
      add_lrs(l, lrs);
    }
    /* Gradients add up over accumulate_grad_batches batches (the last,
     * shorter window of an epoch included), each loss divided by that
     * count as Lightning does; the optimizer steps at the window's end. */
    int64_t acc = o->accumulate_grad_batches;
    bool do_step = (b + 1) % acc == 0 || b + 1 == nb;
    fg_step_result r;
    if (b % acc == 0)
      for (size_t i = 0; i < os->n && rc == 0; i++)
        if (fg_optim_set_active(os, i, b)) rc = fg_optimizer_zero_grad(os->opts[i], err);
    if (rc == 0) rc = fg_module_forward_step(l->module, FG_SPLIT_FIT, 0, batch, &r, err);
    fg_value_free(batch);
    if (rc) {
      fg_value_free(lrs);
      return fg_err_prefix(err, rc, "fit epoch %lld batch %lld", (long long)l->pos.epoch,
                           (long long)b);
    }
    if (acc > 1) {
      fg_tensor *scaled = NULL;
      if ((rc = fg_op_mul_scalar(r.loss, 1.0 / (double)acc, &scaled, err)) == 0)
        rc = fg_tensor_backward(scaled, err);
      fg_tensor_free(scaled);
    } else {
      rc = fg_tensor_backward(r.loss, err);
    }
    /* DDP: the gradients averaged over the ranks, once per window, on
     * the step that applies them. */
    if (rc == 0 && do_step && l->ddp) rc = fg__ddp_sync_grads(l->ddp, l->module, err);
    /* One forward and backward; every optimizer whose turn it is
     * (frequency) steps its own parameters. */
    for (size_t i = 0; i < os->n && rc == 0 && do_step; i++)
      if (fg_optim_set_active(os, i, b)) rc = optimizer_step(l, i, err);
    if (rc) {
      fg_step_result_clear(&r);
      fg_value_free(lrs);
      return fg_err_prefix(err, rc, "fit epoch %lld batch %lld", (long long)l->pos.epoch,
                           (long long)b);
    }
    if (!do_step) {
      fg_step_result_clear(&r);
      fg_value_free(lrs);
      continue;
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
    for (size_t i = 0; i < os->n && rc == 0; i++) {
      fg_sched_set *sc = os->scheds[i];
      if (sc && sc->scheduler && sc->interval_step && fg_optim_set_active(os, i, b) &&
          l->pos.global_step % sc->frequency == 0)
        rc = fg_lr_scheduler_step(sc->scheduler, NAN, err);
    }
    if (rc) return rc;
    fg_event ev = base_event(l, FG_EVENT_PROGRESS, FG_SPLIT_FIT);
    ev.batch_idx = b;
    ev.num_batches = nb;
    ev.n_values = 1;
    ev.keys = &loss_key;
    ev.values = &loss;
    fg_events_emit(l->events, &ev);
    /* val_check_interval: validation inside the epoch; the epoch's end is
     * the fit loop's. */
    if (l->val_this_epoch && b + 1 < nb && (b + 1) % val_check_batch(o, nb) == 0) {
      if ((rc = fg__loop_eval(l, FG_SPLIT_VAL, false, err))) return rc;
      if ((rc = run_early_stopping(l, err))) return rc;
      if (l->should_stop) break;
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
    l->val_this_epoch = do_val && (e + 1) % o->check_val_every_n_epoch == 0;
    int64_t nb = limit_batches(o, FG_SPLIT_FIT, fg_dataloader_num_batches(dl));
    bool complete = false;
    if ((rc = train_epoch(l, dl, &complete, err))) return rc;
    for (size_t i = 0; i < l->optim->n && complete; i++) {
      fg_sched_set *sc = l->optim->scheds[i];
      if (sc && sc->scheduler && !sc->interval_step && !fg_lr_scheduler_is_plateau(sc->scheduler) &&
          (e + 1) % sc->frequency == 0 && (rc = fg_lr_scheduler_step(sc->scheduler, NAN, err)))
        return rc;
    }
    fg_value *m = fg_value_dict();
    rc = l->ddp ? fg__ddp_reduce_evaluators(l->ddp, l->module, FG_SPLIT_FIT, l->events, err) : 0;
    if (rc == 0) rc = fg_module_evaluators_epoch_end(l->module, FG_SPLIT_FIT, m, err);
    if (rc == 0) rc = keep_artifacts(l, FG_SPLIT_FIT, m, err);
    if (rc == 0) emit_scalars(l, FG_EVENT_EPOCH, FG_SPLIT_FIT, m);
    fg_value_free(m);
    if (rc) return rc;
    l->pos.epoch_done = true;
    /* The epoch's last validation, unless val_check_interval's checks do
     * not land on the last batch (Lightning validates at batches whose
     * index + 1 is a multiple of the interval). */
    if (complete && l->val_this_epoch && nb > 0 && nb % val_check_batch(o, nb) == 0 &&
        (rc = fg__loop_eval(l, FG_SPLIT_VAL, false, err)))
      return rc;
    for (size_t i = 0; i < l->optim->n && complete; i++) {
      fg_sched_set *sc = l->optim->scheds[i];
      if (sc && sc->scheduler && fg_lr_scheduler_is_plateau(sc->scheduler) &&
          (e + 1) % sc->frequency == 0 && (rc = step_plateau(l, sc, err)))
        return rc;
    }
    if (complete && !l->should_stop && (rc = run_early_stopping(l, err))) return rc;
    for (size_t i = 0; i < o->n_ckpts; i++)
      if ((rc = run_checkpoint(l, o->ckpts[i], err))) return rc;
    if (l->should_stop) break;
  }
  return 0;
}
