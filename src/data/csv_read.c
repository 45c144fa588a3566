/* CSV datasets: one target column, every other column a numeric feature.
 * Fields may be double-quoted (RFC 4180, "" for a quote inside); quoted
 * newlines are not supported in a numeric table and are reported. Errors
 * name file:line and the column, the way a user would look them up. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/csv.h"
#include "fulgur/error.h"
#include "util/limits.h"
#include "util/xalloc.h"

typedef struct {
  char **f;
  size_t n, cap;
} fields;

static void fields_clear(fields *fs) {
  for (size_t i = 0; i < fs->n; i++) free(fs->f[i]);
  fs->n = 0;
}

static void fields_push(fields *fs, const char *s, size_t len) {
  if (fs->n == fs->cap) {
    fs->cap = fs->cap ? fs->cap * 2 : 16;
    fs->f = fg__xrealloc(fs->f, fs->cap * sizeof *fs->f);
  }
  /* Trim surrounding blanks, as pandas' skipinitialspace users expect. */
  while (len && (*s == ' ' || *s == '\t')) s++, len--;
  while (len && (s[len - 1] == ' ' || s[len - 1] == '\t')) len--;
  fs->f[fs->n++] = fg__xstrndup(s, len);
}

/* Splits one line (without its newline) into fields. */
static int split_line(const char *line, fields *fs, const char *path, long lineno, char **err) {
  fields_clear(fs);
  const char *p = line;
  /* One scratch buffer for the line's quoted fields (one per field would
   * make a line of many short quoted fields quadratic). */
  char *buf = NULL;
  for (;;) {
    while (*p == ' ' || *p == '\t') p++;
    if (*p == '"') {
      if (buf == NULL) buf = fg__xmalloc(strlen(p) + 1);
      size_t len = 0;
      p++;
      for (;;) {
        if (*p == '\0') {
          free(buf);
          return fg_err_set(err, FG_EDATA, "%s:%ld: unterminated quoted field", path, lineno);
        }
        if (*p == '"' && p[1] == '"') {
          buf[len++] = '"';
          p += 2;
        } else if (*p == '"') {
          p++;
          break;
        } else {
          buf[len++] = *p++;
        }
      }
      fields_push(fs, buf, len);
      while (*p == ' ' || *p == '\t') p++;
      if (*p != ',' && *p != '\0') {
        free(buf);
        return fg_err_set(err, FG_EDATA, "%s:%ld: text after a closing quote", path, lineno);
      }
    } else {
      const char *end = strchr(p, ',');
      size_t len = end ? (size_t)(end - p) : strlen(p);
      fields_push(fs, p, len);
      p += len;
    }
    if (*p != ',') break;
    p++;
  }
  free(buf);
  return 0;
}

static bool blank(const char *s) {
  for (; *s; s++)
    if (*s != ' ' && *s != '\t') return false;
  return true;
}

