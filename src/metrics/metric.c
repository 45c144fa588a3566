/* fg_metric: a named evaluator behind a vtable. */
#include <stdlib.h>
#include <string.h>

#include "fulgur/error.h"
#include "fulgur/metrics.h"
#include "fulgur/torch.h"
#include "util/xalloc.h"

struct fg_metric {
  const fg_metric_vtable *vt;
  void *self;
  char *name;
};

fg_metric *fg_metric_create(const fg_metric_vtable *vt, void *self, const char *name) {
  fg_metric *m = fg__xcalloc(1, sizeof *m);
  m->vt = vt;
  m->self = self;
  m->name = fg__xstrdup(name);
  return m;
}

void fg_metric_free(fg_metric *m) {
  if (m == NULL) return;
  if (m->vt->free) m->vt->free(m->self);
  free(m->name);
  free(m);
}

const char *fg_metric_name(const fg_metric *m) { return m->name; }

int fg_metric_update(fg_metric *m, const fg_value *kwargs, char **err) {
  if (fg_value_kind_of(kwargs) != FG_VALUE_DICT)
    return fg_err_set(err, FG_EINVAL, "%s.update: expected keyword arguments (a dict), got %s",
                      m->name, fg_value_kind_name(fg_value_kind_of(kwargs)));
  int rc = m->vt->update(m->self, kwargs, err);
  if (rc) return fg_err_prefix(err, rc, "%s.update", m->name);
  return 0;
}

int fg_metric_compute(fg_metric *m, fg_value **out, char **err) {
  *out = NULL;
  return m->vt->compute(m->self, out, err);
}

void fg_metric_reset(fg_metric *m) { m->vt->reset(m->self); }

bool fg_metric_has_state(const fg_metric *m) {
  return m->vt->state_dict != NULL && m->vt->load_state_dict != NULL;
}

int fg_metric_state_dict(const fg_metric *m, fg_value **out, char **err) {
  *out = NULL;
  if (!fg_metric_has_state(m))
    return fg_err_set(err, FG_EUNSUPPORTED, "%s cannot save its state", m->name);
  return m->vt->state_dict(m->self, out, err);
}

int fg_metric_load_state_dict(fg_metric *m, const fg_value *state, char **err) {
  if (!fg_metric_has_state(m))
    return fg_err_set(err, FG_EUNSUPPORTED, "%s cannot load a state", m->name);
  int rc = m->vt->load_state_dict(m->self, state, err);
  return rc ? fg_err_prefix(err, rc, "%s state", m->name) : 0;
}

int fg_metric_reduce_states(const fg_metric *m, fg_value *const *states, int n, fg_value **out,
                            char **err) {
  *out = NULL;
  if (!fg_metric_has_state(m))
    return fg_err_set(err, FG_EUNSUPPORTED, "%s has no state to reduce", m->name);
  int rc = m->vt->reduce_states ? m->vt->reduce_states(m->self, states, n, out, err)
                                : fg_value_dicts_sum(states, n, out, err);
  return rc ? fg_err_prefix(err, rc, "%s state", m->name) : 0;
}

bool fg_metric_takes(const fg_metric *m, const char *name) {
  static const char *const preds_target[] = {"preds", "target", NULL};
  const char *const *names = m->vt->arg_names ? m->vt->arg_names : preds_target;
  for (; *names; names++)
    if (strcmp(*names, "*") == 0 || strcmp(*names, name) == 0) return true;
  return false;
}
