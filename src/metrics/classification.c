/* Precision, Recall and F1Score with the names, arguments, defaults and
 * semantics of TorchMetrics' task wrappers (torchmetrics.Precision(task=...)
 * and friends; note the wrappers default to average "micro", unlike
 * MulticlassPrecision's "macro"), for tasks binary, multiclass and
 * multilabel.
 *
 * The three share StatScores' counts (stat_counts.h). With top_k > 1 each
 * sample's one predicted label is the target when the target is among the
 * k best scores and the best class otherwise, which is what TorchMetrics
 * computes since its top_k fix of late 2024 (Lightning-AI/torchmetrics#2839;
 * older versions counted all k classes as predicted, so precision fell as
 * k grew). */
#include <math.h>
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

typedef enum { STAT_PRECISION, STAT_RECALL, STAT_F1 } stat_kind;
typedef enum { AVG_MICRO, AVG_MACRO, AVG_WEIGHTED, AVG_NONE } avg_kind;

typedef struct {
  stat_kind stat;
  fg__stat_counts c;
  avg_kind average;
  double zero_division;
} stat_scores;

static int stat_update(void *self, const fg_value *kw, char **err) {
  stat_scores *s = self;
  return fg__stat_counts_update(&s->c, kw, err);
}

/* TorchMetrics' _safe_divide: a zero denominator gives zero_division. */
static double safe_div(double num, double den, double zero_division) {
  return den != 0 ? num / den : zero_division;
}

static double score(const stat_scores *s, double tp, double fp, double fn) {
  switch (s->stat) {
    case STAT_PRECISION: return safe_div(tp, tp + fp, s->zero_division);
    case STAT_RECALL: return safe_div(tp, tp + fn, s->zero_division);
    case STAT_F1: return safe_div(2 * tp, 2 * tp + fp + fn, s->zero_division);
  }
  return NAN;
}

static int stat_compute(void *self, fg_value **out, char **err) {
  stat_scores *s = self;
  const fg__stat_counts *k = &s->c;
  int64_t c = k->n;
  if (k->task == FG__TASK_BINARY) {
    *out = fg_value_double(score(s, k->tp[0], k->fp[0], k->fn[0]));
    return 0;
  }
  if (s->average == AVG_MICRO) {
    double tp = 0, fp = 0, fn = 0;
    for (int64_t i = 0; i < c; i++) tp += k->tp[i], fp += k->fp[i], fn += k->fn[i];
    *out = fg_value_double(score(s, tp, fp, fn));
    return 0;
  }
  double *per = fg__xmalloc((size_t)c * sizeof *per);
  for (int64_t i = 0; i < c; i++) per[i] = score(s, k->tp[i], k->fp[i], k->fn[i]);
  if (s->average == AVG_NONE) {
    int rc = fg__value_float_vector(per, c, out, err);
    free(per);
    return rc;
  }
  /* _adjust_weights_safe_divide: weighted weighs each class by its support;
   * multiclass macro leaves out classes that never occurred (neither
   * predicted nor in the target; for Precision and Recall with top_k > 1,
   * not in the target; F1Score's reduction is not given top_k), multilabel
   * macro keeps every label. */
  double num = 0, den = 0;
  for (int64_t i = 0; i < c; i++) {
    double w = 1;
    if (s->average == AVG_WEIGHTED)
      w = k->tp[i] + k->fn[i];
    else if (k->task == FG__TASK_MULTILABEL)
      w = 1;
    else if (k->top_k == 1 || s->stat == STAT_F1)
      w = k->tp[i] + k->fp[i] + k->fn[i] == 0 ? 0 : 1;
    else
      w = k->tp[i] + k->fn[i] == 0 ? 0 : 1;
    num += w * per[i];
    den += w;
  }
  free(per);
  *out = fg_value_double(safe_div(num, den, 0));
  return 0;
}

static void stat_reset(void *self) {
  stat_scores *s = self;
  fg__stat_counts_reset(&s->c);
}

static void stat_free(void *self) {
  stat_scores *s = self;
  if (s == NULL) return;
  fg__stat_counts_close(&s->c);
  free(s);
}

static int stat_state(void *self, fg_value **out, char **err) {
  stat_scores *s = self;
  return fg__stat_counts_state(&s->c, out, err);
}

static int stat_load(void *self, const fg_value *st, char **err) {
  stat_scores *s = self;
  return fg__stat_counts_load(&s->c, st, err);
}

