/* The four stages of a run and their names: the one table the CLI, the
 * ranks, the worker and the engine share (the names are the CLI's
 * commands and the daemon's `--stage` argument). */
#ifndef FULGUR_STAGE_H
#define FULGUR_STAGE_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  FG_STAGE_FIT = 1,
  FG_STAGE_VALIDATE = 2,
  FG_STAGE_TEST = 3,
  FG_STAGE_PREDICT = 4,
} fg_stage;

/* "fit", "validate", "test", "predict"; "unknown" for anything else. */
const char *fg_stage_name(fg_stage stage);
/* The stage spelled name (as fg_stage_name spells it), or 0 when name is
 * NULL or names none. */
fg_stage fg_stage_parse(const char *name);

#ifdef __cplusplus
}
#endif
#endif
