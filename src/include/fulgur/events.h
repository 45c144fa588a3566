/* Events: the single way a run reports anything. The loops emit events;
 * sinks (progress bar, CSV logger, log lines, the daemon pipe, the --json
 * summary) turn them into output. No component formats output for another.
 *
 * An event is only valid during the emit call: a sink that keeps anything
 * copies it. Sinks are called on the thread that emits, in the order they
 * were added.
 */
#ifndef FULGUR_EVENTS_H
#define FULGUR_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fulgur/summary.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  FG_EVENT_STATE = 0, /* run state changed: text = "running", "succeeded", ... */
  FG_EVENT_STEP,      /* per-iteration scalars (fit/loss ...) */
  FG_EVENT_EPOCH,     /* per-epoch scalars (val/Accuracy ...) */
  FG_EVENT_LOG,       /* a log line: level + text */
  FG_EVENT_ARTIFACT,  /* a file was written: path + text (its kind) */
  FG_EVENT_PROGRESS,  /* loop position, for progress bars: no scalars */
  FG_EVENT_SUMMARY,   /* the model summary at fit start: summary (sinks that
                         show text format it with fg_model_summary_format) */
} fg_event_kind;

typedef enum {
  FG_LOG_DEBUG = 0,
  FG_LOG_INFO,
  FG_LOG_WARNING,
  FG_LOG_ERROR,
} fg_log_level;

typedef struct {
  fg_event_kind kind;
  const char *split;   /* "fit", "val", "test", "predict" or NULL */
  int64_t epoch;       /* current epoch (0-based) */
  int64_t global_step; /* optimizer steps taken so far */
  int64_t batch_idx;   /* within the epoch, or -1 */
  int64_t num_batches; /* batches in this loop's epoch, or -1 when unknown */
  int64_t max_epochs;  /* or -1 */
  int64_t max_steps;   /* or -1 */
  /* Scalars (STEP, EPOCH; PROGRESS may carry the latest loss). */
  size_t n_values;
  const char *const *keys;
  const double *values;
  /* LOG text, STATE name, ARTIFACT kind ("checkpoint", "config", ...). */
  fg_log_level level;
  const char *text;
  const char *path; /* ARTIFACT */
  /* PROGRESS only, filled in by the bus as the event is emitted
   * (events.c), so every sink -- the progress bar, the daemon's pipe --
   * shows the same numbers; an emitter leaves them zero. (Last in the
   * struct, so the fields before keep their offsets.) The fit loop
   * counts in batches over the whole run (or in optimizer steps when
   * max_steps bounds it); validation, test and predict loops in batches of
   * their own pass. */
  int64_t step;        /* steps done in that count */
  int64_t total_steps; /* steps in it, or 0 when unknown */
  double percent;      /* 100 * step / total_steps, or -1 when unknown */
  double rate;         /* steps per second since the loop began, or 0 */
  double eta_seconds;  /* time left at that rate, or -1 when unknown */
  bool progress_set;   /* the fields above are filled (a bus forwarding
                        * an event to another leaves them as they are) */
  /* SUMMARY (after the fields above, whose offsets stay). */
  const fg_model_summary *summary;
} fg_event;

typedef struct {
  void (*emit)(void *self, const fg_event *ev);
  /* Flushes and releases the sink; returns 0 or an FG_E* code (a logger
   * that could not write its file reports it here). */
  int (*close)(void *self, char **err);
  void *self;
} fg_sink;

typedef struct fg_events fg_events;

fg_events *fg_events_create(void);
/* Closes every sink (reporting the first failure) and frees. */
int fg_events_free(fg_events *bus, char **err);
void fg_events_add_sink(fg_events *bus, fg_sink sink);
/* Calls every sink with ev; a PROGRESS event first gets its progress
 * fields (above). Safe from several threads at once (predict's workers). */
void fg_events_emit(fg_events *bus, const fg_event *ev);
/* A LOG event from printf-style text. */
void fg_events_log(fg_events *bus, fg_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#ifdef __cplusplus
}
#endif
#endif
