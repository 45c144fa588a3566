/* StatScores with TorchMetrics' names, arguments and semantics
 * (torchmetrics.StatScores(task=...), multidim_average "global"): compute
 * gives [tp, fp, tn, fn, support] with support = tp + fn.
 *
 * binary: an int64 tensor [5].
 * multiclass, multilabel: per class [C, 5] (int64) for average none/null;
 *   micro sums the classes (int64 [5]); macro is their float32 mean and
 *   weighted their mean weighted by support (float32 [5]), as
 *   _multiclass_stat_scores_compute does. */
#include <stdlib.h>
#include <string.h>

#include "fulgur/config.h"
#include "fulgur/error.h"
#include "fulgur/metrics.h"
#include "fulgur/registry.h"
#include "registry/builtins.h"
#include "metrics/metric_util.h"
#include "metrics/stat_counts.h"
#include "util/xalloc.h"

typedef enum { AVG_MICRO, AVG_MACRO, AVG_WEIGHTED, AVG_NONE } avg_kind;

typedef struct {
  fg__stat_counts c;
  avg_kind average;
} stat_scores;

static int ss_update(void *self, const fg_value *kw, char **err) {
  stat_scores *s = self;
  return fg__stat_counts_update(&s->c, kw, err);
}

/* The 5 stats of class k. */
static void row(const fg__stat_counts *c, int64_t k, double r[5]) {
  r[0] = c->tp[k];
  r[1] = c->fp[k];
  r[2] = c->tn[k];
  r[3] = c->fn[k];
  r[4] = c->tp[k] + c->fn[k];
}

static int int_tensor(const double *v, const int64_t *shape, int ndim, fg_value **out, char **err) {
  int64_t n = 1;
  for (int d = 0; d < ndim; d++) n *= shape[d];
  int64_t *l = fg__xmalloc((size_t)n * sizeof *l);
  for (int64_t i = 0; i < n; i++) l[i] = (int64_t)v[i];
  fg_tensor *t = NULL;
  int rc = fg_tensor_from_data(l, FG_INT64, shape, ndim, &t, err);
  free(l);
  if (rc == 0) *out = fg_value_tensor(t);
  return rc;
}

static int ss_compute(void *self, fg_value **out, char **err) {
  stat_scores *s = self;
  const fg__stat_counts *c = &s->c;
  int64_t n = c->n, five = 5;
  double sum[5] = {0}, r[5];
  if (c->task == FG__TASK_BINARY) {
    row(c, 0, r);
    return int_tensor(r, &five, 1, out, err);
  }
  if (s->average == AVG_NONE) {
    double *all = fg__xmalloc((size_t)n * 5 * sizeof *all);
    for (int64_t k = 0; k < n; k++) row(c, k, all + k * 5);
    int64_t shape[2] = {n, 5};
    int rc = int_tensor(all, shape, 2, out, err);
    free(all);
    return rc;
  }
  double support = 0;
  for (int64_t k = 0; k < n; k++) support += c->tp[k] + c->fn[k];
  for (int64_t k = 0; k < n; k++) {
    row(c, k, r);
    /* weighted: weight / weight.sum(), NaN when nothing has support, as
     * torch's 0/0. */
    double w = s->average == AVG_WEIGHTED ? r[4] / support : 1;
    for (int i = 0; i < 5; i++) sum[i] += s->average == AVG_WEIGHTED ? r[i] * w : r[i];
  }
  if (s->average == AVG_MICRO) return int_tensor(sum, &five, 1, out, err);
  if (s->average == AVG_MACRO)
    for (int i = 0; i < 5; i++) sum[i] /= (double)n;
  return fg__value_float_vector(sum, 5, out, err);
}

static void ss_reset(void *self) {
  stat_scores *s = self;
  fg__stat_counts_reset(&s->c);
}

static void ss_free(void *self) {
  stat_scores *s = self;
  if (s == NULL) return;
  fg__stat_counts_close(&s->c);
  free(s);
}

