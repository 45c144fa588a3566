/* torch.optim.SGD / Adam / AdamW with PyTorch's names and defaults, and
 * the optimizer_config entry that selects one. */
#include <stdlib.h>
#include <string.h>

#include "fulgur/error.h"
#include "fulgur/optim.h"
#include "fulgur/registry.h"
#include "optim/scheduler.h"
#include "registry/builtins.h"
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
    {"params", FG_T_NULL | FG_T_STRING | FG_T_SEQ | FG_T_MAP, "null", "parameter groups by name substring (null: every parameter)", NULL, 0},
    {"lr", FG_T_FLOAT, "0.001", "learning rate", check_nonneg, 0},
    {"momentum", FG_T_FLOAT, "0.0", "momentum factor", check_nonneg, 0},
    {"dampening", FG_T_FLOAT, "0.0", "dampening for momentum", check_nonneg, 0},
    {"weight_decay", FG_T_FLOAT, "0.0", "L2 penalty", check_nonneg, 0},
    {"nesterov", FG_T_BOOL, "false", "Nesterov momentum", NULL, 0},
    {"maximize", FG_T_BOOL, "false", "must be false", NULL, 0},
};

static const fg_param adam_params[] = {
    {"params", FG_T_NULL | FG_T_STRING | FG_T_SEQ | FG_T_MAP, "null", "parameter groups by name substring (null: every parameter)", NULL, 0},
    {"lr", FG_T_FLOAT, "0.001", "learning rate", check_nonneg, 0},
    {"betas", FG_T_SEQ, "[0.9, 0.999]", "coefficients of the running averages", check_betas, FG_T_FLOAT},
    {"eps", FG_T_FLOAT, "1.0e-08", "denominator term", check_nonneg, 0},
    {"weight_decay", FG_T_FLOAT, "0.0", "weight decay", check_nonneg, 0},
    {"amsgrad", FG_T_BOOL, "false", "AMSGrad variant", NULL, 0},
    {"maximize", FG_T_BOOL, "false", "must be false", NULL, 0},
};

static const fg_param adamw_params[] = {
    {"params", FG_T_NULL | FG_T_STRING | FG_T_SEQ | FG_T_MAP, "null", "parameter groups by name substring (null: every parameter)", NULL, 0},
    {"lr", FG_T_FLOAT, "0.001", "learning rate", check_nonneg, 0},
    {"betas", FG_T_SEQ, "[0.9, 0.999]", "coefficients of the running averages", check_betas, FG_T_FLOAT},
    {"eps", FG_T_FLOAT, "1.0e-08", "denominator term", check_nonneg, 0},
    {"weight_decay", FG_T_FLOAT, "0.01", "decoupled weight decay", check_nonneg, 0},
    {"amsgrad", FG_T_BOOL, "false", "AMSGrad variant", NULL, 0},
    {"maximize", FG_T_BOOL, "false", "must be false", NULL, 0},
};

/* Sets the options present in `a` (an optimizer's init_args, or one
 * parameter group's overrides). */
static void apply_args(fg_optim_kind kind, const fg_node *a, fg_optim_group *g) {
  const fg_node *v;
  if ((v = fg_node_get(a, "lr"))) g->lr = fg_node_float(v);
  if ((v = fg_node_get(a, "weight_decay"))) g->weight_decay = fg_node_float(v);
  if (kind == FG_OPTIM_SGD) {
    if ((v = fg_node_get(a, "momentum"))) g->momentum = fg_node_float(v);
    if ((v = fg_node_get(a, "dampening"))) g->dampening = fg_node_float(v);
    if ((v = fg_node_get(a, "nesterov"))) g->nesterov = fg_node_bool(v);
  } else {
    if ((v = fg_node_get(a, "betas"))) {
      g->beta1 = fg_node_float(fg_node_at(v, 0));
      g->beta2 = fg_node_float(fg_node_at(v, 1));
    }
    if ((v = fg_node_get(a, "eps"))) g->eps = fg_node_float(v);
    if ((v = fg_node_get(a, "amsgrad"))) g->amsgrad = fg_node_bool(v);
  }
}

