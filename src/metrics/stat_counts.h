/* Per-class true/false positive/negative counts, as TorchMetrics' stat-score
 * family (StatScores, Precision, Recall, F1Score) accumulates them for its
 * three tasks. Counts are doubles: exact up to 2^53, far beyond any run.
 *
 * binary: one column, every element of preds/target is a sample.
 * multiclass: num_classes columns; each sample has exactly one predicted
 *   label (with top_k > 1, the target when it is among the k best scores,
 *   else the best class, as TorchMetrics since its late-2024 top_k fix).
 * multilabel: num_labels columns, each a binary problem. */
#ifndef FG_METRICS_STAT_COUNTS_H
#define FG_METRICS_STAT_COUNTS_H

#include <stdbool.h>
#include <stdint.h>

#include "fulgur/config.h"
#include "fulgur/value.h"
#include "metrics/metric_util.h"

typedef struct {
  fg__metric_task task;
  int64_t n; /* columns */
  int64_t top_k;
  double threshold;
  bool has_ignore; /* ignore_index: target entries left out */
  int64_t ignore_index;
  double *tp, *fp, *tn, *fn; /* n each, one allocation */
} fg__stat_counts;

/* Reads task, num_classes/num_labels, top_k, threshold and ignore_index
 * from checked
 * init_args (absent keys take their defaults). Close releases the counts. */
void fg__stat_counts_init(fg__stat_counts *s, const fg_node *args);
void fg__stat_counts_close(fg__stat_counts *s);
/* Adds one update(preds, target); on error nothing is counted. */
int fg__stat_counts_update(fg__stat_counts *s, const fg_value *kw, char **err);
void fg__stat_counts_reset(fg__stat_counts *s);
/* The counts under TorchMetrics' state names tp, fp, tn, fn (float64
 * vectors of n), and back; load checks keys and sizes (FG_EDATA). */
int fg__stat_counts_state(const fg__stat_counts *s, fg_value **out, char **err);
int fg__stat_counts_load(fg__stat_counts *s, const fg_value *st, char **err);

#endif
