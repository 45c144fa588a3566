#include "fulgur/events.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fulgur/error.h"
#include "util/xalloc.h"

/* Where one loop's rate is measured from. */
typedef struct {
  char split[16];
  double t0;
  int64_t step0, last;
  bool live;
} loop_clock;

struct fg_events {
  fg_sink *sinks;
  size_t n, cap;
  pthread_mutex_t mu; /* the clocks: PROGRESS may come from several threads */
  loop_clock clocks[4];
};

fg_events *fg_events_create(void) {
  fg_events *bus = fg__xcalloc(1, sizeof(fg_events));
  pthread_mutex_init(&bus->mu, NULL);
  return bus;
}

static double mono_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* The one computation of progress (events.h). */
static void fill_progress(fg_events *bus, fg_event *ev) {
  bool fit = ev->split && strcmp(ev->split, "fit") == 0;
  int64_t step = ev->batch_idx + 1, total = ev->num_batches > 0 ? ev->num_batches : 0;
  if (fit && ev->max_steps > 0) {
    step = ev->global_step;
    total = ev->max_steps;
  } else if (fit) {
    total = ev->max_epochs > 0 && ev->num_batches > 0 ? ev->max_epochs * ev->num_batches : 0;
    if (ev->num_batches > 0) step = ev->epoch * ev->num_batches + ev->batch_idx + 1;
  }
  ev->step = step;
  ev->total_steps = total;
  ev->percent = total > 0 ? 100.0 * (double)(step < total ? step : total) / (double)total : -1;
  ev->rate = 0;
  ev->eta_seconds = -1;
  double t = mono_now();
  pthread_mutex_lock(&bus->mu);
  loop_clock *c = NULL;
  for (size_t i = 0; i < 4 && c == NULL; i++)
    if (bus->clocks[i].live && strcmp(bus->clocks[i].split, ev->split ? ev->split : "") == 0)
      c = &bus->clocks[i];
  for (size_t i = 0; i < 4 && c == NULL; i++)
    if (!bus->clocks[i].live) c = &bus->clocks[i];
  if (c == NULL) c = &bus->clocks[0];
  /* A loop that starts over (the next validation pass) restarts its
   * clock; the fit count runs on across epochs, and so does its rate. The
   * first step of a clock only starts it. */
  if (!c->live || step < c->last || strcmp(c->split, ev->split ? ev->split : "") != 0) {
    snprintf(c->split, sizeof c->split, "%s", ev->split ? ev->split : "");
    c->t0 = t;
    c->step0 = step;
    c->live = true;
  } else if (t > c->t0 && step > c->step0) {
    ev->rate = (double)(step - c->step0) / (t - c->t0);
    if (total > 0) ev->eta_seconds = (double)(total > step ? total - step : 0) / ev->rate;
  }
  c->last = step;
  pthread_mutex_unlock(&bus->mu);
  ev->progress_set = true;
}

int fg_events_free(fg_events *bus, char **err) {
  if (bus == NULL) return 0;
  int rc = 0;
  for (size_t i = 0; i < bus->n; i++) {
    if (bus->sinks[i].close == NULL) continue;
    int r = bus->sinks[i].close(bus->sinks[i].self, rc == 0 ? err : NULL);
    if (rc == 0) rc = r;
  }
  free(bus->sinks);
  pthread_mutex_destroy(&bus->mu);
  free(bus);
  return rc;
}

void fg_events_add_sink(fg_events *bus, fg_sink sink) {
  if (bus->n == bus->cap) {
    bus->cap = bus->cap ? bus->cap * 2 : 4;
    bus->sinks = fg__xrealloc(bus->sinks, bus->cap * sizeof *bus->sinks);
  }
  bus->sinks[bus->n++] = sink;
}

void fg_events_emit(fg_events *bus, const fg_event *ev) {
  if (bus == NULL) return;
  fg_event filled;
  if (ev->kind == FG_EVENT_PROGRESS && !ev->progress_set) {
    filled = *ev;
    fill_progress(bus, &filled);
    ev = &filled;
  }
  for (size_t i = 0; i < bus->n; i++) bus->sinks[i].emit(bus->sinks[i].self, ev);
}

void fg_events_log(fg_events *bus, fg_log_level level, const char *fmt, ...) {
  if (bus == NULL) return;
  va_list ap;
  va_start(ap, fmt);
  char *text = NULL;
  if (vasprintf(&text, fmt, ap) < 0) text = NULL;
  va_end(ap);
  fg_event ev = {.kind = FG_EVENT_LOG, .level = level, .text = text ? text : fmt,
                 .batch_idx = -1, .num_batches = -1, .max_epochs = -1,
                 .max_steps = -1};
  fg_events_emit(bus, &ev);
  free(text);
}
