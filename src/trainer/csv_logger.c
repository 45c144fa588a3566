/* CSVLogger: metrics.csv in Lightning's layout. One row per logging call,
 * columns = every key ever logged plus epoch and step, sorted by name, empty
 * cells for keys a row lacks. When a new key appears the file is rewritten
 * with the wider header, as Lightning's CSVLogger does; otherwise rows are
 * appended every flush_every rows, and at every checkpoint. Rows are kept
 * in memory for those rewrites (a long run logs thousands of rows, not
 * millions).
 *
 * A continued run (one run per job: resumed, retried) reads the file's
 * rows back and keeps as many as its checkpoint counted (FG_CONTINUED_STATE
 * in trainer.h); the rest were logged after the checkpoint and come
 * again, so every row is in the file once. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fulgur/error.h"
#include "trainer/trainer.h"
#include "util/file.h"
#include "util/numfmt.h"
#include "util/xalloc.h"

typedef struct {
  size_t n;
  char **keys;
  double *values;
} row;

typedef struct {
  char *path;
  int64_t flush_every;
  char **cols;
  size_t n_cols;
  row *rows;
  size_t n_rows, cap_rows;
  size_t n_written;   /* rows already in the file */
  bool header_dirty;  /* the file's header lacks a column */
  int error;          /* first write failure, reported at close */
  char *error_msg;
} csv_logger;

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

static void add_col(csv_logger *c, const char *k) {
  for (size_t i = 0; i < c->n_cols; i++)
    if (strcmp(c->cols[i], k) == 0) return;
  c->cols = fg__xrealloc(c->cols, (c->n_cols + 1) * sizeof *c->cols);
  c->cols[c->n_cols++] = fg__xstrdup(k);
  qsort(c->cols, c->n_cols, sizeof *c->cols, cmp_str);
  c->header_dirty = true;
}

static void write_row(FILE *f, const csv_logger *c, const row *r) {
  for (size_t i = 0; i < c->n_cols; i++) {
    if (i) fputc(',', f);
    for (size_t k = 0; k < r->n; k++) {
      if (strcmp(r->keys[k], c->cols[i]) != 0) continue;
      char buf[64];
      if (strcmp(r->keys[k], "epoch") == 0 || strcmp(r->keys[k], "step") == 0)
        snprintf(buf, sizeof buf, "%lld", (long long)r->values[k]);
      else
        fg__py_float_repr(r->values[k], buf, sizeof buf);
      fputs(buf, f);
      break;
    }
  }
  fputc('\n', f);
}

static int flush_rows(csv_logger *c, char **err) {
  if (c->n_written == c->n_rows && !c->header_dirty) return 0;
  if (c->header_dirty) {
    /* Rewrite everything under the new header, atomically. */
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    if (f == NULL) return fg_err_set(err, FG_ENOMEM, "metrics.csv: out of memory");
    for (size_t i = 0; i < c->n_cols; i++) fprintf(f, "%s%s", i ? "," : "", c->cols[i]);
    fputc('\n', f);
    for (size_t i = 0; i < c->n_rows; i++) write_row(f, c, &c->rows[i]);
    fclose(f);
    int rc = fg__write_file_atomic(c->path, buf, len, err);
    free(buf);
    if (rc) return rc;
    c->header_dirty = false;
  } else {
    FILE *f = fopen(c->path, "a");
    if (f == NULL) return fg_err_set(err, FG_EIO, "cannot write %s: %s", c->path, strerror(errno));
    for (size_t i = c->n_written; i < c->n_rows; i++) write_row(f, c, &c->rows[i]);
    if (fclose(f) != 0) return fg_err_set(err, FG_EIO, "cannot write %s: %s", c->path, strerror(errno));
  }
  c->n_written = c->n_rows;
  return 0;
}

static row *new_row(csv_logger *c) {
  if (c->n_rows == c->cap_rows) {
    c->cap_rows = c->cap_rows ? c->cap_rows * 2 : 256;
    c->rows = fg__xrealloc(c->rows, c->cap_rows * sizeof *c->rows);
  }
  row *r = &c->rows[c->n_rows++];
  *r = (row){0};
  return r;
}

static void row_free(row *r) {
  for (size_t k = 0; k < r->n; k++) free(r->keys[k]);
  free(r->keys);
  free(r->values);
}

/* Keeps the first n rows (n < 0: all) and the columns they use; the file
 * is rewritten at the next flush. */
static void keep_rows(csv_logger *c, int64_t n) {
  if (n < 0 || (size_t)n >= c->n_rows) return;
  for (size_t i = (size_t)n; i < c->n_rows; i++) row_free(&c->rows[i]);
  c->n_rows = (size_t)n;
  for (size_t i = 0; i < c->n_cols; i++) free(c->cols[i]);
  free(c->cols);
  c->cols = NULL;
  c->n_cols = 0;
  for (size_t i = 0; i < c->n_rows; i++)
    for (size_t k = 0; k < c->rows[i].n; k++) add_col(c, c->rows[i].keys[k]);
  c->n_written = 0;
  c->header_dirty = true;
}

