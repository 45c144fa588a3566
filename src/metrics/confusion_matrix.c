/* ConfusionMatrix with TorchMetrics' names and semantics: rows are the
 * target class, columns the predicted class; binary is the 2x2 case with
 * thresholded predictions. compute gives a tensor, not a number: int64
 * counts, or float32 when normalized (as TorchMetrics returns them). */
#include <stdlib.h>
#include <string.h>

#include "fulgur/config.h"
#include "fulgur/error.h"
#include "fulgur/metrics.h"
#include "fulgur/registry.h"
#include "registry/builtins.h"
#include "metrics/metric_util.h"
#include "util/xalloc.h"

typedef enum { NORM_NONE, NORM_TRUE, NORM_PRED, NORM_ALL } norm_kind;

typedef struct {
  fg__metric_task task;
  int64_t num_classes; /* 2 for binary */
  double threshold;
  norm_kind normalize;
  int64_t *counts; /* num_classes * num_classes, row-major [target][pred] */
} confmat;

static int confmat_update(void *self, const fg_value *kw, char **err) {
  confmat *m = self;
  const fg_tensor *preds, *target;
  int64_t *t = NULL, *p = NULL;
  size_t n = 0;
  int rc = fg__metric_preds_target(kw, &preds, &target, err);
  if (rc) return rc;
  if (m->task == FG__TASK_BINARY) {
    n = (size_t)fg_tensor_numel(target);
    if ((rc = fg__same_shape(preds, target, err)) == 0 &&
        (rc = fg__binary_target(target, NULL, &t, err)) == 0)
      rc = fg__binary_pred_labels(preds, m->threshold, &p, err);
  } else if ((rc = fg__multiclass_target(target, m->num_classes, NULL, &t, &n, err)) == 0) {
    rc = fg__multiclass_pred_labels(preds, target, t, n, m->num_classes, 1, &p, err);
  }
  for (size_t i = 0; rc == 0 && i < n; i++) m->counts[t[i] * m->num_classes + p[i]]++;
  free(t);
  free(p);
  return rc;
}

static int confmat_compute(void *self, fg_value **out, char **err) {
  confmat *m = self;
  int64_t c = m->num_classes, shape[2] = {c, c};
  fg_tensor *t = NULL;
  int rc;
  if (m->normalize == NORM_NONE) {
    if ((rc = fg_tensor_from_data(m->counts, FG_INT64, shape, 2, &t, err))) return rc;
    *out = fg_value_tensor(t);
    return 0;
  }
  /* TorchMetrics divides in float32 and turns 0/0 (a class never seen)
   * into 0. Counts below 2^24 are exact in float, so float division here
   * rounds exactly as torch's does. */
  float *f = fg__xmalloc((size_t)(c * c) * sizeof *f);
  double all = 0;
  for (int64_t i = 0; i < c * c; i++) all += (double)m->counts[i];
  for (int64_t r = 0; r < c; r++)
    for (int64_t k = 0; k < c; k++) {
      double den = 0;
      if (m->normalize == NORM_ALL) {
        den = all;
      } else {
        for (int64_t j = 0; j < c; j++)
          den += (double)(m->normalize == NORM_TRUE ? m->counts[r * c + j] : m->counts[j * c + k]);
      }
      f[r * c + k] = den != 0 ? (float)m->counts[r * c + k] / (float)den : 0.0f;
    }
  rc = fg_tensor_from_data(f, FG_FLOAT32, shape, 2, &t, err);
  free(f);
  if (rc) return rc;
  *out = fg_value_tensor(t);
  return 0;
}

static void confmat_reset(void *self) {
  confmat *m = self;
  memset(m->counts, 0, (size_t)(m->num_classes * m->num_classes) * sizeof *m->counts);
}

static void confmat_free(void *self) {
  confmat *m = self;
  if (m == NULL) return;
  free(m->counts);
  free(m);
}

