/* CSV datasets: the table data/csv_read.c reads, as a tensor dataset. */
#include <stdlib.h>

#include "data/csv.h"
#include "fulgur/data.h"
#include "fulgur/error.h"

int fg_dataset_csv_create(const fg_csv_opts *o, fg_dataset **out, char **err) {
  fg__csv_table t = {0};
  int rc = fg__csv_read(o, &t, err);
  if (rc) return rc;
  float *xs = t.x;
  double *ys = t.y;
  size_t rows = t.rows, ncol = t.features + 1;
  fg_tensor *x = NULL, *y = NULL;
  if (rc == 0) {
    int64_t xshape[2] = {(int64_t)rows, (int64_t)ncol - 1}, yshape[1] = {(int64_t)rows};
    rc = fg_tensor_from_data(xs, FG_FLOAT32, xshape, 2, &x, err);
    if (rc == 0) rc = fg_tensor_empty(yshape, 1, o->target_long ? FG_INT64 : FG_FLOAT32, &y, err);
    if (rc == 0) {
      if (o->target_long) {
        int64_t *yd = fg_tensor_data_ptr(y);
        for (size_t i = 0; i < rows; i++) yd[i] = (int64_t)ys[i];
      } else {
        float *yd = fg_tensor_data_ptr(y);
        for (size_t i = 0; i < rows; i++) yd[i] = (float)ys[i];
      }
    }
  }
  free(xs);
  free(ys);
  if (rc) {
    fg_tensor_free(x);
    fg_tensor_free(y);
    return rc;
  }
  return fg_dataset_tensor_create(x, y, out, err);
}