static void csv_emit(void *self, const fg_event *ev) {
  csv_logger *c = self;
  if (ev->kind == FG_EVENT_STATE && ev->text && strcmp(ev->text, FG_CONTINUED_STATE) == 0) {
    for (size_t i = 0; i < ev->n_values; i++)
      if (strcmp(ev->keys[i], FG_CONTINUED_ROWS) == 0) keep_rows(c, (int64_t)ev->values[i]);
    if (c->error == 0) c->error = flush_rows(c, &c->error_msg);
    return;
  }
  /* What a checkpoint counts is in the file when it is written. */
  if (ev->kind == FG_EVENT_ARTIFACT && ev->text && strcmp(ev->text, "checkpoint") == 0) {
    if (c->error == 0) c->error = flush_rows(c, &c->error_msg);
    return;
  }
  if ((ev->kind != FG_EVENT_STEP && ev->kind != FG_EVENT_EPOCH) || ev->n_values == 0) return;
  row *r = new_row(c);
  r->n = ev->n_values + 2;
  r->keys = fg__xmalloc(r->n * sizeof *r->keys);
  r->values = fg__xmalloc(r->n * sizeof *r->values);
  for (size_t i = 0; i < ev->n_values; i++) {
    r->keys[i] = fg__xstrdup(ev->keys[i]);
    r->values[i] = ev->values[i];
    add_col(c, ev->keys[i]);
  }
  int64_t step = fg__logged_step(ev);
  r->keys[ev->n_values] = fg__xstrdup("epoch");
  r->values[ev->n_values] = (double)ev->epoch;
  r->keys[ev->n_values + 1] = fg__xstrdup("step");
  r->values[ev->n_values + 1] = (double)step;
  add_col(c, "epoch");
  add_col(c, "step");
  bool due = ev->kind == FG_EVENT_EPOCH || (int64_t)(c->n_rows - c->n_written) >= c->flush_every;
  if (due && c->error == 0) {
    c->error = flush_rows(c, &c->error_msg);
  }
}

static int csv_close(void *self, char **err) {
  csv_logger *c = self;
  int rc = c->error;
  if (rc == 0) rc = flush_rows(c, err);
  else if (err && *err == NULL) *err = c->error_msg, c->error_msg = NULL;
  for (size_t i = 0; i < c->n_rows; i++) row_free(&c->rows[i]);
  for (size_t i = 0; i < c->n_cols; i++) free(c->cols[i]);
  free(c->cols);
  free(c->rows);
  free(c->error_msg);
  free(c->path);
  free(c);
  return rc;
}

/* The next comma-separated cell of *s (NUL-terminated in place). */
static char *next_cell(char **s) {
  char *cell = *s, *comma = strchr(cell, ',');
  if (comma) {
    *comma = '\0';
    *s = comma + 1;
  } else {
    *s = cell + strlen(cell);
  }
  return cell;
}

/* Reads back a file this logger wrote: its header and rows, as they were
 * logged (an empty cell is a key the row did not have). */
static int load_existing(csv_logger *c, char **err) {
  char *text = NULL;
  size_t len = 0;
  if (access(c->path, F_OK) != 0) return 0;
  int rc = fg__read_file(c->path, &text, &len, err);
  if (rc) return rc;
  /* Rows end in \n, or \r\n when another tool rewrote the file. */
  for (char *p = text; (p = strchr(p, '\r'));) *p++ = '\n';
  char *save = NULL, *line = strtok_r(text, "\n", &save);
  char **header = NULL;
  size_t n_header = 0;
  for (char *p = line; p && *p;) {
    header = fg__xrealloc(header, (n_header + 1) * sizeof *header);
    header[n_header++] = next_cell(&p);
  }
  for (size_t i = 0; i < n_header; i++) add_col(c, header[i]);
  int64_t lineno = 1;
  while (rc == 0 && (line = strtok_r(NULL, "\n", &save))) {
    lineno++;
    row *r = new_row(c);
    r->keys = fg__xcalloc(n_header + 1, sizeof *r->keys);
    r->values = fg__xcalloc(n_header + 1, sizeof *r->values);
    char *p = line;
    for (size_t i = 0; i < n_header && rc == 0; i++) {
      char *cell = next_cell(&p), *end = NULL;
      if (cell[0] == '\0') continue;
      double v = strtod(cell, &end);
      if (*end != '\0') {
        rc = fg_err_set(err, FG_EDATA, "%s:%lld: column %s: '%s' is not a number (cannot continue this run's metrics)",
                        c->path, (long long)lineno, header[i], cell);
        break;
      }
      r->keys[r->n] = fg__xstrdup(header[i]);
      r->values[r->n++] = v;
    }
  }
  free(header);
  free(text);
  c->n_written = c->n_rows;
  c->header_dirty = false;
  return rc;
}

int fg__csv_logger_create(const char *path, int64_t flush_every, bool continuing, fg_sink *out,
                          char **err) {
  csv_logger *c = fg__xcalloc(1, sizeof *c);
  c->path = fg__xstrdup(path);
  c->flush_every = flush_every > 0 ? flush_every : 100;
  int rc = continuing ? load_existing(c, err) : 0;
  if (rc) {
    c->error = rc; /* the file stays as it is */
    csv_close(c, NULL);
    return rc;
  }
  *out = (fg_sink){csv_emit, csv_close, c};
  return 0;
}
