/* Input formatting and config rules shared by the metric classes. The
 * transforms that decide ties (sigmoid, softmax, argmax, topk) run in
 * libtorch on the caller's tensor, so they round exactly as Python's
 * TorchMetrics does; everything after them is counting, done in C on
 * copied-out arrays. */
#include "metrics/metric_util.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fulgur/error.h"
#include "util/xalloc.h"

/* ---- update arguments ----------------------------------------------------- */

static int tensor_arg(const fg_value *kw, const char *name, const fg_tensor **t, char **err) {
  const fg_value *v = fg_value_dict_get(kw, name);
  if (v == NULL) return fg_err_set(err, FG_EINVAL, "missing argument '%s'", name);
  if (fg_value_kind_of(v) != FG_VALUE_TENSOR)
    return fg_err_set(err, FG_EINVAL, "'%s' must be a tensor, got %s", name,
                      fg_value_kind_name(fg_value_kind_of(v)));
  *t = fg_value_as_tensor(v);
  return 0;
}

int fg__metric_preds_target(const fg_value *kw, const fg_tensor **preds,
                            const fg_tensor **target, char **err) {
  for (size_t i = 0; i < fg_value_len(kw); i++) {
    const char *k = fg_value_dict_key_at(kw, i);
    if (strcmp(k, "preds") != 0 && strcmp(k, "target") != 0)
      return fg_err_set(err, FG_EINVAL, "unexpected keyword argument '%s'", k);
  }
  int rc = tensor_arg(kw, "preds", preds, err);
  if (rc == 0) rc = tensor_arg(kw, "target", target, err);
  return rc;
}

/* x rounded to bfloat16 (to nearest, ties to even, as torch converts). */
static double bf16_round(double x) {
  float f = (float)x;
  uint32_t bits;
  memcpy(&bits, &f, sizeof bits);
  bits = (bits + 0x7fffu + ((bits >> 16) & 1u)) & 0xffff0000u;
  memcpy(&f, &bits, sizeof f);
  return f;
}

bool fg__dtype_is_float(fg_dtype d) { return d == FG_FLOAT32 || d == FG_FLOAT64 || d == FG_BFLOAT16; }

static int copy_out(const fg_tensor *t, fg_dtype dtype, void **out, char **err) {
  size_t n = (size_t)fg_tensor_numel(t), bytes = n * fg_dtype_size(dtype);
  void *buf = malloc(bytes ? bytes : 1);
  if (buf == NULL) return fg_err_set(err, FG_ENOMEM, "out of memory copying %zu values", n);
  int rc = fg_tensor_copy_out(t, dtype, buf, bytes, err);
  if (rc) {
    free(buf);
    return rc;
  }
  *out = buf;
  return 0;
}

int fg__tensor_doubles(const fg_tensor *t, double **out, char **err) {
  return copy_out(t, FG_FLOAT64, (void **)out, err);
}

int fg__tensor_int64s(const fg_tensor *t, int64_t **out, char **err) {
  return copy_out(t, FG_INT64, (void **)out, err);
}

int fg__same_shape(const fg_tensor *preds, const fg_tensor *target, char **err) {
  bool same = fg_tensor_ndim(preds) == fg_tensor_ndim(target);
  for (int d = 0; same && d < fg_tensor_ndim(preds); d++)
    same = fg_tensor_size(preds, d) == fg_tensor_size(target, d);
  if (same) return 0;
  char ps[64], ts[64];
  fg_tensor_shape_str(preds, ps, sizeof ps);
  fg_tensor_shape_str(target, ts, sizeof ts);
  return fg_err_set(err, FG_EINVAL,
                    "preds and target are expected to have the same shape, got %s and %s", ps, ts);
}

/* TorchMetrics wants label tensors to be integers; a float target is
 * almost always a regression target given to a classification metric. */
static int int_labels(const fg_tensor *t, const char *name, int64_t **out, char **err) {
  if (fg__dtype_is_float(fg_tensor_dtype(t)))
    return fg_err_set(err, FG_EINVAL,
                      "'%s' must be an integer tensor of class labels, got %s", name,
                      fg_dtype_name(fg_tensor_dtype(t)));
  return fg__tensor_int64s(t, out, err);
}

