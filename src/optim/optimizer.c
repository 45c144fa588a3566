/* torch.optim.SGD / Adam / AdamW with PyTorch's names and defaults, and
 * the optimizer_config entry that selects one. */
#include <stdlib.h>
#include <string.h>

#include "fulgur/error.h"
#include "fulgur/optim.h"
#include "fulgur/registry.h"
#include "util/xalloc.h"

static int check_nonneg(const fg_node *v, const char *keypath, char **err) {
  if (fg_node_float(v) < 0)
    return fg_config_error(err, v, keypath, "expected a value >= 0, got %g", fg_node_float(v));
  return 0;
}

static int check_betas(const fg_node *v, const char *keypath, char **err) {
  if (fg_node_len(v) != 2)
    return fg_config_error(err, v, keypath, "expected two numbers [beta1, beta2]");
  for (size_t i = 0; i < 2; i++) {
    double b = fg_node_float(fg_node_at(v, i));
    if (!(b >= 0 && b < 1))
      return fg_config_error(err, fg_node_at(v, i), keypath,
                             "expected betas in [0, 1), got %g", b);
  }
  return 0;
}

static const fg_param sgd_params[] = {
    {"lr", FG_T_FLOAT, "0.001", "learning rate", check_nonneg, 0},
    {"momentum", FG_T_FLOAT, "0.0", "momentum factor", check_nonneg, 0},
    {"dampening", FG_T_FLOAT, "0.0", "dampening for momentum", check_nonneg, 0},
    {"weight_decay", FG_T_FLOAT, "0.0", "L2 penalty", check_nonneg, 0},
    {"nesterov", FG_T_BOOL, "false", "Nesterov momentum", NULL, 0},
    {"maximize", FG_T_BOOL, "false", "must be false", NULL, 0},
};

static const fg_param adam_params[] = {
    {"lr", FG_T_FLOAT, "0.001", "learning rate", check_nonneg, 0},
    {"betas", FG_T_SEQ, "[0.9, 0.999]", "coefficients of the running averages", check_betas, FG_T_FLOAT},
    {"eps", FG_T_FLOAT, "1.0e-08", "denominator term", check_nonneg, 0},
    {"weight_decay", FG_T_FLOAT, "0.0", "weight decay", check_nonneg, 0},
    {"amsgrad", FG_T_BOOL, "false", "AMSGrad variant", NULL, 0},
    {"maximize", FG_T_BOOL, "false", "must be false", NULL, 0},
};

static const fg_param adamw_params[] = {
    {"lr", FG_T_FLOAT, "0.001", "learning rate", check_nonneg, 0},
    {"betas", FG_T_SEQ, "[0.9, 0.999]", "coefficients of the running averages", check_betas, FG_T_FLOAT},
    {"eps", FG_T_FLOAT, "1.0e-08", "denominator term", check_nonneg, 0},
    {"weight_decay", FG_T_FLOAT, "0.01", "decoupled weight decay", check_nonneg, 0},
    {"amsgrad", FG_T_BOOL, "false", "AMSGrad variant", NULL, 0},
    {"maximize", FG_T_BOOL, "false", "must be false", NULL, 0},
};

static double num(const fg_node *args, const char *k) { return fg_node_float(fg_node_get(args, k)); }

static int optim_create(const fg_class *cls, const fg_node *args, const char *keypath,
                        void **out, char **err) {
  if (fg_node_bool(fg_node_get(args, "maximize"))) {
    char *p = fg__xasprintf("%s.maximize", keypath);
    int rc = fg_config_error(err, fg_node_get(args, "maximize"), p,
                             "maximize is not supported by this fulgur version");
    free(p);
    return rc;
  }
  fg_optim_spec *s = fg__xcalloc(1, sizeof *s);
  s->kind = (fg_optim_kind)(intptr_t)cls->data;
  s->class_name = strrchr(cls->name, '.') + 1;
  fg_optim_group *g = &s->defaults;
  g->lr = num(args, "lr");
  g->weight_decay = num(args, "weight_decay");
  if (s->kind == FG_OPTIM_SGD) {
    g->momentum = num(args, "momentum");
    g->dampening = num(args, "dampening");
    g->nesterov = fg_node_bool(fg_node_get(args, "nesterov"));
    if (g->nesterov && (g->momentum <= 0 || g->dampening != 0)) {
      free(s);
      char *p = fg__xasprintf("%s.nesterov", keypath);
      int rc = fg_config_error(err, fg_node_get(args, "nesterov"), p,
                               "Nesterov momentum requires a momentum and zero dampening");
      free(p);
      return rc;
    }
  } else {
    const fg_node *b = fg_node_get(args, "betas");
    g->beta1 = fg_node_float(fg_node_at(b, 0));
    g->beta2 = fg_node_float(fg_node_at(b, 1));
    g->eps = num(args, "eps");
    g->amsgrad = fg_node_bool(fg_node_get(args, "amsgrad"));
  }
  *out = s;
  return 0;
}

static const char *const sgd_aliases[] = {"SGD", NULL};
static const char *const adam_aliases[] = {"Adam", NULL};
static const char *const adamw_aliases[] = {"AdamW", NULL};

static const fg_class sgd_class = {
    .name = "torch.optim.SGD", .aliases = sgd_aliases, .kind = FG_KIND_OPTIMIZER,
    .params = sgd_params, .n_params = sizeof sgd_params / sizeof sgd_params[0],
    .create = optim_create, .destroy = free, .data = (void *)(intptr_t)FG_OPTIM_SGD};
static const fg_class adam_class = {
    .name = "torch.optim.Adam", .aliases = adam_aliases, .kind = FG_KIND_OPTIMIZER,
    .params = adam_params, .n_params = sizeof adam_params / sizeof adam_params[0],
    .create = optim_create, .destroy = free, .data = (void *)(intptr_t)FG_OPTIM_ADAM};
