/* Sinks of the in-process run: the terminal progress bar and the summary
 * of final metrics (the --json output). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "trainer/trainer.h"
#include "util/xalloc.h"

/* ---- progress bar --------------------------------------------------------- */

typedef struct {
  FILE *out;
  double t_start, t_last_draw;
  int64_t start_batch;
  const char *split;
  bool drawn; /* a partial line is on the screen */
} progress;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void fmt_eta(char *buf, size_t len, double s) {
  if (s < 0 || s > 1e7) {
    snprintf(buf, len, "--:--");
    return;
  }
  long t = (long)(s + 0.5);
  if (t >= 3600)
    snprintf(buf, len, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  else
    snprintf(buf, len, "%02ld:%02ld", t / 60, t % 60);
}

static void end_line(progress *p) {
  if (p->drawn) fputc('\n', p->out);
  p->drawn = false;
}

static void progress_emit(void *self, const fg_event *ev) {
  progress *p = self;
  if (ev->kind == FG_EVENT_LOG && ev->level >= FG_LOG_WARNING) {
    end_line(p);
    return;
  }
  if (ev->kind == FG_EVENT_EPOCH && ev->n_values > 0) {
    end_line(p);
    fprintf(p->out, "%s epoch %lld:", ev->split ? ev->split : "", (long long)ev->epoch);
    for (size_t i = 0; i < ev->n_values; i++)
      fprintf(p->out, " %s=%.4f", ev->keys[i], ev->values[i]);
    fputc('\n', p->out);
    fflush(p->out);
    return;
  }
  if (ev->kind != FG_EVENT_PROGRESS) return;
  double t = now();
  if (ev->batch_idx == 0 || p->split == NULL || strcmp(p->split, ev->split) != 0) {
    end_line(p);
    p->t_start = t;
    p->start_batch = ev->batch_idx;
    p->split = ev->split;
    p->t_last_draw = 0;
  }
  bool last = ev->num_batches > 0 && ev->batch_idx + 1 >= ev->num_batches;
  if (!last && t - p->t_last_draw < 0.1) return; /* 10 redraws a second at most */
  p->t_last_draw = t;
  int64_t done = ev->batch_idx + 1;
  double rate = (t - p->t_start) > 0 ? (double)(done - p->start_batch) / (t - p->t_start) : 0;
  char eta[32];
  fmt_eta(eta, sizeof eta, rate > 0 && ev->num_batches > 0 ? (double)(ev->num_batches - done) / rate : -1);
  char bar[26];
  int width = 24, fill = ev->num_batches > 0 ? (int)(width * done / ev->num_batches) : 0;
  for (int i = 0; i < width; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
  bar[width] = '\0';
  if (strcmp(ev->split, "fit") == 0 && ev->max_epochs > 0)
    fprintf(p->out, "\rEpoch %lld/%lld ", (long long)ev->epoch + 1, (long long)ev->max_epochs);
  else if (strcmp(ev->split, "fit") == 0)
    fprintf(p->out, "\rEpoch %lld ", (long long)ev->epoch + 1);
  else
    fprintf(p->out, "\r%-10s ", strcmp(ev->split, "val") == 0 ? "Validation" :
                                strcmp(ev->split, "test") == 0 ? "Testing" : ev->split);
  fprintf(p->out, "%5lld/%-5lld [%s] %7.1f it/s", (long long)done, (long long)ev->num_batches,
          bar, rate);
  for (size_t i = 0; i < ev->n_values; i++) fprintf(p->out, " %s %.4f", ev->keys[i], ev->values[i]);
  fprintf(p->out, " ETA %s  ", eta);
  p->drawn = true;
  if (last) end_line(p);
  fflush(p->out);
}

static int progress_close(void *self, char **err) {
  progress *p = self;
  end_line(p);
  free(p);
  return 0;
}

fg_sink fg__progress_sink_create(FILE *tty) {
  progress *p = fg__xcalloc(1, sizeof *p);
  p->out = tty;
  return (fg_sink){progress_emit, progress_close, p};
}

