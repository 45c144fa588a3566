/* The model summary Lightning prints at fit start (its ModelSummary
 * callback): one row per submodule of the LightningModule up to max_depth
 * (name, type, parameters, mode), then trainable, non-trainable and total
 * parameter counts, the estimated size in MB, and how many modules are in
 * train and in eval mode.
 *
 * The loop computes it (fg_module_summarize) and emits it as an
 * FG_EVENT_SUMMARY event; sinks format it with fg_model_summary_format, the
 * one formatter, so the terminal and the daemon's log show the same table.
 */
#ifndef FULGUR_SUMMARY_H
#define FULGUR_SUMMARY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fg_module fg_module;

typedef struct {
  char *name;     /* "model", "model.layers", "model.layers.0" */
  char *type;     /* Python's type(m).__name__: "Sequential", "Linear" */
  int64_t params; /* parameters in the module and below it */
  bool training;
} fg_summary_row;

typedef struct {
  fg_summary_row *rows;
  size_t n_rows;
  int64_t total_params, trainable_params; /* every parameter of the LightningModule */
  int64_t modules_train, modules_eval;    /* every submodule, at any depth */
  int precision_bits;                     /* bits per parameter for the size (32) */
} fg_model_summary;

/* Summarizes m as Lightning's ModelSummary(m, max_depth) does: max_depth 1
 * lists the LightningModule's children ("model"), N > 1 every submodule
 * whose dotted name has fewer than N dots, -1 all of them, 0 none. *out is
 * new (fg_model_summary_free). Fails only when the model cannot list its
 * modules. */
int fg_module_summarize(const fg_module *m, int max_depth, fg_model_summary **out, char **err);
void fg_model_summary_free(fg_model_summary *s); /* NULL is a no-op */

/* Lightning 2.x's table (ModelSummary.__str__ without FLOPs, as printed
 * when no example_input_array is set), malloc'd; the caller frees it. */
char *fg_model_summary_format(const fg_model_summary *s);
/* Lightning's get_human_readable_count: 123 -> "123  ", 1234 -> "1.2 K",
 * 2e6 -> "2.0 M", 5e15 -> "5,000 T". Writes into buf (NUL-terminated). */
void fg_human_readable_count(int64_t n, char *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
