/* The class registry: `class_path` -> a class with a typed init_args schema
 * and a constructor. Built-in classes are registered on first use; plugins
 * add theirs with fg_registry_add.
 *
 * A config object is `{class_path: NAME, init_args: {...}}` (init_args may
 * be absent). Instantiating one checks init_args against the class's
 * schema (unknown keys, kinds, required keys; defaults filled), then calls
 * the class's create with the checked init_args.
 */
#ifndef FULGUR_REGISTRY_H
#define FULGUR_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>

#include "fulgur/config.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  FG_KIND_MODULE = 0, /* LightningModule: fg_module* */
  FG_KIND_MODEL,      /* network: fg_model* */
  FG_KIND_DATAMODULE, /* fg_datamodule* */
  FG_KIND_DATASET,    /* fg_dataset* */
  FG_KIND_METRIC,     /* fg_metric* */
  FG_KIND_CALLBACK,   /* fg_callback* */
  FG_KIND_LOGGER,     /* fg_logger* */
  FG_KIND_OPTIMIZER,  /* fg_optim_spec* */
  FG_KIND_SCHEDULER,  /* fg_sched_spec* */
  FG_KIND__COUNT
} fg_class_kind;

const char *fg_class_kind_name(fg_class_kind kind); /* "a dataset", ... */

typedef struct fg_class fg_class;

/* Builds the object from checked init_args (a map; defaults filled).
 * keypath is the path of init_args, for messages. *out is the kind's object
 * type (see fg_class_kind); it is released with the class's destroy. */
typedef int (*fg_class_create_fn)(const fg_class *cls, const fg_node *init_args,
                                  const char *keypath, void **out, char **err);
typedef void (*fg_class_destroy_fn)(void *obj);
/* Optional deeper check of init_args after the schema passed: nested
 * objects, split configs (expanded in place), cross-field rules. */
typedef int (*fg_class_check_fn)(const fg_class *cls, fg_node *init_args,
                                 const char *keypath, bool fill_defaults,
                                 char **err);

struct fg_class {
  const char *name;           /* "fulgur.data.IDX" */
  const char *const *aliases; /* NULL-terminated list or NULL ("ModelCheckpoint") */
  fg_class_kind kind;
  const fg_param *params;
  size_t n_params;
  fg_class_create_fn create;
  fg_class_destroy_fn destroy;
  fg_class_check_fn check; /* may be NULL */
  void *data; /* the class's own data (a plugin's), read by create */
};

/* Adds a class (the struct must outlive the registry; it is not copied).
 * A name or alias already taken is FG_EINVAL. Thread-safe. */
int fg_registry_add(const fg_class *cls, char **err);
/* Looks a name or alias up; NULL if unknown. */
const fg_class *fg_registry_find(const char *name);

/* Checks an object config in place: a map with a string class_path naming a
 * class of `kind`, and init_args that pass the class's schema (defaults
 * filled when fill_defaults). An unknown class_path lists the closest known
 * names of that kind. keypath names obj ("model", "trainer.callbacks.0"). */
int fg_registry_check(fg_node *obj, const char *keypath, fg_class_kind kind,
                      bool fill_defaults, char **err);

/* Checks (with defaults filled, on a private copy) and creates the object.
 * *cls_out (may be NULL) receives the class, whose destroy frees *out. */
int fg_registry_create(const fg_node *obj, const char *keypath,
                       fg_class_kind kind, void **out, const fg_class **cls_out,
                       char **err);


#ifdef __cplusplus
}
#endif
#endif