int fg__csv_read(const fg_csv_opts *o, fg__csv_table *out, char **err) {
  FILE *f = fopen(o->path, "r");
  if (f == NULL)
    return fg_err_set(err, FG_EIO, "cannot open '%s': %s", o->path,
                      strerror(errno));
  fields fs = {0};
  char **names = NULL;
  size_t ncol = 0;
  long target = -1;
  float *xs = NULL;
  double *ys = NULL;
  size_t rows = 0, cap = 0;
  char *line = NULL;
  size_t lcap = 0;
  long lineno = 0;
  int rc = 0;
  ssize_t got;
  while (rc == 0 && (got = getline(&line, &lcap, f)) >= 0) {
    lineno++;
    if ((size_t)got > FG_CSV_MAX_LINE_BYTES) {
      rc = fg_err_set(err, FG_EDATA, "%s:%ld: a line of %zd bytes (the limit is %u bytes)", o->path,
                      lineno, got, FG_CSV_MAX_LINE_BYTES);
      break;
    }
    while (got > 0 && (line[got - 1] == '\n' || line[got - 1] == '\r')) line[--got] = '\0';
    if (lineno == 1 && (unsigned char)line[0] == 0xef && (unsigned char)line[1] == 0xbb &&
        (unsigned char)line[2] == 0xbf)
      memmove(line, line + 3, (size_t)got - 2); /* UTF-8 byte order mark */
    if (blank(line)) continue;
    if ((rc = split_line(line, &fs, o->path, lineno, err))) break;
    if (fs.n > FG_CSV_MAX_COLUMNS) {
      rc = fg_err_set(err, FG_EDATA, "%s:%ld: %zu columns (the limit is %u)", o->path, lineno, fs.n,
                      FG_CSV_MAX_COLUMNS);
      break;
    }
    if (ncol == 0) {
      /* The first row fixes the columns (and names them with a header). */
      ncol = fs.n;
      names = fg__xcalloc(ncol, sizeof *names);
      for (size_t c = 0; c < ncol; c++)
        names[c] = o->header ? fg__xstrdup(fs.f[c]) : fg__xasprintf("%zu", c);
      for (size_t c = 0; c < ncol; c++)
        if (strcmp(names[c], o->target) == 0) target = (long)c;
      if (target < 0) {
        rc = fg_err_set(err, FG_EINVAL, "%s:%ld: no column named '%s' for the target%s", o->path,
                        lineno, o->target,
                        o->header ? "" : " (without a header, columns are named 0, 1, ...)");
        break;
      }
      if (ncol < 2) {
        rc = fg_err_set(err, FG_EDATA, "%s:%ld: need a target and at least one feature column",
                        o->path, lineno);
        break;
      }
      if (o->header) continue;
    }
    if (fs.n != ncol) {
      rc = fg_err_set(err, FG_EDATA, "%s:%ld: expected %zu columns, got %zu", o->path, lineno,
                      ncol, fs.n);
      break;
    }
    if (rows == cap) {
      cap = cap ? cap * 2 : 1024;
      size_t xbytes;
      bool too_big = __builtin_mul_overflow(cap, (ncol - 1) * sizeof *xs, &xbytes);
      float *nx = too_big ? NULL : realloc(xs, xbytes);
      double *ny = nx ? realloc(ys, cap * sizeof *ys) : NULL;
      if (nx) xs = nx;
      if (ny) ys = ny;
      if (!nx || !ny) {
        rc = fg_err_set(err, FG_ENOMEM, "%s: out of memory at line %ld", o->path, lineno);
        break;
      }
    }
    size_t k = 0;
    for (size_t c = 0; c < ncol && rc == 0; c++) {
      char *end;
      errno = 0;
      double v = strtod(fs.f[c], &end);
      if (fs.f[c][0] == '\0' || *end != '\0' || errno == ERANGE) {
        rc = fg_err_set(err, FG_EDATA, "%s:%ld: column '%s': not a number ('%s')", o->path,
                        lineno, names[c], fs.f[c]);
      } else if ((long)c == target) {
        if (o->target_long && (v != floor(v) || fabs(v) > 9e15))
          rc = fg_err_set(err, FG_EDATA,
                          "%s:%ld: column '%s': not an integer class label ('%s'; use "
                          "target_dtype: float for regression)",
                          o->path, lineno, names[c], fs.f[c]);
        ys[rows] = v;
      } else {
        xs[rows * (ncol - 1) + k++] = (float)v;
      }
    }
    if (rc == 0) rows++;
  }
  if (rc == 0 && ferror(f)) rc = fg_err_set(err, FG_EIO, "%s: read error", o->path);
  if (rc == 0 && rows == 0) rc = fg_err_set(err, FG_EDATA, "%s: no data rows", o->path);
  fclose(f);
  free(line);
  fields_clear(&fs);
  free(fs.f);
  for (size_t c = 0; c < ncol; c++) free(names[c]);
  free(names);
  if (rc) {
    free(xs);
    free(ys);
    return rc;
  }
  out->x = xs;
  out->y = ys;
  out->rows = rows;
  out->features = ncol - 1;
  return 0;
}
