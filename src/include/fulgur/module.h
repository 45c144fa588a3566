/* Models (networks) and the LightningModule.
 *
 * A model (fg_model) is a network: named parameters and a forward from a
 * value to a value. A LightningModule (fg_module) wraps a model and adds the
 * seed's training-step logic: forward, loss_step, metric_step, the
 * evaluators of each split, loss weights. Hooks left NULL in a module's
 * hook table mean "the base behaviour" (ARCHITECTURE.md 3.2).
 */
#ifndef FULGUR_MODULE_H
#define FULGUR_MODULE_H

#include <stdbool.h>
#include <stddef.h>

#include "fulgur/metrics.h"
#include "fulgur/torch.h"
#include "fulgur/value.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- models ---------------------------------------------------------------- */

typedef struct fg_model fg_model;

/* One module of a model's tree (see fg_model_vtable.visit_modules); the
 * strings live for the call only. */
typedef void (*fg_model_module_cb)(void *ctx, const char *name, const char *type, bool training);

typedef struct {
  /* input is borrowed; *out is new. `train` selects dropout etc. */
  int (*forward)(void *self, fg_model *m, const fg_value *input, bool train,
                 fg_value **out, char **err);
  void (*free)(void *self);
  /* Optional: the model's own methods (a TorchScript module's loss_step,
   * metric_step), like Python's hasattr/getattr on the model. */
  bool (*has_method)(void *self, const char *name);
  int (*call_method)(void *self, fg_model *m, const char *name, const fg_value *const *args,
                     size_t n, fg_value **out, char **err);
  /* Optional: the network's module tree for the model summary, as Python's
   * named_modules() lists it: cb once per module, the root first (name
   * ""), with Python's type name ("MLP", "Sequential", "Linear") and its
   * training flag. Parameters are counted from the model's parameter names
   * ("layers.0.weight" is in "layers.0" and "layers"). NULL: the summary
   * shows the model alone, typed "Module". */
  int (*visit_modules)(void *self, fg_model_module_cb cb, void *ctx, char **err);
  /* Optional: nn.Module.train(mode) for models that keep a mode of their
   * own (a TorchScript module's dropout and batch norm read it). */
  void (*train)(void *self, bool mode);
} fg_model_vtable;

/* A model owns self (freed by vt->free) and its parameters. */
fg_model *fg_model_create(const fg_model_vtable *vt, void *self);
void fg_model_free(fg_model *m); /* NULL is a no-op */
/* Registers a parameter (takes ownership of t; requires_grad is set). Names
 * follow PyTorch's dotted module paths ("layers.0.weight"). */
void fg_model_add_param(fg_model *m, const char *name, fg_tensor *t);
/* Registers a persistent buffer (BatchNorm's running_mean): state that is
 * saved and loaded but never trained. Takes ownership of t. Parameters and
 * buffers make the model's state_dict in the order they were added, so
 * add them in Python's order (a module's parameters, its buffers, then
 * its children) and the names match Python's state_dict(). */
void fg_model_add_buffer(fg_model *m, const char *name, fg_tensor *t);
/* The state_dict entries: parameters and persistent buffers (borrowed). */
size_t fg_model_num_state(const fg_model *m);
const char *fg_model_state_name(const fg_model *m, size_t i);
fg_tensor *fg_model_state(const fg_model *m, size_t i);
bool fg_model_state_is_param(const fg_model *m, size_t i);
/* nn.Module.train(mode) / eval(): a new model is in training mode.
 * fg_module_forward_step passes the mode to forward as `train`. */
void fg_model_train(fg_model *m, bool mode);
bool fg_model_is_training(const fg_model *m);
size_t fg_model_num_params(const fg_model *m);
const char *fg_model_param_name(const fg_model *m, size_t i);
fg_tensor *fg_model_param(const fg_model *m, size_t i); /* borrowed */
fg_tensor *fg_model_find_param(const fg_model *m, const char *name);
int fg_model_forward(fg_model *m, const fg_value *input, bool train,
                     fg_value **out, char **err);
bool fg_model_has_method(const fg_model *m, const char *name);
int fg_model_call(fg_model *m, const char *name, const fg_value *const *args, size_t n,
                  fg_value **out, char **err);
/* The vtable's visit_modules, or one root module typed "Module". */
int fg_model_visit_modules(const fg_model *m, fg_model_module_cb cb, void *ctx, char **err);

