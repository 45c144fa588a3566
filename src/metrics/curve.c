/* Score keeping and exact areas for AUROC and AveragePrecision; see
 * curve.h. */
#include "metrics/curve.h"

#include <stdlib.h>
#include <string.h>

#include "fulgur/error.h"
#include "fulgur/torch.h"
#include "util/xalloc.h"

void fg__curve_init(fg__curve_data *d, const fg_node *args) {
  memset(d, 0, sizeof *d);
  d->task = fg__metric_task_of(args);
  d->cols = fg__metric_columns(args);
  d->has_ignore = fg__metric_ignore_index(args, &d->ignore_index);
}

void fg__curve_close(fg__curve_data *d) {
  free(d->scores);
  free(d->target);
  memset(d, 0, sizeof *d);
}

void fg__curve_reset(fg__curve_data *d) { d->n = 0; }

static size_t target_cols(const fg__curve_data *d) {
  return d->task == FG__TASK_MULTILABEL ? (size_t)d->cols : 1;
}

static int reserve(fg__curve_data *d, size_t more, char **err) {
  if (d->n + more <= d->cap) return 0;
  size_t cap = d->cap ? d->cap : 256;
  while (cap < d->n + more) cap *= 2;
  double *s = realloc(d->scores, cap * (size_t)d->cols * sizeof *s);
  if (s == NULL) return fg_err_set(err, FG_ENOMEM, "out of memory keeping %zu scores", cap);
  d->scores = s;
  int64_t *t = realloc(d->target, cap * target_cols(d) * sizeof *t);
  if (t == NULL) return fg_err_set(err, FG_ENOMEM, "out of memory keeping %zu targets", cap);
  d->target = t;
  d->cap = cap;
  return 0;
}

static int append(fg__curve_data *d, const double *p, const int64_t *t, size_t n, char **err) {
  int rc = reserve(d, n, err);
  if (rc) return rc;
  memcpy(d->scores + d->n * (size_t)d->cols, p, n * (size_t)d->cols * sizeof *p);
  memcpy(d->target + d->n * target_cols(d), t, n * target_cols(d) * sizeof *t);
  d->n += n;
  return 0;
}

int fg__curve_update(fg__curve_data *d, const fg_value *kw, char **err) {
  const fg_tensor *preds, *target;
  int64_t *t = NULL;
  double *p = NULL;
  fg_tensor *kept = NULL;
  size_t n = 0;
  const int64_t *ignore = d->has_ignore ? &d->ignore_index : NULL;
  int rc = fg__metric_preds_target(kw, &preds, &target, err);
  if (rc) return rc;
  /* Binary and multiclass drop ignored samples before the sigmoid/softmax
   * decision (TorchMetrics' curve formats); multilabel masks them after. */
  switch (d->task) {
    case FG__TASK_BINARY:
      n = (size_t)fg_tensor_numel(target);
      if ((rc = fg__same_shape(preds, target, err)) == 0 &&
          (rc = fg__binary_target(target, ignore, &t, err)) == 0 &&
          (rc = fg__drop_ignored(preds, t, n, false, &kept, &n, err)) == 0)
        rc = fg__binary_probs(kept ? kept : preds, &p, err);
      break;
    case FG__TASK_MULTILABEL:
      if ((rc = fg__multilabel_target(preds, target, d->cols, ignore, &t, &n, err)) == 0)
        rc = fg__multilabel_probs(preds, d->cols, &p, err);
      break;
    case FG__TASK_MULTICLASS:
      if ((rc = fg__multiclass_target(target, d->cols, ignore, &t, &n, err)) == 0 &&
          (rc = fg__multiclass_probs(preds, d->cols, (int64_t)n, &p, err)) == 0 &&
          (rc = fg__drop_ignored(preds, t, n, true, &kept, &n, err)) == 0 && kept) {
        free(p);
        p = NULL;
        rc = fg__multiclass_probs(kept, d->cols, (int64_t)n, &p, err);
      }
      break;
  }
  if (rc == 0) rc = append(d, p, t, n, err);
  fg_tensor_free(kept);
  free(t);
  free(p);
  return rc;
}

int fg__curve_state(const fg__curve_data *d, fg_value **out, char **err) {
  fg_value *st = fg_value_dict();
  int64_t ps[2] = {(int64_t)d->n, d->cols}, ts[2] = {(int64_t)d->n, d->cols};
  int rc = fg__state_put(st, "preds", d->n ? d->scores : (const double[]){0}, FG_FLOAT64, ps,
                         d->task == FG__TASK_BINARY ? 1 : 2, err);
  if (rc == 0)
    rc = fg__state_put(st, "target", d->n ? d->target : (const int64_t[]){0}, FG_INT64, ts,
                       d->task == FG__TASK_MULTILABEL ? 2 : 1, err);
  if (rc) {
    fg_value_free(st);
    return rc;
  }
  *out = st;
  return 0;
}

