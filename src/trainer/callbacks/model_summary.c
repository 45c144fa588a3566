/* The ModelSummary and RichModelSummary callbacks (Lightning's names and
 * max_depth): on_fit_start, the summary of the LightningModule, emitted as
 * an FG_EVENT_SUMMARY event for the sinks to format. The loop calls it
 * after the starting weights are loaded and finetune_cfg applied, before
 * the sanity check, as Lightning does. trainer.enable_model_summary
 * (default true) adds ModelSummary(max_depth=1) when no summary callback
 * is configured; an explicit callback prints whatever enable_model_summary
 * says (Lightning's rule). RichModelSummary prints the same table:
 * fulgur's sinks have one way to show it. */
#include <stdlib.h>

#include "fulgur/config.h"
#include "fulgur/error.h"
#include "fulgur/summary.h"
#include "trainer/callbacks/callback.h"
#include "util/xalloc.h"

typedef struct {
  fg_callback base;
  int max_depth;
} model_summary;

static int on_fit_start(fg_callback *cb, fg_loop *l, char **err) {
  int depth = ((model_summary *)cb)->max_depth;
  /* Lightning returns at once for depth 0; rank 0 alone reports. */
  if (depth == 0 || !l->rank_zero) return 0;
  fg_model_summary *s = NULL;
  int rc = fg_module_summarize(l->module, depth, &s, err);
  if (rc) return fg_err_prefix(err, rc, "model summary");
  fg_event ev = {.kind = FG_EVENT_SUMMARY, .split = "fit", .batch_idx = -1, .num_batches = -1,
                 .max_epochs = -1, .max_steps = -1, .summary = s};
  fg_events_emit(l->events, &ev);
  fg_model_summary_free(s);
  return 0;
}

static void summary_free(fg_callback *cb) { free(cb); }

static const fg_callback_ops ops = {.name = "ModelSummary", .on_fit_start = on_fit_start,
                                    .free = summary_free};

static fg_callback *make(int max_depth) {
  model_summary *m = fg__xcalloc(1, sizeof *m);
  m->base.ops = &ops;
  m->max_depth = max_depth;
  return &m->base;
}

fg_callback *fg__model_summary_default(void) { return make(1); }

bool fg__callbacks_have_summary(const fg_trainer_opts *o) {
  for (size_t i = 0; i < o->n_callbacks; i++)
    if (o->callbacks[i]->ops == &ops) return true;
  return false;
}

static int check_depth(const fg_node *v, const char *k, char **err) {
  if (fg_node_int(v) >= -1) return 0;
  return fg_config_error(err, v, k, "`max_depth` can be -1, 0 or > 0, got %lld",
                         (long long)fg_node_int(v));
}

static const fg_param params[] = {
    {"max_depth", FG_T_INT, "1", "deepest submodules listed (-1: all, 0: no summary)", check_depth, 0},
};

static int create(const fg_class *cls, const fg_node *a, const char *keypath, void **out,
                  char **err) {
  (void)cls, (void)keypath, (void)err;
  *out = make((int)fg_node_int(fg_node_get(a, "max_depth")));
  return 0;
}

static const char *const aliases[] = {"ModelSummary", "lightning.pytorch.callbacks.ModelSummary",
                                      "pytorch_lightning.callbacks.ModelSummary", NULL};
static const char *const rich_aliases[] = {"RichModelSummary",
                                           "lightning.pytorch.callbacks.RichModelSummary",
                                           "pytorch_lightning.callbacks.RichModelSummary", NULL};

const fg_class fg__model_summary_class = {
    .name = "fulgur.callbacks.ModelSummary", .aliases = aliases, .kind = FG_KIND_CALLBACK,
    .params = params, .n_params = sizeof params / sizeof params[0], .create = create,
    .destroy = fg__callback_free};
const fg_class fg__rich_model_summary_class = {
    .name = "fulgur.callbacks.RichModelSummary", .aliases = rich_aliases, .kind = FG_KIND_CALLBACK,
    .params = params, .n_params = sizeof params / sizeof params[0], .create = create,
    .destroy = fg__callback_free};