static const fg_class adamw_class = {
    .name = "torch.optim.AdamW", .aliases = adamw_aliases, .kind = FG_KIND_OPTIMIZER,
    .params = adamw_params, .n_params = sizeof adamw_params / sizeof adamw_params[0],
    .create = optim_create, .destroy = free, .data = (void *)(intptr_t)FG_OPTIM_ADAMW};

void fg__register_builtin_optim(void) {
  fg__registry_add_builtin(&sgd_class);
  fg__registry_add_builtin(&adam_class);
  fg__registry_add_builtin(&adamw_class);
}

/* Normalizes one entry: a bare optimizer object becomes {optimizer: obj}. */
static int check_entry(fg_node *seq, size_t i, const char *keypath, bool fill, char **err) {
  fg_node *e = fg_node_at(seq, i);
  if (fg_node_kind_of(e) != FG_NODE_MAP)
    return fg_config_error(err, e, keypath,
                           "expected {optimizer: {class_path, init_args}} or an optimizer object, got %s",
                           fg_node_kind_name(fg_node_kind_of(e)));
  if (fg_node_get(e, "class_path")) {
    fg_node *obj = fg_node_seq_take(seq, i);
    fg_node *wrap = fg_node_new_map();
    fg_mark m = fg_node_mark(obj);
    if (m.file) fg_node_set_mark(wrap, m.file, m.line, m.col);
    fg_node_map_set(wrap, "optimizer", obj);
    fg_node_seq_insert(seq, i, wrap);
    e = wrap;
  }
  static const char *const keys[] = {"optimizer", "lr_scheduler", "frequency"};
  for (size_t k = 0; k < fg_node_len(e); k++) {
    const char *key = fg_node_key_at(e, k);
    fg_node *v = fg_node_value_at(e, k);
    char *p = fg__xasprintf("%s.%s", keypath, key);
    int rc = 0;
    if (strcmp(key, "optimizer") == 0) {
      rc = fg_registry_check(v, p, FG_KIND_OPTIMIZER, fill, err);
    } else if (strcmp(key, "lr_scheduler") == 0) {
      if (fg_node_kind_of(v) != FG_NODE_NULL) rc = fg__lr_scheduler_entry_check(e, p, fill, err);
    } else if (strcmp(key, "frequency") == 0) {
      if (fg_node_kind_of(v) != FG_NODE_NULL)
        rc = fg_config_error(err, v, p, "not supported by this fulgur version yet");
    } else {
      const char *close = fg_closest_name(key, keys, 3);
      rc = fg_config_error(err, v, p, "unknown key '%s'%s%s%s", key,
                           close ? " (did you mean '" : "", close ? close : "", close ? "'?)" : "");
    }
    free(p);
    if (rc) return rc;
  }
  if (fg_node_get(e, "optimizer") == NULL)
    return fg_config_error(err, e, keypath, "missing key 'optimizer'");
  return 0;
}

int fg_optim_config_check(fg_node *cfg, const char *keypath, bool fill, char **err) {
  if (fg_node_kind_of(cfg) == FG_NODE_MAP) {
    /* One entry: check it as a one-item list, then unwrap. */
    fg_node *seq = fg_node_new_seq();
    fg_node_seq_append(seq, fg_node_clone(cfg));
    int rc = check_entry(seq, 0, keypath, fill, err);
    if (rc == 0) {
      fg_node *e = fg_node_at(seq, 0);
      while (fg_node_len(cfg)) fg_node_free(fg_node_map_take(cfg, fg_node_key_at(cfg, 0)));
      for (size_t k = 0; k < fg_node_len(e); k++)
        fg_node_map_set(cfg, fg_node_key_at(e, k), fg_node_clone(fg_node_value_at(e, k)));
    }
    fg_node_free(seq);
    return rc;
  }
  if (fg_node_kind_of(cfg) != FG_NODE_SEQ)
    return fg_config_error(err, cfg, keypath, "expected an optimizer entry or a list of them, got %s",
                           fg_node_kind_name(fg_node_kind_of(cfg)));
  if (fg_node_len(cfg) != 1)
    return fg_config_error(err, cfg, keypath,
                           "several optimizers are not supported by this fulgur version yet");
  char *p = fg__xasprintf("%s.0", keypath);
  int rc = check_entry(cfg, 0, p, fill, err);
  free(p);
  return rc;
}

int fg_optim_build(const fg_node *cfg, const char *keypath, fg_module *m,
                   fg_optimizer **out, const char **class_name, char **err) {
  const fg_node *entry = fg_node_kind_of(cfg) == FG_NODE_SEQ ? fg_node_at(cfg, 0) : cfg;
  char *p = fg__xasprintf("%s.optimizer", keypath);
  void *obj = NULL;
  int rc = fg_registry_create(fg_node_get(entry, "optimizer"), p, FG_KIND_OPTIMIZER, &obj,
                              NULL, err);
  free(p);
  if (rc) return rc;
  fg_optim_spec *spec = obj;
  size_t n = fg_module_num_params(m), k = 0;
  fg_tensor **params = fg__xcalloc(n ? n : 1, sizeof *params);
  for (size_t i = 0; i < n; i++)
    if (fg_tensor_requires_grad(fg_module_param(m, i))) params[k++] = fg_module_param(m, i);
  fg_optim_group g = spec->defaults;
  g.params = params;
  g.n_params = k;
  rc = fg_optimizer_create(spec->kind, &g, 1, out, err);
  if (class_name) *class_name = spec->class_name; /* static: points into the class name */
  free(params);
  free(spec);
  return rc;
}
