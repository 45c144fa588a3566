#include "fulgur/events.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

#include "fulgur/error.h"
#include "util/xalloc.h"

struct fg_events {
  fg_sink *sinks;
  size_t n, cap;
};

fg_events *fg_events_create(void) { return fg__xcalloc(1, sizeof(fg_events)); }

int fg_events_free(fg_events *bus, char **err) {
  if (bus == NULL) return 0;
  int rc = 0;
  for (size_t i = 0; i < bus->n; i++) {
    if (bus->sinks[i].close == NULL) continue;
    int r = bus->sinks[i].close(bus->sinks[i].self, rc == 0 ? err : NULL);
    if (rc == 0) rc = r;
  }
  free(bus->sinks);
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
