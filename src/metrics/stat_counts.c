/* Counting for the stat-score family; see stat_counts.h. */
#include "metrics/stat_counts.h"

#include <stdlib.h>
#include <string.h>

#include "fulgur/error.h"
#include "util/xalloc.h"

void fg__stat_counts_init(fg__stat_counts *s, const fg_node *args) {
  memset(s, 0, sizeof *s);
  s->task = fg__metric_task_of(args);
  s->n = fg__metric_columns(args);
  const fg_node *k = fg_node_get(args, "top_k"), *thr = fg_node_get(args, "threshold");
  s->top_k = s->task == FG__TASK_MULTICLASS && k ? fg_node_int(k) : 1;
  s->threshold = thr ? fg_node_float(thr) : 0.5;
  s->has_ignore = fg__metric_ignore_index(args, &s->ignore_index);
  s->tp = fg__xcalloc((size_t)s->n * 4, sizeof(double));
  s->fp = s->tp + s->n;
  s->tn = s->fp + s->n;
  s->fn = s->tn + s->n;
}

void fg__stat_counts_close(fg__stat_counts *s) {
  free(s->tp);
  s->tp = s->fp = s->tn = s->fn = NULL;
}

void fg__stat_counts_reset(fg__stat_counts *s) {
  memset(s->tp, 0, (size_t)s->n * 4 * sizeof(double));
}

/* One binary decision in column c; an ignored target (-1) counts nowhere,
 * as TorchMetrics' masked target matches neither 0 nor 1. */
static void count(fg__stat_counts *s, int64_t c, int64_t pred, int64_t target) {
  if (target < 0) return;
  if (pred && target) s->tp[c]++;
  else if (pred) s->fp[c]++;
  else if (target) s->fn[c]++;
  else s->tn[c]++;
}

int fg__stat_counts_update(fg__stat_counts *s, const fg_value *kw, char **err) {
  const fg_tensor *preds, *target;
  int64_t *t = NULL, *p = NULL;
  size_t n = 0;
  const int64_t *ignore = s->has_ignore ? &s->ignore_index : NULL;
  int rc = fg__metric_preds_target(kw, &preds, &target, err);
  if (rc) return rc;
  switch (s->task) {
    case FG__TASK_BINARY:
      n = (size_t)fg_tensor_numel(target);
      if ((rc = fg__same_shape(preds, target, err)) || (rc = fg__binary_target(target, ignore, &t, err)) ||
          (rc = fg__binary_pred_labels(preds, s->threshold, &p, err)))
        break;
      for (size_t i = 0; i < n; i++) count(s, 0, p[i], t[i]);
      break;
    case FG__TASK_MULTILABEL:
      if ((rc = fg__multilabel_target(preds, target, s->n, ignore, &t, &n, err)) ||
          (rc = fg__multilabel_pred_labels(preds, s->n, s->threshold, &p, err)))
        break;
      for (size_t i = 0; i < n; i++)
        for (int64_t c = 0; c < s->n; c++) {
          size_t at = i * (size_t)s->n + (size_t)c;
          count(s, c, p[at], t[at]);
        }
      break;
    case FG__TASK_MULTICLASS:
      if ((rc = fg__multiclass_target(target, s->n, ignore, &t, &n, err)) ||
          (rc = fg__multiclass_pred_labels(preds, target, t, n, s->n, s->top_k, &p, err)))
        break;
      /* One-vs-rest per class: a right sample is a tp of its class, a wrong
       * one a fp of the predicted and a fn of the true class; each class it
       * does not touch gains a tn. Ignored samples are left out. */
      size_t kept = 0;
      for (size_t i = 0; i < n; i++) {
        if (t[i] < 0) continue;
        kept++;
        if (p[i] == t[i]) {
          s->tp[t[i]]++;
        } else {
          s->fp[p[i]]++;
          s->fn[t[i]]++;
        }
        s->tn[p[i]]--;
        if (p[i] != t[i]) s->tn[t[i]]--;
      }
      for (int64_t c = 0; c < s->n; c++) s->tn[c] += (double)kept;
      break;
  }
  free(t);
  free(p);
  return rc;
}

int fg__stat_counts_state(const fg__stat_counts *s, fg_value **out, char **err) {
  fg_value *st = fg_value_dict();
  const char *names[] = {"tp", "fp", "tn", "fn"};
  const double *v[] = {s->tp, s->fp, s->tn, s->fn};
  int rc = 0;
  for (int i = 0; i < 4 && rc == 0; i++)
    rc = fg__state_put(st, names[i], v[i], FG_FLOAT64, &s->n, 1, err);
  if (rc) {
    fg_value_free(st);
    return rc;
  }
  *out = st;
  return 0;
}

int fg__stat_counts_load(fg__stat_counts *s, const fg_value *st, char **err) {
  size_t c = (size_t)s->n;
  double *all = fg__xmalloc(c * 4 * sizeof *all);
  const char *names[] = {"tp", "fp", "tn", "fn"};
  int rc = 0;
  for (int i = 0; i < 4 && rc == 0; i++)
    rc = fg__state_get(st, names[i], all + (size_t)i * c, FG_FLOAT64, s->n, err);
  if (rc == 0) memcpy(s->tp, all, c * 4 * sizeof *all);
  free(all);
  return rc;
}