/* st[key]: a tensor of `per_row` columns; *rows gets its row count. */
static int state_tensor(const fg_value *st, const char *key, int64_t per_row,
                        const fg_tensor **t, size_t *rows, char **err) {
  const fg_value *v = fg_value_dict_get(st, key);
  if (v == NULL || fg_value_kind_of(v) != FG_VALUE_TENSOR)
    return fg_err_set(err, FG_EDATA, "expected a tensor '%s'", key);
  *t = fg_value_as_tensor(v);
  int64_t numel = fg_tensor_numel(*t);
  if (numel % per_row != 0)
    return fg_err_set(err, FG_EDATA, "'%s' has %lld elements, expected rows of %lld", key,
                      (long long)numel, (long long)per_row);
  *rows = (size_t)(numel / per_row);
  return 0;
}

int fg__curve_load(fg__curve_data *d, const fg_value *st, char **err) {
  const fg_tensor *p, *t;
  size_t np = 0, nt = 0;
  int rc = state_tensor(st, "preds", d->cols, &p, &np, err);
  if (rc == 0) rc = state_tensor(st, "target", (int64_t)target_cols(d), &t, &nt, err);
  if (rc) return rc;
  if (np != nt)
    return fg_err_set(err, FG_EDATA, "'preds' has %zu rows but 'target' %zu", np, nt);
  double *ps = NULL;
  int64_t *ts = NULL;
  if ((rc = fg__tensor_doubles(p, &ps, err)) == 0 && (rc = fg__tensor_int64s(t, &ts, err)) == 0) {
    d->n = 0;
    rc = append(d, ps, ts, np, err);
  }
  free(ps);
  free(ts);
  return rc;
}

int fg__curve_reduce(fg_value *const *states, int n, fg_value **out, char **err) {
  static const char *const keys[] = {"preds", "target"};
  fg_value *res = fg_value_dict();
  const fg_tensor **ts = fg__xcalloc((size_t)(n ? n : 1), sizeof *ts);
  int rc = 0;
  for (int k = 0; k < 2 && rc == 0; k++) {
    for (int r = 0; r < n && rc == 0; r++) {
      const fg_value *v = fg_value_dict_get(states[r], keys[k]);
      if (v == NULL || fg_value_kind_of(v) != FG_VALUE_TENSOR)
        rc = fg_err_set(err, FG_EDATA, "rank %d: expected a tensor '%s'", r, keys[k]);
      else
        ts[r] = fg_value_as_tensor(v);
    }
    fg_tensor *cat = NULL;
    if (rc == 0 && (rc = fg_op_cat(ts, (size_t)n, 0, &cat, err)) == 0)
      fg_value_dict_set(res, keys[k], fg_value_tensor(cat));
  }
  free(ts);
  if (rc) {
    fg_value_free(res);
    return rc;
  }
  *out = res;
  return 0;
}

static int by_score_desc(const void *x, const void *y) {
  double a = ((const fg__scored *)x)->score, b = ((const fg__scored *)y)->score;
  return a < b ? 1 : a > b ? -1 : 0;
}

size_t fg__curve_micro_len(const fg__curve_data *d) { return d->n * (size_t)d->cols; }

size_t fg__curve_column(const fg__curve_data *d, int64_t k, fg__scored *buf, size_t *out_npos) {
  size_t cols = (size_t)d->cols, npos = 0, m = 0;
  for (size_t i = 0; i < d->n; i++)
    for (size_t c = 0; c < cols; c++) {
      if (k >= 0 && c != (size_t)k) continue;
      if (d->task == FG__TASK_MULTILABEL && d->target[i * cols + c] < 0) continue;
      buf[m].score = d->scores[i * cols + c];
      buf[m].pos = d->task == FG__TASK_MULTILABEL ? d->target[i * cols + c] == 1
                   : d->task == FG__TASK_BINARY   ? d->target[i] == 1
                                                  : d->target[i] == (int64_t)c;
      npos += (size_t)buf[m].pos;
      m++;
    }
  qsort(buf, m, sizeof *buf, by_score_desc);
  *out_npos = npos;
  return m;
}

double fg__roc_auc(const fg__scored *buf, size_t n, size_t npos) {
  double nneg = (double)(n - npos);
  if (npos == 0 || nneg == 0) return 0;
  /* Walk the thresholds from the highest score down; each distinct score
   * adds one ROC point, and the area between consecutive points is a
   * trapezoid (in counts; scaled to rates at the end). */
  double tp = 0, fp = 0, prev_tp = 0, prev_fp = 0, area = 0;
  for (size_t i = 0; i < n; i++) {
    if (buf[i].pos) tp++;
    else fp++;
    if (i + 1 < n && buf[i + 1].score == buf[i].score) continue;
    area += (fp - prev_fp) * (tp + prev_tp) / 2;
    prev_tp = tp;
    prev_fp = fp;
  }
  return area / ((double)npos * nneg);
}

double fg__average_precision(const fg__scored *buf, size_t n, size_t npos) {
  /* Without positives every threshold's precision is 0, so the one recall
   * step TorchMetrics and sklearn then make (recall 1 -> 0) adds 0. */
  if (npos == 0) return 0;
  double tp = 0, fp = 0, prev_recall = 0, ap = 0;
  for (size_t i = 0; i < n; i++) {
    if (buf[i].pos) tp++;
    else fp++;
    if (i + 1 < n && buf[i + 1].score == buf[i].score) continue;
    double recall = tp / (double)npos;
    ap += (recall - prev_recall) * (tp / (tp + fp));
    prev_recall = recall;
  }
  return ap;
}
