/* fulgur.models.TorchScript(path): a model Python saved with
 * torch.jit.script(m).save(path). Its parameters (sharing storage with the
 * script module, so the optimizer trains the module itself) keep their
 * PyTorch names; its loss_step and metric_step methods, when present, are
 * what the LightningModule uses (the seed's hasattr rule). */
#include <stdlib.h>
#include <string.h>

#include "fulgur/config.h"
#include "fulgur/error.h"
#include "fulgur/jit.h"
#include "fulgur/module.h"
#include "fulgur/registry.h"
#include "util/xalloc.h"

static int ts_forward(void *self, fg_model *m, const fg_value *input, bool train, fg_value **out,
                      char **err) {
  (void)m;
  fg_jit_module *jm = self;
  fg_jit_train(jm, train);
  const fg_value *args[1] = {input};
  int rc = fg_jit_call(jm, "forward", args, 1, out, err);
  return rc ? fg_err_prefix(err, rc, "TorchScript forward") : 0;
}

static bool ts_has_method(void *self, const char *name) { return fg_jit_has_method(self, name); }

static int ts_call(void *self, fg_model *m, const char *name, const fg_value *const *args,
                   size_t n, fg_value **out, char **err) {
  (void)m;
  int want = fg_jit_num_args(self, name);
  if (want != (int)n)
    return fg_err_set(err, FG_EINVAL, "TorchScript %s takes %d arguments; fulgur passes %zu (batch, output)",
                      name, want, n);
  return fg_jit_call(self, name, args, n, out, err);
}

static void ts_free(void *self) { fg_jit_free(self); }

static const fg_model_vtable ts_vt = {
    .forward = ts_forward, .free = ts_free, .has_method = ts_has_method, .call_method = ts_call};

static const fg_param ts_params[] = {
    {"path", FG_T_STRING, NULL, "file saved by torch.jit.script(model).save(path)", NULL, 0},
};

static int ts_create(const fg_class *cls, const fg_node *args, const char *keypath, void **out,
                     char **err) {
  (void)cls;
  const char *path = fg_node_str(fg_node_get(args, "path"));
  fg_jit_module *jm = NULL;
  int rc = fg_jit_load(path, &jm, err);
  if (rc) return fg_err_prefix(err, rc, "%s.path: cannot load TorchScript module '%s'", keypath, path);
  if (fg_jit_num_args(jm, "forward") != 1) {
    int n = fg_jit_num_args(jm, "forward");
    fg_jit_free(jm);
    return fg_err_set(err, FG_EINVAL,
                      "%s.path: '%s': forward takes %d arguments; fulgur calls forward(batch) "
                      "(or forward(x) in a ClassificationModule)",
                      keypath, path, n);
  }
  fg_model *m = fg_model_create(&ts_vt, jm);
  for (size_t i = 0; i < fg_jit_num_params(jm); i++)
    fg_model_add_param(m, fg_jit_param_name(jm, i), fg_jit_param(jm, i));
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
};
