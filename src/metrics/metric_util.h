/* Helpers shared by the metric classes under src/metrics/: keyword
 * argument checks, TorchMetrics' input formatting (logits to probabilities,
 * scores to labels) done on copied-out C arrays, and the config rules every
 * task-wrapper class (Precision, ConfusionMatrix, AUROC, ...) shares.
 *
 * Ownership: arrays handed out through `**out` parameters are malloc'd;
 * the caller frees them with free(). They are input-sized, so running out
 * of memory is FG_ENOMEM rather than an abort. */
#ifndef FG_METRICS_METRIC_UTIL_H
#define FG_METRICS_METRIC_UTIL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fulgur/config.h"
#include "fulgur/metrics.h"
#include "fulgur/registry.h"
#include "fulgur/value.h"

typedef enum { FG__TASK_BINARY, FG__TASK_MULTICLASS, FG__TASK_MULTILABEL } fg__metric_task;

/* ---- update arguments ----------------------------------------------------- */

/* Checks that kwargs holds exactly "preds" and "target", both tensors, as
 * Python's binding of update(preds, target) would. */
int fg__metric_preds_target(const fg_value *kw, const fg_tensor **preds,
                            const fg_tensor **target, char **err);

bool fg__dtype_is_float(fg_dtype d);

/* Copies every element, converted, into a new array of numel items. */
int fg__tensor_doubles(const fg_tensor *t, double **out, char **err);
int fg__tensor_int64s(const fg_tensor *t, int64_t **out, char **err);

/* Fails unless preds and target have the same shape (TorchMetrics'
 * _check_same_shape). */
int fg__same_shape(const fg_tensor *preds, const fg_tensor *target, char **err);

/* ignore_index (NULL: none; TorchMetrics' ignore_index): target entries of
 * that value are allowed whatever their range and come out as -1, for the
 * caller to leave out. */

/* Binary targets: integer tensors of 0 and 1. *out gets numel labels. */
int fg__binary_target(const fg_tensor *target, const int64_t *ignore_index, int64_t **out,
                      char **err);

/* Binary predictions as probabilities: float preds with any value outside
 * [0, 1] are logits and go through torch's sigmoid (in their own dtype, so
 * ties and saturation match Python). Integer preds are an error: scores are
 * needed. *out gets numel values. */
int fg__binary_probs(const fg_tensor *preds, double **out, char **err);

/* Binary predictions as 0/1 labels: float preds become probabilities as
 * above and are compared with the threshold in their own dtype; integer
 * preds must already be 0 or 1. *out gets numel labels. */
int fg__binary_pred_labels(const fg_tensor *preds, double threshold, int64_t **out,
                           char **err);

/* Multiclass targets: integers in [0, num_classes). *n gets their count. */
int fg__multiclass_target(const fg_tensor *target, int64_t num_classes,
                          const int64_t *ignore_index, int64_t **out, size_t *n, char **err);

/* TorchMetrics' curve formats drop ignored samples before the sigmoid or
 * softmax decision: *kept gets preds without the samples whose formatted
 * target t is -1 (flattened elements, or rows along dim 0 when rows), and
 * t is compacted in place to *n_kept items. *kept is NULL when nothing is
 * ignored (use preds). */
int fg__drop_ignored(const fg_tensor *preds, int64_t *t, size_t n, bool rows, fg_tensor **kept,
                     size_t *n_kept, char **err);

/* Multiclass predictions as one label per target: float preds [N, C] are
 * scores (argmax, or with top_k > 1 the target when it is among the k best
 * and the best class otherwise, as TorchMetrics does since its late-2024
 * top_k fix); preds shaped like target are labels. `target` holds the n
 * formatted target labels. */
int fg__multiclass_pred_labels(const fg_tensor *preds, const fg_tensor *target_t,
                               const int64_t *target, size_t n, int64_t num_classes,
                               int64_t top_k, int64_t **out, char **err);

/* Multiclass scores: float preds [N, C]; when any value lies outside
 * [0, 1] the rows go through torch's softmax. *out gets N*C values. */