/* ---- LightningModule ---------------------------------------------------------- */

typedef struct fg_module fg_module;

typedef struct {
  /* forward(batch) -> output. Base: model(batch). */
  int (*forward)(fg_module *m, const fg_value *batch, bool train,
                 fg_value **out, char **err);
  /* loss_step(batch, output) -> loss dict (tensors). Base: see 3.2. */
  int (*loss_step)(fg_module *m, const fg_value *batch, const fg_value *output,
                   fg_value **loss_dict, char **err);
  /* metric_step(batch, output) -> metric kwargs dict or NULL for none. */
  int (*metric_step)(fg_module *m, const fg_value *batch,
                     const fg_value *output, fg_value **metric_dict,
                     char **err);
  /* update_evaluator(evaluator, metric_dict). Base: evaluator.update(**metric_dict). */
  int (*update_evaluator)(fg_module *m, fg_metric *evaluator, const fg_value *metric_dict,
                          char **err);
  /* compute_evaluator(evaluator) -> a number, a dict of them, or an
   * artifact. Base: evaluator.compute(). fulgur resets the evaluator
   * afterwards either way. */
  int (*compute_evaluator)(fg_module *m, fg_metric *evaluator, fg_value **out, char **err);
  /* Hooks found by name, as Python's hasattr finds methods: the predict
   * hooks (predict_<task>, predict_<task>_start, predict_<task>_end,
   * predict_<dep>_dependency, predict_<dep>_dependency_start). A table
   * ending with a NULL name; may be NULL. */
  const struct fg_named_hook *named;
} fg_module_hooks;

/* A hook by name: args as the predict engine passes them (see
 * fg_module_call_hook). */
typedef struct fg_named_hook {
  const char *name;
  int (*fn)(fg_module *m, const fg_value *const *args, size_t n, fg_value **out, char **err);
} fg_named_hook;

/* Split indices, in fg_split_names order. */
typedef enum { FG_SPLIT_FIT = 0, FG_SPLIT_VAL, FG_SPLIT_TEST, FG_SPLIT_PREDICT } fg_split;

/* Takes ownership of model. hooks may be NULL (all base). */
fg_module *fg_module_create(fg_model *model, const fg_module_hooks *hooks);
void fg_module_free(fg_module *m);
fg_model *fg_module_model(const fg_module *m); /* borrowed */
/* Multiplies loss entry `key` by w (others by 1). */
void fg_module_set_loss_weight(fg_module *m, const char *key, double w);
/* Sets the evaluators of a split (one per dataloader); takes ownership. */
void fg_module_set_evaluators(fg_module *m, fg_split split, fg_metric **evals,
                              size_t n);
size_t fg_module_num_evaluators(const fg_module *m, fg_split split);
/* The i-th evaluator of a split (borrowed; i < fg_module_num_evaluators). */
fg_metric *fg_module_evaluator(const fg_module *m, fg_split split, size_t i);

/* The seed's `ckpt_path`: checkpoints whose state_dict loads (non-strictly,
 * in order) at fit start. Copies the paths. */
void fg_module_set_init_ckpts(fg_module *m, const char *const *paths, size_t n);
size_t fg_module_num_init_ckpts(const fg_module *m);
const char *fg_module_init_ckpt(const fg_module *m, size_t i);

/* The seed's `finetune_cfg`: parameters whose name contains one of the
 * patterns get requires_grad = finetune, the others the opposite. n = 0
 * means no finetune_cfg (every parameter trains). Copies the patterns. */
void fg_module_set_finetune(fg_module *m, bool finetune, const char *const *patterns,
                            size_t n);
/* Applies finetune_cfg to the parameters; for each pattern that matches no
 * parameter, calls warn(ctx, pattern). Returns the number of trainable
 * parameters. */
size_t fg_module_apply_finetune(fg_module *m, void (*warn)(void *ctx, const char *pattern),
                                void *ctx);

/* Hooks by name: the module class's table first, then the model's own
 * methods (a TorchScript module's predict_* methods). A model method gets
 * as many leading args as it takes. */
bool fg_module_has_hook(const fg_module *m, const char *name);
int fg_module_call_hook(fg_module *m, const char *name, const fg_value *const *args, size_t n,
                        fg_value **out, char **err);

