/* Run outcomes (fulgur/outcome.h). */
#include "fulgur/outcome.h"

#include "fulgur/error.h"

fg_outcome fg_outcome_of(int rc) {
  return rc == 0              ? FG_OUTCOME_SUCCEEDED
         : rc == FG_ECANCELED ? FG_OUTCOME_CANCELLED
         : rc == FG_EPAUSED   ? FG_OUTCOME_PAUSED
                              : FG_OUTCOME_FAILED;
}

const char *fg_outcome_name(fg_outcome o) {
  switch (o) {
    case FG_OUTCOME_SUCCEEDED: return "succeeded";
    case FG_OUTCOME_FAILED: return "failed";
    case FG_OUTCOME_CANCELLED: return "cancelled";
    case FG_OUTCOME_PAUSED: return "paused";
  }
  return "failed";
}
