/* torch.utils.data.Subset: a dataset over some indices of another, in the
 * order given; the base is shared by reference. */
#include <stdlib.h>
#include <string.h>

#include "fulgur/data.h"
#include "fulgur/error.h"
#include "util/xalloc.h"

typedef struct {
  fg_dataset *base;
  int64_t *idx;
  int64_t n;
} subset;

static int64_t subset_len(void *self) { return ((subset *)self)->n; }

/* Thread-safe as the base is: the index map is read-only. */
static int subset_get_batch(void *self, const int64_t *idx, size_t n, fg_value **out, char **err) {
  const subset *s = self;
  int64_t stack[256];
  int64_t *mapped = n <= sizeof stack / sizeof stack[0] ? stack : fg__xcalloc(n, sizeof *mapped);
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    if (idx[i] < 0 || idx[i] >= s->n)
      rc = fg_err_set(err, FG_EINVAL, "subset index %lld out of range (%lld samples)",
                      (long long)idx[i], (long long)s->n);
    else
      mapped[i] = s->idx[idx[i]];
  }
  if (rc == 0) rc = fg_dataset_get_batch(s->base, mapped, n, out, err);
  if (mapped != stack) free(mapped);
  return rc;
}

static void subset_free(void *self) {
  subset *s = self;
  fg_dataset_unref(s->base);
  free(s->idx);
  free(s);
}

static const fg_dataset_vtable subset_vt = {subset_len, subset_get_batch, subset_free};

int fg_dataset_subset_create(fg_dataset *base, const int64_t *idx, int64_t n, fg_dataset **out,
                             char **err) {
  int64_t len = fg_dataset_len(base);
  for (int64_t i = 0; i < n; i++)
    if (idx[i] < 0 || idx[i] >= len)
      return fg_err_set(err, FG_EINVAL, "subset index %lld out of range (%lld samples)",
                        (long long)idx[i], (long long)len);
  subset *s = fg__xcalloc(1, sizeof *s);
  s->base = fg_dataset_ref(base);
  s->n = n;
  s->idx = fg__xcalloc(n > 0 ? (size_t)n : 1, sizeof *s->idx);
  if (n > 0) memcpy(s->idx, idx, (size_t)n * sizeof *idx);
  *out = fg_dataset_create(&subset_vt, s);
  return 0;
}

int fg_kfold_split(int64_t n_samples, int64_t n_splits, int64_t fold, int64_t **train,
                   int64_t *n_train, int64_t **test, int64_t *n_test, char **err) {
  if (n_splits < 2)
    return fg_err_set(err, FG_EINVAL, "k-fold needs at least 2 folds, got %lld", (long long)n_splits);
  if (n_splits > n_samples)
    return fg_err_set(err, FG_EINVAL,
                      "cannot have number of splits n_splits=%lld greater than the number of "
                      "samples: n_samples=%lld",
                      (long long)n_splits, (long long)n_samples);
  if (fold < 0 || fold >= n_splits)
    return fg_err_set(err, FG_EINVAL, "fold %lld of %lld", (long long)fold, (long long)n_splits);
  /* sklearn's KFold without shuffling: n_samples // n_splits per fold, the
   * first n_samples % n_splits folds one more; fold i's test indices are
   * the i-th contiguous block. */
  int64_t base = n_samples / n_splits, extra = n_samples % n_splits;
  int64_t start = fold * base + (fold < extra ? fold : extra);
  int64_t size = base + (fold < extra ? 1 : 0);
  *n_test = size;
  *n_train = n_samples - size;
  *test = fg__xcalloc((size_t)size, sizeof **test);
  *train = fg__xcalloc(*n_train > 0 ? (size_t)*n_train : 1, sizeof **train);
  for (int64_t i = 0, t = 0; i < n_samples; i++) {
    if (i >= start && i < start + size) (*test)[i - start] = i;
    else (*train)[t++] = i;
  }
  return 0;
}