/* One entry of `params` names parameters: a substring, null (every
 * parameter no other entry takes), or a list of those. */
static int check_names(const fg_node *v, const char *path, char **err) {
  if (fg_node_kind_of(v) == FG_NODE_NULL || fg_node_kind_of(v) == FG_NODE_STRING) return 0;
  if (fg_node_kind_of(v) == FG_NODE_SEQ) {
    for (size_t i = 0; i < fg_node_len(v); i++) {
      fg_node_kind k = fg_node_kind_of(fg_node_at(v, i));
      if (k != FG_NODE_NULL && k != FG_NODE_STRING)
        return fg_config_error(err, fg_node_at(v, i), path,
                               "expected parameter name substrings (strings) or null, got %s",
                               fg_node_kind_name(k));
    }
    return 0;
  }
  return fg_config_error(err, v, path, "expected a parameter name substring, null, or a list of them, got %s",
                         fg_node_kind_name(fg_node_kind_of(v)));
}

/* The optimizer's `params` (lightning_template's form): a group or a list
 * of groups; a group is names (check_names) or {params: names, <options>}
 * whose options override the optimizer's for that group. */
static int optim_check(const fg_class *cls, fg_node *args, const char *keypath, bool fill,
                       char **err) {
  (void)fill;
  fg_node *ps = fg_node_get(args, "params");
  if (ps == NULL || fg_node_kind_of(ps) == FG_NODE_NULL) return 0;
  bool list = fg_node_kind_of(ps) == FG_NODE_SEQ;
  size_t n = list ? fg_node_len(ps) : 1;
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    fg_node *g = list ? fg_node_at(ps, i) : ps;
    char *gp = list ? fg__xasprintf("%s.params.%zu", keypath, i) : fg__xasprintf("%s.params", keypath);
    if (fg_node_kind_of(g) == FG_NODE_MAP) {
      fg_node *opts = fg_node_clone(g);
      fg_node *names = fg_node_map_take(opts, "params");
      char *np = fg__xasprintf("%s.params", gp);
      if (names) rc = check_names(names, np, err);
      free(np);
      fg_node_free(names);
      if (rc == 0 && fg_node_get(opts, "params") == NULL)
        rc = fg_schema_check(cls->params, cls->n_params, opts, gp, false, err);
      fg_node_free(opts);
    } else if (list && fg_node_kind_of(g) == FG_NODE_SEQ) {
      rc = check_names(g, gp, err);
    } else if (!list || fg_node_kind_of(g) != FG_NODE_SEQ) {
      rc = check_names(g, gp, err);
    }
    free(gp);
  }
  return rc;
}

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
  apply_args(s->kind, args, g);
  if (s->kind == FG_OPTIM_SGD) {
    if (g->nesterov && (g->momentum <= 0 || g->dampening != 0)) {
      free(s);
      char *p = fg__xasprintf("%s.nesterov", keypath);
      int rc = fg_config_error(err, fg_node_get(args, "nesterov"), p,
                               "Nesterov momentum requires a momentum and zero dampening");
      free(p);
      return rc;
    }
  }
  *out = s;
  return 0;
}

static const char *const sgd_aliases[] = {"SGD", NULL};
static const char *const adam_aliases[] = {"Adam", NULL};
static const char *const adamw_aliases[] = {"AdamW", NULL};

const fg_class fg__sgd_class = {
    .name = "torch.optim.SGD", .aliases = sgd_aliases, .kind = FG_KIND_OPTIMIZER,
    .params = sgd_params, .n_params = sizeof sgd_params / sizeof sgd_params[0],
    .create = optim_create, .destroy = free, .check = optim_check,
    .data = (void *)(intptr_t)FG_OPTIM_SGD};
