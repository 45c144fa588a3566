/* Precision, Recall and F1Score with the names, arguments, defaults and
 * semantics of TorchMetrics' task wrappers (torchmetrics.Precision(task=...)
 * and friends; note the wrappers default to average "micro", unlike
 * MulticlassPrecision's "macro").
 *
 * The three share one state: per-class true positive, false positive and
 * false negative counts, kept as doubles (a double counts exactly up to
 * 2^53, far beyond any run). Each sample has exactly one predicted label:
 * with top_k > 1 it is the target when the target is among the k best
 * scores and the best class otherwise, which is what TorchMetrics computes
 * since its top_k fix of late 2024 (Lightning-AI/torchmetrics#2839; older
 * versions counted all k classes as predicted, so precision fell as k
 * grew). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fulgur/config.h"
#include "fulgur/error.h"
#include "fulgur/metrics.h"
#include "fulgur/registry.h"
#include "registry/builtins.h"
#include "metrics/metric_util.h"
#include "util/xalloc.h"

typedef enum { STAT_PRECISION, STAT_RECALL, STAT_F1 } stat_kind;
typedef enum { AVG_MICRO, AVG_MACRO, AVG_WEIGHTED, AVG_NONE } avg_kind;

typedef struct {
  stat_kind stat;
  fg__metric_task task;
  int64_t num_classes; /* counted classes: 1 (the positive class) for binary */
  int64_t top_k;
  double threshold;
  avg_kind average;
  double zero_division;
  double *tp, *fp, *fn;
} stat_scores;

static int stat_update(void *self, const fg_value *kw, char **err) {
  stat_scores *s = self;
  const fg_tensor *preds, *target;
  int64_t *t = NULL, *p = NULL;
  int rc = fg__metric_preds_target(kw, &preds, &target, err);
  if (rc) return rc;
  if (s->task == FG__TASK_BINARY) {
    size_t n = (size_t)fg_tensor_numel(target);
    if ((rc = fg__same_shape(preds, target, err)) || (rc = fg__binary_target(target, &t, err)) ||
        (rc = fg__binary_pred_labels(preds, s->threshold, &p, err)))
      goto done;
    for (size_t i = 0; i < n; i++) {
      if (p[i] && t[i]) s->tp[0]++;
      else if (p[i]) s->fp[0]++;
      else if (t[i]) s->fn[0]++;
    }
  } else {
    size_t n;
    if ((rc = fg__multiclass_target(target, s->num_classes, &t, &n, err)) ||
        (rc = fg__multiclass_pred_labels(preds, target, t, n, s->num_classes, s->top_k, &p, err)))
      goto done;
    for (size_t i = 0; i < n; i++) {
      if (p[i] == t[i]) {
        s->tp[t[i]]++;
      } else {
        s->fp[p[i]]++;
        s->fn[t[i]]++;
      }
    }
  }
done:
  free(t);
  free(p);
  return rc;
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
  int64_t c = s->num_classes;
  if (s->task == FG__TASK_BINARY) {
    *out = fg_value_double(score(s, s->tp[0], s->fp[0], s->fn[0]));
    return 0;
  }
  if (s->average == AVG_MICRO) {
    double tp = 0, fp = 0, fn = 0;
    for (int64_t i = 0; i < c; i++) tp += s->tp[i], fp += s->fp[i], fn += s->fn[i];
    *out = fg_value_double(score(s, tp, fp, fn));
    return 0;
  }
  double *per = fg__xmalloc((size_t)c * sizeof *per);
  for (int64_t i = 0; i < c; i++) per[i] = score(s, s->tp[i], s->fp[i], s->fn[i]);
  if (s->average == AVG_NONE) {
    int rc = fg__value_float_vector(per, c, out, err);
    free(per);
    return rc;
  }
  /* _adjust_weights_safe_divide: macro leaves out classes that never
   * occurred (neither predicted nor in the target; with top_k > 1, not in
   * the target), weighted weighs each class by its support. */
  double num = 0, den = 0;
  for (int64_t i = 0; i < c; i++) {
    double w;
    if (s->average == AVG_WEIGHTED)
      w = s->tp[i] + s->fn[i];
    else if (s->top_k == 1)
      w = s->tp[i] + s->fp[i] + s->fn[i] == 0 ? 0 : 1;
    else
      w = s->tp[i] + s->fn[i] == 0 ? 0 : 1;
    num += w * per[i];
    den += w;
  }
  free(per);
  *out = fg_value_double(safe_div(num, den, 0));
  return 0;
}

