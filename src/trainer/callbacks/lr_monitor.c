/* LearningRateMonitor: every optimizer's learning rates as scalars,
 * lr-<Optimizer> with /pg<N> for several parameter groups (Lightning's
 * names), logged per step (in the row of the step, read before any
 * scheduler moves them) or at each epoch's start. */
#include <stdlib.h>
#include <string.h>

#include "fulgur/error.h"
#include "trainer/callbacks/callback.h"
#include "util/assert.h"
#include "util/xalloc.h"

enum { LOG_ANY = 0, LOG_STEP, LOG_EPOCH };

typedef struct {
  fg_callback base;
  int interval;  /* logging_interval: LOG_* */
  bool active;   /* the last monitor of the list (setup) */
  bool per_step; /* logs at steps, else at epoch starts (setup) */
} lr_monitor;

static const fg_callback_ops ops;

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

/* With logging_interval null the monitor follows the schedulers' interval
 * (per step when there are none). */
static bool logged_per_step(const lr_monitor *m, const fg_loop *l) {
  if (m->interval == LOG_STEP) return true;
  if (m->interval == LOG_EPOCH) return false;
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

static int setup(fg_callback *cb, fg_loop *l, fg_stage stage, char **err) {
  lr_monitor *m = (lr_monitor *)cb;
  /* The last monitor wins: two would log the same keys. */
  m->active = stage == FG_STAGE_FIT && l->optim != NULL;
  size_t me = 0;
  while (l->opts->callbacks[me] != cb) me++;
  for (size_t i = me + 1; i < l->opts->n_callbacks; i++)
    if (l->opts->callbacks[i]->ops == &ops) m->active = false;
  if (m->active) m->per_step = logged_per_step(m, l);
  return 0;
}

/* Logged at the epoch's start, in the row of the step about to run. */
static int on_train_epoch_start(fg_callback *cb, fg_loop *l, char **err) {
  lr_monitor *m = (lr_monitor *)cb;
  if (!m->active || m->per_step) return 0;
  fg_value *d = fg_value_dict();
  add_lrs(l, d);
  l->pos.global_step++;
  fg__loop_log_scalars(l, FG_EVENT_STEP, FG_SPLIT_FIT, d);
  l->pos.global_step--;
  fg_value_free(d);
  return 0;
}

/* The lr this step uses, read before any scheduler moves it. */
static int on_train_batch_start(fg_callback *cb, fg_loop *l, int64_t b, fg_value *step_log,
                                char **err) {
  lr_monitor *m = (lr_monitor *)cb;
  if (m->active && m->per_step && l->opts->log_every_n_steps > 0 &&
      (l->pos.global_step + 1) % l->opts->log_every_n_steps == 0)
    add_lrs(l, step_log);
  return 0;
}

static void lr_monitor_free(fg_callback *cb) { free(cb); }

static const fg_callback_ops ops = {
    .name = "LearningRateMonitor",
    .setup = setup,
    .on_train_epoch_start = on_train_epoch_start,
    .on_train_batch_start = on_train_batch_start,
    .free = lr_monitor_free,
};

/* ---- the class ------------------------------------------------------------------ */

static int check_interval(const fg_node *v, const char *k, char **err) {
  const char *s = fg_node_str(v);
  if (s == NULL || strcmp(s, "step") == 0 || strcmp(s, "epoch") == 0) return 0;
  return fg_config_error(err, v, k, "expected 'step', 'epoch' or null, got '%s'", s);
}

static int check_false(const fg_node *v, const char *k, char **err) {
  if (!fg_node_bool(v)) return 0;
  return fg_config_error(err, v, k, "not supported by this fulgur version yet");
}

static const fg_param params[] = {
    {"logging_interval", FG_T_NULL | FG_T_STRING, "null", "step, epoch, or null (each scheduler's own interval)", check_interval, 0},
    {"log_momentum", FG_T_BOOL, "false", "must be false", check_false, 0},
    {"log_weight_decay", FG_T_BOOL, "false", "must be false", check_false, 0},
};

static int create(const fg_class *cls, const fg_node *a, const char *keypath, void **out, char **err) {
  lr_monitor *m = fg__xcalloc(1, sizeof *m);
  m->base.ops = &ops;
  const char *s = fg_node_str(fg_node_get(a, "logging_interval"));
  m->interval = s == NULL ? LOG_ANY : strcmp(s, "step") == 0 ? LOG_STEP : LOG_EPOCH;
  *out = &m->base;
  return 0;
}

static const char *const aliases[] = {"LearningRateMonitor", "lightning.pytorch.callbacks.LearningRateMonitor",
                                      "pytorch_lightning.callbacks.LearningRateMonitor", NULL};

const fg_class fg__lr_monitor_class = {
    .name = "fulgur.callbacks.LearningRateMonitor", .aliases = aliases, .kind = FG_KIND_CALLBACK,
    .params = params, .n_params = sizeof params / sizeof params[0], .create = create,
    .destroy = fg__callback_free};
