/* optimizer_config (lightning_template's form): one entry
 * `{optimizer: {class_path, init_args}, lr_scheduler: ..., frequency: ...}`
 * or the bare optimizer object, or a list of entries. */
#ifndef FULGUR_OPTIM_H
#define FULGUR_OPTIM_H

#include <stdbool.h>

#include "fulgur/config.h"
#include "fulgur/module.h"
#include "fulgur/torch.h"
#include "fulgur/value.h"

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
typedef struct fg_sched_set fg_sched_set;

/* The optimizers of optimizer_config, built over the module's trainable
 * parameters, each with its schedulers. */
typedef struct {
  size_t n;
  fg_optimizer **opts;
  const char **class_names;  /* "SGD" (static) */
  char **monitor_names;      /* LearningRateMonitor's "lr-SGD", "lr-SGD-1" */
  fg_sched_set **scheds;     /* per optimizer; NULL when it has none */
  int64_t *frequency;        /* per optimizer; NULL when every one steps each batch */
} fg_optim_set;

int fg_optim_set_build(const fg_node *cfg, const char *keypath, fg_module *m, fg_optim_set **out,
                       char **err);
void fg_optim_set_free(fg_optim_set *s); /* NULL is a no-op */
/* Whether optimizer i steps on the epoch's batch batch_idx (frequency). */
bool fg_optim_set_active(const fg_optim_set *s, size_t i, int64_t batch_idx);

/* ---- learning-rate schedulers ---------------------------------------------
 * PyTorch's torch.optim.lr_scheduler classes with their chainable update
 * rules (each step reads the group's current lr), so several schedulers on
 * one optimizer combine exactly as they do in PyTorch; and
 * lightning_template's manual WarmupScheduler. */

typedef struct fg_lr_scheduler fg_lr_scheduler;

/* PyTorch's step(): last_epoch += 1, then each group's lr from the rule.
 * `metric` is used by ReduceLROnPlateau only. */
int fg_lr_scheduler_step(fg_lr_scheduler *s, double metric, char **err);
void fg_lr_scheduler_free(fg_lr_scheduler *s); /* NULL is a no-op */
bool fg_lr_scheduler_is_plateau(const fg_lr_scheduler *s);
/* PyTorch's state_dict() layout (base_lrs, last_epoch, _step_count,
 * _last_lr and the scheduler's own fields). */
int fg_lr_scheduler_state_dict(const fg_lr_scheduler *s, fg_value **out, char **err);
int fg_lr_scheduler_load_state_dict(fg_lr_scheduler *s, const fg_value *state, char **err);

/* The lr_scheduler entry of optimizer_config, built for one optimizer:
 * the Lightning-managed scheduler (stepped by the loop at its interval and
 * frequency) and the manual warmup scheduler (stepped after optimizer
 * steps whose global_step is a multiple of warmup_frequency). */
struct fg_sched_set {
  fg_lr_scheduler *scheduler; /* NULL when the entry has none */
  bool interval_step;         /* "step" (else "epoch") */
  int64_t frequency;
  char *monitor;              /* ReduceLROnPlateau's metric, else NULL */
  bool strict;
  fg_lr_scheduler *warmup;    /* NULL when there is no warmup_config */
  int64_t warmup_frequency;
};

/* Builds the schedulers of one optimizer_config entry (checked) for opt;
 * *out is NULL when there are none. Must run right after the optimizer is built:
 * schedulers take the optimizer's current lrs as their base. */
int fg_sched_build(const fg_node *cfg, const char *keypath, fg_optimizer *opt,
                   fg_sched_set **out, char **err);
void fg_sched_set_free(fg_sched_set *s); /* NULL is a no-op */

#ifdef __cplusplus
}
#endif
#endif
