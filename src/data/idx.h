/* Reading one IDX file, apart from making a dataset of two (idx.c), so
 * the reader of outside bytes builds and fuzzes without libtorch. */
#ifndef FG_DATA_IDX_H
#define FG_DATA_IDX_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  int ndim;
  int64_t dims[4];
  uint8_t *data; /* malloc'd, size bytes */
  size_t size;
} fg__idx_file;

/* Reads an IDX file of unsigned bytes with want_ndim (1..3) dimensions,
 * .gz or plain. Its declared size is checked against the file before
 * anything that size is allocated. 0 and *out filled (the caller frees
 * out->data), or FG_EDATA / FG_EIO / FG_ENOMEM with *err naming the file. */
int fg__idx_read(const char *path, int want_ndim, fg__idx_file *out, char **err);

#endif
