/* Stage names (fulgur/stage.h). */
#include "fulgur/stage.h"

#include <stddef.h>
#include <string.h>

static const char *const names[] = {
    [FG_STAGE_FIT] = "fit", [FG_STAGE_VALIDATE] = "validate", [FG_STAGE_TEST] = "test",
    [FG_STAGE_PREDICT] = "predict"};

const char *fg_stage_name(fg_stage s) {
  return s >= FG_STAGE_FIT && s <= FG_STAGE_PREDICT ? names[s] : "unknown";
}

fg_stage fg_stage_parse(const char *name) {
  for (fg_stage s = FG_STAGE_FIT; name && s <= FG_STAGE_PREDICT; s++)
    if (strcmp(name, names[s]) == 0) return s;
  return 0;
}
