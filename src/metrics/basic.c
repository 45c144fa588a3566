/* Accuracy and MeanMetric with TorchMetrics' names, arguments, defaults and
 * semantics. States are plain C numbers: they are sums, and a double holds
 * any count a run can reach exactly. */
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

/* Checks that kwargs has only the names a metric's update takes, as
 * Python's **kwargs binding would. */
static int check_kwargs(const fg_value *kw, const char *const *names, size_t n,
                        char **err) {
  for (size_t i = 0; i < fg_value_len(kw); i++) {
    const char *k = fg_value_dict_key_at(kw, i);
    size_t j = 0;
    while (j < n && strcmp(names[j], k) != 0) j++;
    if (j == n) return fg_err_set(err, FG_EINVAL, "unexpected keyword argument '%s'", k);
  }
  return 0;
}

static int tensor_arg(const fg_value *kw, const char *name, const fg_tensor **t,
                      char **err) {
  const fg_value *v = fg_value_dict_get(kw, name);
  if (v == NULL) return fg_err_set(err, FG_EINVAL, "missing argument '%s'", name);
  if (fg_value_kind_of(v) != FG_VALUE_TENSOR)
    return fg_err_set(err, FG_EINVAL, "'%s' must be a tensor, got %s", name,
                      fg_value_kind_name(fg_value_kind_of(v)));
  *t = fg_value_as_tensor(v);
  return 0;
}

/* ---- Accuracy ----------------------------------------------------------------- */

typedef enum { TASK_BINARY, TASK_MULTICLASS } acc_task;

typedef struct {
  acc_task task;
  int64_t num_classes;
  int64_t top_k;
  double threshold;
  double correct, total;
} accuracy;

static int count_sum(const fg_tensor *t, double *out, char **err) {
  fg_tensor *s = NULL;
  int rc = fg_op_sum(t, &s, err);
  if (rc == 0) rc = fg_tensor_item(s, out, err);
  fg_tensor_free(s);
  return rc;
}

static int accuracy_update(void *self, const fg_value *kw, char **err) {
  accuracy *a = self;
  static const char *const names[] = {"preds", "target"};
  const fg_tensor *preds, *target;
  int rc;
  if ((rc = check_kwargs(kw, names, 2, err)) || (rc = tensor_arg(kw, "preds", &preds, err)) ||
      (rc = tensor_arg(kw, "target", &target, err)))
    return rc;
  fg_tensor *hits = NULL, *tmp = NULL, *tmp2 = NULL;
  bool float_preds = fg__dtype_is_float(fg_tensor_dtype(preds));
  if (a->task == TASK_BINARY) {
    if (float_preds) {
      /* TorchMetrics: values outside [0, 1] are logits and get a sigmoid. */
      double lo, hi;
      fg_tensor *mn = NULL;
      if ((rc = fg_op_to_dtype(preds, FG_FLOAT64, &mn, err))) return rc;
      size_t n = (size_t)fg_tensor_numel(mn);
      double *buf = fg__xmalloc(n * sizeof(double) + 1);
      rc = fg_tensor_copy_out(mn, FG_FLOAT64, buf, n * sizeof(double), err);
      fg_tensor_free(mn);
      if (rc) { free(buf); return rc; }
      lo = INFINITY, hi = -INFINITY;
      for (size_t i = 0; i < n; i++) { if (buf[i] < lo) lo = buf[i]; if (buf[i] > hi) hi = buf[i]; }
      bool logits = n > 0 && (lo < 0 || hi > 1);
      uint8_t *cls = fg__xmalloc(n + 1);
      for (size_t i = 0; i < n; i++) {
        double p = logits ? 1.0 / (1.0 + exp(-buf[i])) : buf[i];
        cls[i] = p > a->threshold;
      }
      free(buf);
      int64_t shape = (int64_t)n;
      rc = fg_tensor_from_data(cls, FG_UINT8, &shape, 1, &tmp, err);
      free(cls);
      if (rc) return rc;
    } else if ((rc = fg_op_flatten(preds, 0, &tmp, err))) {
      return rc;
    }
    /* Both sides flattened: preds [N, 1] against target [N] compare
     * element by element, never by broadcasting. */
    if (fg_tensor_numel(tmp) != fg_tensor_numel(target)) {
      char ps[64], ts[64];
      fg_tensor_shape_str(preds, ps, sizeof ps);
      fg_tensor_shape_str(target, ts, sizeof ts);
      fg_tensor_free(tmp);
      return fg_err_set(err, FG_EINVAL, "binary preds of shape %s and target of shape %s differ in size",
                        ps, ts);
    }
    fg_tensor *p64 = NULL, *t64 = NULL, *tflat = NULL;
    if ((rc = fg_op_to_dtype(tmp, FG_INT64, &p64, err)) == 0 &&
        (rc = fg_op_flatten(target, 0, &tflat, err)) == 0 &&
        (rc = fg_op_to_dtype(tflat, FG_INT64, &t64, err)) == 0)
      rc = fg_op_eq(p64, t64, &hits, err);
    fg_tensor_free(p64);
    fg_tensor_free(t64);
    fg_tensor_free(tflat);
    fg_tensor_free(tmp);
    if (rc) return rc;
  } else if (float_preds && fg_tensor_ndim(preds) == 2) {
    if (fg_tensor_size(preds, 1) != a->num_classes) {
      char s[64];
      fg_tensor_shape_str(preds, s, sizeof s);
      return fg_err_set(err, FG_EINVAL, "preds of shape %s do not have num_classes=%lld columns",
                        s, (long long)a->num_classes);
    }
    if (a->top_k == 1) {
      if ((rc = fg_op_argmax(preds, 1, &tmp, err))) return rc;
      rc = fg_op_eq(tmp, target, &hits, err);
    } else {
      fg_tensor *tu = NULL;
      if ((rc = fg_op_topk_indices(preds, a->top_k, 1, &tmp, err)) == 0 &&
          (rc = fg_op_unsqueeze(target, 1, &tu, err)) == 0 &&
          (rc = fg_op_eq(tmp, tu, &tmp2, err)) == 0)
        rc = fg_op_any_dim(tmp2, 1, &hits, err);
      fg_tensor_free(tu);
    }
    fg_tensor_free(tmp);
    fg_tensor_free(tmp2);
    if (rc) return rc;
  } else {
    if (fg_tensor_numel(preds) != fg_tensor_numel(target))
      return fg_err_set(err, FG_EINVAL, "preds and target have different sizes");
    if ((rc = fg_op_eq(preds, target, &hits, err))) return rc;
  }
  double c;
  rc = count_sum(hits, &c, err);
  int64_t n = fg_tensor_numel(hits);
  fg_tensor_free(hits);
  if (rc) return rc;
  a->correct += c;
  a->total += (double)n;
  return 0;
}

