/* The progress-bar callbacks: Lightning's RichProgressBar and
 * TQDMProgressBar, and lightning_template's RichProgressBar (Lightning's
 * with show_version and show_eta_time). Each one is fulgur's progress bar
 * (the terminal sink of sinks.c): a callback in the list is what draws it,
 * as in Lightning, with Lightning's rules: refresh_rate 0 turns the bar
 * off (fg__progress_bar_configure); a progress-bar callback with
 * enable_progress_bar: false, or two of them, is a config error
 * (fg__progress_bar_check, so that a daemon's submit check sees it).
 *
 * What the bar shows is fulgur's one format (util/progress_bar.h), which
 * always has the ETA and never the version number: show_eta_time and
 * show_version false are what it does anyway; the Rich and tqdm styling
 * arguments (theme, console_kwargs, process_position) and show_version:
 * true are said once to have no effect. refresh_rate > 0 draws the bar,
 * which redraws at most 10 times a second. */
#include <stdlib.h>
#include <string.h>

#include "fulgur/config.h"
#include "fulgur/error.h"
#include "registry/builtins.h"
#include "trainer/callbacks/callback.h"
#include "util/xalloc.h"

typedef struct {
  fg_callback base;
  int64_t refresh_rate;
  char *warning;   /* NULL: nothing to say */
} progress_cb;

static int setup(fg_callback *cb, fg_loop *l, fg_stage stage, char **err) {
  (void)stage, (void)err;
  const progress_cb *p = (const progress_cb *)cb;
  if (p->warning && l->rank_zero) fg_events_log(l->events, FG_LOG_WARNING, "%s", p->warning);
  return 0;
}

static void progress_free(fg_callback *cb) {
  progress_cb *p = (progress_cb *)cb;
  free(p->warning);
  free(p);
}

static const fg_callback_ops ops = {.name = "ProgressBar", .setup = setup, .free = progress_free};

void fg__progress_bar_configure(fg_trainer_opts *o) {
  for (size_t i = 0; i < o->n_callbacks; i++)
    if (o->callbacks[i]->ops == &ops && ((const progress_cb *)o->callbacks[i])->refresh_rate == 0)
      o->enable_progress_bar = false;
}

static bool is_progress_bar(const fg_node *cb) {
  const fg_class *c = fg_registry_find(fg_node_str(fg_node_get(cb, "class_path")));
  return c == &fg__rich_progress_bar_class || c == &fg__lt_rich_progress_bar_class ||
         c == &fg__tqdm_progress_bar_class;
}

int fg__progress_bar_check(const fg_node *trainer, char **err) {
  const fg_node *cbs = fg_node_get(trainer, "callbacks");
  const fg_node *en = fg_node_get(trainer, "enable_progress_bar");
  bool enabled = en == NULL || fg_node_kind_of(en) != FG_NODE_BOOL || fg_node_bool(en);
  bool found = false;
  for (size_t i = 0; cbs && fg_node_kind_of(cbs) == FG_NODE_SEQ && i < fg_node_len(cbs); i++) {
    const fg_node *cb = fg_node_at(cbs, i);
    if (!is_progress_bar(cb)) continue;
    /* Lightning's _configure_progress_bar: one bar at most, and none
     * when the trainer turns the bar off. */
    char *k = fg__xasprintf("trainer.callbacks.%zu", i);
    int rc = 0;
    if (found)
      rc = fg_config_error(err, cb, k, "a second progress bar callback; Lightning allows one");
    else if (!enabled)
      rc = fg_config_error(err, cb, k,
                           "a progress bar callback with trainer.enable_progress_bar: false; "
                           "remove one of the two");
    free(k);
    if (rc) return rc;
    found = true;
  }
  return 0;
}

/* ---- the classes ------------------------------------------------------------------ */

static int check_refresh(const fg_node *v, const char *k, char **err) {
  if (fg_node_int(v) >= 0) return 0;
  return fg_config_error(err, v, k, "expected a refresh rate >= 0 (0 turns the bar off), got %lld",
                         (long long)fg_node_int(v));
}

