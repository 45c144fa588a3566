/* IDX datasets: an images file and a labels file (data/idx_read.c reads
 * each), normalized into one tensor dataset. */
#include <stdlib.h>

#include "data/idx.h"
#include "fulgur/data.h"
#include "fulgur/error.h"

int fg_dataset_idx_create(const fg_idx_opts *o, fg_dataset **out, char **err) {
  if (o->std == 0) return fg_err_set(err, FG_EINVAL, "normalize: std must not be 0");
  fg__idx_file im = {0}, lb = {0};
  int rc = fg__idx_read(o->images, 3, &im, err);
  if (rc == 0) rc = fg__idx_read(o->labels, 1, &lb, err);
  if (rc == 0 && im.dims[0] != lb.dims[0])
    rc = fg_err_set(err, FG_EDATA, "'%s' has %lld images but '%s' has %lld labels", o->images,
                    (long long)im.dims[0], o->labels, (long long)lb.dims[0]);
  int64_t n = im.dims[0], start = 0, end = n;
  if (rc == 0 && o->has_subset) {
    start = o->subset_start < 0 ? o->subset_start + n : o->subset_start;
    end = o->subset_end <= 0 ? o->subset_end + n : o->subset_end;
    if (start < 0 || end > n || start >= end)
      rc = fg_err_set(err, FG_EINVAL, "subset [%lld, %lld] selects no rows of the %lld in '%s'",
                      (long long)o->subset_start, (long long)o->subset_end, (long long)n,
                      o->images);
  }
  fg_tensor *x = NULL, *y = NULL;
  /* Only a file that read: a refused one's declared dimensions may be
   * anything (2^32-1 each), and their product overflow. */
  int64_t rows = end - start, feat = rc == 0 ? im.dims[1] * im.dims[2] : 0;
  if (rc == 0) {
    int64_t xs[2] = {rows, feat}, ys[1] = {rows};
    rc = fg_tensor_empty(xs, 2, FG_FLOAT32, &x, err);
    if (rc == 0) rc = fg_tensor_empty(ys, 1, FG_INT64, &y, err);
  }
  if (rc == 0) {
    /* One lookup table: 256 byte values -> normalized floats. */
    float lut[256];
    for (int v = 0; v < 256; v++) lut[v] = (float)(((double)v / 255.0 - o->mean) / o->std);
    float *xd = fg_tensor_data_ptr(x);
    const uint8_t *src = im.data + (size_t)start * (size_t)feat;
    for (size_t i = 0; i < (size_t)(rows * feat); i++) xd[i] = lut[src[i]];
    int64_t *yd = fg_tensor_data_ptr(y);
    for (int64_t i = 0; i < rows; i++) yd[i] = lb.data[start + i];
  }
  free(im.data);
  free(lb.data);
  if (rc) {
    fg_tensor_free(x);
    fg_tensor_free(y);
    return rc;
  }
  return fg_dataset_tensor_create(x, y, out, err);
}
