/* What optimizer.c needs from scheduler.c, inside the engine only. */
#ifndef FG_OPTIM_SCHEDULER_H
#define FG_OPTIM_SCHEDULER_H

#include <stdbool.h>

#include "fulgur/config.h"

/* Checks and normalizes one optimizer_config entry's lr_scheduler in place
 * (defaults filled when fill); errors name path. */
int fg__lr_scheduler_entry_check(fg_node *entry, const char *path, bool fill, char **err);

#endif
