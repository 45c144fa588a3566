/* AUROC with TorchMetrics' names, arguments and semantics, computed exactly
 * (thresholds=None): every score seen since the last reset is kept, and
 * compute takes the trapezoid under the ROC curve with one point per
 * distinct score, so tied scores form one step as in TorchMetrics'
 * _binary_clf_curve and sklearn's roc_curve. A class with no positive or no
 * negative sample scores 0, as in TorchMetrics (sklearn raises instead).
 * Multiclass is one-vs-rest per class, averaged with "macro" (plain mean),
 * "weighted" (by target support) or "none" (per-class scores).
 *
 * Scores are kept as doubles in growable C arrays; the sigmoid or softmax
 * that turns logits into probabilities runs in libtorch at update time, so
 * ties and saturation are those Python would see. */
#include <stdlib.h>
#include <string.h>

#include "fulgur/config.h"
#include "fulgur/error.h"
#include "fulgur/metrics.h"
#include "fulgur/registry.h"
#include "registry/builtins.h"
#include "metrics/metric_util.h"
#include "util/xalloc.h"

typedef enum { AVG_MACRO, AVG_WEIGHTED, AVG_NONE } avg_kind;

typedef struct {
  fg__metric_task task;
  int64_t num_classes; /* score columns: 1 for binary */
  avg_kind average;
  double *scores; /* n rows of num_classes */
  int64_t *target;
  size_t n, cap;
} auroc;

static int reserve(auroc *a, size_t more, char **err) {
  if (a->n + more <= a->cap) return 0;
  size_t cap = a->cap ? a->cap : 256;
  while (cap < a->n + more) cap *= 2;
  double *s = realloc(a->scores, cap * (size_t)a->num_classes * sizeof *s);
  if (s == NULL) return fg_err_set(err, FG_ENOMEM, "out of memory keeping %zu scores", cap);
  a->scores = s;
  int64_t *t = realloc(a->target, cap * sizeof *t);
  if (t == NULL) return fg_err_set(err, FG_ENOMEM, "out of memory keeping %zu targets", cap);
  a->target = t;
  a->cap = cap;
  return 0;
}

static int auroc_update(void *self, const fg_value *kw, char **err) {
  auroc *a = self;
  const fg_tensor *preds, *target;
  int64_t *t = NULL;
  double *p = NULL;
  size_t n = 0;
  int rc = fg__metric_preds_target(kw, &preds, &target, err);
  if (rc) return rc;
  if (a->task == FG__TASK_BINARY) {
    n = (size_t)fg_tensor_numel(target);
    if ((rc = fg__same_shape(preds, target, err)) == 0 &&
        (rc = fg__binary_target(target, &t, err)) == 0)
      rc = fg__binary_probs(preds, &p, err);
  } else if ((rc = fg__multiclass_target(target, a->num_classes, &t, &n, err)) == 0) {
    rc = fg__multiclass_probs(preds, a->num_classes, (int64_t)n, &p, err);
  }
  if (rc == 0 && (rc = reserve(a, n, err)) == 0) {
    memcpy(a->scores + a->n * (size_t)a->num_classes, p, n * (size_t)a->num_classes * sizeof *p);
    memcpy(a->target + a->n, t, n * sizeof *t);
    a->n += n;
  }
  free(t);
  free(p);
  return rc;
}

typedef struct {
  double score;
  int pos;
} scored;

static int by_score_desc(const void *x, const void *y) {
  double a = ((const scored *)x)->score, b = ((const scored *)y)->score;
  return a < b ? 1 : a > b ? -1 : 0;
}

/* The ROC AUC of class `cls` (column `col` of the scores, positives where
 * target == cls). `buf` holds n items of scratch. */
static double roc_auc(const auroc *a, int64_t col, int64_t cls, scored *buf) {
  size_t n = a->n, stride = (size_t)a->num_classes;
  double npos = 0;
  for (size_t i = 0; i < n; i++) {
    buf[i].score = a->scores[i * stride + (size_t)col];
    buf[i].pos = a->target[i] == cls;
    npos += buf[i].pos;
  }
  double nneg = (double)n - npos;
  if (npos == 0 || nneg == 0) return 0;
  qsort(buf, n, sizeof *buf, by_score_desc);
  /* Walk the thresholds from the highest score down; each distinct score
   * adds one ROC point, and the area between consecutive points is a
   * trapezoid (in counts; scaled to rates at the end). */
  double tp = 0, fp = 0, prev_tp = 0, prev_fp = 0, area = 0;
  for (size_t i = 0; i < n; i++) {
    if (buf[i].pos) tp++;
    else fp++;
    if (i + 1 < n && buf[i + 1].score == buf[i].score) continue;
    area += (fp - prev_fp) * (tp + prev_tp) / 2;
    prev_tp = tp;
    prev_fp = fp;
  }
  return area / (npos * nneg);
}

