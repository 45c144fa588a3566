/* trainer.profiler: "simple" is Lightning's SimpleProfiler (the time of
 * every action the loops and callbacks time, reported as its table at the
 * end of the stage), "pytorch" is libtorch's autograd profiler writing a
 * Chrome trace. The table is written by hand after Lightning's
 * SimpleProfiler.summary (extended), so a report reads the same. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fulgur/autograd.h"
#include "fulgur/error.h"
#include "trainer/trainer.h"
#include "util/atomic_file.h"
#include "util/xalloc.h"

typedef struct {
  char *name;
  double total;
  int64_t calls;
} action;

struct fg__profiler {
  fg_profiler_kind kind;
  double started;
  action *actions; /* first-recorded order; the report sorts */
  size_t n, cap;
  fg_torch_profile *torch; /* "pytorch" */
  char *path;              /* the report or trace file */
  char *stage;
};

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int fg__profiler_create(const fg_trainer_opts *o, const char *run_dir, const char *stage,
                        fg__profiler **out, char **err) {
  *out = NULL;
  if (o->profiler == FG_PROFILER_NONE) return 0;
  const char *dir = o->profiler_dirpath ? o->profiler_dirpath : run_dir;
  if (dir == NULL) return 0; /* a rank without a run directory: rank 0 profiles */
  int rc = o->profiler_dirpath ? fg__mkdirs(dir, err) : 0;
  if (rc) return fg_err_prefix(err, rc, "trainer.profiler: dirpath");
  fg__profiler *p = fg__xcalloc(1, sizeof *p);
  p->kind = o->profiler;
  p->stage = fg__xstrdup(stage);
  const char *fn = o->profiler_filename;
  if (p->kind == FG_PROFILER_SIMPLE)
    p->path = fg__xasprintf("%s/%s-%s.txt", dir, stage, fn ? fn : "profiler");
  else
    p->path = fn ? fg__xasprintf("%s/%s-%s.pt.trace.json", dir, stage, fn)
                 : fg__xasprintf("%s/%s.pt.trace.json", dir, stage);
  p->started = now();
  if (p->kind == FG_PROFILER_PYTORCH && (rc = fg_torch_profile_start(p->path, &p->torch, err))) {
    fg__profiler_free(p);
    return fg_err_prefix(err, rc, "trainer.profiler: pytorch");
  }
  *out = p;
  return 0;
}

double fg__profiler_start(const fg__profiler *p) {
  return p && p->kind == FG_PROFILER_SIMPLE ? now() : 0;
}

void fg__profiler_stop(fg__profiler *p, const char *name, double t0) {
  if (p == NULL || p->kind != FG_PROFILER_SIMPLE) return;
  double d = now() - t0;
  size_t i = 0;
  while (i < p->n && strcmp(p->actions[i].name, name) != 0) i++;
  if (i == p->n) {
    if (p->n == p->cap) {
      p->cap = p->cap ? 2 * p->cap : 32;
      p->actions = fg__xrealloc(p->actions, p->cap * sizeof *p->actions);
    }
    p->actions[p->n++] = (action){fg__xstrdup(name), 0, 0};
  }
  p->actions[i].total += d;
  p->actions[i].calls++;
}

void fg__profiler_stop_callback(fg__profiler *p, const char *cls, const char *hook, double t0) {
  if (p == NULL || p->kind != FG_PROFILER_SIMPLE) return;
  char *name = fg__xasprintf("[Callback]%s.%s", cls, hook);
  fg__profiler_stop(p, name, t0);
  free(name);
}

/* Python's f"{x:.5}" for a float: %.5g, with a ".0" where %g leaves an
 * integer. */
static void py_g5(char *buf, size_t n, double x) {
  snprintf(buf, n, "%.5g", x);
  if (isfinite(x) && strpbrk(buf, ".e") == NULL) strncat(buf, ".0", n - strlen(buf) - 1);
}

/* One row: "|  %-*s\t|  %-15s\t|  %-15s\t|  %-15s\t|  %-15s\t|". */
static void row(char **s, size_t *len, int width, const char *a, const char *b, const char *c,
                const char *d, const char *e) {
  char *r = fg__xasprintf("\n|  %-*s\t|  %-15s\t|  %-15s\t|  %-15s\t|  %-15s\t|", width, a, b, c, d, e);
  *s = fg__xrealloc(*s, *len + strlen(r) + 1);
  memcpy(*s + *len, r, strlen(r) + 1);
  *len += strlen(r);
  free(r);
}