int fg__binary_target(const fg_tensor *target, const int64_t *ignore_index, int64_t **out,
                      char **err) {
  int64_t *t = NULL;
  int rc = int_labels(target, "target", &t, err);
  if (rc) return rc;
  size_t n = (size_t)fg_tensor_numel(target);
  for (size_t i = 0; i < n; i++)
    if (ignore_index && t[i] == *ignore_index) {
      t[i] = -1;
    } else if (t[i] != 0 && t[i] != 1) {
      int64_t v = t[i];
      free(t);
      return fg_err_set(err, FG_EINVAL, "binary target holds %lld; expected only 0 and 1",
                        (long long)v);
    }
  *out = t;
  return 0;
}

/* Whether every value lies in [0, 1]; NaN does not, as in torch. */
static bool all_unit(const double *v, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (!(v[i] >= 0 && v[i] <= 1)) return false;
  return true;
}

/* Copies preds out, replacing them with transform(preds) first when some
 * value is outside [0, 1]. */
static int probs_via(const fg_tensor *preds,
                     int (*transform)(const fg_tensor *, int64_t, fg_tensor **, char **),
                     double **out, char **err) {
  double *v = NULL;
  int rc = fg__tensor_doubles(preds, &v, err);
  if (rc) return rc;
  if (all_unit(v, (size_t)fg_tensor_numel(preds))) {
    *out = v;
    return 0;
  }
  free(v);
  fg_tensor *p = NULL;
  if ((rc = transform(preds, 1, &p, err))) return rc;
  rc = fg__tensor_doubles(p, out, err);
  fg_tensor_free(p);
  return rc;
}

static int sigmoid_op(const fg_tensor *x, int64_t dim, fg_tensor **out, char **err) {
  return fg_op_sigmoid(x, out, err);
}

int fg__binary_probs(const fg_tensor *preds, double **out, char **err) {
  if (!fg__dtype_is_float(fg_tensor_dtype(preds)))
    return fg_err_set(err, FG_EINVAL,
                      "'preds' must be a float tensor of probabilities or logits, got %s",
                      fg_dtype_name(fg_tensor_dtype(preds)));
  return probs_via(preds, sigmoid_op, out, err);
}

int fg__binary_pred_labels(const fg_tensor *preds, double threshold, int64_t **out,
                           char **err) {
  size_t n = (size_t)fg_tensor_numel(preds);
  if (!fg__dtype_is_float(fg_tensor_dtype(preds))) {
    int64_t *p = NULL;
    int rc = fg__tensor_int64s(preds, &p, err);
    if (rc) return rc;
    for (size_t i = 0; i < n; i++)
      if (p[i] != 0 && p[i] != 1) {
        int64_t v = p[i];
        free(p);
        return fg_err_set(err, FG_EINVAL,
                          "integer preds are labels and must be 0 or 1, got %lld", (long long)v);
      }
    *out = p;
    return 0;
  }
  double *prob = NULL;
  int rc = probs_via(preds, sigmoid_op, &prob, err);
  if (rc) return rc;
  /* torch compares a float tensor with a Python float in the tensor's
   * dtype (float32, or bfloat16 under bf16 autocast). */
  double thr = threshold;
  if (fg_tensor_dtype(preds) == FG_FLOAT32) thr = (double)(float)threshold;
  if (fg_tensor_dtype(preds) == FG_BFLOAT16) thr = bf16_round(threshold);
  int64_t *lab = malloc((n ? n : 1) * sizeof *lab);
  if (lab == NULL) {
    free(prob);
    return fg_err_set(err, FG_ENOMEM, "out of memory for %zu labels", n);
  }
  for (size_t i = 0; i < n; i++) lab[i] = prob[i] > thr;
  free(prob);
  *out = lab;
  return 0;
}

static int check_range(const int64_t *v, size_t n, int64_t num_classes, const char *name,
                       char **err) {
  for (size_t i = 0; i < n; i++)
    if (v[i] < 0 || v[i] >= num_classes)
      return fg_err_set(err, FG_EINVAL, "%s holds class %lld, outside [0, num_classes=%lld)",
                        name, (long long)v[i], (long long)num_classes);
  return 0;
}