static int auroc_compute(void *self, fg_value **out, char **err) {
  auroc *a = self;
  scored *buf = malloc((a->n ? a->n : 1) * sizeof *buf);
  if (buf == NULL) return fg_err_set(err, FG_ENOMEM, "out of memory sorting %zu scores", a->n);
  if (a->task == FG__TASK_BINARY) {
    *out = fg_value_double(roc_auc(a, 0, 1, buf));
    free(buf);
    return 0;
  }
  int64_t c = a->num_classes;
  double *per = fg__xmalloc((size_t)c * sizeof *per);
  for (int64_t k = 0; k < c; k++) per[k] = roc_auc(a, k, k, buf);
  free(buf);
  if (a->average == AVG_NONE) {
    int rc = fg__value_float_vector(per, c, out, err);
    free(per);
    return rc;
  }
  double num = 0, den = 0;
  for (int64_t k = 0; k < c; k++) {
    double w = 1;
    if (a->average == AVG_WEIGHTED) {
      w = 0;
      for (size_t i = 0; i < a->n; i++) w += a->target[i] == k;
    }
    num += w * per[k];
    den += w;
  }
  free(per);
  *out = fg_value_double(den != 0 ? num / den : 0);
  return 0;
}

static void auroc_reset(void *self) {
  auroc *a = self;
  a->n = 0;
}

static void auroc_free(void *self) {
  auroc *a = self;
  if (a == NULL) return;
  free(a->scores);
  free(a->target);
  free(a);
}

static const fg_metric_vtable auroc_vt = {auroc_update, auroc_compute, auroc_reset, auroc_free};

static int auroc_create(const fg_class *cls, const fg_node *args, const char *keypath,
                        void **out, char **err) {
  auroc *a = fg__xcalloc(1, sizeof *a);
  a->task = fg__metric_task_of(args);
  a->num_classes = a->task == FG__TASK_BINARY ? 1 : fg__metric_num_classes(args);
  const fg_node *avg = fg_node_get(args, "average");
  const char *s = fg_node_kind_of(avg) == FG_NODE_STRING ? fg_node_str(avg) : "none";
  a->average = strcmp(s, "macro") == 0 ? AVG_MACRO
               : strcmp(s, "weighted") == 0 ? AVG_WEIGHTED
                                            : AVG_NONE;
  *out = fg_metric_create(&auroc_vt, a, "AUROC");
  return 0;
}

static int auroc_check(const fg_class *cls, fg_node *args, const char *keypath, bool fill,
                       char **err) {
  return fg__check_task_args(args, keypath, err);
}

static int check_average(const fg_node *v, const char *keypath, char **err) {
  if (fg_node_kind_of(v) == FG_NODE_NULL) return 0;
  static const char *const ok[] = {"macro", "weighted", "none"};
  for (size_t i = 0; i < 3; i++)
    if (strcmp(fg_node_str(v), ok[i]) == 0) return 0;
  return fg_config_error(err, v, keypath, "expected 'macro', 'weighted', 'none' or null, got '%s'",
                         fg_node_str(v));
}

/* Binned ROC and partial AUC: accepted only when unset, so a config that
 * relies on them fails loudly instead of computing something else. */
static int check_null(const fg_node *v, const char *keypath, char **err) {
  if (fg_node_kind_of(v) == FG_NODE_NULL) return 0;
  return fg_config_error(err, v, keypath, "not supported by this fulgur version (only null)");
}

static const fg_param auroc_params[] = {
    {"task", FG_T_STRING, NULL, "binary or multiclass", fg__check_task, 0},
    {"thresholds", FG_T_ANY, "null", "null: the exact curve over every score", check_null, 0},
    {"num_classes", FG_T_NULL | FG_T_INT, "null", "classes (multiclass)", NULL, 0},
    {"average", FG_T_NULL | FG_T_STRING, "macro", "macro, weighted, or none for per-class scores (multiclass)", check_average, 0},
    {"max_fpr", FG_T_NULL | FG_T_FLOAT, "null", "partial AUC bound (binary)", check_null, 0},
};

static const char *const auroc_aliases[] = {"torchmetrics.AUROC",
                                            "torchmetrics.classification.AUROC", NULL};

const fg_class fg__auroc_class = {
    .name = "fulgur.metrics.AUROC", .aliases = auroc_aliases, .kind = FG_KIND_METRIC,
    .params = auroc_params, .n_params = sizeof auroc_params / sizeof auroc_params[0],
    .create = auroc_create, .destroy = fg__metric_destroy, .check = auroc_check};

