/* EarlyStopping (Lightning's options and checks): stops the fit when its
 * monitor stops improving, reaches a threshold, diverges or is not finite.
 * It checks after each validation inside an epoch (val_check_interval) and
 * at the end of every complete epoch; under ddp the ranks stop together
 * when any of them says so. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fulgur/error.h"
#include "trainer/callbacks/callback.h"
#include "util/xalloc.h"

typedef struct {
  fg_callback base;
  char *monitor;
  double min_delta; /* signed as Lightning keeps it: negative for mode min */
  int64_t patience;
  bool mode_max, strict, check_finite;
  double stopping_threshold, divergence_threshold; /* NAN = none */
  /* state */
  double best;
  int64_t wait, stopped_epoch;
} early_stopping;

/* Lightning's _evaluate_stopping_criteria, then the ranks' joint decision
 * (a monitor may be rank-local, a training loss: Lightning's
 * reduce_boolean_decision). */
static int check(early_stopping *e, fg_loop *l, char **err) {
  const fg_value *v = fg_value_dict_get(l->last_metrics, e->monitor);
  if (v == NULL && e->strict)
    return fg_err_set(err, FG_ERUN,
                      "EarlyStopping(monitor='%s'): no such logged metric; set strict: false "
                      "to allow it",
                      e->monitor);
  const char *why = NULL;
  char buf[160];
  double cur = v ? fg_value_as_double(v) : NAN;
#define ES_BETTER(a, b) (e->mode_max ? (a) > (b) : (a) < (b))
  if (v == NULL) {
    /* not logged (strict: false): nothing to decide on this rank */
  } else if (e->check_finite && !isfinite(cur)) {
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
  return l->ddp ? fg__ddp_any(l->ddp, &l->should_stop, err) : 0;
}

/* A validation inside a fit epoch (val_check_interval). The sanity check,
 * other stages and the epoch-end validation do not count: the epoch's own
 * check comes at its end, after the epoch-interval schedulers. */
static int on_validation_end(fg_callback *cb, fg_loop *l, char **err) {
  if (l->stage != FG_STAGE_FIT || l->sanity_checking || l->pos.epoch_done) return 0;
  return check((early_stopping *)cb, l, err);
}

/* A complete epoch that a check inside it has not stopped already. */
static int on_train_epoch_end(fg_callback *cb, fg_loop *l, char **err) {
  if (!l->epoch_complete || l->should_stop) return 0;
  return check((early_stopping *)cb, l, err);
}

/* Lightning's state key of an EarlyStopping callback. */
static char *state_key(const fg_callback *cb) {
  const early_stopping *e = (const early_stopping *)cb;
  return fg__xasprintf("EarlyStopping{'monitor': '%s', 'mode': '%s'}", e->monitor,
                       e->mode_max ? "max" : "min");
}

static fg_value *state_dict(const fg_callback *cb, const fg_loop *l) {
  const early_stopping *e = (const early_stopping *)cb;
  fg_value *st = fg_value_dict();
  fg_value_dict_set(st, "wait_count", fg_value_int(e->wait));
  fg_value_dict_set(st, "stopped_epoch", fg_value_int(e->stopped_epoch));
  fg_value_dict_set(st, "best_score", fg_value_double(e->best));
  fg_value_dict_set(st, "patience", fg_value_int(e->patience));
  return st;
}

static int load_state_dict(fg_callback *cb, const fg_value *st, char **err) {
  early_stopping *e = (early_stopping *)cb;
  const fg_value *w = fg_value_dict_get(st, "wait_count");
  const fg_value *b = fg_value_dict_get(st, "best_score");
  const fg_value *s = fg_value_dict_get(st, "stopped_epoch");
  if (w && fg_value_kind_of(w) == FG_VALUE_INT) e->wait = fg_value_as_int(w);
  if (s && fg_value_kind_of(s) == FG_VALUE_INT) e->stopped_epoch = fg_value_as_int(s);
  if (b) e->best = fg_value_as_double(b);
  return 0;
}

static void early_stopping_free(fg_callback *cb) {
  early_stopping *e = (early_stopping *)cb;
  free(e->monitor);
  free(e);
}

static const fg_callback_ops ops = {
    .name = "EarlyStopping",
    .idle_in_fast_dev_run = true,
    .on_validation_end = on_validation_end,
    .on_train_epoch_end = on_train_epoch_end,
    .state_key = state_key,
    .state_dict = state_dict,
    .load_state_dict = load_state_dict,
    .free = early_stopping_free,
};

/* ---- the class ------------------------------------------------------------------ */

static const fg_param params[] = {
    {"monitor", FG_T_STRING, NULL, "logged key to watch", NULL, 0},
    {"min_delta", FG_T_FLOAT, "0.0", "smallest change that counts as an improvement", NULL, 0},
    {"patience", FG_T_INT, "3", "checks without improvement before stopping", fg__check_count, 0},
    {"verbose", FG_T_BOOL, "false", "no effect (events report the stop)", NULL, 0},
    {"mode", FG_T_STRING, "min", "min or max", fg__check_mode, 0},
    {"strict", FG_T_BOOL, "true", "a missing monitor is an error", NULL, 0},
    {"check_finite", FG_T_BOOL, "true", "stop when the monitor is nan or inf", NULL, 0},
    {"stopping_threshold", FG_T_NULL | FG_T_FLOAT, "null", "stop once the monitor is better than this", NULL, 0},
    {"divergence_threshold", FG_T_NULL | FG_T_FLOAT, "null", "stop once the monitor is worse than this", NULL, 0},
    {"check_on_train_epoch_end", FG_T_NULL | FG_T_BOOL, "null", "null: after validation when there is one", NULL, 0},
    {"log_rank_zero_only", FG_T_BOOL, "false", "no effect (one process)", NULL, 0},
};

static double opt_num(const fg_node *a, const char *k) {
  const fg_node *v = fg_node_get(a, k);
  return v && fg_node_kind_of(v) != FG_NODE_NULL ? fg_node_float(v) : NAN;
}

static int create(const fg_class *cls, const fg_node *a, const char *keypath, void **out, char **err) {
  early_stopping *e = fg__xcalloc(1, sizeof *e);
  e->base.ops = &ops;
  e->monitor = fg__xstrdup(fg_node_str(fg_node_get(a, "monitor")));
  e->mode_max = strcmp(fg_node_str(fg_node_get(a, "mode")), "max") == 0;
  /* Lightning: min_delta *= 1 if mode max else -1 (after abs). */
  e->min_delta = fabs(fg_node_float(fg_node_get(a, "min_delta"))) * (e->mode_max ? 1 : -1);
  e->patience = fg_node_int(fg_node_get(a, "patience"));
  e->strict = fg_node_bool(fg_node_get(a, "strict"));
  e->check_finite = fg_node_bool(fg_node_get(a, "check_finite"));
  e->stopping_threshold = opt_num(a, "stopping_threshold");
  e->divergence_threshold = opt_num(a, "divergence_threshold");
  e->best = e->mode_max ? -INFINITY : INFINITY;
  *out = &e->base;
  return 0;
}

static const char *const aliases[] = {"EarlyStopping", "lightning.pytorch.callbacks.EarlyStopping",
                                      "pytorch_lightning.callbacks.EarlyStopping", NULL};

const fg_class fg__early_stopping_class = {
    .name = "fulgur.callbacks.EarlyStopping", .aliases = aliases, .kind = FG_KIND_CALLBACK,
    .params = params, .n_params = sizeof params / sizeof params[0], .create = create,
    .destroy = fg__callback_free};