int fg__multiclass_target(const fg_tensor *target, int64_t num_classes,
                          const int64_t *ignore_index, int64_t **out, size_t *n, char **err) {
  int64_t *t = NULL;
  int rc = int_labels(target, "target", &t, err);
  if (rc) return rc;
  *n = (size_t)fg_tensor_numel(target);
  if (ignore_index)
    for (size_t i = 0; i < *n; i++)
      if (t[i] == *ignore_index) t[i] = -1;
  /* -1 is an ignored sample, not a class. */
  for (size_t i = 0; rc == 0 && i < *n; i++)
    if (!(ignore_index && t[i] == -1)) rc = check_range(t + i, 1, num_classes, "target", err);
  if (rc) {
    free(t);
    return rc;
  }
  *out = t;
  return 0;
}

int fg__drop_ignored(const fg_tensor *preds, int64_t *t, size_t n, bool rows, fg_tensor **kept,
                     size_t *n_kept, char **err) {
  *kept = NULL;
  size_t m = 0;
  for (size_t i = 0; i < n; i++) m += t[i] >= 0;
  *n_kept = m;
  if (m == n) return 0;
  int64_t *idx = fg__xmalloc((m ? m : 1) * sizeof *idx);
  for (size_t i = 0, j = 0; i < n; i++)
    if (t[i] >= 0) {
      idx[j] = (int64_t)i;
      t[j++] = t[i];
    }
  fg_tensor *it = NULL, *flat = NULL;
  int64_t len = (int64_t)m;
  int rc = fg_tensor_from_data(idx, FG_INT64, &len, 1, &it, err);
  free(idx);
  if (rc == 0 && !rows) rc = fg_op_flatten(preds, 0, &flat, err);
  if (rc == 0) rc = fg_op_index_select(flat ? flat : preds, 0, it, kept, err);
  fg_tensor_free(it);
  fg_tensor_free(flat);
  return rc;
}

/* Float preds [N, C] against a target [N]. */
static int check_scores_shape(const fg_tensor *preds, const fg_tensor *target,
                              int64_t num_classes, char **err) {
  if (fg_tensor_ndim(preds) == 2 && fg_tensor_ndim(target) == 1 &&
      fg_tensor_size(preds, 0) == fg_tensor_size(target, 0) &&
      fg_tensor_size(preds, 1) == num_classes)
    return 0;
  char ps[64], ts[64];
  fg_tensor_shape_str(preds, ps, sizeof ps);
  fg_tensor_shape_str(target, ts, sizeof ts);
  return fg_err_set(err, FG_EINVAL,
                    "preds of shape %s do not match target of shape %s: expected scores "
                    "[N, num_classes=%lld] for a target [N]",
                    ps, ts, (long long)num_classes);
}

int fg__multiclass_pred_labels(const fg_tensor *preds, const fg_tensor *target_t,
                               const int64_t *target, size_t n, int64_t num_classes,
                               int64_t top_k, int64_t **out, char **err) {
  int rc;
  if (fg__dtype_is_float(fg_tensor_dtype(preds)) &&
      fg_tensor_ndim(preds) == fg_tensor_ndim(target_t) + 1) {
    if ((rc = check_scores_shape(preds, target_t, num_classes, err))) return rc;
    fg_tensor *idx = NULL;
    if (top_k == 1) {
      if ((rc = fg_op_argmax(preds, 1, &idx, err))) return rc;
      rc = fg__tensor_int64s(idx, out, err);
      fg_tensor_free(idx);
      return rc;
    }
    int64_t *k = NULL;
    if ((rc = fg_op_topk_indices(preds, top_k, 1, &idx, err)) == 0)
      rc = fg__tensor_int64s(idx, &k, err);
    fg_tensor_free(idx);
    if (rc) return rc;
    int64_t *lab = malloc((n ? n : 1) * sizeof *lab);
    if (lab == NULL) {
      free(k);
      return fg_err_set(err, FG_ENOMEM, "out of memory for %zu labels", n);
    }
    for (size_t i = 0; i < n; i++) {
      const int64_t *row = k + i * (size_t)top_k;
      lab[i] = row[0];
      for (int64_t j = 0; j < top_k; j++)
        if (row[j] == target[i]) lab[i] = target[i];
    }
    free(k);
    *out = lab;
    return 0;
  }
  /* Otherwise preds are labels shaped like target (float labels are
   * truncated, as TorchMetrics' .long() does). */
  if (fg__same_shape(preds, target_t, NULL) != 0)
    return fg__dtype_is_float(fg_tensor_dtype(preds))
               ? check_scores_shape(preds, target_t, num_classes, err)
               : fg__same_shape(preds, target_t, err);
  if (top_k > 1)
    return fg_err_set(err, FG_EINVAL,
                      "top_k=%lld needs float scores [N, num_classes], got labels",
                      (long long)top_k);
  int64_t *lab = NULL;
  if ((rc = fg__tensor_int64s(preds, &lab, err))) return rc;
  if ((rc = check_range(lab, n, num_classes, "preds", err))) {
    free(lab);
    return rc;
  }
  *out = lab;
  return 0;
}

