/* The progress bar's line (progress_bar.h). */
#include "util/progress_bar.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

void fg__fmt_duration(char *buf, size_t len, double s) {
  if (s < 0 || s > 1e8) {
    snprintf(buf, len, "--:--");
    return;
  }
  long t = (long)(s + 0.5);
  if (t >= 3600) snprintf(buf, len, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  else snprintf(buf, len, "%02ld:%02ld", t / 60, t % 60);
}

/* snprintf at buf + *n that never runs past len. */
#define APPEND(...)                                                  \
  do {                                                               \
    if (*n < len) {                                                  \
      int w_ = snprintf(buf + *n, len - *n, __VA_ARGS__);            \
      *n = w_ < 0 ? len : *n + (size_t)w_ > len ? len : *n + (size_t)w_; \
    }                                                                \
  } while (0)

static void position(const fg_progress_line *p, char *buf, size_t len, size_t *n) {
  const char *split = p->split ? p->split : "";
  if (split[0] == '\0' || strcmp(split, "fit") == 0) {
    if (p->max_epochs > 0) APPEND("Epoch %" PRId64 "/%" PRId64, p->epoch + 1, p->max_epochs);
    else APPEND("Epoch %" PRId64, p->epoch + 1);
    APPEND("  step %" PRId64, p->step);
  } else {
    static const struct { const char *split, *label; } labels[] = {
        {"val", "Validating"}, {"test", "Testing"}, {"predict", "Predicting"}};
    const char *label = split;
    for (size_t i = 0; i < sizeof labels / sizeof labels[0]; i++)
      if (strcmp(split, labels[i].split) == 0) label = labels[i].label;
    APPEND("%s  batch %" PRId64, label, p->step);
  }
  if (p->total_steps > 0) APPEND("/%" PRId64, p->total_steps);
}

void fg__progress_format(const fg_progress_line *p, char *buf, size_t len) {
  size_t n0 = 0, *n = &n0;
  if (len == 0) return;
  buf[0] = '\0';
  position(p, buf, len, n);
  if (p->percent >= 0) {
    double frac = p->percent > 100 ? 1 : p->percent / 100;
    char bar[25];
    int width = 24, fill = (int)(width * frac);
    for (int i = 0; i < width; i++) bar[i] = i < fill ? '=' : (i == fill ? '>' : ' ');
    bar[width] = '\0';
    char eta[32];
    fg__fmt_duration(eta, sizeof eta, p->eta_seconds);
    APPEND(" [%s] %5.1f%%  ETA %s", bar, 100 * frac, eta);
  }
  if (p->rate > 0) APPEND("  %.1f it/s", p->rate);
  if (p->loss_key) APPEND("  %s %.4f", p->loss_key, p->loss);
}
