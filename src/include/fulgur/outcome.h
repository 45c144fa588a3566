/* How a run ended, as one value from fg_run's return code to the daemon's
 * job state: the worker takes it from the code once and the pipe carries
 * it as the RPC's JobState, never as text. */
#ifndef FULGUR_OUTCOME_H
#define FULGUR_OUTCOME_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  FG_OUTCOME_SUCCEEDED = 0,
  FG_OUTCOME_FAILED,
  FG_OUTCOME_CANCELLED, /* FG_ECANCELED */
  FG_OUTCOME_PAUSED,    /* FG_EPAUSED: fit stopped at a step with pause.ckpt */
} fg_outcome;

/* The outcome of a run that returned rc (0 or an FG_E* code). */
fg_outcome fg_outcome_of(int rc);
/* "succeeded", "failed", "cancelled", "paused". */
const char *fg_outcome_name(fg_outcome o);

#ifdef __cplusplus
}
#endif
#endif
