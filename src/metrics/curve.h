/* The exact (thresholds=None) curve metrics, AUROC and AveragePrecision:
 * every score seen since the last reset is kept, and compute sorts them
 * once per class, with one curve point per distinct score, so tied scores
 * form one step as in TorchMetrics' _binary_clf_curve and sklearn.
 *
 * Scores are kept as doubles in growable C arrays; the sigmoid or softmax
 * that turns logits into probabilities runs in libtorch at update time
 * (per update, as in TorchMetrics), so ties and saturation are those Python
 * would see. */
#ifndef FG_METRICS_CURVE_H
#define FG_METRICS_CURVE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fulgur/config.h"
#include "fulgur/value.h"
#include "metrics/metric_util.h"

typedef struct {
  fg__metric_task task;
  int64_t cols;    /* score columns: 1 (binary), num_classes, num_labels */
  double *scores;  /* n rows of cols */
  int64_t *target; /* n labels, or n rows of cols 0/1 (-1 ignored) for multilabel */
  bool has_ignore;  /* ignore_index */
  int64_t ignore_index;
  size_t n, cap;
} fg__curve_data;

typedef struct {
  double score;
  int pos;
} fg__scored;

/* From checked init_args; close frees the kept scores. */
void fg__curve_init(fg__curve_data *d, const fg_node *args);
void fg__curve_close(fg__curve_data *d);
int fg__curve_update(fg__curve_data *d, const fg_value *kw, char **err);
void fg__curve_reset(fg__curve_data *d);
/* The kept inputs under TorchMetrics' state names "preds" (float64
 * [n, cols], [n] for binary) and "target" (int64 [n], [n, cols] for
 * multilabel), and back (sizes checked: FG_EDATA). */
int fg__curve_state(const fg__curve_data *d, fg_value **out, char **err);
int fg__curve_load(fg__curve_data *d, const fg_value *st, char **err);

/* TorchMetrics' dist_reduce_fx "cat": the n rank states' preds and
 * target, concatenated in rank order. */
int fg__curve_reduce(fg_value *const *states, int n, fg_value **out, char **err);

/* Rows in a column buffer: n, or n * cols for the flattened micro
 * average. */
size_t fg__curve_micro_len(const fg__curve_data *d);
/* Fills buf (up to n items) with column k's scores and whether each sample
 * is a positive of k, sorted by descending score, leaving out ignored
 * multilabel entries; returns the items, *npos the positives. k = -1 takes
 * every column of a multilabel problem (buf of n * cols: micro). */
size_t fg__curve_column(const fg__curve_data *d, int64_t k, fg__scored *buf, size_t *npos);

/* The areas over a sorted column with npos positives. ROC AUC is 0 when a
 * class has no positive or no negative sample (TorchMetrics; sklearn
 * raises). */
double fg__roc_auc(const fg__scored *buf, size_t n, size_t npos);
/* AP = sum over distinct thresholds of (R_n - R_n-1) * P_n; 0 without
 * positives (TorchMetrics then sets recall to 1, as sklearn does). */
double fg__average_precision(const fg__scored *buf, size_t n, size_t npos);

#endif