/* TorchMetrics' state: "confmat", int64 counts [C, C]. */
static int confmat_state(void *self, fg_value **out, char **err) {
  confmat *m = self;
  int64_t shape[2] = {m->num_classes, m->num_classes};
  fg_value *st = fg_value_dict();
  int rc = fg__state_put(st, "confmat", m->counts, FG_INT64, shape, 2, err);
  if (rc) {
    fg_value_free(st);
    return rc;
  }
  *out = st;
  return 0;
}

static int confmat_load(void *self, const fg_value *st, char **err) {
  confmat *m = self;
  int64_t n = m->num_classes * m->num_classes;
  int64_t *c = fg__xmalloc((size_t)n * sizeof *c);
  int rc = fg__state_get(st, "confmat", c, FG_INT64, n, err);
  if (rc == 0) memcpy(m->counts, c, (size_t)n * sizeof *c);
  free(c);
  return rc;
}

static const fg_metric_vtable confmat_vt = {confmat_update, confmat_compute, confmat_reset,
                                            confmat_free, confmat_state, confmat_load};

static int confmat_create(const fg_class *cls, const fg_node *args, const char *keypath,
                          void **out, char **err) {
  confmat *m = fg__xcalloc(1, sizeof *m);
  m->task = fg__metric_task_of(args);
  m->num_classes = m->task == FG__TASK_BINARY ? 2 : fg__metric_num_classes(args);
  m->threshold = fg_node_float(fg_node_get(args, "threshold"));
  const fg_node *nz = fg_node_get(args, "normalize");
  const char *s = fg_node_kind_of(nz) == FG_NODE_STRING ? fg_node_str(nz)
                  : fg_node_kind_of(nz) == FG_NODE_BOOL && fg_node_bool(nz) ? "true"
                                                                            : "none";
  m->normalize = strcmp(s, "true") == 0   ? NORM_TRUE
                 : strcmp(s, "pred") == 0 ? NORM_PRED
                 : strcmp(s, "all") == 0  ? NORM_ALL
                                          : NORM_NONE;
  m->counts = fg__xcalloc((size_t)(m->num_classes * m->num_classes), sizeof *m->counts);
  *out = fg_metric_create(&confmat_vt, m, "ConfusionMatrix");
  return 0;
}

static int confmat_check(const fg_class *cls, fg_node *args, const char *keypath, bool fill,
                         char **err) {
  return fg__check_task_args(args, keypath, err);
}

/* YAML reads an unquoted `true` as a boolean, and `normalize: true` is
 * what people write for TorchMetrics' "true", so a boolean is taken too:
 * true is "true", false is no normalization. */
static int check_normalize(const fg_node *v, const char *keypath, char **err) {
  if (fg_node_kind_of(v) != FG_NODE_STRING) return 0; /* null or a boolean */
  static const char *const ok[] = {"true", "pred", "all", "none"};
  for (size_t i = 0; i < 4; i++)
    if (strcmp(fg_node_str(v), ok[i]) == 0) return 0;
  return fg_config_error(err, v, keypath, "expected 'true', 'pred', 'all', 'none' or null, got '%s'",
                         fg_node_str(v));
}

static const fg_param confmat_params[] = {
    {"task", FG_T_STRING, NULL, "binary or multiclass", fg__check_task, 0},
    {"threshold", FG_T_FLOAT, "0.5", "binary decision threshold on probabilities (logits get a sigmoid)", fg__check_unit_interval, 0},
    {"num_classes", FG_T_NULL | FG_T_INT, "null", "classes (multiclass)", NULL, 0},
    {"normalize", FG_T_NULL | FG_T_BOOL | FG_T_STRING, "null", "null (counts), 'true' (rows), 'pred' (columns) or 'all'", check_normalize, 0},
};

static const char *const confmat_aliases[] = {"torchmetrics.ConfusionMatrix",
                                              "torchmetrics.classification.ConfusionMatrix", NULL};

const fg_class fg__confusion_matrix_class = {
    .name = "fulgur.metrics.ConfusionMatrix", .aliases = confmat_aliases, .kind = FG_KIND_METRIC,
    .params = confmat_params, .n_params = sizeof confmat_params / sizeof confmat_params[0],
    .create = confmat_create, .destroy = fg__metric_destroy, .check = confmat_check};

