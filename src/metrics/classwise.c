/* ClasswiseWrapper with TorchMetrics' names and semantics: wraps a metric
 * whose result is one value per class (average none/null) and names each
 * entry of its first dimension, so compute gives a dict that a
 * MetricCollection merges and the trainer logs as scalars.
 *
 * Entry names follow ClasswiseWrapper._convert_output: with neither prefix
 * nor postfix, "<class>_<label>" where <class> is the wrapped metric's
 * TorchMetrics class name lowercased — the task-specific class a task
 * wrapper returns, so StatScores(task=binary) names "binarystatscores_tp";
 * otherwise "<prefix><label><postfix>" (either may be empty). Labels are
 * `labels` when given (paired with the entries as Python's zip does: the
 * shorter one ends the dict), else the indices 0, 1, ...
 *
 * An entry of a vector result is a number; of a matrix (StatScores' [C, 5]
 * per-class rows), a tensor row. */
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fulgur/config.h"
#include "fulgur/error.h"
#include "fulgur/metrics.h"
#include "fulgur/registry.h"
#include "registry/builtins.h"
#include "metrics/metric_util.h"
#include "util/xalloc.h"

typedef struct {
  fg_metric *metric;
  char **labels; /* NULL: indices */
  size_t n_labels;
  char *prefix, *postfix; /* both set: the name rule is resolved at create */
} classwise;

static int cw_update(void *self, const fg_value *kw, char **err) {
  classwise *c = self;
  /* The wrapped metric gets the arguments its update takes (the wrapper's
   * _filter_kwargs is the wrapped metric's). */
  fg_value *mine = fg_value_dict();
  for (size_t k = 0; k < fg_value_len(kw); k++)
    if (fg_metric_takes(c->metric, fg_value_dict_key_at(kw, k)))
      fg_value_dict_set(mine, fg_value_dict_key_at(kw, k),
                        fg_value_copy(fg_value_dict_value_at(kw, k)));
  int rc = fg_metric_update(c->metric, mine, err);
  fg_value_free(mine);
  return rc;
}

static int cw_compute(void *self, fg_value **out, char **err) {
  classwise *c = self;
  fg_value *r = NULL;
  int rc = fg_metric_compute(c->metric, &r, err);
  if (rc) return rc;
  if (fg_value_kind_of(r) != FG_VALUE_TENSOR || fg_tensor_ndim(fg_value_as_tensor(r)) < 1) {
    rc = fg_err_set(err, FG_EINVAL,
                    "ClasswiseWrapper: %s gave %s, not one value per class; wrap it with average: "
                    "none",
                    fg_metric_name(c->metric),
                    fg_value_kind_of(r) == FG_VALUE_TENSOR   ? "a 0-d tensor"
                    : fg_value_kind_of(r) == FG_VALUE_DOUBLE ? "a number"
                                                             : fg_value_kind_name(fg_value_kind_of(r)));
    fg_value_free(r);
    return rc;
  }
  const fg_tensor *t = fg_value_as_tensor(r);
  int64_t shape[8];
  int ndim = fg_tensor_ndim(t) - 1;
  if (ndim >= 8) {
    rc = fg_err_set(err, FG_EINVAL, "ClasswiseWrapper: %s gave a %d-d tensor", fg_metric_name(c->metric),
                    ndim + 1);
    fg_value_free(r);
    return rc;
  }
  for (int d = 0; d < ndim; d++) shape[d] = fg_tensor_size(t, d + 1);
  int64_t rows = fg_tensor_size(t, 0), numel = fg_tensor_numel(t);
  int64_t per = rows ? numel / rows : 0;
  fg_dtype dtype = fg_tensor_dtype(t);
  size_t item = fg_dtype_size(dtype);
  char *data = fg__xmalloc((size_t)(numel ? numel : 1) * item);
  double *dv = fg__xmalloc((size_t)(numel ? numel : 1) * sizeof *dv);
  if ((rc = fg_tensor_copy_out(t, dtype, data, (size_t)numel * item, err)) == 0)
    rc = fg_tensor_copy_out(t, FG_FLOAT64, dv, (size_t)numel * sizeof *dv, err);
  fg_value *res = fg_value_dict();
  size_t n = c->labels ? (c->n_labels < (size_t)rows ? c->n_labels : (size_t)rows) : (size_t)rows;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    char idx[32];
    snprintf(idx, sizeof idx, "%zu", i);
    char *key = fg__xasprintf("%s%s%s", c->prefix, c->labels ? c->labels[i] : idx, c->postfix);
    if (ndim == 0) {
      fg_value_dict_set(res, key, fg_value_double(dv[i]));
    } else {
      fg_tensor *row = NULL;
      rc = fg_tensor_from_data(data + (size_t)((int64_t)i * per) * item, dtype, shape, ndim, &row,
                               err);
      if (rc == 0) fg_value_dict_set(res, key, fg_value_tensor(row));
    }
    free(key);
  }
  free(data);
  free(dv);
  fg_value_free(r);
  if (rc) {
    fg_value_free(res);
    return rc;
  }
  *out = res;
  return 0;
}

