/* IDX files (the MNIST family's format), read with zlib's gz* functions,
 * which read .gz and plain files alike, so Debian's compressed dataset
 * files load without unpacking them first.
 *
 * Format: a 4-byte magic (0, 0, type, ndim), ndim big-endian uint32 sizes,
 * then the data. Images are type 0x08 (unsigned bytes) with 3 dims; labels
 * 0x08 with 1 dim. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "fulgur/data.h"
#include "fulgur/error.h"
#include "util/xalloc.h"

typedef struct {
  int ndim;
  int64_t dims[4];
  uint8_t *data; /* malloc'd */
  size_t size;
} idx_file;

static int read_exact(gzFile f, void *buf, size_t n, const char *path, char **err) {
  size_t done = 0;
  while (done < n) {
    unsigned chunk = n - done > (1u << 30) ? (1u << 30) : (unsigned)(n - done);
    int got = gzread(f, (char *)buf + done, chunk);
    if (got < 0) {
      int zerr;
      const char *msg = gzerror(f, &zerr);
      return fg_err_set(err, FG_EDATA, "%s: cannot decompress: %s", path, msg);
    }
    if (got == 0)
      return fg_err_set(err, FG_EDATA, "%s: truncated (expected %zu more bytes)", path, n - done);
    done += (size_t)got;
  }
  return 0;
}

static int read_idx(const char *path, int want_ndim, idx_file *out, char **err) {
  gzFile f = gzopen(path, "rb");
  if (f == NULL)
    return fg_err_set(err, FG_EIO, "cannot open '%s': %s", path,
                      errno ? strerror(errno) : "out of memory");
  gzbuffer(f, 1 << 17);
  uint8_t magic[4];
  int rc = read_exact(f, magic, 4, path, err);
  if (rc == 0 && (magic[0] != 0 || magic[1] != 0 || magic[2] != 0x08 || magic[3] != want_ndim))
    rc = fg_err_set(err, FG_EDATA,
                    "%s: not an IDX file of unsigned bytes with %d dimensions (magic %02x %02x "
                    "%02x %02x)",
                    path, want_ndim, magic[0], magic[1], magic[2], magic[3]);
  size_t size = 1;
  for (int d = 0; rc == 0 && d < want_ndim; d++) {
    uint8_t b[4];
    if ((rc = read_exact(f, b, 4, path, err))) break;
    out->dims[d] = (int64_t)b[0] << 24 | (int64_t)b[1] << 16 | (int64_t)b[2] << 8 | b[3];
    size *= (size_t)out->dims[d];
  }
  if (rc == 0) {
    out->ndim = want_ndim;
    out->size = size;
    out->data = malloc(size ? size : 1);
    if (out->data == NULL) rc = fg_err_set(err, FG_ENOMEM, "%s: out of memory", path);
  }
  if (rc == 0) rc = read_exact(f, out->data, size, path, err);
  if (rc == 0) {
    uint8_t extra;
    if (gzread(f, &extra, 1) > 0)
      rc = fg_err_set(err, FG_EDATA, "%s: longer than its header says (%zu bytes of data)", path,
                      size);
  }
  gzclose(f);
  if (rc) {
    free(out->data);
    out->data = NULL;
  }
  return rc;
}

int fg_dataset_idx_create(const fg_idx_opts *o, fg_dataset **out, char **err) {
  if (o->std == 0) return fg_err_set(err, FG_EINVAL, "normalize: std must not be 0");
  idx_file im = {0}, lb = {0};
  int rc = read_idx(o->images, 3, &im, err);
  if (rc == 0) rc = read_idx(o->labels, 1, &lb, err);
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
  int64_t rows = end - start, feat = im.dims[1] * im.dims[2];
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
