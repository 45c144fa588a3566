/* C plugins: shared objects listed under `plugins:` in a config that add
 * classes (modules, models, datasets, metrics, ...) to the registry.
 *
 * A plugin defines, with C linkage:
 *
 *   FG_PLUGIN_DECLARE();                   // the ABI version it was built for
 *   int fulgur_plugin_init(char **err) {   // registers its classes
 *     return fg_registry_add(&my_class, err);
 *   }
 *
 * and is built against these headers (see examples/plugin/). fulgur loads
 * each plugin once per process, before checking the config, and refuses a
 * plugin built for another ABI version. Classes must stay valid while the
 * process runs: plugins are never unloaded.
 */
#ifndef FULGUR_PLUGIN_H
#define FULGUR_PLUGIN_H

#include "fulgur/config.h"
#include "fulgur/module.h"
#include "fulgur/registry.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Bumped whenever a struct or function a plugin can use changes (2:
 * fg_model_vtable gained visit_modules and train). */
#define FG_PLUGIN_ABI_VERSION 2

#define FG_PLUGIN_DECLARE() \
  __attribute__((visibility("default"))) const int fulgur_plugin_abi = FG_PLUGIN_ABI_VERSION

typedef int (*fg_plugin_init_fn)(char **err);

/* Loads one plugin (idempotent for a path already loaded). */
int fg_plugin_load(const char *path, char **err);

/* Makes `cls` a LightningModule class named `name`: the built-in module's
 * init_args (model, loss_weights, evaluator_cfg, ckpt_path, finetune_cfg,
 * ...) and behaviour, with `hooks` overriding the hooks it sets (NULL
 * entries inherit the base behaviour). hooks must outlive the class. */
void fg_module_class_init(fg_class *cls, const char *name, const fg_module_hooks *hooks);

#ifdef __cplusplus
}
#endif
#endif