static int accuracy_compute(void *self, fg_value **out, char **err) {
  accuracy *a = self;
  /* TorchMetrics returns 0 (with a warning) when nothing was seen. */
  *out = fg_value_double(a->total > 0 ? a->correct / a->total : 0.0);
  return 0;
}

static void accuracy_reset(void *self) {
  accuracy *a = self;
  a->correct = a->total = 0;
}

/* Two named sums as a state dict, and back (evaluator_as_submodule). */
static int sums_state(double a, const char *an, double b, const char *bn, fg_value **out) {
  fg_value *d = fg_value_dict();
  fg_value_dict_set(d, an, fg_value_double(a));
  fg_value_dict_set(d, bn, fg_value_double(b));
  *out = d;
  return 0;
}

static int sums_load(const fg_value *st, double *a, const char *an, double *b, const char *bn,
                     char **err) {
  const fg_value *x = fg_value_dict_get(st, an), *y = fg_value_dict_get(st, bn);
  if (x == NULL || y == NULL)
    return fg_err_set(err, FG_EDATA, "expected '%s' and '%s'", an, bn);
  *a = fg_value_as_double(x);
  *b = fg_value_as_double(y);
  return 0;
}

static int accuracy_state(void *self, fg_value **out, char **err) {
  (void)err;
  accuracy *a = self;
  return sums_state(a->correct, "correct", a->total, "total", out);
}

static int accuracy_load(void *self, const fg_value *st, char **err) {
  accuracy *a = self;
  return sums_load(st, &a->correct, "correct", &a->total, "total", err);
}

static const fg_metric_vtable accuracy_vt = {accuracy_update, accuracy_compute, accuracy_reset,
                                             free, accuracy_state, accuracy_load};

/* Multiclass accuracy averaged per class (macro, weighted, none) is
 * per-class recall: TorchMetrics computes both as tp / (tp + fn) with the
 * same class weights. Those averages reuse Recall under Accuracy's name. */
typedef struct {
  fg_metric *inner;
} renamed;

