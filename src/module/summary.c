/* fg_module_summarize: the rows and totals of Lightning's ModelSummary for
 * a LightningModule whose one child is `model`. The module tree comes from
 * the model (fg_model_visit_modules); parameter counts come from the
 * module's own parameter list, so they are the numbers the optimizer and
 * the checkpoints see. */
#include <stdlib.h>
#include <string.h>

#include "fulgur/module.h"
#include "fulgur/summary.h"
#include "util/xalloc.h"

typedef struct {
  const fg_module *m;
  int max_depth;
  fg_model_summary *s;
  size_t cap;
} visit;

static int dots(const char *s) {
  int n = 0;
  for (; *s; s++) n += *s == '.';
  return n;
}

/* Parameters whose name lies under `prefix` ("model.layers" holds
 * "model.layers.0.weight", not "model.layers_x.weight"). */
static int64_t params_under(const fg_module *m, const char *prefix) {
  size_t n = strlen(prefix);
  int64_t total = 0;
  for (size_t i = 0; i < fg_module_num_params(m); i++) {
    const char *p = fg_module_param_name(m, i);
    if (strncmp(p, prefix, n) == 0 && p[n] == '.') total += fg_tensor_numel(fg_module_param(m, i));
  }
  return total;
}

static void on_module(void *ctx, const char *name, const char *type, bool training) {
  visit *v = ctx;
  /* Names relative to the LightningModule, whose attribute is `model`. */
  char *full = name[0] ? fg__xasprintf("model.%s", name) : fg__xstrdup("model");
  if (training) v->s->modules_train++;
  else v->s->modules_eval++;
  bool shown = v->max_depth != 0 && (v->max_depth < 0 || dots(full) < v->max_depth);
  if (!shown) {
    free(full);
    return;
  }
  if (v->s->n_rows == v->cap) {
    v->cap = v->cap ? 2 * v->cap : 8;
    v->s->rows = fg__xrealloc(v->s->rows, v->cap * sizeof *v->s->rows);
  }
  fg_summary_row *r = &v->s->rows[v->s->n_rows++];
  r->name = full;
  r->type = fg__xstrdup(type);
  r->params = params_under(v->m, full);
  r->training = training;
}

int fg_module_summarize(const fg_module *m, int max_depth, fg_model_summary **out, char **err) {
  fg_model_summary *s = fg__xcalloc(1, sizeof *s);
  s->precision_bits = 32;
  for (size_t i = 0; i < fg_module_num_params(m); i++) {
    const fg_tensor *t = fg_module_param(m, i);
    /* The size is in the parameters' own dtype (bf16-true: 16 bits). */
    if (i == 0) s->precision_bits = (int)fg_dtype_size(fg_tensor_dtype(t)) * 8;
    s->total_params += fg_tensor_numel(t);
    if (fg_tensor_requires_grad(t)) s->trainable_params += fg_tensor_numel(t);
  }
  visit v = {.m = m, .max_depth = max_depth, .s = s};
  int rc = fg_model_visit_modules(fg_module_model(m), on_module, &v, err);
  if (rc) {
    fg_model_summary_free(s);
    return rc;
  }
  *out = s;
  return 0;
}

void fg_model_summary_free(fg_model_summary *s) {
  if (s == NULL) return;
  for (size_t i = 0; i < s->n_rows; i++) {
    free(s->rows[i].name);
    free(s->rows[i].type);
  }
  free(s->rows);
  free(s);
}