const fg_class fg__adam_class = {
    .name = "torch.optim.Adam", .aliases = adam_aliases, .kind = FG_KIND_OPTIMIZER,
    .params = adam_params, .n_params = sizeof adam_params / sizeof adam_params[0],
    .create = optim_create, .destroy = free, .check = optim_check,
    .data = (void *)(intptr_t)FG_OPTIM_ADAM};
const fg_class fg__adamw_class = {
    .name = "torch.optim.AdamW", .aliases = adamw_aliases, .kind = FG_KIND_OPTIMIZER,
    .params = adamw_params, .n_params = sizeof adamw_params / sizeof adamw_params[0],
    .create = optim_create, .destroy = free, .check = optim_check,
    .data = (void *)(intptr_t)FG_OPTIM_ADAMW};


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
      if (fg_node_kind_of(v) != FG_NODE_NULL &&
          (fg_node_kind_of(v) != FG_NODE_INT || fg_node_int(v) < 1))
        rc = fg_config_error(err, v, p, "expected a positive integer or null");
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
  if (fg_node_kind_of(cfg) != FG_NODE_SEQ || fg_node_len(cfg) == 0)
    return fg_config_error(err, cfg, keypath, "expected an optimizer entry or a list of them, got %s",
                           fg_node_kind_of(cfg) == FG_NODE_SEQ ? "an empty list"
                                                               : fg_node_kind_name(fg_node_kind_of(cfg)));
  int rc = 0;
  for (size_t i = 0; i < fg_node_len(cfg) && rc == 0; i++) {
    char *p = fg__xasprintf("%s.%zu", keypath, i);
    rc = check_entry(cfg, i, p, fill, err);
    free(p);
  }
  /* lightning_template: frequencies are all null (every optimizer every
   * step) or all set (round-robin); a mix has no meaning. */
  size_t with = 0;
  for (size_t i = 0; i < fg_node_len(cfg) && rc == 0; i++) {
    const fg_node *f = fg_node_get(fg_node_at(cfg, i), "frequency");
    with += f && fg_node_kind_of(f) == FG_NODE_INT;
  }
  if (rc == 0 && with != 0 && with != fg_node_len(cfg))
    rc = fg_config_error(err, cfg, keypath,
                         "frequency must be set for every optimizer or for none (%zu of %zu have one)",
                         with, fg_node_len(cfg));
  return rc;
}

/* One parameter group as written: its name substrings (NULL = "the
 * rest") and its option overrides (a map or NULL). */
typedef struct {
  const char **names;
  size_t n_names;
  const fg_node *opts;
} group_cfg;

static void add_names(group_cfg *g, const fg_node *v) {
  bool list = fg_node_kind_of(v) == FG_NODE_SEQ;
  size_t n = list ? fg_node_len(v) : 1;
  g->names = fg__xrealloc(g->names, (g->n_names + n + 1) * sizeof *g->names);
  for (size_t i = 0; i < n; i++) g->names[g->n_names++] = fg_node_str(list ? fg_node_at(v, i) : v);
}

static int cmp_len_desc(const void *a, const void *b) {
  const char *x = *(const char *const *)a, *y = *(const char *const *)b;
  size_t lx = strlen(x), ly = strlen(y);
  if (lx != ly) return lx > ly ? -1 : 1;
  return strcmp(x, y);
}

void fg_optim_set_free(fg_optim_set *s) {
  if (s == NULL) return;
  for (size_t i = 0; i < s->n; i++) {
    fg_sched_set_free(s->scheds[i]);
    fg_optimizer_free(s->opts[i]);
    free(s->monitor_names[i]);
  }
  free(s->scheds);
  free(s->opts);
  free(s->class_names);
  free(s->monitor_names);
  free(s->frequency);
  free(s);
}

