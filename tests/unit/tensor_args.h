/* Small tensors and update arguments for the unit tests of metrics and
 * modules (header-only: each test is one executable). */
#ifndef FG_TESTS_TENSOR_ARGS_H
#define FG_TESTS_TENSOR_ARGS_H

#include <criterion/criterion.h>

#include "fulgur/torch.h"
#include "fulgur/value.h"

/* float32 [rows, cols] (cols 0: a vector of rows). */
static inline fg_tensor *tensor_f(const float *v, int64_t rows, int64_t cols) {
  fg_tensor *t = NULL;
  int64_t shape[2] = {rows, cols};
  cr_assert_eq(fg_tensor_from_data(v, FG_FLOAT32, shape, cols ? 2 : 1, &t, NULL), 0);
  return t;
}

/* int64 vector. */
static inline fg_tensor *tensor_l(const int64_t *v, int64_t n) {
  fg_tensor *t = NULL;
  cr_assert_eq(fg_tensor_from_data(v, FG_INT64, &n, 1, &t, NULL), 0);
  return t;
}

/* {"preds": preds, "target": target}, taking both tensors. */
static inline fg_value *kw(fg_tensor *preds, fg_tensor *target) {
  fg_value *d = fg_value_dict();
  fg_value_dict_set(d, "preds", fg_value_tensor(preds));
  fg_value_dict_set(d, "target", fg_value_tensor(target));
  return d;
}

#endif
