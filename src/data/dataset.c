/* The dataset handle (a vtable plus a reference count) and the in-memory
 * tensor dataset that every built-in reader produces.
 *
 * Batches are gathered with memcpy into a fresh tensor rather than with
 * index_select: it needs no index tensor, never touches autograd, and is
 * safe to run from several loader threads at once. A run of consecutive
 * indices (every unshuffled batch) is a zero-copy slice instead. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "fulgur/data.h"
#include "fulgur/error.h"
#include "util/xalloc.h"

struct fg_dataset {
  const fg_dataset_vtable *vt;
  void *self;
  atomic_int refs;
};

fg_dataset *fg_dataset_create(const fg_dataset_vtable *vt, void *self) {
  fg_dataset *ds = fg__xmalloc(sizeof *ds);
  ds->vt = vt;
  ds->self = self;
  atomic_init(&ds->refs, 1);
  return ds;
}

fg_dataset *fg_dataset_ref(fg_dataset *ds) {
  if (ds) atomic_fetch_add(&ds->refs, 1);
  return ds;
}

void fg_dataset_unref(fg_dataset *ds) {
  if (ds == NULL || atomic_fetch_sub(&ds->refs, 1) != 1) return;
  if (ds->vt->free) ds->vt->free(ds->self);
  free(ds);
}

int64_t fg_dataset_len(const fg_dataset *ds) { return ds->vt->len(ds->self); }

int fg_dataset_get_batch(fg_dataset *ds, const int64_t *idx, size_t n, fg_value **out,
                         char **err) {
  int64_t len = ds->vt->len(ds->self);
  for (size_t i = 0; i < n; i++)
    if (idx[i] < 0 || idx[i] >= len)
      return fg_err_set(err, FG_EINVAL, "sample index %lld is out of range (dataset of %lld)",
                        (long long)idx[i], (long long)len);
  return ds->vt->get_batch(ds->self, idx, n, out, err);
}

/* ---- the tensor dataset ---------------------------------------------------- */

typedef struct {
  fg_tensor *x, *y;
  int64_t n;
  size_t x_row, y_row; /* bytes per sample */
} tensor_ds;

static int64_t tds_len(void *self) { return ((tensor_ds *)self)->n; }

static void tds_free(void *self) {
  tensor_ds *t = self;
  fg_tensor_free(t->x);
  fg_tensor_free(t->y);
  free(t);
}

static int gather(const fg_tensor *src, size_t row, const int64_t *idx, size_t n,
                  fg_tensor **out, char **err) {
  bool consecutive = true;
  for (size_t i = 1; i < n && consecutive; i++) consecutive = idx[i] == idx[i - 1] + 1;
  if (consecutive) return fg_op_slice(src, idx[0], idx[0] + (int64_t)n, out, err);
  int64_t shape[FG_MAX_DIMS];
  int nd = fg_tensor_ndim(src);
  shape[0] = (int64_t)n;
  for (int d = 1; d < nd; d++) shape[d] = fg_tensor_size(src, d);
  fg_tensor *t = NULL;
  int rc = fg_tensor_empty(shape, nd, fg_tensor_dtype(src), &t, err);
  if (rc) return rc;
  const char *s = fg_tensor_data_ptr(src);
  char *d = fg_tensor_data_ptr(t);
  for (size_t i = 0; i < n; i++) memcpy(d + i * row, s + (size_t)idx[i] * row, row);
  *out = t;
  return 0;
}

static int tds_get_batch(void *self, const int64_t *idx, size_t n, fg_value **out, char **err) {
  tensor_ds *t = self;
  if (n == 0) return fg_err_set(err, FG_EINVAL, "empty batch");
  fg_tensor *x = NULL, *y = NULL;
  int rc = gather(t->x, t->x_row, idx, n, &x, err);
  if (rc == 0) rc = gather(t->y, t->y_row, idx, n, &y, err);
  if (rc) {
    fg_tensor_free(x);
    return rc;
  }
  fg_value *b = fg_value_dict();
  fg_value_dict_set(b, "x", fg_value_tensor(x));
  fg_value_dict_set(b, "y", fg_value_tensor(y));
  *out = b;
  return 0;
}

static const fg_dataset_vtable tensor_vt = {tds_len, tds_get_batch, tds_free};

int fg_dataset_tensor_create(fg_tensor *x, fg_tensor *y, fg_dataset **out, char **err) {
  int rc = 0;
  if (fg_tensor_ndim(x) < 1 || fg_tensor_ndim(y) != 1 || fg_tensor_size(x, 0) != fg_tensor_size(y, 0))
    rc = fg_err_set(err, FG_EINVAL, "dataset tensors disagree: x has %lld samples, y %lld",
                    (long long)fg_tensor_size(x, 0), (long long)fg_tensor_size(y, 0));
  else if (fg_tensor_dtype(x) != FG_FLOAT32 ||
           (fg_tensor_dtype(y) != FG_INT64 && fg_tensor_dtype(y) != FG_FLOAT32))
    rc = fg_err_set(err, FG_EINVAL, "dataset tensors must be float32 x and int64 or float32 y");
  if (rc) {
    fg_tensor_free(x);
    fg_tensor_free(y);
    return rc;
  }
  tensor_ds *t = fg__xcalloc(1, sizeof *t);
  t->x = x;
  t->y = y;
  t->n = fg_tensor_size(x, 0);
  t->x_row = t->n ? (size_t)(fg_tensor_numel(x) / t->n) * sizeof(float) : 0;
  t->y_row = fg_dtype_size(fg_tensor_dtype(y));
  *out = fg_dataset_create(&tensor_vt, t);
  return 0;
}
