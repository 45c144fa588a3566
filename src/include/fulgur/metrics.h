/* Evaluators with TorchMetrics semantics: update(**kwargs) accumulates,
 * compute() gives the result over everything since the last reset(). */
#ifndef FULGUR_METRICS_H
#define FULGUR_METRICS_H

#include <stdbool.h>

#include "fulgur/value.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fg_metric fg_metric;

typedef struct {
  /* kwargs: a dict value ({"preds": T, "target": T} or {"value": T}). */
  int (*update)(void *self, const fg_value *kwargs, char **err);
  /* *out: a number (double value) or a dict/tensor for composite results. */
  int (*compute)(void *self, fg_value **out, char **err);
  void (*reset)(void *self);
  void (*free)(void *self);
  /* Optional: the accumulated state as a dict of numbers or tensors
   * (TorchMetrics' state names where there is one), and back; kept in
   * checkpoints by evaluator_as_submodule and by a pause inside an epoch.
   * load_state_dict gets what state_dict gave (possibly read back from a
   * file) and checks its keys and sizes. */
  int (*state_dict)(void *self, fg_value **out, char **err);
  int (*load_state_dict)(void *self, const fg_value *state, char **err);
  /* The keyword arguments update takes, NULL-terminated; {"*", NULL} takes
   * any; NULL means {"preds", "target"}. A MetricCollection passes each
   * member only what it takes, as TorchMetrics' _filter_kwargs does. */
  const char *const *arg_names;
  /* Optional: combines the state dicts this metric gave on n ranks into
   * one for load_state_dict (TorchMetrics' dist_reduce_fx); NULL sums every
   * entry, which is right for counts. */
  int (*reduce_states)(void *self, fg_value *const *states, int n, fg_value **out, char **err);
} fg_metric_vtable;

/* name: the class name used when compute returns a non-dict ("Accuracy"). */
fg_metric *fg_metric_create(const fg_metric_vtable *vt, void *self,
                            const char *name);
void fg_metric_free(fg_metric *m);
const char *fg_metric_name(const fg_metric *m);
int fg_metric_update(fg_metric *m, const fg_value *kwargs, char **err);
int fg_metric_compute(fg_metric *m, fg_value **out, char **err);
void fg_metric_reset(fg_metric *m);
bool fg_metric_has_state(const fg_metric *m);
/* Whether update takes the keyword argument `name`. */
bool fg_metric_takes(const fg_metric *m, const char *name);
int fg_metric_state_dict(const fg_metric *m, fg_value **out, char **err);
int fg_metric_load_state_dict(fg_metric *m, const fg_value *state, char **err);
/* The state of the metric over every rank from the state dicts it gave on
 * n ranks (in rank order), as TorchMetrics' dist_reduce_fx: counts are
 * summed, kept inputs (AUROC's and AveragePrecision's preds and target)
 * concatenated in rank order. *out is a new dict the caller frees.
 * FG_EUNSUPPORTED for a metric without a state. */
int fg_metric_reduce_states(const fg_metric *m, fg_value *const *states, int n, fg_value **out,
                            char **err);

#ifdef __cplusplus
}
#endif
#endif