static void cw_reset(void *self) {
  classwise *c = self;
  fg_metric_reset(c->metric);
}

static void cw_free(void *self) {
  classwise *c = self;
  if (c == NULL) return;
  fg_metric_free(c->metric);
  for (size_t i = 0; i < c->n_labels; i++) free(c->labels[i]);
  free(c->labels);
  free(c->prefix);
  free(c->postfix);
  free(c);
}

/* The wrapped metric's state under "metric.<key>", as the wrapper's
 * state_dict names its submodule's. */
static int cw_state(void *self, fg_value **out, char **err) {
  classwise *c = self;
  fg_value *ms = NULL;
  int rc = fg_metric_state_dict(c->metric, &ms, err);
  if (rc) return rc;
  fg_value *st = fg_value_dict();
  for (size_t k = 0; k < fg_value_len(ms); k++) {
    char *key = fg__xasprintf("metric.%s", fg_value_dict_key_at(ms, k));
    fg_value_dict_set(st, key, fg_value_copy(fg_value_dict_value_at(ms, k)));
    free(key);
  }
  fg_value_free(ms);
  *out = st;
  return 0;
}

static int cw_load(void *self, const fg_value *st, char **err) {
  classwise *c = self;
  fg_value *mine = fg_value_dict();
  for (size_t k = 0; k < fg_value_len(st); k++) {
    const char *key = fg_value_dict_key_at(st, k);
    if (strncmp(key, "metric.", 7) == 0)
      fg_value_dict_set(mine, key + 7, fg_value_copy(fg_value_dict_value_at(st, k)));
  }
  int rc = fg_metric_load_state_dict(c->metric, mine, err);
  fg_value_free(mine);
  return rc;
}

static int cw_reduce(void *self, fg_value *const *states, int n, fg_value **out, char **err) {
  classwise *c = self;
  fg_value *res = fg_value_dict();
  int rc = fg__reduce_member_states(c->metric, states, n, "metric.", res, err);
  if (rc) {
    fg_value_free(res);
    return rc;
  }
  *out = res;
  return 0;
}

static const char *const cw_args[] = {"*", NULL}; /* filtered for the wrapped metric */
static const fg_metric_vtable cw_vt = {cw_update, cw_compute, cw_reset, cw_free,
                                       NULL,      NULL,       cw_args};
static const fg_metric_vtable cw_state_vt = {cw_update, cw_compute, cw_reset, cw_free,
                                             cw_state,  cw_load,    cw_args,  cw_reduce};

/* The TorchMetrics class a config of `cls` instantiates, lowercased: a
 * task wrapper (a class with a task argument) returns Binary<Name>,
 * Multiclass<Name> or Multilabel<Name>. */
