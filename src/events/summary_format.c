/* The model summary as text: Lightning 2.x's _format_summary_table,
 * get_human_readable_count and get_formatted_model_size, reproduced
 * character for character (column widths, the "  " after plain counts,
 * the 10-wide left-aligned totals) so that a fulgur log reads like a
 * Lightning one. FLOPs are left out: Lightning counts them only when an
 * example_input_array runs through the model. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fulgur/summary.h"
#include "util/xalloc.h"

typedef struct {
  char *s;
  size_t len, cap;
} buf;

static void put(buf *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    b->cap = (b->len + n + 1) * 2;
    b->s = fg__xrealloc(b->s, b->cap);
  }
  memcpy(b->s + b->len, s, n);
  b->len += n;
  b->s[b->len] = '\0';
}

static void puts_(buf *b, const char *s) { put(b, s, strlen(s)); }

/* "{:<w}": s, then spaces up to w characters. */
static void put_left(buf *b, const char *s, size_t w) {
  puts_(b, s);
  for (size_t n = strlen(s); n < w; n++) put(b, " ", 1);
}

static void put_repeat(buf *b, char c, size_t n) {
  for (size_t i = 0; i < n; i++) put(b, &c, 1);
}

/* Python's f"{v:,d}". */
static void thousands(long long v, char *out, size_t len) {
  char digits[32];
  snprintf(digits, sizeof digits, "%lld", v < 0 ? -v : v);
  size_t n = strlen(digits), k = 0;
  if (v < 0 && k + 1 < len) out[k++] = '-';
  for (size_t i = 0; i < n && k + 1 < len; i++) {
    if (i > 0 && (n - i) % 3 == 0 && k + 1 < len) out[k++] = ',';
    if (k + 1 < len) out[k++] = digits[i];
  }
  out[k] = '\0';
}

void fg_human_readable_count(int64_t number, char *out, size_t len) {
  static const char *const labels[] = {" ", "K", "M", "B", "T"};
  int num_digits = number > 0 ? (int)floor(log10((double)number)) + 1 : 1;
  int num_groups = (num_digits + 2) / 3;
  if (num_groups > 5) num_groups = 5; /* no abbreviation beyond trillions */
  int index = num_groups - 1;
  /* Python: number * 10**shift, a float multiply once shift < 0. */
  double x = index == 0 ? (double)number : (double)number * pow(10.0, -3.0 * index);
  char num[48];
  if (index < 1 || x >= 100)
    thousands((long long)x, num, sizeof num);
  else
    snprintf(num, sizeof num, "%.1f", x);
  snprintf(out, len, "%s %s", num, labels[index]);
}

char *fg_model_summary_format(const fg_model_summary *s) {
  int64_t in_rows = 0;
  for (size_t i = 0; i < s->n_rows; i++) in_rows += s->rows[i].params;
  int64_t leftover = s->total_params - in_rows;
  size_t n = s->n_rows + (leftover > 0);
  /* Columns " ", Name, Type, Params, Mode, as strings. */
  enum { NCOL = 5 };
  static const char *const heads[NCOL] = {" ", "Name", "Type", "Params", "Mode"};
  char ***cell = fg__xcalloc(NCOL, sizeof *cell);
  for (int c = 0; c < NCOL; c++) cell[c] = fg__xcalloc(n ? n : 1, sizeof **cell);
  for (size_t i = 0; i < s->n_rows; i++) {
    const fg_summary_row *r = &s->rows[i];
    char count[48];
    fg_human_readable_count(r->params, count, sizeof count);
    cell[0][i] = fg__xasprintf("%zu", i);
    cell[1][i] = fg__xstrdup(r->name);
    cell[2][i] = fg__xstrdup(r->type);
    cell[3][i] = fg__xstrdup(count);
    cell[4][i] = fg__xstrdup(r->training ? "train" : "eval");
  }
  if (leftover > 0) {
    /* Parameters outside every listed module: Lightning's "other params". */
    char count[48];
    fg_human_readable_count(leftover, count, sizeof count);
    size_t i = s->n_rows;
    cell[0][i] = fg__xstrdup(" ");
    cell[1][i] = fg__xstrdup("other params");
    cell[2][i] = fg__xstrdup("n/a");
    cell[3][i] = fg__xstrdup(count);
    cell[4][i] = fg__xstrdup("n/a");
  }
  size_t width[NCOL], total = 3 * (NCOL + 1);
  for (int c = 0; c < NCOL; c++) {
    width[c] = strlen(heads[c]);
    for (size_t i = 0; i < n; i++)
      if (strlen(cell[c][i]) > width[c]) width[c] = strlen(cell[c][i]);
    total += width[c];
  }
  buf b = {0};
  for (int c = 0; c < NCOL; c++) {
    if (c) puts_(&b, " | ");
    put_left(&b, heads[c], width[c]);
  }
  puts_(&b, "\n");
  put_repeat(&b, '-', total);
  for (size_t i = 0; i < n; i++) {
    puts_(&b, "\n");
    for (int c = 0; c < NCOL; c++) {
      if (c) puts_(&b, " | ");
      put_left(&b, cell[c][i], width[c]);
    }
  }
  puts_(&b, "\n");
  put_repeat(&b, '-', total);
  char v[64];
  fg_human_readable_count(s->trainable_params, v, sizeof v);
  puts_(&b, "\n");
  put_left(&b, v, 10);
  puts_(&b, "Trainable params");
  fg_human_readable_count(s->total_params - s->trainable_params, v, sizeof v);
  puts_(&b, "\n");
  put_left(&b, v, 10);
  puts_(&b, "Non-trainable params");
  fg_human_readable_count(s->total_params, v, sizeof v);
  puts_(&b, "\n");
  put_left(&b, v, 10);
  puts_(&b, "Total params");
  /* f"{total * bits / 8 * 1e-6:,.3f}" */
  double mb = (double)s->total_params * ((double)s->precision_bits / 8.0 * 1e-6);
  char fixed[64];
  snprintf(fixed, sizeof fixed, "%.3f", mb);
  char *dot = strchr(fixed, '.');
  char whole[48];
  thousands(strtoll(fixed, NULL, 10), whole, sizeof whole);
  snprintf(v, sizeof v, "%s%s", whole, dot ? dot : "");
  puts_(&b, "\n");
  put_left(&b, v, 10);
  puts_(&b, "Total estimated model params size (MB)");
  snprintf(v, sizeof v, "%lld", (long long)s->modules_train);
  puts_(&b, "\n");
  put_left(&b, v, 10);
  puts_(&b, "Modules in train mode");
  snprintf(v, sizeof v, "%lld", (long long)s->modules_eval);
  puts_(&b, "\n");
  put_left(&b, v, 10);
  puts_(&b, "Modules in eval mode");
  for (int c = 0; c < NCOL; c++) {
    for (size_t i = 0; i < n; i++) free(cell[c][i]);
    free(cell[c]);
  }
  free(cell);
  return b.s;
}
