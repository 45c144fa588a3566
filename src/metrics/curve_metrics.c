/* AUROC and AveragePrecision with TorchMetrics' names, arguments and semantics, computed exactly
 * (thresholds=None; curve.h): the trapezoid under the ROC curve with one
 * point per distinct score. A class with no positive or no negative sample
 * scores 0, as in TorchMetrics (sklearn raises instead).
 *
 * binary: one score per element.
 * multiclass: one-vs-rest per class, averaged with "macro" (plain mean),
 *   "weighted" (by target support) or "none" (per-class scores).
 * multilabel: per label; "micro" is the AUROC of every (score, label) pair
 *   together, "weighted" weighs labels by their positives.
 *
 * AveragePrecision is sum_n (R_n - R_n-1) P_n over the same thresholds,
 * with the same averages; a class without positives scores 0, except a
 * multiclass one, which is NaN (TorchMetrics' 0/0 recall) and left out of
 * macro and weighted. */
#include <math.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fulgur/config.h"
#include "fulgur/error.h"
#include "fulgur/metrics.h"
#include "fulgur/registry.h"
#include "registry/builtins.h"
#include "metrics/curve.h"
#include "metrics/metric_util.h"
#include "util/xalloc.h"

typedef enum { AVG_MICRO, AVG_MACRO, AVG_WEIGHTED, AVG_NONE } avg_kind;

typedef struct {
  fg__curve_data d;
  avg_kind average;
  /* AveragePrecision or AUROC: they differ only in the area and in how a
   * class without positives counts. */
  bool ap;
} curve_metric;

static int cm_update(void *self, const fg_value *kw, char **err) {
  curve_metric *m = self;
  return fg__curve_update(&m->d, kw, err);
}

static double area(const curve_metric *m, const fg__scored *buf, size_t n, size_t npos) {
  return m->ap ? fg__average_precision(buf, n, npos) : fg__roc_auc(buf, n, npos);
}

/* True when every kept multiclass target is 0: TorchMetrics' per-class PR
 * curve then takes the whole target for all-negative and sets recall to 1,
 * so a class without positives scores 0 instead of NaN. */
static bool all_targets_zero(const fg__curve_data *d) {
  for (size_t i = 0; i < d->n; i++)
    if (d->target[i] != 0) return false;
  return true;
}

static int cm_compute(void *self, fg_value **out, char **err) {
  curve_metric *m = self;
  const fg__curve_data *d = &m->d;
  size_t len = fg__curve_micro_len(d);
  fg__scored *buf = malloc((len ? len : 1) * sizeof *buf);
  if (buf == NULL) return fg_err_set(err, FG_ENOMEM, "out of memory sorting %zu scores", len);
  if (d->task == FG__TASK_BINARY || (d->task == FG__TASK_MULTILABEL && m->average == AVG_MICRO)) {
    size_t npos, n = fg__curve_column(d, d->task == FG__TASK_BINARY ? 0 : -1, buf, &npos);
    *out = fg_value_double(area(m, buf, n, npos));
    free(buf);
    return 0;
  }
  int64_t c = d->cols;
  double *per = fg__xmalloc((size_t)c * sizeof *per), *w = fg__xmalloc((size_t)c * sizeof *w);
  bool zero = d->task == FG__TASK_MULTICLASS && all_targets_zero(d);
  for (int64_t k = 0; k < c; k++) {
    size_t npos, n = fg__curve_column(d, k, buf, &npos);
    w[k] = (double)npos;
    per[k] = area(m, buf, n, npos);
    /* TorchMetrics' multiclass AP of a class without positives is 0/0
     * recall, NaN; macro and weighted leave such classes out. */
    if (m->ap && d->task == FG__TASK_MULTICLASS && npos == 0 && !zero) per[k] = NAN;
  }
  free(buf);
  int rc = 0;
  if (m->average == AVG_NONE) {
    rc = fg__value_float_vector(per, c, out, err);
  } else {
    double num = 0, den = 0, cnt = 0;
    for (int64_t k = 0; k < c; k++) {
      if (per[k] != per[k]) continue;
      double wk = m->average == AVG_WEIGHTED ? w[k] : 1;
      num += wk * per[k];
      den += wk;
      cnt++;
    }
    /* macro: the mean of what is left (NaN when nothing is); weighted:
     * _safe_divide, 0 when no weight is left. */
    double r = m->average == AVG_WEIGHTED ? (den != 0 ? num / den : 0) : (cnt ? num / cnt : NAN);
    *out = fg_value_double(r);
  }
  free(per);
  free(w);
  return rc;
}

static void cm_reset(void *self) {
  curve_metric *m = self;
  fg__curve_reset(&m->d);
}

static void cm_free(void *self) {
  curve_metric *m = self;
  if (m == NULL) return;
  fg__curve_close(&m->d);
  free(m);
}

static int cm_state(void *self, fg_value **out, char **err) {
  curve_metric *m = self;
  return fg__curve_state(&m->d, out, err);
}

static int cm_load(void *self, const fg_value *st, char **err) {
  curve_metric *m = self;
  return fg__curve_load(&m->d, st, err);
}

static int cm_reduce(void *self, fg_value *const *states, int n, fg_value **out, char **err) {
  return fg__curve_reduce(states, n, out, err);
}

static const fg_metric_vtable cm_vt = {cm_update, cm_compute, cm_reset, cm_free,
                                       cm_state,  cm_load,    NULL,     cm_reduce};