int fg__multiclass_probs(const fg_tensor *preds, int64_t num_classes, int64_t n_target,
                         double **out, char **err);

/* Multilabel inputs: preds and target of one shape [N, num_labels, ...],
 * read as rows of num_labels columns, one row per sample and position in
 * the trailing dimensions (TorchMetrics' transpose(0, 1).reshape(L, -1).T).
 * *rows gets their count; *out gets rows * num_labels items, row-major. The
 * target holds 0 and 1; float preds are probabilities or logits (a sigmoid
 * when any value is outside [0, 1]), compared with threshold for labels;
 * integer preds are 0/1 labels. */
int fg__multilabel_target(const fg_tensor *preds, const fg_tensor *target, int64_t num_labels,
                          const int64_t *ignore_index, int64_t **out, size_t *rows, char **err);
int fg__multilabel_probs(const fg_tensor *preds, int64_t num_labels, double **out, char **err);
int fg__multilabel_pred_labels(const fg_tensor *preds, int64_t num_labels, double threshold,
                               int64_t **out, char **err);

/* ---- results ---------------------------------------------------------------- */

/* *out: a float32 tensor value of n items, rounded from doubles. */
int fg__value_float_vector(const double *v, int64_t n, fg_value **out, char **err);

/* ---- states (evaluator_as_submodule, pause checkpoints) ------------------------- */

/* st[key] = a tensor of `dtype` and `shape` copied from v. */
int fg__state_put(fg_value *st, const char *key, const void *v, fg_dtype dtype, const int64_t *shape,
                  int ndim, char **err);
/* Copies st[key], a tensor of exactly numel elements, into v as `dtype`;
 * FG_EDATA names the key when it is missing or of another size. */
int fg__state_get(const fg_value *st, const char *key, void *v, fg_dtype dtype, int64_t numel,
                  char **err);

/* For wrappers whose state holds a member's under "<prefix><key>": reduces
 * that member's entries of the n rank states (fg_metric_reduce_states) and
 * adds them to `into` under the same keys. */
int fg__reduce_member_states(const fg_metric *member, fg_value *const *states, int n,
                             const char *prefix, fg_value *into, char **err);

/* ---- config --------------------------------------------------------------------- */

/* fg_param checks: task is binary or multiclass, or (for the classes that
 * have it) multilabel too. */
int fg__check_task(const fg_node *v, const char *keypath, char **err);
int fg__check_task_multilabel(const fg_node *v, const char *keypath, char **err);
/* multidim_average: only 'global' is computed by this build. */
int fg__check_global(const fg_node *v, const char *keypath, char **err);
/* ignore_index of checked init_args into *out; false when null or absent. */
bool fg__metric_ignore_index(const fg_node *args, int64_t *out);
int fg__check_unit_interval(const fg_node *v, const char *keypath, char **err);

/* The task of checked init_args. */
fg__metric_task fg__metric_task_of(const fg_node *args);
/* num_classes of checked init_args, or 0 when null or absent. */
int64_t fg__metric_num_classes(const fg_node *args);
/* num_labels of checked init_args, or 0 when null or absent. */
int64_t fg__metric_num_labels(const fg_node *args);
/* The columns a task counts: 1 (binary), num_classes or num_labels. */
int64_t fg__metric_columns(const fg_node *args);

/* Cross-field rules of the task wrappers, for a class's check hook:
 * multiclass needs num_classes >= 2, and top_k (when the class has one and
 * it is given) lies in 1..num_classes; multilabel needs num_labels >= 2.
 * Errors name keypath.num_classes, keypath.num_labels or keypath.top_k. */
int fg__check_task_args(fg_node *args, const char *keypath, char **err);

/* A config error at keypath.key, pointing at that value (or at args when the
 * key is absent). Returns FG_ECONFIG. */
int fg__metric_arg_error(char **err, const fg_node *args, const char *keypath,
                         const char *key, const char *fmt, ...)
    __attribute__((format(printf, 5, 6)));

/* The destroy callback every metric class uses. */
void fg__metric_destroy(void *obj);

#endif
