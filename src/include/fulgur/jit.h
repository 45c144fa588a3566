/* TorchScript modules through the torch bridge: load a file saved with
 * torch.jit.script(m).save(path), list its parameters (sharing storage, so
 * an optimizer updates the module), and call its methods by name. */
#ifndef FULGUR_JIT_H
#define FULGUR_JIT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fulgur/torch.h"
#include "fulgur/value.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fg_jit_module fg_jit_module;

int fg_jit_load(const char *path, fg_jit_module **out, char **err);
/* Compiles TorchScript source (methods using self.<name>) into a module
 * with the given parameters (float32, nn.Linear's default initialization
 * from the global generator). */
int fg_jit_compile(const char *source, const char *const *names, const int64_t *const *shapes,
                   const int *ndims, size_t n, fg_jit_module **out, char **err);
void fg_jit_free(fg_jit_module *jm); /* NULL is a no-op */
size_t fg_jit_num_params(const fg_jit_module *jm);
/* The i-th parameter's name ("layers.0.weight"), owned by jm; NULL when
 * i >= fg_jit_num_params. */
const char *fg_jit_param_name(const fg_jit_module *jm, size_t i);
/* A new handle to the i-th parameter (same storage); the caller frees it.
 * NULL when i >= fg_jit_num_params. */
fg_tensor *fg_jit_param(const fg_jit_module *jm, size_t i);
/* The module's state_dict entries, parameters and buffers, with the names
 * and in the order of Python's torch.jit.load(path).state_dict() (a
 * scripted module keeps every buffer: TorchScript 1.13 drops
 * persistent=False). fg_jit_state returns a new handle sharing storage
 * (BatchNorm updates its running statistics in place); the caller frees
 * it. */
size_t fg_jit_num_state(const fg_jit_module *jm);
const char *fg_jit_state_name(const fg_jit_module *jm, size_t i);
fg_tensor *fg_jit_state(const fg_jit_module *jm, size_t i);
bool fg_jit_state_is_param(const fg_jit_module *jm, size_t i);
bool fg_jit_has_method(const fg_jit_module *jm, const char *name);
/* Arguments a method takes, without self; -1 when there is no such method. */
int fg_jit_num_args(const fg_jit_module *jm, const char *method);
/* nn.Module.train(mode): dropout and batch norm follow it. */
void fg_jit_train(fg_jit_module *jm, bool train);
/* Visits the module tree as Python's nn.Module.named_modules() lists it,
 * the root first (name ""), then "body", "body.0", ...: each module's
 * dotted name, its type name (the TorchScript class's qualified name
 * without its dotted prefix, "__torch__.torch.nn.modules.linear.Linear" ->
 * "Linear", as Python's type(m).__name__) and its training flag. The
 * strings live for the callback's call only. */
typedef void (*fg_jit_module_cb)(void *ctx, const char *name, const char *type, bool training);
int fg_jit_visit_modules(const fg_jit_module *jm, fg_jit_module_cb cb, void *ctx, char **err);
/* Calls method(args...). Dicts of tensors are passed as Dict[str, Tensor];
 * forward's output passed back (to loss_step, metric_step) keeps its exact
 * TorchScript type. *out is new. */
int fg_jit_call(fg_jit_module *jm, const char *method, const fg_value *const *args, size_t n,
                fg_value **out, char **err);

#ifdef __cplusplus
}
#endif
#endif
