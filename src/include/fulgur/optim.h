/* optimizer_config (lightning_template's form): one entry
 * `{optimizer: {class_path, init_args}, lr_scheduler: ..., frequency: ...}`
 * or the bare optimizer object, or a list of entries. */
#ifndef FULGUR_OPTIM_H
#define FULGUR_OPTIM_H

#include <stdbool.h>

#include "fulgur/config.h"
#include "fulgur/module.h"
#include "fulgur/torch.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What an optimizer class creates from its init_args. */
typedef struct {
  fg_optim_kind kind;
  const char *class_name; /* "SGD", for LearningRateMonitor-style names */
  fg_optim_group defaults;
} fg_optim_spec;

/* Checks optimizer_config in place (normalized to a list of entries with
 * an `optimizer` object). keypath is "optimizer_config". */
int fg_optim_config_check(fg_node *cfg, const char *keypath, bool fill_defaults,
                          char **err);
/* Builds the optimizer over the module's trainable parameters. */
int fg_optim_build(const fg_node *cfg, const char *keypath, fg_module *m,
                   fg_optimizer **out, char **err);

#ifdef __cplusplus
}
#endif
#endif
