/* MeanSquaredError and MeanAbsoluteError with TorchMetrics' names,
 * arguments and semantics: sums of squared (absolute) errors over every
 * element since the last reset, divided by the element count. Nothing
 * seen gives NaN, as TorchMetrics' 0/0 does. The sums are doubles, summed
 * from elements copied out of the tensors. */
#include <math.h>
#include <stdlib.h>

#include "fulgur/config.h"
#include "fulgur/error.h"
#include "fulgur/metrics.h"
#include "fulgur/registry.h"
#include "registry/builtins.h"
#include "metrics/metric_util.h"
#include "util/xalloc.h"

typedef enum { ERR_SQUARED, ERR_ABSOLUTE } err_kind;

typedef struct {
  err_kind kind;
  bool squared; /* MSE: false gives the root (RMSE) */
  double sum, total;
} mean_error;

static int error_update(void *self, const fg_value *kw, char **err) {
  mean_error *m = self;
  const fg_tensor *preds, *target;
  int rc = fg__metric_preds_target(kw, &preds, &target, err);
  if (rc || (rc = fg__same_shape(preds, target, err))) return rc;
  double *p = NULL, *t = NULL;
  if ((rc = fg__tensor_doubles(preds, &p, err)) == 0 &&
      (rc = fg__tensor_doubles(target, &t, err)) == 0) {
    size_t n = (size_t)fg_tensor_numel(preds);
    double s = 0;
    for (size_t i = 0; i < n; i++) {
      double d = p[i] - t[i];
      s += m->kind == ERR_SQUARED ? d * d : fabs(d);
    }
    m->sum += s;
    m->total += (double)n;
  }
  free(p);
  free(t);
  return rc;
}

static int error_compute(void *self, fg_value **out, char **err) {
  mean_error *m = self;
  double v = m->sum / m->total;
  *out = fg_value_double(m->kind == ERR_SQUARED && !m->squared ? sqrt(v) : v);
  return 0;
}

static void error_reset(void *self) {
  mean_error *m = self;
  m->sum = m->total = 0;
}

/* TorchMetrics' state names (sum_squared_error or sum_abs_error, total). */
static int error_state(void *self, fg_value **out, char **err) {
  (void)err;
  mean_error *m = self;
  fg_value *st = fg_value_dict();
  fg_value_dict_set(st, m->kind == ERR_SQUARED ? "sum_squared_error" : "sum_abs_error",
                    fg_value_double(m->sum));
  fg_value_dict_set(st, "total", fg_value_double(m->total));
  *out = st;
  return 0;
}

static int error_load(void *self, const fg_value *st, char **err) {
  mean_error *m = self;
  const char *sk = m->kind == ERR_SQUARED ? "sum_squared_error" : "sum_abs_error";
  const fg_value *s = fg_value_dict_get(st, sk), *t = fg_value_dict_get(st, "total");
  bool num_s = s && (fg_value_kind_of(s) == FG_VALUE_DOUBLE || fg_value_kind_of(s) == FG_VALUE_INT);
  bool num_t = t && (fg_value_kind_of(t) == FG_VALUE_DOUBLE || fg_value_kind_of(t) == FG_VALUE_INT);
  if (!num_s || !num_t) return fg_err_set(err, FG_EDATA, "expected numbers '%s' and 'total'", sk);
  m->sum = fg_value_as_double(s);
  m->total = fg_value_as_double(t);
  return 0;
}

static const fg_metric_vtable error_vt = {error_update, error_compute, error_reset, free,
                                          error_state, error_load};

static int mse_create(const fg_class *cls, const fg_node *args, const char *keypath,
                      void **out, char **err) {
  mean_error *m = fg__xcalloc(1, sizeof *m);
  m->kind = ERR_SQUARED;
  m->squared = fg_node_bool(fg_node_get(args, "squared"));
  *out = fg_metric_create(&error_vt, m, "MeanSquaredError");
  return 0;
}

static int mae_create(const fg_class *cls, const fg_node *args, const char *keypath,
                      void **out, char **err) {
  mean_error *m = fg__xcalloc(1, sizeof *m);
  m->kind = ERR_ABSOLUTE;
  *out = fg_metric_create(&error_vt, m, "MeanAbsoluteError");
  return 0;
}

static const fg_param mse_params[] = {
    {"squared", FG_T_BOOL, "true", "false returns the root of the mean (RMSE)", NULL, 0},
};

static const char *const mse_aliases[] = {"torchmetrics.MeanSquaredError",
                                          "torchmetrics.regression.MeanSquaredError", NULL};
static const char *const mae_aliases[] = {"torchmetrics.MeanAbsoluteError",
                                          "torchmetrics.regression.MeanAbsoluteError", NULL};

const fg_class fg__mse_class = {
    .name = "fulgur.metrics.MeanSquaredError", .aliases = mse_aliases, .kind = FG_KIND_METRIC,
    .params = mse_params, .n_params = 1, .create = mse_create, .destroy = fg__metric_destroy};

const fg_class fg__mae_class = {
    .name = "fulgur.metrics.MeanAbsoluteError", .aliases = mae_aliases, .kind = FG_KIND_METRIC,
    .params = NULL, .n_params = 0, .create = mae_create, .destroy = fg__metric_destroy};