static int cm_create(const fg_class *cls, const fg_node *args, const char *keypath, void **out,
                     char **err) {
  curve_metric *m = fg__xcalloc(1, sizeof *m);
  fg__curve_init(&m->d, args);
  m->ap = cls->data != NULL;
  const fg_node *avg = fg_node_get(args, "average");
  const char *s = fg_node_kind_of(avg) == FG_NODE_STRING ? fg_node_str(avg) : "none";
  m->average = strcmp(s, "micro") == 0      ? AVG_MICRO
               : strcmp(s, "macro") == 0    ? AVG_MACRO
               : strcmp(s, "weighted") == 0 ? AVG_WEIGHTED
                                            : AVG_NONE;
  *out = fg_metric_create(&cm_vt, m, m->ap ? "AveragePrecision" : "AUROC");
  return 0;
}

/* micro exists for multilabel only, as in TorchMetrics. */
static int cm_check(const fg_class *cls, fg_node *args, const char *keypath, bool fill,
                    char **err) {
  int rc = fg__check_task_args(args, keypath, err);
  if (rc) return rc;
  const fg_node *avg = fg_node_get(args, "average");
  if (fg__metric_task_of(args) == FG__TASK_MULTICLASS && fg_node_kind_of(avg) == FG_NODE_STRING &&
      strcmp(fg_node_str(avg), "micro") == 0)
    return fg__metric_arg_error(err, args, keypath, "average",
                                "'micro' is for task 'multilabel'; expected 'macro', 'weighted', "
                                "'none' or null for task 'multiclass'");
  return 0;
}

static int check_average(const fg_node *v, const char *keypath, char **err) {
  if (fg_node_kind_of(v) == FG_NODE_NULL) return 0;
  static const char *const ok[] = {"micro", "macro", "weighted", "none"};
  for (size_t i = 0; i < 4; i++)
    if (strcmp(fg_node_str(v), ok[i]) == 0) return 0;
  return fg_config_error(err, v, keypath,
                         "expected 'macro', 'weighted', 'none', null or (multilabel) 'micro', "
                         "got '%s'",
                         fg_node_str(v));
}

/* Binned curves and partial AUC: accepted only when unset, so a config that
 * relies on them fails loudly instead of computing something else. */
static int check_null(const fg_node *v, const char *keypath, char **err) {
  if (fg_node_kind_of(v) == FG_NODE_NULL) return 0;
  return fg_config_error(err, v, keypath, "not supported by this fulgur version (only null)");
}

/* TorchMetrics' AUROC / AveragePrecision signature order. */
static const fg_param auroc_params[] = {
    {"task", FG_T_STRING, NULL, "binary, multiclass or multilabel", fg__check_task_multilabel, 0},
    {"thresholds", FG_T_ANY, "null", "null: the exact curve over every score", check_null, 0},
    {"num_classes", FG_T_NULL | FG_T_INT, "null", "classes (multiclass)", NULL, 0},
    {"num_labels", FG_T_NULL | FG_T_INT, "null", "labels (multilabel)", NULL, 0},
    {"average", FG_T_NULL | FG_T_STRING, "macro", "macro, weighted, none for per-class scores, micro (multilabel)", check_average, 0},
    {"max_fpr", FG_T_NULL | FG_T_FLOAT, "null", "partial AUC bound (binary)", check_null, 0},
    {"ignore_index", FG_T_NULL | FG_T_INT, "null", "target value whose samples are left out", NULL, 0},
    {"validate_args", FG_T_BOOL, "true", "inputs are always checked", NULL, 0},
};
static const fg_param ap_params[] = {
    {"task", FG_T_STRING, NULL, "binary, multiclass or multilabel", fg__check_task_multilabel, 0},
    {"thresholds", FG_T_ANY, "null", "null: the exact curve over every score", check_null, 0},
    {"num_classes", FG_T_NULL | FG_T_INT, "null", "classes (multiclass)", NULL, 0},
    {"num_labels", FG_T_NULL | FG_T_INT, "null", "labels (multilabel)", NULL, 0},
    {"average", FG_T_NULL | FG_T_STRING, "macro", "macro, weighted, none for per-class scores, micro (multilabel)", check_average, 0},
    {"ignore_index", FG_T_NULL | FG_T_INT, "null", "target value whose samples are left out", NULL, 0},
    {"validate_args", FG_T_BOOL, "true", "inputs are always checked", NULL, 0},
};

static const char *const auroc_aliases[] = {"torchmetrics.AUROC",
                                            "torchmetrics.classification.AUROC", NULL};
static const char *const ap_aliases[] = {"torchmetrics.AveragePrecision",
                                         "torchmetrics.classification.AveragePrecision", NULL};

const fg_class fg__auroc_class = {
    .name = "fulgur.metrics.AUROC", .aliases = auroc_aliases, .kind = FG_KIND_METRIC,
    .params = auroc_params, .n_params = sizeof auroc_params / sizeof auroc_params[0],
    .create = cm_create, .destroy = fg__metric_destroy, .check = cm_check};
const fg_class fg__average_precision_class = {
    .name = "fulgur.metrics.AveragePrecision", .aliases = ap_aliases, .kind = FG_KIND_METRIC,
    .params = ap_params, .n_params = sizeof ap_params / sizeof ap_params[0],
    .create = cm_create, .destroy = fg__metric_destroy, .check = cm_check,
    .data = (void *)&fg__average_precision_class};

