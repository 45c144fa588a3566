/* What the loops report, as events stamped with the loop's position:
 * logged scalars (which the loop also keeps as the latest values, for
 * monitors) and evaluator results that are files (artifacts). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fulgur/error.h"
#include "trainer/trainer.h"
#include "util/numfmt.h"
#include "util/xalloc.h"

fg_event fg__loop_event(const fg_loop *l, fg_event_kind kind, fg_split split) {
  return (fg_event){.kind = kind,
                    .split = fg_split_names[split],
                    .epoch = l->pos.epoch,
                    .global_step = l->pos.global_step,
                    .batch_idx = -1,
                    .num_batches = -1,
                    .max_epochs = l->opts->max_epochs,
                    .max_steps = l->opts->max_steps};
}

void fg__loop_log_scalars(fg_loop *l, fg_event_kind kind, fg_split split, const fg_value *d) {
  size_t n = fg_value_len(d);
  if (n == 0) return;
  const char **keys = fg__xmalloc(n * sizeof *keys);
  double *vals = fg__xmalloc(n * sizeof *vals);
  for (size_t i = 0; i < n; i++) {
    keys[i] = fg_value_dict_key_at(d, i);
    vals[i] = fg_value_as_double(fg_value_dict_value_at(d, i));
    fg_value_dict_set(l->last_metrics, keys[i], fg_value_double(vals[i]));
  }
  fg_event ev = fg__loop_event(l, kind, split);
  ev.n_values = n;
  ev.keys = keys;
  ev.values = vals;
  fg_events_emit(l->events, &ev);
  l->log_rows++;
  free(keys);
  free(vals);
}

/* Writes a tensor as CSV: one line per row (a vector is one line). */
static int write_tensor_csv(const char *path, const fg_tensor *t, char **err) {
  int64_t rows = fg_tensor_ndim(t) == 2 ? fg_tensor_size(t, 0) : 1;
  int64_t n = fg_tensor_numel(t), cols = rows ? n / rows : 0;
  double *v = malloc((size_t)(n ? n : 1) * sizeof *v);
  if (v == NULL) return fg_err_set(err, FG_ENOMEM, "artifact %s: out of memory", path);
  int rc = fg_tensor_copy_out(t, FG_FLOAT64, v, (size_t)n * sizeof *v, err);
  size_t cap = (size_t)n * 26 + (size_t)rows + 1, len = 0;
  char *text = rc == 0 ? malloc(cap) : NULL;
  if (rc == 0 && text == NULL) rc = fg_err_set(err, FG_ENOMEM, "artifact %s: out of memory", path);
  for (int64_t i = 0; rc == 0 && i < n; i++) {
    char num[32];
    fg__shortest_double(v[i], num, sizeof num);
    len += (size_t)snprintf(text + len, cap - len, "%s%s", num, (i + 1) % cols == 0 ? "\n" : ",");
  }
  if (rc == 0) rc = fg__write_file_atomic(path, text, len, err);
  free(text);
  free(v);
  return rc;
}

/* Evaluator results that are not scalars (ConfusionMatrix) leave the
 * metrics as files in <run dir>/artifacts, each announced by an artifact
 * event, as Lightning users log figures and tables beside their scalars. */
int fg__loop_keep_artifacts(fg_loop *l, fg_split split, fg_value *metrics, char **err) {
  int rc = 0;
  for (size_t i = 0; i < fg_value_len(metrics) && rc == 0;) {
    const fg_value *v = fg_value_dict_value_at(metrics, i);
    if (fg_value_kind_of(v) != FG_VALUE_TENSOR) {
      i++;
      continue;
    }
    char *key = fg__xstrdup(fg_value_dict_key_at(metrics, i));
    fg_value *t = fg_value_dict_take(metrics, key);
    if (!l->rank_zero) {
      /* Other ranks computed the same (reduced) result; rank 0 keeps it. */
      fg_value_free(t);
      free(key);
      continue;
    }
    char *dir = fg__xasprintf("%s/artifacts", l->run_dir);
    char *flat = fg__xstrdup(key);
    for (char *c = flat; *c; c++)
      if (*c == '/') *c = '-';
    bool small = fg_tensor_ndim(fg_value_as_tensor(t)) <= 2;
    char *path = fg__xasprintf("%s/%s-epoch=%lld-step=%lld.%s", dir, flat, (long long)l->pos.epoch,
                               (long long)l->pos.global_step, small ? "csv" : "pt");
    rc = fg__mkdirs(dir, err);
    if (rc == 0 && small) {
      rc = write_tensor_csv(path, fg_value_as_tensor(t), err);
    } else if (rc == 0) {
      char *buf = NULL;
      size_t len = 0;
      if ((rc = fg_value_pickle(t, &buf, &len, err)) == 0) rc = fg__write_file_atomic(path, buf, len, err);
      free(buf);
    }
    if (rc == 0) {
      fg_event ev = fg__loop_event(l, FG_EVENT_ARTIFACT, split);
      ev.text = key;
      ev.path = path;
      fg_events_emit(l->events, &ev);
    }
    free(path);
    free(flat);
    free(dir);
    free(key);
    fg_value_free(t);
  }
  return rc;
}