static int renamed_update(void *self, const fg_value *kw, char **err) {
  return fg_metric_update(((renamed *)self)->inner, kw, err);
}
static int renamed_compute(void *self, fg_value **out, char **err) {
  return fg_metric_compute(((renamed *)self)->inner, out, err);
}
static void renamed_reset(void *self) { fg_metric_reset(((renamed *)self)->inner); }
static void renamed_free(void *self) {
  fg_metric_free(((renamed *)self)->inner);
  free(self);
}
static int renamed_state(void *self, fg_value **out, char **err) {
  return fg_metric_state_dict(((renamed *)self)->inner, out, err);
}
static int renamed_load(void *self, const fg_value *st, char **err) {
  return fg_metric_load_state_dict(((renamed *)self)->inner, st, err);
}
static const fg_metric_vtable renamed_vt = {renamed_update, renamed_compute, renamed_reset,
                                            renamed_free,   renamed_state,   renamed_load};

static int per_class_accuracy(const fg_node *args, const char *keypath, void **out, char **err) {
  fg_node *obj = fg_node_new_map(), *ia = fg_node_new_map();
  fg_node_map_set(obj, "class_path", fg_node_new_string("fulgur.metrics.Recall"));
  static const char *const keys[] = {"task", "num_classes", "average", "top_k"};
  for (size_t i = 0; i < 4; i++)
    fg_node_map_set(ia, keys[i], fg_node_clone(fg_node_get(args, keys[i])));
  fg_node_map_set(obj, "init_args", ia);
  void *inner = NULL;
  int rc = fg_registry_create(obj, keypath, FG_KIND_METRIC, &inner, NULL, err);
  fg_node_free(obj);
  if (rc) return rc;
  renamed *r = fg__xmalloc(sizeof *r);
  r->inner = inner;
  *out = fg_metric_create(&renamed_vt, r, "Accuracy");
  return 0;
}

static int accuracy_create(const fg_class *cls, const fg_node *args, const char *keypath,
                           void **out, char **err) {
  const char *avg = fg_node_str(fg_node_get(args, "average"));
  if (strcmp(fg_node_str(fg_node_get(args, "task")), "multiclass") == 0 &&
      (avg == NULL || strcmp(avg, "micro") != 0))
    return per_class_accuracy(args, keypath, out, err);
  accuracy *a = fg__xcalloc(1, sizeof *a);
  const char *task = fg_node_str(fg_node_get(args, "task"));
  a->task = strcmp(task, "binary") == 0 ? TASK_BINARY : TASK_MULTICLASS;
  const fg_node *nc = fg_node_get(args, "num_classes");
  a->num_classes = fg_node_kind_of(nc) == FG_NODE_INT ? fg_node_int(nc) : 0;
  a->top_k = fg_node_int(fg_node_get(args, "top_k"));
  a->threshold = fg_node_float(fg_node_get(args, "threshold"));
  if (a->task == TASK_MULTICLASS && a->num_classes < 2) {
    free(a);
    char *p = fg__xasprintf("%s.num_classes", keypath);
    int rc = fg_config_error(err, nc, p, "expected an integer >= 2 for task 'multiclass'");
    free(p);
    return rc;
  }
  if (a->top_k < 1 || (a->task == TASK_MULTICLASS && a->top_k > a->num_classes)) {
    free(a);
    char *p = fg__xasprintf("%s.top_k", keypath);
    int rc = fg_config_error(err, fg_node_get(args, "top_k"), p,
                             "expected 1 <= top_k <= num_classes");
    free(p);
    return rc;
  }
  *out = fg_metric_create(&accuracy_vt, a, "Accuracy");
  return 0;
}

static int check_task(const fg_node *v, const char *keypath, char **err) {
  const char *t = fg_node_str(v);
  if (strcmp(t, "binary") == 0 || strcmp(t, "multiclass") == 0) return 0;
  return fg_config_error(err, v, keypath, "expected 'binary' or 'multiclass', got '%s'", t);
}

static int check_average(const fg_node *v, const char *keypath, char **err) {
  const char *s = fg_node_str(v);
  if (s == NULL || strcmp(s, "micro") == 0 || strcmp(s, "macro") == 0 ||
      strcmp(s, "weighted") == 0 || strcmp(s, "none") == 0)
    return 0;
  return fg_config_error(err, v, keypath,
                         "expected 'micro', 'macro', 'weighted', 'none' or null, got '%s'", s);
}