/* Lightning's RichProgressBar, then lightning_template's two additions. */
static const fg_param rich_params[] = {
    {"refresh_rate", FG_T_INT, "1", "0: no bar (else fulgur redraws at most 10 times a second)", check_refresh, 0},
    {"leave", FG_T_BOOL, "false", "keep each finished bar on the screen", NULL, 0},
    {"theme", FG_T_ANY, "null", "Rich styles (no effect: fulgur's bar has one style)", NULL, 0},
    {"console_kwargs", FG_T_NULL | FG_T_MAP, "null", "rich.console.Console arguments (no effect)", NULL, 0},
    {"show_version", FG_T_NULL | FG_T_BOOL, "false", "lightning_template: the version number in the bar", NULL, 0},
    {"show_eta_time", FG_T_NULL | FG_T_BOOL, "false", "lightning_template: the fit's ETA in the bar", NULL, 0},
};
#define N_LIGHTNING_RICH 4 /* the first four are Lightning's own */

static const fg_param tqdm_params[] = {
    {"refresh_rate", FG_T_INT, "1", "0: no bar (else fulgur redraws at most 10 times a second)", check_refresh, 0},
    {"process_position", FG_T_INT, "0", "tqdm's line offset (no effect)", NULL, 0},
    {"leave", FG_T_BOOL, "false", "keep each finished bar on the screen", NULL, 0},
};

static bool set(const fg_node *v) { return v && fg_node_kind_of(v) != FG_NODE_NULL; }

static void add(char **list, const char *what) {
  char *joined = *list ? fg__xasprintf("%s, %s", *list, what) : fg__xstrdup(what);
  free(*list);
  *list = joined;
}

static int create(const fg_class *cls, const fg_node *a, const char *keypath, void **out,
                  char **err) {
  (void)err;
  progress_cb *p = fg__xcalloc(1, sizeof *p);
  p->base.ops = &ops;
  p->refresh_rate = fg_node_int(fg_node_get(a, "refresh_rate"));
  char *noop = NULL;
  if (set(fg_node_get(a, "theme"))) add(&noop, "theme");
  if (set(fg_node_get(a, "console_kwargs"))) add(&noop, "console_kwargs");
  const fg_node *pp = fg_node_get(a, "process_position");
  if (pp && fg_node_int(pp) != 0) add(&noop, "process_position");
  const fg_node *sv = fg_node_get(a, "show_version");
  if (set(sv) && fg_node_bool(sv)) add(&noop, "show_version: true (the run directory is logged instead)");
  if (noop) {
    p->warning = fg_config_warning(a, keypath, "%s: %s has no effect: fulgur's progress bar has one format",
                                   strrchr(cls->name, '.') + 1, noop);
    free(noop);
  }
  *out = &p->base;
  return 0;
}

static const char *const rich_aliases[] = {"RichProgressBar",
                                           "lightning.pytorch.callbacks.RichProgressBar",
                                           "pytorch_lightning.callbacks.RichProgressBar", NULL};
static const char *const tqdm_aliases[] = {"TQDMProgressBar",
                                           "lightning.pytorch.callbacks.TQDMProgressBar",
                                           "pytorch_lightning.callbacks.TQDMProgressBar", NULL};

const fg_class fg__lt_rich_progress_bar_class = {
    .name = "lightning_template.utils.progress.rich_progress.RichProgressBar",
    .kind = FG_KIND_CALLBACK, .params = rich_params,
    .n_params = sizeof rich_params / sizeof rich_params[0], .create = create,
    .destroy = fg__callback_free};
const fg_class fg__rich_progress_bar_class = {
    .name = "fulgur.callbacks.RichProgressBar", .aliases = rich_aliases, .kind = FG_KIND_CALLBACK,
    .params = rich_params, .n_params = N_LIGHTNING_RICH, .create = create,
    .destroy = fg__callback_free};
const fg_class fg__tqdm_progress_bar_class = {
    .name = "fulgur.callbacks.TQDMProgressBar", .aliases = tqdm_aliases, .kind = FG_KIND_CALLBACK,
    .params = tqdm_params, .n_params = sizeof tqdm_params / sizeof tqdm_params[0], .create = create,
    .destroy = fg__callback_free};
