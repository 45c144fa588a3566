/* IDX files (the MNIST family's format), read with zlib's gz* functions,
 * which read .gz and plain files alike, so Debian's compressed dataset
 * files load without unpacking them first.
 *
 * Format: a 4-byte magic (0, 0, type, ndim), ndim big-endian uint32 sizes,
 * then the data. Images are type 0x08 (unsigned bytes) with 3 dims; labels
 * 0x08 with 1 dim. */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#include "data/idx.h"
#include "fulgur/error.h"
#include "util/limits.h"

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

int fg__idx_read(const char *path, int want_ndim, fg__idx_file *out, char **err) {
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
  bool overflow = false;
  for (int d = 0; rc == 0 && d < want_ndim; d++) {
    uint8_t b[4];
    if ((rc = read_exact(f, b, 4, path, err))) break;
    out->dims[d] = (int64_t)b[0] << 24 | (int64_t)b[1] << 16 | (int64_t)b[2] << 8 | b[3];
    overflow |= __builtin_mul_overflow(size, (size_t)out->dims[d], &size);
  }
  /* The declared size is checked against the file before it is
   * allocated: exactly the rest of a plain file, and no more than deflate
   * can expand a .gz file's bytes to. */
  struct stat st;
  if (rc == 0 && stat(path, &st) != 0)
    rc = fg_err_set(err, FG_EIO, "cannot open '%s': %s", path, strerror(errno));
  if (rc == 0) {
    size_t header = 4 + 4 * (size_t)want_ndim;
    size_t on_disk = (size_t)st.st_size < header ? header : (size_t)st.st_size;
    char declared[32] = "more than 2^64";
    if (!overflow) snprintf(declared, sizeof declared, "%zu", size);
    if (gzdirect(f) && (overflow || size != on_disk - header))
      rc = fg_err_set(err, FG_EDATA,
                      "%s: the header declares %s bytes of data (%lld x %lld x %lld) but the file "
                      "holds %zu",
                      path, declared,
                      (long long)out->dims[0], (long long)(want_ndim > 1 ? out->dims[1] : 1),
                      (long long)(want_ndim > 2 ? out->dims[2] : 1), on_disk - header);
    else if (!gzdirect(f) && (overflow || size / FG_DEFLATE_MAX_RATIO > on_disk))
      rc = fg_err_set(err, FG_EDATA,
                      "%s: the header declares %s bytes of data, more than its %zu compressed "
                      "bytes can hold",
                      path, declared, on_disk);
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