static char *torchmetrics_class_lower(const fg_class *cls, const fg_node *metric_cfg) {
  const char *dot = strrchr(cls->name, '.');
  const char *shortname = dot ? dot + 1 : cls->name;
  const fg_node *task = fg_node_get(fg_node_get(metric_cfg, "init_args"), "task");
  char *name = fg__xasprintf("%s%s", fg_node_kind_of(task) == FG_NODE_STRING ? fg_node_str(task) : "",
                             shortname);
  for (char *p = name; *p; p++) *p = (char)tolower((unsigned char)*p);
  return name;
}

static int cw_create(const fg_class *cls, const fg_node *args, const char *keypath, void **out,
                     char **err) {
  const fg_node *mcfg = fg_node_get(args, "metric");
  char *mpath = fg__xasprintf("%s.metric", keypath);
  void *obj = NULL;
  const fg_class *mcls = NULL;
  int rc = fg_registry_create(mcfg, mpath, FG_KIND_METRIC, &obj, &mcls, err);
  free(mpath);
  if (rc) return rc;
  classwise *c = fg__xcalloc(1, sizeof *c);
  c->metric = obj;
  const fg_node *labels = fg_node_get(args, "labels");
  if (fg_node_kind_of(labels) == FG_NODE_SEQ) {
    c->n_labels = fg_node_len(labels);
    c->labels = fg__xcalloc(c->n_labels ? c->n_labels : 1, sizeof *c->labels);
    for (size_t i = 0; i < c->n_labels; i++)
      c->labels[i] = fg__xstrdup(fg_node_str(fg_node_at(labels, i)));
  }
  const fg_node *pre = fg_node_get(args, "prefix"), *post = fg_node_get(args, "postfix");
  const char *ps = fg_node_kind_of(pre) == FG_NODE_STRING ? fg_node_str(pre) : "";
  const char *qs = fg_node_kind_of(post) == FG_NODE_STRING ? fg_node_str(post) : "";
  /* Python's `not self._prefix and not self._postfix`: empty strings count
   * as unset. */
  if (*ps == '\0' && *qs == '\0') {
    char *lower = torchmetrics_class_lower(mcls, mcfg);
    c->prefix = fg__xasprintf("%s_", lower);
    free(lower);
  } else {
    c->prefix = fg__xstrdup(ps);
  }
  c->postfix = fg__xstrdup(qs);
  *out = fg_metric_create(fg_metric_has_state(c->metric) ? &cw_state_vt : &cw_vt, c,
                          "ClasswiseWrapper");
  return 0;
}

static int cw_check(const fg_class *cls, fg_node *args, const char *keypath, bool fill,
                    char **err) {
  char *mpath = fg__xasprintf("%s.metric", keypath);
  int rc = fg_registry_check(fg_node_get(args, "metric"), mpath, FG_KIND_METRIC, fill, err);
  free(mpath);
  return rc;
}

static const fg_param cw_params[] = {
    {"metric", FG_T_MAP, NULL, "the wrapped metric config, one value per class (average: none)", NULL, 0},
    {"labels", FG_T_NULL | FG_T_SEQ, "null", "names of the entries, in order (null: 0, 1, ...)", NULL, FG_T_STRING},
    {"prefix", FG_T_NULL | FG_T_STRING, "null", "put before every label (with postfix null too: '<class name lowercased>_')", NULL, 0},
    {"postfix", FG_T_NULL | FG_T_STRING, "null", "put after every label", NULL, 0},
};

static const char *const cw_aliases[] = {"torchmetrics.ClasswiseWrapper",
                                         "torchmetrics.wrappers.ClasswiseWrapper", NULL};

const fg_class fg__classwise_wrapper_class = {
    .name = "fulgur.metrics.ClasswiseWrapper", .aliases = cw_aliases, .kind = FG_KIND_METRIC,
    .params = cw_params, .n_params = sizeof cw_params / sizeof cw_params[0],
    .create = cw_create, .destroy = fg__metric_destroy, .check = cw_check};