static int ss_state(void *self, fg_value **out, char **err) {
  stat_scores *s = self;
  return fg__stat_counts_state(&s->c, out, err);
}

static int ss_load(void *self, const fg_value *st, char **err) {
  stat_scores *s = self;
  return fg__stat_counts_load(&s->c, st, err);
}

static const fg_metric_vtable ss_vt = {ss_update, ss_compute, ss_reset, ss_free, ss_state, ss_load};

static int ss_create(const fg_class *cls, const fg_node *args, const char *keypath, void **out,
                     char **err) {
  stat_scores *s = fg__xcalloc(1, sizeof *s);
  fg__stat_counts_init(&s->c, args);
  const fg_node *avg = fg_node_get(args, "average");
  const char *a = fg_node_kind_of(avg) == FG_NODE_STRING ? fg_node_str(avg) : "none";
  s->average = strcmp(a, "micro") == 0      ? AVG_MICRO
               : strcmp(a, "macro") == 0    ? AVG_MACRO
               : strcmp(a, "weighted") == 0 ? AVG_WEIGHTED
                                            : AVG_NONE;
  *out = fg_metric_create(&ss_vt, s, "StatScores");
  return 0;
}

static int ss_check(const fg_class *cls, fg_node *args, const char *keypath, bool fill,
                    char **err) {
  return fg__check_task_args(args, keypath, err);
}

static int check_average(const fg_node *v, const char *keypath, char **err) {
  if (fg_node_kind_of(v) == FG_NODE_NULL) return 0;
  static const char *const ok[] = {"micro", "macro", "weighted", "none"};
  for (size_t i = 0; i < 4; i++)
    if (strcmp(fg_node_str(v), ok[i]) == 0) return 0;
  if (strcmp(fg_node_str(v), "samples") == 0)
    return fg_config_error(err, v, keypath,
                           "'samples' was removed in TorchMetrics 1.x; expected 'micro', "
                           "'macro', 'weighted', 'none' or null");
  return fg_config_error(err, v, keypath,
                         "expected 'micro', 'macro', 'weighted', 'none' or null, got '%s'",
                         fg_node_str(v));
}

/* TorchMetrics' StatScores signature order. */
static const fg_param ss_params[] = {
    {"task", FG_T_STRING, NULL, "binary, multiclass or multilabel", fg__check_task_multilabel, 0},
    {"threshold", FG_T_FLOAT, "0.5", "binary and multilabel decision threshold on probabilities (logits get a sigmoid)", fg__check_unit_interval, 0},
    {"num_classes", FG_T_NULL | FG_T_INT, "null", "classes (multiclass)", NULL, 0},
    {"num_labels", FG_T_NULL | FG_T_INT, "null", "labels (multilabel)", NULL, 0},
    {"average", FG_T_NULL | FG_T_STRING, "micro", "micro (summed), macro (mean), weighted (by support), or none for per-class rows (multiclass, multilabel)", check_average, 0},
    {"multidim_average", FG_T_STRING, "global", "global (samplewise is not supported)", fg__check_global, 0},
    {"top_k", FG_T_INT, "1", "a sample counts as right when its target is among the k best scores (multiclass)", NULL, 0},
    {"ignore_index", FG_T_NULL | FG_T_INT, "null", "target value whose samples are left out", NULL, 0},
    {"validate_args", FG_T_BOOL, "true", "inputs are always checked", NULL, 0},
};

static const char *const ss_aliases[] = {"torchmetrics.StatScores",
                                         "torchmetrics.classification.StatScores", NULL};

const fg_class fg__stat_scores_class = {
    .name = "fulgur.metrics.StatScores", .aliases = ss_aliases, .kind = FG_KIND_METRIC,
    .params = ss_params, .n_params = sizeof ss_params / sizeof ss_params[0],
    .create = ss_create, .destroy = fg__metric_destroy, .check = ss_check};

