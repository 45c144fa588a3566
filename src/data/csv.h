/* Reading a CSV file into a numeric table, apart from making a dataset of
 * it (csv.c), so the reader of outside bytes builds and fuzzes without
 * libtorch. */
#ifndef FG_DATA_CSV_H
#define FG_DATA_CSV_H

#include <stddef.h>

#include "fulgur/data.h"

typedef struct {
  float *x;   /* rows x features, row-major, malloc'd */
  double *y;  /* rows targets, malloc'd */
  size_t rows, features;
} fg__csv_table;

/* Reads o->path: every row must have the first row's columns, each a
 * number; o->target names the target column. 0 and *out filled (the caller
 * frees x and y), or FG_EDATA / FG_EINVAL / FG_EIO / FG_ENOMEM with *err
 * naming file:line and the column. */
int fg__csv_read(const fg_csv_opts *o, fg__csv_table *out, char **err);

#endif
