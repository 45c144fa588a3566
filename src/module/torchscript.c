/* fulgur.models.TorchScript(path): a model Python saved with
 * torch.jit.script(m).save(path). Its parameters (sharing storage with the
 * script module, so the optimizer trains the module itself) keep their
 * PyTorch names; its loss_step and metric_step methods, when present, are
 * what the LightningModule uses (the seed's hasattr rule). */
#include <assert.h>
#include <stdlib.h>
#include <string.h>

#include "fulgur/config.h"
#include "fulgur/error.h"
#include "fulgur/jit.h"
#include "fulgur/module.h"
#include "fulgur/registry.h"
#include "registry/builtins.h"
#include "util/xalloc.h"

static int ts_forward(void *self, fg_model *m, const fg_value *input, bool train, fg_value **out,
                      char **err) {
  (void)m;
  /* The module's own mode (ts_train) is what its dropout and batch norm
   * read; `train` is that same mode. */
  (void)train;
  fg_jit_module *jm = self;
  const fg_value *args[1] = {input};
  int rc = fg_jit_call(jm, "forward", args, 1, out, err);
  return rc ? fg_err_prefix(err, rc, "TorchScript forward") : 0;
}

static bool ts_has_method(void *self, const char *name) { return fg_jit_has_method(self, name); }

static int ts_call(void *self, fg_model *m, const char *name, const fg_value *const *args,
                   size_t n, fg_value **out, char **err) {
  (void)m;
  /* Like the seed's calls: a method takes the leading arguments it names
   * (loss_step(batch, output); predict_<task>(batch, deps)). */
  int want = fg_jit_num_args(self, name);
  if (want < 0 || (size_t)want > n)
    return fg_err_set(err, FG_EINVAL, "TorchScript %s takes %d arguments; fulgur passes %zu",
                      name, want, n);
  return fg_jit_call(self, name, args, (size_t)want, out, err);
}

static void ts_free(void *self) { fg_jit_free(self); }

static int ts_visit_modules(void *self, fg_model_module_cb cb, void *ctx, char **err) {
  return fg_jit_visit_modules(self, cb, ctx, err);
}

static void ts_train(void *self, bool mode) { fg_jit_train(self, mode); }

static const fg_model_vtable ts_vt = {.forward = ts_forward,
                                      .free = ts_free,
                                      .has_method = ts_has_method,
                                      .call_method = ts_call,
                                      .visit_modules = ts_visit_modules,
                                      .train = ts_train};