int fg__multiclass_probs(const fg_tensor *preds, int64_t num_classes, int64_t n_target,
                         double **out, char **err) {
  if (!fg__dtype_is_float(fg_tensor_dtype(preds)))
    return fg_err_set(err, FG_EINVAL,
                      "'preds' must be a float tensor of scores [N, num_classes], got %s",
                      fg_dtype_name(fg_tensor_dtype(preds)));
  if (fg_tensor_ndim(preds) != 2 || fg_tensor_size(preds, 0) != n_target ||
      fg_tensor_size(preds, 1) != num_classes) {
    char ps[64];
    fg_tensor_shape_str(preds, ps, sizeof ps);
    return fg_err_set(err, FG_EINVAL,
                      "preds of shape %s: expected [N=%lld, num_classes=%lld] for a target [N]",
                      ps, (long long)n_target, (long long)num_classes);
  }
  return probs_via(preds, fg_op_softmax, out, err);
}

/* Multilabel tensors [N, L, R...] as rows (n, r) of L columns. */
static int64_t trailing(const fg_tensor *t) {
  int64_t r = 1;
  for (int d = 2; d < fg_tensor_ndim(t); d++) r *= fg_tensor_size(t, d);
  return r;
}

/* Reorders v (N x L x R, row-major) into (N*R) x L in place via a copy. */
static int to_rows(const fg_tensor *t, void *v, size_t item, char **err) {
  int64_t r = trailing(t);
  if (r == 1) return 0;
  int64_t n = fg_tensor_size(t, 0), l = fg_tensor_size(t, 1);
  size_t bytes = (size_t)(n * l * r) * item;
  char *tmp = malloc(bytes ? bytes : 1);
  if (tmp == NULL) return fg_err_set(err, FG_ENOMEM, "out of memory reordering %zu bytes", bytes);
  const char *src = v;
  for (int64_t i = 0; i < n; i++)
    for (int64_t j = 0; j < l; j++)
      for (int64_t k = 0; k < r; k++)
        memcpy(tmp + (size_t)((i * r + k) * l + j) * item, src + (size_t)((i * l + j) * r + k) * item,
               item);
  memcpy(v, tmp, bytes);
  free(tmp);
  return 0;
}

static int multilabel_shape(const fg_tensor *t, const char *name, int64_t num_labels, char **err) {
  if (fg_tensor_ndim(t) >= 2 && fg_tensor_size(t, 1) == num_labels) return 0;
  char s[64];
  fg_tensor_shape_str(t, s, sizeof s);
  return fg_err_set(err, FG_EINVAL, "%s of shape %s: expected [N, num_labels=%lld, ...]", name, s,
                    (long long)num_labels);
}

int fg__multilabel_target(const fg_tensor *preds, const fg_tensor *target, int64_t num_labels,
                          const int64_t *ignore_index, int64_t **out, size_t *rows, char **err) {
  int rc = fg__same_shape(preds, target, err);
  if (rc == 0) rc = multilabel_shape(target, "target", num_labels, err);
  if (rc == 0) rc = fg__binary_target(target, ignore_index, out, err);
  if (rc) return rc;
  if ((rc = to_rows(target, *out, sizeof **out, err))) {
    free(*out);
    *out = NULL;
    return rc;
  }
  *rows = (size_t)(fg_tensor_numel(target) / num_labels);
  return 0;
}

