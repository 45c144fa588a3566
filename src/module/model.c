/* fg_model: a network's named parameters plus its forward. */
#include <stdlib.h>
#include <string.h>

#include "fulgur/error.h"
#include "fulgur/module.h"
#include "util/xalloc.h"

struct fg_model {
  const fg_model_vtable *vt;
  void *self;
  char **names;
  fg_tensor **params;
  size_t n, cap;
};

fg_model *fg_model_create(const fg_model_vtable *vt, void *self) {
  fg_model *m = fg__xcalloc(1, sizeof *m);
  m->vt = vt;
  m->self = self;
  return m;
}

void fg_model_free(fg_model *m) {
  if (m == NULL) return;
  if (m->vt && m->vt->free) m->vt->free(m->self);
  for (size_t i = 0; i < m->n; i++) {
    free(m->names[i]);
    fg_tensor_free(m->params[i]);
  }
  free(m->names);
  free(m->params);
  free(m);
}

void fg_model_add_param(fg_model *m, const char *name, fg_tensor *t) {
  if (m->n == m->cap) {
    m->cap = m->cap ? m->cap * 2 : 8;
    m->names = fg__xrealloc(m->names, m->cap * sizeof *m->names);
    m->params = fg__xrealloc(m->params, m->cap * sizeof *m->params);
  }
  /* A fresh leaf tensor cannot fail to take requires_grad. */
  fg_tensor_set_requires_grad(t, true, NULL);
  m->names[m->n] = fg__xstrdup(name);
  m->params[m->n] = t;
  m->n++;
}

size_t fg_model_num_params(const fg_model *m) { return m->n; }
const char *fg_model_param_name(const fg_model *m, size_t i) { return m->names[i]; }
fg_tensor *fg_model_param(const fg_model *m, size_t i) { return m->params[i]; }

fg_tensor *fg_model_find_param(const fg_model *m, const char *name) {
  for (size_t i = 0; i < m->n; i++)
    if (strcmp(m->names[i], name) == 0) return m->params[i];
  return NULL;
}

int fg_model_forward(fg_model *m, const fg_value *input, bool train,
                     fg_value **out, char **err) {
  *out = NULL;
  return m->vt->forward(m->self, m, input, train, out, err);
}

bool fg_model_has_method(const fg_model *m, const char *name) {
  return m->vt->has_method && m->vt->has_method(m->self, name);
}

int fg_model_call(fg_model *m, const char *name, const fg_value *const *args, size_t n,
                  fg_value **out, char **err) {
  *out = NULL;
  if (!fg_model_has_method(m, name) || m->vt->call_method == NULL)
    return fg_err_set(err, FG_ENOTFOUND, "the model has no method %s", name);
  return m->vt->call_method(m->self, m, name, args, n, out, err);
}

int fg_model_visit_modules(const fg_model *m, fg_model_module_cb cb, void *ctx, char **err) {
  if (m->vt->visit_modules) return m->vt->visit_modules(m->self, cb, ctx, err);
  cb(ctx, "", "Module", true);
  return 0;
}