static int check_parameters(const fg_node *v, const char *k, char **err) {
  for (size_t i = 0; i < fg_node_len(v); i++) {
    const char *name = fg_node_key_at(v, i);
    const fg_node *shape = fg_node_value_at(v, i);
    bool ident = (name[0] == '_' || (name[0] >= 'a' && name[0] <= 'z') || (name[0] >= 'A' && name[0] <= 'Z'));
    for (const char *c = name; *c && ident; c++)
      ident = *c == '_' || (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9');
    char *p = fg__xasprintf("%s.%s", k, name);
    int rc = 0;
    if (!ident) rc = fg_config_error(err, shape, p, "parameter names must be identifiers");
    else if (fg_node_kind_of(shape) != FG_NODE_SEQ || fg_node_len(shape) > FG_MAX_DIMS)
      rc = fg_config_error(err, shape, p, "expected a shape (a list of sizes)");
    for (size_t d = 0; rc == 0 && d < fg_node_len(shape); d++)
      if (fg_node_kind_of(fg_node_at(shape, d)) != FG_NODE_INT || fg_node_int(fg_node_at(shape, d)) < 1)
        rc = fg_config_error(err, fg_node_at(shape, d), p, "expected positive sizes");
    free(p);
    if (rc) return rc;
  }
  return 0;
}

static const fg_param ts_params[] = {
    {"path", FG_T_NULL | FG_T_STRING, "null", "file saved by torch.jit.script(model).save(path)", NULL, 0},
    {"source", FG_T_NULL | FG_T_STRING, "null", "TorchScript methods compiled in-process (instead of path)", NULL, 0},
    {"parameters", FG_T_MAP, "{}", "with source: parameter name -> shape (nn.Linear's initialization)", check_parameters, 0},
};

static int ts_check(const fg_class *cls, fg_node *args, const char *keypath, bool fill, char **err) {
  (void)cls;
  (void)fill;
  bool path = fg_node_str(fg_node_get(args, "path")) != NULL;
  bool source = fg_node_str(fg_node_get(args, "source")) != NULL;
  if (path == source)
    return fg_config_error(err, args, keypath, "give exactly one of path (a saved module) and source");
  if (path && fg_node_len(fg_node_get(args, "parameters")) > 0) {
    char *p = fg__xasprintf("%s.parameters", keypath);
    int rc = fg_config_error(err, fg_node_get(args, "parameters"), p,
                             "parameters go with source; a saved module has its own");
    free(p);
    return rc;
  }
  return 0;
}

static int ts_create(const fg_class *cls, const fg_node *args, const char *keypath, void **out,
                     char **err) {
  (void)cls;
  const char *path = fg_node_str(fg_node_get(args, "path"));
  fg_jit_module *jm = NULL;
  int rc;
  if (path) {
    rc = fg_jit_load(path, &jm, err);
    if (rc) return fg_err_prefix(err, rc, "%s.path: cannot load TorchScript module '%s'", keypath, path);
  } else {
    const fg_node *ps = fg_node_get(args, "parameters");
    size_t n = fg_node_len(ps);
    const char **names = fg__xcalloc(n + 1, sizeof *names);
    int64_t(*shapes)[FG_MAX_DIMS] = fg__xcalloc(n + 1, sizeof *shapes);
    const int64_t **sp = fg__xcalloc(n + 1, sizeof *sp);
    int *nd = fg__xcalloc(n + 1, sizeof *nd);
    for (size_t i = 0; i < n; i++) {
      names[i] = fg_node_key_at(ps, i);
      const fg_node *sh = fg_node_value_at(ps, i);
      nd[i] = (int)fg_node_len(sh);
      for (int d = 0; d < nd[i]; d++) shapes[i][d] = fg_node_int(fg_node_at(sh, (size_t)d));
      sp[i] = shapes[i];
    }
    rc = fg_jit_compile(fg_node_str(fg_node_get(args, "source")), names, sp, nd, n, &jm, err);
    free(names);
    free(shapes);
    free(sp);
    free(nd);
    if (rc) return fg_err_prefix(err, rc, "%s.source: cannot compile", keypath);
    path = "<source>";
  }
  if (fg_jit_num_args(jm, "forward") != 1) {
    int n = fg_jit_num_args(jm, "forward");
    fg_jit_free(jm);
    return fg_err_set(err, FG_EINVAL,
                      "%s.path: '%s': forward takes %d arguments; fulgur calls forward(batch) "
                      "(or forward(x) in a ClassificationModule)",
                      keypath, path, n);
  }
  fg_model *m = fg_model_create(&ts_vt, jm);
  /* Parameters and buffers in state_dict order; the parameters alone keep
   * named_parameters() order (what optimizer states index). */
  for (size_t i = 0; i < fg_jit_num_state(jm); i++) {
    if (fg_jit_state_is_param(jm, i)) fg_model_add_param(m, fg_jit_state_name(jm, i), fg_jit_state(jm, i));
    else fg_model_add_buffer(m, fg_jit_state_name(jm, i), fg_jit_state(jm, i));
  }
  assert(fg_model_num_params(m) == fg_jit_num_params(jm));
  /* A module saved after model.eval() comes back in eval mode; a new
   * model trains, as nn.Module does, until a loop says otherwise. */
  fg_model_train(m, true);
  *out = m;
  return 0;
}

static void ts_destroy(void *obj) { fg_model_free(obj); }

static const char *const ts_aliases[] = {"TorchScript", NULL};

const fg_class fg__torchscript_class = {
    .name = "fulgur.models.TorchScript",
    .aliases = ts_aliases,
    .kind = FG_KIND_MODEL,
    .params = ts_params,
    .n_params = sizeof ts_params / sizeof ts_params[0],
    .create = ts_create,
    .destroy = ts_destroy,
    .check = ts_check,
};