int fg__multilabel_probs(const fg_tensor *preds, int64_t num_labels, double **out, char **err) {
  int rc = multilabel_shape(preds, "preds", num_labels, err);
  if (rc == 0) rc = fg__binary_probs(preds, out, err);
  if (rc == 0 && (rc = to_rows(preds, *out, sizeof **out, err))) {
    free(*out);
    *out = NULL;
  }
  return rc;
}

int fg__multilabel_pred_labels(const fg_tensor *preds, int64_t num_labels, double threshold,
                               int64_t **out, char **err) {
  int rc = multilabel_shape(preds, "preds", num_labels, err);
  if (rc == 0) rc = fg__binary_pred_labels(preds, threshold, out, err);
  if (rc == 0 && (rc = to_rows(preds, *out, sizeof **out, err))) {
    free(*out);
    *out = NULL;
  }
  return rc;
}

/* ---- results ---------------------------------------------------------------- */

int fg__value_float_vector(const double *v, int64_t n, fg_value **out, char **err) {
  float *f = fg__xmalloc((size_t)(n ? n : 1) * sizeof *f);
  for (int64_t i = 0; i < n; i++) f[i] = (float)v[i];
  fg_tensor *t = NULL;
  int rc = fg_tensor_from_data(f, FG_FLOAT32, &n, 1, &t, err);
  free(f);
  if (rc == 0) *out = fg_value_tensor(t);
  return rc;
}

/* ---- states ----------------------------------------------------------------------- */

int fg__state_put(fg_value *st, const char *key, const void *v, fg_dtype dtype, const int64_t *shape,
                  int ndim, char **err) {
  fg_tensor *t = NULL;
  int rc = fg_tensor_from_data(v, dtype, shape, ndim, &t, err);
  if (rc == 0) fg_value_dict_set(st, key, fg_value_tensor(t));
  return rc;
}

int fg__state_get(const fg_value *st, const char *key, void *v, fg_dtype dtype, int64_t numel,
                  char **err) {
  const fg_value *x = fg_value_dict_get(st, key);
  if (x == NULL || fg_value_kind_of(x) != FG_VALUE_TENSOR)
    return fg_err_set(err, FG_EDATA, "expected a tensor '%s'", key);
  const fg_tensor *t = fg_value_as_tensor(x);
  if (fg_tensor_numel(t) != numel)
    return fg_err_set(err, FG_EDATA, "'%s' has %lld elements, expected %lld", key,
                      (long long)fg_tensor_numel(t), (long long)numel);
  return fg_tensor_copy_out(t, dtype, v, (size_t)numel * fg_dtype_size(dtype), err);
}

int fg__reduce_member_states(const fg_metric *member, fg_value *const *states, int n,
                             const char *prefix, fg_value *into, char **err) {
  size_t plen = strlen(prefix);
  fg_value **mine = fg__xcalloc((size_t)n, sizeof *mine);
  for (int r = 0; r < n; r++) {
    mine[r] = fg_value_dict();
    for (size_t k = 0; k < fg_value_len(states[r]); k++) {
      const char *key = fg_value_dict_key_at(states[r], k);
      if (strncmp(key, prefix, plen) == 0)
        fg_value_dict_set(mine[r], key + plen, fg_value_copy(fg_value_dict_value_at(states[r], k)));
    }
  }
  fg_value *red = NULL;
  int rc = fg_metric_reduce_states(member, mine, n, &red, err);
  for (size_t k = 0; rc == 0 && k < fg_value_len(red); k++) {
    char *key = fg__xasprintf("%s%s", prefix, fg_value_dict_key_at(red, k));
    fg_value_dict_set(into, key, fg_value_copy(fg_value_dict_value_at(red, k)));
    free(key);
  }
  fg_value_free(red);
  for (int r = 0; r < n; r++) fg_value_free(mine[r]);
  free(mine);
  return rc;
}

/* ---- config --------------------------------------------------------------------- */

int fg__check_task(const fg_node *v, const char *keypath, char **err) {
  const char *t = fg_node_str(v);
  if (strcmp(t, "binary") == 0 || strcmp(t, "multiclass") == 0) return 0;
  return fg_config_error(err, v, keypath, "expected 'binary' or 'multiclass', got '%s'", t);
}