/* predict_tasks and predict_path (copied; path may be NULL). */
void fg_module_set_predict(fg_module *m, const char *const *tasks, size_t n, const char *path);
size_t fg_module_num_predict_tasks(const fg_module *m);
const char *fg_module_predict_task(const fg_module *m, size_t i);
const char *fg_module_predict_path(const fg_module *m);
/* predict_gather: under ddp, every task's results are gathered to rank 0
 * in dataset order before its predict_<task>_end (default false: each
 * rank saves and ends its own shard). No effect in one process. */
void fg_module_set_predict_gather(fg_module *m, bool gather);
bool fg_module_predict_gather(const fg_module *m);

/* evaluator_as_submodule: evaluator states go into checkpoints' state_dict
 * as "_evaluators.<split>.<idx>.<name>" (float64 scalars, or tensors such
 * as Precision's per-class counts). Setting it fails for an evaluator that
 * cannot save its state (AUROC, which keeps every score). */
int fg_module_set_evaluator_as_submodule(fg_module *m, bool on, char **err);
/* Adds the evaluator states to a state dict (no-op unless the option is on). */
int fg_module_evaluator_state(const fg_module *m, fg_value *state_dict, char **err);
/* Restores what fg_module_evaluator_state saved (missing entries: left as is). */
int fg_module_load_evaluator_state(fg_module *m, const fg_value *state_dict, char **err);

/* The module's parameters as Lightning names them in a state_dict:
 * "model." + the model's names. */
size_t fg_module_num_params(const fg_module *m);
const char *fg_module_param_name(const fg_module *m, size_t i);
fg_tensor *fg_module_param(const fg_module *m, size_t i);

/* The module's state_dict as Lightning's LightningModule.state_dict()
 * holds it: "model." + every model state entry (parameters and
 * persistent buffers, in Python's order). */
size_t fg_module_num_state(const fg_module *m);
const char *fg_module_state_name(const fg_module *m, size_t i);
fg_tensor *fg_module_state(const fg_module *m, size_t i); /* borrowed */
bool fg_module_state_is_param(const fg_module *m, size_t i);
/* Adds the state entries to dict `sd` as detached tensors sharing
 * storage (then the evaluator states, when evaluator_as_submodule). */
int fg_module_state_dict(const fg_module *m, fg_value *sd, char **err);
/* load_state_dict(sd, strict) as PyTorch's: every entry present in both
 * is copied (under no-grad); a shape mismatch is an error either way,
 * naming the key and both shapes, before anything is copied. Strict:
 * missing or unexpected keys are an error naming the first few of each
 * and their counts. Not strict: *report (may be NULL) gets the same
 * facts, or NULL when the state fits. `where` (a file name) starts every
 * message. Evaluator states ("_evaluators.") are restored too, when
 * evaluator_as_submodule is on, and are never unexpected. */
int fg_module_load_state_dict(fg_module *m, const fg_value *sd, bool strict, const char *where,
                              char **report, char **err);
/* LightningModule.train(mode) / eval(): the model's mode. */
void fg_module_train(fg_module *m, bool mode);
bool fg_module_is_training(const fg_module *m);

/* The result of one forward_step. */
typedef struct {
  fg_tensor *loss;      /* total loss (owned) */
  fg_value *loss_dict;  /* weighted entries incl. "loss" (owned) */
  int64_t batch_size;   /* from output's batch_size, else x's first dim, else 1 */
} fg_step_result;
void fg_step_result_clear(fg_step_result *r);

/* The seed's forward_step: forward, loss_step, then metric_step and the
 * evaluator update when the split has evaluators (dataloader_idx picks one).
 * Grad mode is the caller's business. */
int fg_module_forward_step(fg_module *m, fg_split split, size_t dataloader_idx,
                           const fg_value *batch, fg_step_result *out,
                           char **err);

/* Epoch end: compute then reset every evaluator of the split. Adds the
 * results to `metrics` (a dict value) under "<split>/<name>" with numbers as
 * doubles; non-scalar results (e.g. a confusion matrix) go to `artifacts`
 * (may be NULL to drop them). Several dataloaders add "_<idx>" suffixes. */
int fg_module_evaluators_epoch_end(fg_module *m, fg_split split,
                                   fg_value *metrics, char **err);
void fg_module_evaluators_reset(fg_module *m, fg_split split);

#ifdef __cplusplus
}
#endif
#endif
