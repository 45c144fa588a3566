/* The one progress bar: a local run's (src/trainer/sinks.c, from PROGRESS
 * events) and `fulgur submit --watch`'s (client/remote.c, from the job's
 * progress, which the worker forwards from the same events). Both only
 * display what the engine computed (fulgur/events.h); this draws it. */
#ifndef FG_UTIL_PROGRESS_BAR_H
#define FG_UTIL_PROGRESS_BAR_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
  const char *split;   /* "fit", "val", "test", "predict" */
  int64_t epoch;       /* 0-based */
  int64_t max_epochs;  /* or <= 0 */
  int64_t step;        /* fit: steps done; others: batches done */
  int64_t total_steps; /* or <= 0 when unknown */
  double percent;      /* 0..100, or < 0 for no bar */
  double rate;         /* steps per second, or <= 0 for none */
  double eta_seconds;  /* or < 0 for "--:--" */
  const char *loss_key; /* NULL for none */
  double loss;
} fg_progress_line;

/* One line, without the carriage return or a newline:
 *   Epoch 2/10  step 80/400 [=====>                  ]  20.0%  ETA 00:41  12.3 it/s  fit/loss 0.4211
 *   Validating  batch 3/8 [========>               ]  37.5%  ETA 00:02 */
void fg__progress_format(const fg_progress_line *p, char *buf, size_t len);
/* A duration (an ETA, a run time): "MM:SS", "H:MM:SS", or "--:--" for
 * s < 0 or absurdly far. */
void fg__fmt_duration(char *buf, size_t len, double s);

#endif