static const fg_metric_vtable stat_vt = {stat_update, stat_compute, stat_reset, stat_free,
                                         stat_state, stat_load};

static int stat_create(const fg_class *cls, const fg_node *args, const char *keypath,
                       void **out, char **err) {
  stat_scores *s = fg__xcalloc(1, sizeof *s);
  s->stat = (stat_kind)(intptr_t)cls->data;
  fg__stat_counts_init(&s->c, args);
  s->zero_division = fg_node_float(fg_node_get(args, "zero_division"));
  const fg_node *avg = fg_node_get(args, "average");
  const char *a = fg_node_kind_of(avg) == FG_NODE_STRING ? fg_node_str(avg) : "none";
  s->average = strcmp(a, "micro") == 0      ? AVG_MICRO
               : strcmp(a, "macro") == 0    ? AVG_MACRO
               : strcmp(a, "weighted") == 0 ? AVG_WEIGHTED
                                            : AVG_NONE;
  const char *name = strrchr(cls->name, '.') + 1;
  *out = fg_metric_create(&stat_vt, s, name);
  return 0;
}

static int stat_check(const fg_class *cls, fg_node *args, const char *keypath, bool fill,
                      char **err) {
  return fg__check_task_args(args, keypath, err);
}

static int check_average(const fg_node *v, const char *keypath, char **err) {
  if (fg_node_kind_of(v) == FG_NODE_NULL) return 0;
  static const char *const ok[] = {"micro", "macro", "weighted", "none"};
  for (size_t i = 0; i < 4; i++)
    if (strcmp(fg_node_str(v), ok[i]) == 0) return 0;
  return fg_config_error(err, v, keypath,
                         "expected 'micro', 'macro', 'weighted', 'none' or null, got '%s'",
                         fg_node_str(v));
}

static int check_zero_division(const fg_node *v, const char *keypath, char **err) {
  double d = fg_node_float(v);
  if (d == 0 || d == 1) return 0;
  return fg_config_error(err, v, keypath, "expected 0 or 1, got %g", d);
}

/* TorchMetrics' wrapper signature order: task, threshold, num_classes,
 * num_labels, average, multidim_average, top_k, ignore_index,
 * validate_args, zero_division. */
static const fg_param stat_params[] = {
    {"task", FG_T_STRING, NULL, "binary, multiclass or multilabel", fg__check_task_multilabel, 0},
    {"threshold", FG_T_FLOAT, "0.5", "binary and multilabel decision threshold on probabilities (logits get a sigmoid)", fg__check_unit_interval, 0},
    {"num_classes", FG_T_NULL | FG_T_INT, "null", "classes (multiclass)", NULL, 0},
    {"num_labels", FG_T_NULL | FG_T_INT, "null", "labels (multilabel)", NULL, 0},
    {"average", FG_T_NULL | FG_T_STRING, "micro", "micro, macro, weighted, or none for per-class scores (multiclass, multilabel)", check_average, 0},
    {"multidim_average", FG_T_STRING, "global", "global (samplewise is not supported)", fg__check_global, 0},
    {"top_k", FG_T_INT, "1", "a sample counts as right when its target is among the k best scores (multiclass)", NULL, 0},
    {"ignore_index", FG_T_NULL | FG_T_INT, "null", "target value whose samples are left out", NULL, 0},
    {"validate_args", FG_T_BOOL, "true", "inputs are always checked", NULL, 0},
    {"zero_division", FG_T_FLOAT, "0", "the score when its denominator is 0 (0 or 1)", check_zero_division, 0},
};

#define STAT_CLASS(var, short_name, which)                                                 \
  static const char *const var##_aliases[] = {"torchmetrics." short_name,                  \
                                              "torchmetrics.classification." short_name,   \
                                              NULL};                                       \
  const fg_class var = {.name = "fulgur.metrics." short_name,                       \
                               .aliases = var##_aliases,                                   \
                               .kind = FG_KIND_METRIC,                                     \
                               .params = stat_params,                                      \
                               .n_params = sizeof stat_params / sizeof stat_params[0],     \
                               .create = stat_create,                                      \
                               .destroy = fg__metric_destroy,                              \
                               .check = stat_check,                                        \
                               .data = (void *)(intptr_t)(which)};

STAT_CLASS(fg__precision_class, "Precision", STAT_PRECISION)
STAT_CLASS(fg__recall_class, "Recall", STAT_RECALL)
STAT_CLASS(fg__f1_class, "F1Score", STAT_F1)

