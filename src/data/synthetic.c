/* Seeded synthetic classification data for tests, benchmarks and quick
 * experiments. Each class has a fixed random centre (drawn from the seed);
 * a sample is its class centre plus unit Gaussian noise, so a small model
 * learns it in a few steps, and the same seed gives the same data on every
 * machine (splitmix64 and Box-Muller, no libtorch generator involved). */
#include <math.h>
#include <stdlib.h>

#include "fulgur/data.h"
#include "fulgur/error.h"
#include "util/splitmix.h"

/* Uniform in (0, 1]. */
static double uniform(uint64_t *s) { return ((fg__splitmix64(s) >> 11) + 1) * 0x1.0p-53; }

static double gaussian(uint64_t *s) {
  double u = uniform(s), v = uniform(s);
  return sqrt(-2.0 * log(u)) * cos(2.0 * M_PI * v);
}

int fg_dataset_synthetic_create(const fg_synthetic_opts *o, fg_dataset **out, char **err) {
  if (o->num_samples < 1 || o->num_classes < 1 || o->ndim < 1 || o->ndim >= FG_MAX_DIMS)
    return fg_err_set(err, FG_EINVAL, "synthetic data needs samples, classes and a shape");
  int64_t feat = 1;
  for (int d = 0; d < o->ndim; d++) {
    if (o->shape[d] < 1 || feat > INT64_MAX / o->shape[d])
      return fg_err_set(err, FG_EINVAL, "synthetic data: bad shape");
    feat *= o->shape[d];
  }
  if (o->num_samples > ((int64_t)1 << 40) / feat)
    return fg_err_set(err, FG_EINVAL, "synthetic data: %lld samples of %lld values is too large",
                      (long long)o->num_samples, (long long)feat);
  int64_t xshape[FG_MAX_DIMS] = {o->num_samples};
  for (int d = 0; d < o->ndim; d++) xshape[d + 1] = o->shape[d];
  int64_t yshape[1] = {o->num_samples};
  fg_tensor *x = NULL, *y = NULL;
  int rc = fg_tensor_empty(xshape, o->ndim + 1, FG_FLOAT32, &x, err);
  if (rc == 0) rc = fg_tensor_empty(yshape, 1, FG_INT64, &y, err);
  if (rc) {
    fg_tensor_free(x);
    return rc;
  }
  float *centres = malloc((size_t)(o->num_classes * feat) * sizeof *centres);
  if (centres == NULL) {
    fg_tensor_free(x);
    fg_tensor_free(y);
    return fg_err_set(err, FG_ENOMEM, "synthetic data: out of memory");
  }
  /* Centres come from a fixed stream (they depend on the shape and class
   * count only), samples from the seed: a val set with another seed is
   * the same task with new samples, not a new task. */
  uint64_t cs = 0xc3a5c85c97cb3127ULL;
  for (int64_t i = 0; i < o->num_classes * feat; i++) centres[i] = (float)gaussian(&cs);
  uint64_t s = o->seed * 0x9e3779b97f4a7c15ULL + 0x632be59bd9b4e019ULL;
  float *xd = fg_tensor_data_ptr(x);
  int64_t *yd = fg_tensor_data_ptr(y);
  for (int64_t i = 0; i < o->num_samples; i++) {
    int64_t c = (int64_t)(fg__splitmix64(&s) % (uint64_t)o->num_classes);
    yd[i] = c;
    for (int64_t j = 0; j < feat; j++)
      xd[i * feat + j] = centres[c * feat + j] + (float)gaussian(&s);
  }
  free(centres);
  return fg_dataset_tensor_create(x, y, out, err);
}