static void stat_reset(void *self) {
  stat_scores *s = self;
  size_t bytes = (size_t)s->num_classes * sizeof(double);
  memset(s->tp, 0, bytes);
  memset(s->fp, 0, bytes);
  memset(s->fn, 0, bytes);
}

static void stat_free(void *self) {
  stat_scores *s = self;
  if (s == NULL) return;
  free(s->tp);
  free(s->fp);
  free(s->fn);
  free(s);
}

/* TorchMetrics' state names; per-class float64 counts. */
static int stat_state(void *self, fg_value **out, char **err) {
  stat_scores *s = self;
  fg_value *st = fg_value_dict();
  int rc = fg__state_put(st, "tp", s->tp, FG_FLOAT64, &s->num_classes, 1, err);
  if (rc == 0) rc = fg__state_put(st, "fp", s->fp, FG_FLOAT64, &s->num_classes, 1, err);
  if (rc == 0) rc = fg__state_put(st, "fn", s->fn, FG_FLOAT64, &s->num_classes, 1, err);
  if (rc) {
    fg_value_free(st);
    return rc;
  }
  *out = st;
  return 0;
}

static int stat_load(void *self, const fg_value *st, char **err) {
  stat_scores *s = self;
  int64_t c = s->num_classes;
  double *tp = fg__xmalloc((size_t)c * 3 * sizeof *tp), *fp = tp + c, *fn = fp + c;
  int rc = fg__state_get(st, "tp", tp, FG_FLOAT64, c, err);
  if (rc == 0) rc = fg__state_get(st, "fp", fp, FG_FLOAT64, c, err);
  if (rc == 0) rc = fg__state_get(st, "fn", fn, FG_FLOAT64, c, err);
  if (rc == 0) {
    memcpy(s->tp, tp, (size_t)c * sizeof *tp);
    memcpy(s->fp, fp, (size_t)c * sizeof *fp);
    memcpy(s->fn, fn, (size_t)c * sizeof *fn);
  }
  free(tp);
  return rc;
}

static const fg_metric_vtable stat_vt = {stat_update, stat_compute, stat_reset, stat_free,
                                         stat_state, stat_load};

static int stat_create(const fg_class *cls, const fg_node *args, const char *keypath,
                       void **out, char **err) {
  stat_scores *s = fg__xcalloc(1, sizeof *s);
  s->stat = (stat_kind)(intptr_t)cls->data;
  s->task = fg__metric_task_of(args);
  s->num_classes = s->task == FG__TASK_BINARY ? 1 : fg__metric_num_classes(args);
  s->top_k = s->task == FG__TASK_BINARY ? 1 : fg_node_int(fg_node_get(args, "top_k"));
  s->threshold = fg_node_float(fg_node_get(args, "threshold"));
  s->zero_division = fg_node_float(fg_node_get(args, "zero_division"));
  const fg_node *avg = fg_node_get(args, "average");
  const char *a = fg_node_kind_of(avg) == FG_NODE_STRING ? fg_node_str(avg) : "none";
  s->average = strcmp(a, "micro") == 0      ? AVG_MICRO
               : strcmp(a, "macro") == 0    ? AVG_MACRO
               : strcmp(a, "weighted") == 0 ? AVG_WEIGHTED
                                            : AVG_NONE;
  s->tp = fg__xcalloc((size_t)s->num_classes, sizeof(double));
  s->fp = fg__xcalloc((size_t)s->num_classes, sizeof(double));
  s->fn = fg__xcalloc((size_t)s->num_classes, sizeof(double));
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
 * average, top_k, zero_division. */
static const fg_param stat_params[] = {
    {"task", FG_T_STRING, NULL, "binary or multiclass", fg__check_task, 0},
    {"threshold", FG_T_FLOAT, "0.5", "binary decision threshold on probabilities (logits get a sigmoid)", fg__check_unit_interval, 0},
    {"num_classes", FG_T_NULL | FG_T_INT, "null", "classes (multiclass)", NULL, 0},
    {"average", FG_T_NULL | FG_T_STRING, "micro", "micro, macro, weighted, or none for per-class scores (multiclass)", check_average, 0},
    {"top_k", FG_T_INT, "1", "a sample counts as right when its target is among the k best scores (multiclass)", NULL, 0},
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

