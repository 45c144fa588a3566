/* Sinks of the in-process run: the terminal progress bar and the summary
 * of final metrics (the --json output). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "trainer/trainer.h"
#include "util/progress_bar.h"
#include "util/xalloc.h"

/* ---- progress bar --------------------------------------------------------- */

typedef struct {
  FILE *out;
  double t_last_draw;
  const char *split;
  bool drawn; /* a partial line is on the screen */
} progress;

static double now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void end_line(progress *p) {
  if (p->drawn) fputc('\n', p->out);
  p->drawn = false;
}

/* Draws what the event carries (the bus computed it: fulgur/events.h)
 * with the one bar renderer (util/progress_bar.h). */
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
    p->split = ev->split;
    p->t_last_draw = 0;
  }
  bool last = ev->num_batches > 0 && ev->batch_idx + 1 >= ev->num_batches;
  if (!last && t - p->t_last_draw < 0.1) return; /* 10 redraws a second at most */
  p->t_last_draw = t;
  fg_progress_line pl = {.split = ev->split, .epoch = ev->epoch, .max_epochs = ev->max_epochs,
                         .step = ev->step, .total_steps = ev->total_steps, .percent = ev->percent,
                         .rate = ev->rate, .eta_seconds = ev->eta_seconds,
                         .loss_key = ev->n_values > 0 ? ev->keys[0] : NULL,
                         .loss = ev->n_values > 0 ? ev->values[0] : 0};
  char line[512];
  fg__progress_format(&pl, line, sizeof line);
  fprintf(p->out, "\r%s\033[K", line);
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