static void append(char **s, size_t *len, const char *t) {
  *s = fg__xrealloc(*s, *len + strlen(t) + 1);
  memcpy(*s + *len, t, strlen(t) + 1);
  *len += strlen(t);
}

/* Columns after tab expansion (8-column stops), as Python's expandtabs. */
static size_t expanded_len(const char *s) {
  size_t col = 0;
  for (; *s; s++) col = *s == '\t' ? (col / 8 + 1) * 8 : col + 1;
  return col;
}

static int by_share(const void *a, const void *b) {
  double x = ((const action *)a)->total, y = ((const action *)b)->total;
  return x < y ? 1 : x > y ? -1 : 0;
}

/* SimpleProfiler.summary(): "<STAGE> Profiler Report", then the table of
 * every action by its share of the stage's wall time. */
static char *summary(fg__profiler *p, const char *stage) {
  double total_time = now() - p->started;
  /* qsort needs a real array even for none (C11 7.22.5): none recorded is NULL. */
  if (p->n) qsort(p->actions, p->n, sizeof *p->actions, by_share);
  size_t len = 0;
  char *s = NULL;
  char *up = fg__xstrdup(stage); /* "FIT Profiler Report" */
  for (char *c = up; *c; c++)
    if (*c >= 'a' && *c <= 'z') *c = (char)(*c - 'a' + 'A');
  append(&s, &len, up);
  append(&s, &len, " Profiler Report\n");
  free(up);
  if (p->n > 0) {
    int width = 0;
    int64_t calls = 0;
    for (size_t i = 0; i < p->n; i++) {
      if ((int)strlen(p->actions[i].name) > width) width = (int)strlen(p->actions[i].name);
      calls += p->actions[i].calls;
    }
    char *hdr = NULL;
    size_t hl = 0;
    row(&hdr, &hl, width, "Action", "Mean duration (s)", "Num calls", "Total time (s)", "Percentage %");
    size_t w = expanded_len(hdr + 1);
    char *sep = fg__xcalloc(w + 2, 1);
    sep[0] = '\n';
    memset(sep + 1, '-', w);
    append(&s, &len, sep);
    append(&s, &len, hdr);
    append(&s, &len, sep);
    free(hdr);
    char n1[32], n2[32], n3[32], n4[32];
    snprintf(n1, sizeof n1, "%lld", (long long)calls);
    py_g5(n2, sizeof n2, total_time);
    row(&s, &len, width, "Total", "-", n1, n2, "100 %");
    append(&s, &len, sep);
    for (size_t i = 0; i < p->n; i++) {
      const action *a = &p->actions[i];
      py_g5(n1, sizeof n1, a->total / (double)a->calls);
      snprintf(n2, sizeof n2, "%lld", (long long)a->calls);
      py_g5(n3, sizeof n3, a->total);
      py_g5(n4, sizeof n4, total_time > 0 ? 100.0 * a->total / total_time : 0);
      row(&s, &len, width, a->name, n1, n2, n3, n4);
    }
    append(&s, &len, sep);
    free(sep);
  }
  append(&s, &len, "\n");
  return s;
}

int fg__profiler_finish(fg__profiler *p, fg_events *bus, char **err) {
  if (p == NULL) return 0;
  int rc = 0;
  if (p->kind == FG_PROFILER_PYTORCH) {
    fg_torch_profile *t = p->torch;
    p->torch = NULL;
    if ((rc = fg_torch_profile_stop(t, err))) return fg_err_prefix(err, rc, "trainer.profiler: pytorch");
    fg_events_log(bus, FG_LOG_INFO, "profiler: Chrome trace written to %s", p->path);
  } else {
    char *report = summary(p, p->stage);
    fg_events_log(bus, FG_LOG_INFO, "%s", report);
    rc = fg__write_file_atomic(p->path, report, strlen(report), err);
    free(report);
    if (rc) return fg_err_prefix(err, rc, "trainer.profiler");
  }
  fg_event ev = {.kind = FG_EVENT_ARTIFACT, .text = "profiler", .path = p->path, .batch_idx = -1,
                 .num_batches = -1, .max_epochs = -1, .max_steps = -1};
  fg_events_emit(bus, &ev);
  return 0;
}

void fg__profiler_free(fg__profiler *p) {
  if (p == NULL) return;
  if (p->torch) fg_torch_profile_stop(p->torch, NULL);
  for (size_t i = 0; i < p->n; i++) free(p->actions[i].name);
  free(p->actions);
  free(p->path);
  free(p->stage);
  free(p);
}