static const fg_param accuracy_params[] = {
    {"task", FG_T_STRING, NULL, "binary or multiclass", check_task, 0},
    {"num_classes", FG_T_NULL | FG_T_INT, "null", "classes (multiclass)", NULL, 0},
    {"top_k", FG_T_INT, "1", "a hit when the target is among the k best", NULL, 0},
    {"threshold", FG_T_FLOAT, "0.5", "binary decision threshold", NULL, 0},
    {"average", FG_T_NULL | FG_T_STRING, "micro", "micro, macro, weighted, none (multiclass)", check_average, 0},
};

/* ---- MeanMetric ---------------------------------------------------------------- */

typedef struct {
  double sum, weight;
} mean_metric;

static int mean_update(void *self, const fg_value *kw, char **err) {
  mean_metric *m = self;
  static const char *const names[] = {"value", "weight"};
  int rc = check_kwargs(kw, names, 2, err);
  if (rc) return rc;
  const fg_value *v = fg_value_dict_get(kw, "value");
  const fg_value *w = fg_value_dict_get(kw, "weight");
  if (v == NULL) return fg_err_set(err, FG_EINVAL, "missing argument 'value'");
  double weight = 1.0;
  if (w && (fg_value_kind_of(w) == FG_VALUE_INT || fg_value_kind_of(w) == FG_VALUE_DOUBLE))
    weight = fg_value_as_double(w);
  else if (w && fg_value_kind_of(w) == FG_VALUE_TENSOR && fg_tensor_numel(fg_value_as_tensor(w)) == 1 &&
           (rc = fg_tensor_item(fg_value_as_tensor(w), &weight, err)))
    return rc;
  if (fg_value_kind_of(v) == FG_VALUE_INT || fg_value_kind_of(v) == FG_VALUE_DOUBLE) {
    m->sum += fg_value_as_double(v) * weight;
    m->weight += weight;
    return 0;
  }
  if (fg_value_kind_of(v) != FG_VALUE_TENSOR)
    return fg_err_set(err, FG_EINVAL, "'value' must be a number or a tensor");
  const fg_tensor *t = fg_value_as_tensor(v);
  double s;
  if ((rc = count_sum(t, &s, err))) return rc;
  m->sum += s * weight;
  m->weight += weight * (double)fg_tensor_numel(t);
  return 0;
}

static int mean_compute(void *self, fg_value **out, char **err) {
  mean_metric *m = self;
  *out = fg_value_double(m->weight > 0 ? m->sum / m->weight : NAN);
  return 0;
}

static void mean_reset(void *self) {
  mean_metric *m = self;
  m->sum = m->weight = 0;
}

static int mean_state(void *self, fg_value **out, char **err) {
  (void)err;
  mean_metric *m = self;
  return sums_state(m->sum, "sum", m->weight, "weight", out);
}

static int mean_load(void *self, const fg_value *st, char **err) {
  mean_metric *m = self;
  return sums_load(st, &m->sum, "sum", &m->weight, "weight", err);
}

static const char *const mean_args[] = {"value", "weight", NULL};
static const fg_metric_vtable mean_vt = {mean_update, mean_compute, mean_reset, free,
                                         mean_state, mean_load, mean_args};

static int mean_create(const fg_class *cls, const fg_node *args, const char *keypath,
                       void **out, char **err) {
  *out = fg_metric_create(&mean_vt, fg__xcalloc(1, sizeof(mean_metric)), "MeanMetric");
  return 0;
}

static const fg_param mean_params[] = {
    {"nan_strategy", FG_T_STRING, "warn", "TorchMetrics' nan_strategy (accepted for compatibility)", NULL, 0},
};

static void metric_destroy(void *obj) { fg_metric_free(obj); }

static const char *const accuracy_aliases[] = {"torchmetrics.Accuracy",
                                               "torchmetrics.classification.Accuracy", NULL};
static const char *const mean_aliases[] = {"torchmetrics.MeanMetric",
                                           "torchmetrics.aggregation.MeanMetric", NULL};

const fg_class fg__accuracy_class = {
    .name = "fulgur.metrics.Accuracy", .aliases = accuracy_aliases, .kind = FG_KIND_METRIC,
    .params = accuracy_params, .n_params = sizeof accuracy_params / sizeof accuracy_params[0],
    .create = accuracy_create, .destroy = metric_destroy};

const fg_class fg__mean_metric_class = {
    .name = "fulgur.metrics.MeanMetric", .aliases = mean_aliases, .kind = FG_KIND_METRIC,
    .params = mean_params, .n_params = 1, .create = mean_create, .destroy = metric_destroy};