bool fg_optim_set_active(const fg_optim_set *s, size_t i, int64_t batch_idx) {
  if (s->frequency == NULL) return true;
  /* Lightning 1.x's round-robin: optimizer k owns frequency[k] consecutive
   * batches of each cycle. */
  int64_t cycle = 0;
  for (size_t k = 0; k < s->n; k++) cycle += s->frequency[k];
  int64_t place = batch_idx % cycle, end = 0;
  for (size_t k = 0; k < s->n; k++) {
    end += s->frequency[k];
    if (place < end) return k == i;
  }
  return false;
}

int fg_optim_set_build(const fg_node *cfg, const char *keypath, fg_module *m, fg_optim_set **out,
                       char **err) {
  *out = NULL;
  bool list = fg_node_kind_of(cfg) == FG_NODE_SEQ;
  size_t n_opt = list ? fg_node_len(cfg) : 1;
  fg_optim_set *set = fg__xcalloc(1, sizeof *set);
  set->opts = fg__xcalloc(n_opt, sizeof *set->opts);
  set->class_names = fg__xcalloc(n_opt, sizeof *set->class_names);
  set->monitor_names = fg__xcalloc(n_opt, sizeof *set->monitor_names);
  set->scheds = fg__xcalloc(n_opt, sizeof *set->scheds);
  fg_optim_spec **specs = fg__xcalloc(n_opt, sizeof *specs);
  int rc = 0;

  /* Every optimizer's groups as written (lightning_template's
   * parser_optim_config); names resolve across all optimizers together. */
  size_t total_groups = 0;
  group_cfg **groups = fg__xcalloc(n_opt, sizeof *groups);
  size_t *n_groups = fg__xcalloc(n_opt, sizeof *n_groups);
  for (size_t o = 0; o < n_opt && rc == 0; o++) {
    const fg_node *entry = list ? fg_node_at(cfg, o) : cfg;
    const fg_node *ocfg = fg_node_get(entry, "optimizer");
    char *p = list ? fg__xasprintf("%s.%zu.optimizer", keypath, o) : fg__xasprintf("%s.optimizer", keypath);
    void *obj = NULL;
    rc = fg_registry_create(ocfg, p, FG_KIND_OPTIMIZER, &obj, NULL, err);
    free(p);
    if (rc) break;
    specs[o] = obj;
    const fg_node *ps = fg_node_get(fg_node_get(ocfg, "init_args"), "params");
    bool none = ps == NULL || fg_node_kind_of(ps) == FG_NODE_NULL;
    bool plist = fg_node_kind_of(ps) == FG_NODE_SEQ;
    size_t ng = none ? 1 : plist ? fg_node_len(ps) : 1;
    groups[o] = fg__xcalloc(ng + 1, sizeof **groups);
    n_groups[o] = ng;
    total_groups += ng;
    for (size_t i = 0; i < ng; i++) {
      const fg_node *g = none ? NULL : plist ? fg_node_at(ps, i) : ps;
      if (fg_node_kind_of(g) == FG_NODE_MAP) {
        groups[o][i].opts = g;
        add_names(&groups[o][i], fg_node_get(g, "params"));
      } else {
        add_names(&groups[o][i], g);
      }
    }
  }
  size_t np = fg_module_num_params(m);
  const char **owner = fg__xcalloc(np + 1, sizeof *owner); /* matched name, NULL = rest */
  bool *rest = fg__xcalloc(np + 1, sizeof *rest);
  if (rc == 0) {
    /* Longest name first: a parameter belongs to the longest name it
     * contains; the rest go to null groups, or are frozen when no group
     * asks for them (as lightning_template does). */
    size_t n_all = 0, k = 0;
    bool want_rest = false;
    for (size_t o = 0; o < n_opt; o++)
      for (size_t i = 0; i < n_groups[o]; i++) n_all += groups[o][i].n_names;
    const char **all = fg__xcalloc(n_all + 1, sizeof *all);
    for (size_t o = 0; o < n_opt; o++)
      for (size_t i = 0; i < n_groups[o]; i++)
        for (size_t j = 0; j < groups[o][i].n_names; j++) {
          if (groups[o][i].names[j] == NULL) want_rest = true;
          else all[k++] = groups[o][i].names[j];
        }
    qsort(all, k, sizeof *all, cmp_len_desc);
    for (size_t i = 0; i < np; i++) {
      const char *name = fg_module_param_name(m, i);
      for (size_t j = 0; j < k && owner[i] == NULL; j++)
        if (strstr(name, all[j])) owner[i] = all[j];
      if (owner[i] == NULL) {
        if (want_rest) rest[i] = true;
        else fg_tensor_set_requires_grad(fg_module_param(m, i), false, NULL);
      }
    }
    free(all);
  }
  for (size_t o = 0; o < n_opt && rc == 0; o++) {
    size_t ng = n_groups[o];
    fg_optim_group *built = fg__xcalloc(ng + 1, sizeof *built);
    /* Within one optimizer a parameter may be in one group only. */
    bool *taken = fg__xcalloc(np + 1, sizeof *taken);
    for (size_t i = 0; i < ng && rc == 0; i++) {
      built[i] = specs[o]->defaults;
      if (groups[o][i].opts) apply_args(specs[o]->kind, groups[o][i].opts, &built[i]);
      fg_tensor **ps = fg__xcalloc(np + 1, sizeof *ps);
      built[i].params = ps;
      for (size_t j = 0; j < groups[o][i].n_names && rc == 0; j++) {
        const char *want = groups[o][i].names[j];
        for (size_t q = 0; q < np; q++) {
          bool mine = want ? owner[q] && strcmp(owner[q], want) == 0 : rest[q];
          if (!mine || !fg_tensor_requires_grad(fg_module_param(m, q))) continue;
          if (taken[q]) {
            rc = fg_err_set(err, FG_ECONFIG,
                            "%s: parameter '%s' is in more than one group of optimizer %zu",
                            keypath, fg_module_param_name(m, q), o);
            break;
          }
          taken[q] = true;
          ps[built[i].n_params++] = fg_module_param(m, q);
        }
      }
    }
    if (rc == 0) rc = fg_optimizer_create(specs[o]->kind, built, ng, &set->opts[o], err);
    for (size_t i = 0; i < ng; i++) free((void *)built[i].params);
    free(built);
    free(taken);
    if (rc) break;
    set->n = o + 1;
    set->class_names[o] = specs[o]->class_name;
    /* Lightning's LearningRateMonitor names: lr-<Class>, then -<k> for the
     * k-th repeat of a class. */
    size_t same = 0;
    for (size_t k = 0; k < o; k++) same += strcmp(set->class_names[k], specs[o]->class_name) == 0;
    set->monitor_names[o] = same ? fg__xasprintf("lr-%s-%zu", specs[o]->class_name, same)
                                 : fg__xasprintf("lr-%s", specs[o]->class_name);
    const fg_node *entry = list ? fg_node_at(cfg, o) : cfg;
    char *p = list ? fg__xasprintf("%s.%zu", keypath, o) : fg__xstrdup(keypath);
    rc = fg_sched_build(entry, p, set->opts[o], &set->scheds[o], err);
    free(p);
    const fg_node *f = fg_node_get(entry, "frequency");
    if (f && fg_node_kind_of(f) == FG_NODE_INT) {
      if (set->frequency == NULL) set->frequency = fg__xcalloc(n_opt, sizeof *set->frequency);
      set->frequency[o] = fg_node_int(f);
    }
  }
  for (size_t o = 0; o < n_opt; o++) {
    for (size_t i = 0; i < n_groups[o]; i++) free(groups[o][i].names);
    free(groups[o]);
    free(specs[o]);
  }
  free(groups);
  free(n_groups);
  free(specs);
  free(owner);
  free(rest);
  if (rc) {
    fg_optim_set_free(set);
    return rc;
  }
  *out = set;
  return 0;
}