int fg__check_task_multilabel(const fg_node *v, const char *keypath, char **err) {
  const char *t = fg_node_str(v);
  if (strcmp(t, "binary") == 0 || strcmp(t, "multiclass") == 0 || strcmp(t, "multilabel") == 0)
    return 0;
  return fg_config_error(err, v, keypath,
                         "expected 'binary', 'multiclass' or 'multilabel', got '%s'", t);
}

int fg__check_global(const fg_node *v, const char *keypath, char **err) {
  if (strcmp(fg_node_str(v), "global") == 0) return 0;
  return fg_config_error(err, v, keypath,
                         "only 'global' is supported by this fulgur version, got '%s'",
                         fg_node_str(v));
}

bool fg__metric_ignore_index(const fg_node *args, int64_t *out) {
  const fg_node *v = fg_node_get(args, "ignore_index");
  if (v == NULL || fg_node_kind_of(v) != FG_NODE_INT) return false;
  *out = fg_node_int(v);
  return true;
}

int fg__check_unit_interval(const fg_node *v, const char *keypath, char **err) {
  double d = fg_node_float(v);
  if (d >= 0 && d <= 1) return 0;
  return fg_config_error(err, v, keypath, "expected a number in [0, 1], got %g", d);
}

fg__metric_task fg__metric_task_of(const fg_node *args) {
  const char *t = fg_node_str(fg_node_get(args, "task"));
  return strcmp(t, "binary") == 0       ? FG__TASK_BINARY
         : strcmp(t, "multilabel") == 0 ? FG__TASK_MULTILABEL
                                        : FG__TASK_MULTICLASS;
}

int64_t fg__metric_num_classes(const fg_node *args) {
  const fg_node *nc = fg_node_get(args, "num_classes");
  return nc && fg_node_kind_of(nc) == FG_NODE_INT ? fg_node_int(nc) : 0;
}

int64_t fg__metric_num_labels(const fg_node *args) {
  const fg_node *nl = fg_node_get(args, "num_labels");
  return nl && fg_node_kind_of(nl) == FG_NODE_INT ? fg_node_int(nl) : 0;
}

int64_t fg__metric_columns(const fg_node *args) {
  switch (fg__metric_task_of(args)) {
    case FG__TASK_BINARY: return 1;
    case FG__TASK_MULTICLASS: return fg__metric_num_classes(args);
    case FG__TASK_MULTILABEL: return fg__metric_num_labels(args);
  }
  return 1;
}

int fg__metric_arg_error(char **err, const fg_node *args, const char *keypath,
                         const char *key, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *msg = NULL;
  if (vasprintf(&msg, fmt, ap) < 0) msg = NULL;
  va_end(ap);
  const fg_node *at = fg_node_get(args, key);
  char *path = fg__xasprintf("%s.%s", keypath, key);
  int rc = fg_config_error(err, at ? at : args, path, "%s", msg ? msg : "invalid value");
  free(path);
  free(msg);
  return rc;
}

int fg__check_task_args(fg_node *args, const char *keypath, char **err) {
  if (fg__metric_task_of(args) == FG__TASK_MULTILABEL) {
    if (fg__metric_num_labels(args) >= 2) return 0;
    return fg__metric_arg_error(err, args, keypath, "num_labels",
                                "expected an integer >= 2 for task 'multilabel'");
  }
  if (fg__metric_task_of(args) != FG__TASK_MULTICLASS) return 0;
  int64_t nc = fg__metric_num_classes(args);
  if (nc < 2)
    return fg__metric_arg_error(err, args, keypath, "num_classes",
                                "expected an integer >= 2 for task 'multiclass'");
  const fg_node *k = fg_node_get(args, "top_k");
  if (k && (fg_node_int(k) < 1 || fg_node_int(k) > nc))
    return fg__metric_arg_error(err, args, keypath, "top_k",
                                "expected 1 <= top_k <= num_classes=%lld, got %lld",
                                (long long)nc, (long long)fg_node_int(k));
  return 0;
}

void fg__metric_destroy(void *obj) { fg_metric_free(obj); }
