/* fg_model: a network's state (named parameters and buffers, in
 * state_dict order), its train/eval mode and its forward. */
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
  /* state_dict entries: every parameter and persistent buffer, in the
   * order they were added (Python's state_dict order). Tensors are
   * borrowed from params for parameters, owned for buffers. */
  char **state_names;
  fg_tensor **state;
  bool *state_is_param;
  size_t n_state, cap_state;
  bool training;
};

fg_model *fg_model_create(const fg_model_vtable *vt, void *self) {
  fg_model *m = fg__xcalloc(1, sizeof *m);
  m->vt = vt;
  m->self = self;
  m->training = true; /* nn.Module's default */
  return m;
}

void fg_model_free(fg_model *m) {
  if (m == NULL) return;
  if (m->vt && m->vt->free) m->vt->free(m->self);
  for (size_t i = 0; i < m->n; i++) {
    free(m->names[i]);
    fg_tensor_free(m->params[i]);
  }
  for (size_t i = 0; i < m->n_state; i++) {
    free(m->state_names[i]);
    if (!m->state_is_param[i]) fg_tensor_free(m->state[i]);
  }
  free(m->names);
  free(m->params);
  free(m->state_names);
  free(m->state);
  free(m->state_is_param);
  free(m);
}

static void add_state(fg_model *m, const char *name, fg_tensor *t, bool is_param) {
  if (m->n_state == m->cap_state) {
    m->cap_state = m->cap_state ? m->cap_state * 2 : 8;
    m->state_names = fg__xrealloc(m->state_names, m->cap_state * sizeof *m->state_names);
    m->state = fg__xrealloc(m->state, m->cap_state * sizeof *m->state);
    m->state_is_param = fg__xrealloc(m->state_is_param, m->cap_state * sizeof *m->state_is_param);
  }
  m->state_names[m->n_state] = fg__xstrdup(name);
  m->state[m->n_state] = t;
  m->state_is_param[m->n_state] = is_param;
  m->n_state++;
}

void fg_model_add_buffer(fg_model *m, const char *name, fg_tensor *t) {
  add_state(m, name, t, false);
}

size_t fg_model_num_state(const fg_model *m) { return m->n_state; }
const char *fg_model_state_name(const fg_model *m, size_t i) { return m->state_names[i]; }
fg_tensor *fg_model_state(const fg_model *m, size_t i) { return m->state[i]; }
bool fg_model_state_is_param(const fg_model *m, size_t i) { return m->state_is_param[i]; }

void fg_model_train(fg_model *m, bool mode) {
  if (m->vt && m->vt->train) m->vt->train(m->self, mode);
  m->training = mode;
}

bool fg_model_is_training(const fg_model *m) { return m->training; }

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
  add_state(m, name, t, true);
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
