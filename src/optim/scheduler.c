/* Learning-rate schedulers: torch.optim.lr_scheduler's classes and
 * lightning_template's WarmupScheduler.
 *
 * The update rules are PyTorch 1.13's *chainable* get_lr() forms, which
 * read the group's current lr rather than recomputing from a closed form.
 * That is what makes two schedulers on one optimizer (MultiStepLR plus a
 * warmup) interact exactly as they do in Python, down to the last bit of
 * a double: the same operations in the same order. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fulgur/error.h"
#include "fulgur/optim.h"
#include "fulgur/registry.h"
#include "optim/scheduler.h"
#include "registry/builtins.h"
#include "util/xalloc.h"

typedef enum {
  S_STEP,
  S_MULTISTEP,
  S_EXPONENTIAL,
  S_COSINE,
  S_LINEAR,
  S_CONSTANT,
  S_PLATEAU,
  S_WARMUP,
  S_ONECYCLE,
} sched_kind;

typedef enum { W_CONSTANT, W_LINEAR, W_EXP } warmup_mode;

typedef struct {
  sched_kind kind;
  int64_t step_size, T_max, total_iters, patience, cooldown, warmup_iters;
  int64_t *milestones; /* sorted, with repeats (PyTorch's Counter) */
  size_t n_milestones;
  double gamma, eta_min, start_factor, end_factor, factor;
  bool mode_max, threshold_abs;
  double threshold, min_lr, eps;
  double warmup_ratio;
  warmup_mode wmode;
  /* OneCycleLR */
  double max_lr, pct_start, base_momentum, max_momentum, div_factor, final_div_factor;
  bool anneal_cos, cycle_momentum, three_phase;
} sched_spec;

struct fg_lr_scheduler {
  sched_spec spec;
  fg_optimizer *opt; /* borrowed: the optimizer outlives its schedulers */
  size_t n_groups;
  double *base_lrs, *last_lr;
  int64_t last_epoch, step_count;
  double best; /* ReduceLROnPlateau */
  int64_t num_bad_epochs, cooldown_counter;
};

static void spec_free(void *p) {
  sched_spec *s = p;
  if (s) free(s->milestones);
  free(s);
}

/* ---- the update rules ----------------------------------------------------------- */

/* Python's a % b for b > 0 (never negative). */
static int64_t py_mod(int64_t a, int64_t b) {
  int64_t r = a % b;
  return r < 0 ? r + b : r;
}

static double chained_lr(const fg_lr_scheduler *s, size_t g, double lr) {
  const sched_spec *p = &s->spec;
  int64_t e = s->last_epoch;
  switch (p->kind) {
    case S_STEP:
      if (e == 0 || e % p->step_size != 0) return lr;
      return lr * p->gamma;
    case S_MULTISTEP: {
      int count = 0;
      for (size_t i = 0; i < p->n_milestones; i++) count += p->milestones[i] == e;
      if (count == 0) return lr;
      return lr * pow(p->gamma, count);
    }
    case S_EXPONENTIAL:
      if (e == 0) return lr;
      return lr * p->gamma;
    case S_COSINE: {
      double base = s->base_lrs[g], T = (double)p->T_max;
      if (e == 0) return lr;
      if (py_mod(e - 1 - p->T_max, 2 * p->T_max) == 0)
        return lr + (base - p->eta_min) * (1 - cos(M_PI / T)) / 2;
      return (1 + cos(M_PI * (double)e / T)) / (1 + cos(M_PI * (double)(e - 1) / T)) *
                 (lr - p->eta_min) +
             p->eta_min;
    }
    case S_LINEAR:
      if (e == 0) return lr * p->start_factor;
      if (e > p->total_iters) return lr;
      return lr * (1.0 + (p->end_factor - p->start_factor) /
                             ((double)p->total_iters * p->start_factor +
                              (double)(e - 1) * (p->end_factor - p->start_factor)));
    case S_CONSTANT:
      if (e == 0) return lr * p->factor;
      if (e != p->total_iters) return lr;
      return lr * (1.0 / p->factor);
    case S_WARMUP: {
      double base = s->base_lrs[g];
      if (e > p->warmup_iters) return lr;
      double t = (double)e / (double)p->warmup_iters;
      switch (p->wmode) {
        case W_CONSTANT: return base * p->warmup_ratio;
        case W_LINEAR: return base * (1 - (1 - t) * (1 - p->warmup_ratio));
        case W_EXP: return base * pow(p->warmup_ratio, 1 - t);
      }
      return lr;
    }
    case S_PLATEAU:
    case S_ONECYCLE: return lr; /* not chainable: see onecycle_step */
  }
  return lr;
}

static double anneal(const sched_spec *p, double start, double end, double pct) {
  if (p->anneal_cos) return end + (start - end) / 2.0 * (cos(M_PI * pct) + 1);
  return (end - start) * pct + start;
}

/* OneCycleLR.get_lr (PyTorch 1.13): phases by step, lr and momentum
 * annealed between the phase's ends. */
static int onecycle_step(fg_lr_scheduler *s, char **err) {
  const sched_spec *p = &s->spec;
  int64_t step = s->last_epoch, total = p->total_iters;
  if (step > total)
    return fg_err_set(err, FG_ERUN,
                      "OneCycleLR: tried to step %lld times; total_steps is %lld (raise "
                      "total_steps or epochs)",
                      (long long)step, (long long)total);
  double ends[3];
  int n_phases;
  if (p->three_phase) {
    ends[0] = p->pct_start * (double)total - 1;
    ends[1] = 2 * p->pct_start * (double)total - 2;
    ends[2] = (double)total - 1;
    n_phases = 3;
  } else {
    ends[0] = p->pct_start * (double)total - 1;
    ends[1] = (double)total - 1;
    n_phases = 2;
  }
  for (size_t g = 0; g < s->n_groups; g++) {
    double initial = s->base_lrs[g], max = p->max_lr, min = initial / p->final_div_factor;
    double lr_from[3], lr_to[3], m_from[3], m_to[3];
    if (p->three_phase) {
      double a[3] = {initial, max, initial}, b[3] = {max, initial, min};
      double ma[3] = {p->max_momentum, p->base_momentum, p->max_momentum};
      double mb[3] = {p->base_momentum, p->max_momentum, p->max_momentum};
      memcpy(lr_from, a, sizeof a), memcpy(lr_to, b, sizeof b);
      memcpy(m_from, ma, sizeof ma), memcpy(m_to, mb, sizeof mb);
    } else {
      double a[2] = {initial, max}, b[2] = {max, min};
      double ma[2] = {p->max_momentum, p->base_momentum}, mb[2] = {p->base_momentum, p->max_momentum};
      memcpy(lr_from, a, sizeof a), memcpy(lr_to, b, sizeof b);
      memcpy(m_from, ma, sizeof ma), memcpy(m_to, mb, sizeof mb);
    }
    double start = 0, lr = initial, mom = p->max_momentum;
    for (int i = 0; i < n_phases; i++) {
      if ((double)step <= ends[i] || i == n_phases - 1) {
        double pct = ((double)step - start) / (ends[i] - start);
        lr = anneal(p, lr_from[i], lr_to[i], pct);
        mom = anneal(p, m_from[i], m_to[i], pct);
        break;
      }
      start = ends[i];
    }
    int rc = fg_optimizer_set_lr(s->opt, g, lr, err);
    if (rc == 0 && p->cycle_momentum) rc = fg_optimizer_set_momentum(s->opt, g, mom, err);
    if (rc) return rc;
    s->last_lr[g] = lr;
  }
  return 0;
}

static bool plateau_better(const sched_spec *p, double a, double best) {
  if (!p->mode_max && !p->threshold_abs) return a < best * (1 - p->threshold);
  if (!p->mode_max) return a < best - p->threshold;
  if (!p->threshold_abs) return a > best * (p->threshold + 1);
  return a > best + p->threshold;
}

int fg_lr_scheduler_step(fg_lr_scheduler *s, double metric, char **err) {
  if (s->spec.kind == S_PLATEAU) {
    const sched_spec *p = &s->spec;
    if (isnan(metric))
      return fg_err_set(err, FG_EINVAL, "ReduceLROnPlateau needs a metric value, got nan");
    s->last_epoch++;
    if (plateau_better(p, metric, s->best)) {
      s->best = metric;
      s->num_bad_epochs = 0;
    } else {
      s->num_bad_epochs++;
    }
    if (s->cooldown_counter > 0) {
      s->cooldown_counter--;
      s->num_bad_epochs = 0;
    }
    if (s->num_bad_epochs > p->patience) {
      for (size_t g = 0; g < s->n_groups; g++) {
        double old;
        int rc = fg_optimizer_get_lr(s->opt, g, &old, err);
        if (rc) return rc;
        double lr = fmax(old * p->factor, p->min_lr);
        if (old - lr > p->eps && (rc = fg_optimizer_set_lr(s->opt, g, lr, err)) != 0) return rc;
      }
      s->cooldown_counter = p->cooldown;
      s->num_bad_epochs = 0;
    }
    for (size_t g = 0; g < s->n_groups; g++) {
      int rc = fg_optimizer_get_lr(s->opt, g, &s->last_lr[g], err);
      if (rc) return rc;
    }
    return 0;
  }
  s->step_count++;
  s->last_epoch++;
  if (s->spec.kind == S_ONECYCLE) return onecycle_step(s, err);
  /* All groups' new values first, then set: get_lr() reads every group
   * before step() writes any. */
  double *next = fg__xmalloc((s->n_groups + 1) * sizeof *next);
  int rc = 0;
  for (size_t g = 0; g < s->n_groups && rc == 0; g++)
    if ((rc = fg_optimizer_get_lr(s->opt, g, &next[g], err)) == 0) next[g] = chained_lr(s, g, next[g]);
  for (size_t g = 0; g < s->n_groups && rc == 0; g++)
    if ((rc = fg_optimizer_set_lr(s->opt, g, next[g], err)) == 0) s->last_lr[g] = next[g];
  free(next);
  return rc;
}

/* PyTorch's constructor: base lrs from initial_lr, then the initial
 * step() (except ReduceLROnPlateau, which has none). */
static int bind(const sched_spec *spec, fg_optimizer *opt, const double *initial,
                fg_lr_scheduler **out, char **err) {
  int rc = 0;
  fg_lr_scheduler *s = fg__xcalloc(1, sizeof *s);
  s->spec = *spec;
  s->spec.milestones = NULL;
  if (spec->n_milestones) {
    s->spec.milestones = fg__xmalloc(spec->n_milestones * sizeof *s->spec.milestones);
    memcpy(s->spec.milestones, spec->milestones, spec->n_milestones * sizeof *spec->milestones);
  }
  s->opt = opt;
  s->n_groups = fg_optimizer_num_groups(opt);
  s->base_lrs = fg__xcalloc(s->n_groups + 1, sizeof *s->base_lrs);
  s->last_lr = fg__xcalloc(s->n_groups + 1, sizeof *s->last_lr);
  for (size_t g = 0; g < s->n_groups; g++) s->base_lrs[g] = initial[g];
  s->last_epoch = -1;
  if (spec->kind == S_ONECYCLE) {
    /* OneCycleLR sets its own initial_lr (max_lr / div_factor) and starts
     * the momentum at max_momentum. */
    for (size_t g = 0; g < s->n_groups; g++) {
      s->base_lrs[g] = spec->max_lr / spec->div_factor;
      if (rc == 0) rc = fg_optimizer_set_lr(opt, g, s->base_lrs[g], err);
      if (rc == 0 && spec->cycle_momentum) rc = fg_optimizer_set_momentum(opt, g, spec->max_momentum, err);
    }
  }
  if (spec->kind == S_PLATEAU) {
    s->last_epoch = 0;
    s->best = spec->mode_max ? -INFINITY : INFINITY;
    for (size_t g = 0; g < s->n_groups && rc == 0; g++) rc = fg_optimizer_get_lr(opt, g, &s->last_lr[g], err);
  } else if (rc == 0) {
    rc = fg_lr_scheduler_step(s, NAN, err);
  }
  if (rc) {
    fg_lr_scheduler_free(s);
    return rc;
  }
  *out = s;
  return 0;
}

void fg_lr_scheduler_free(fg_lr_scheduler *s) {
  if (s == NULL) return;
  free(s->spec.milestones);
  free(s->base_lrs);
  free(s->last_lr);
  free(s);
}

bool fg_lr_scheduler_is_plateau(const fg_lr_scheduler *s) { return s->spec.kind == S_PLATEAU; }

static fg_value *double_list(const double *v, size_t n) {
  fg_value *l = fg_value_list();
  for (size_t i = 0; i < n; i++) fg_value_list_append(l, fg_value_double(v[i]));
  return l;
}

int fg_lr_scheduler_state_dict(const fg_lr_scheduler *s, fg_value **out, char **err) {
  (void)err;
  fg_value *d = fg_value_dict();
  fg_value_dict_set(d, "last_epoch", fg_value_int(s->last_epoch));
  if (s->spec.kind == S_PLATEAU) {
    fg_value_dict_set(d, "best", fg_value_double(s->best));
    fg_value_dict_set(d, "num_bad_epochs", fg_value_int(s->num_bad_epochs));
    fg_value_dict_set(d, "cooldown_counter", fg_value_int(s->cooldown_counter));
  } else {
    fg_value_dict_set(d, "base_lrs", double_list(s->base_lrs, s->n_groups));
    fg_value_dict_set(d, "_step_count", fg_value_int(s->step_count));
  }
  fg_value_dict_set(d, "_last_lr", double_list(s->last_lr, s->n_groups));
  *out = d;
  return 0;
}

static int read_int(const fg_value *d, const char *k, int64_t *out, char **err) {
  const fg_value *v = fg_value_dict_get(d, k);
  if (v == NULL || fg_value_kind_of(v) != FG_VALUE_INT)
    return fg_err_set(err, FG_EDATA, "scheduler state: '%s' is missing or not an integer", k);
  *out = fg_value_as_int(v);
  return 0;
}

static int read_doubles(const fg_value *d, const char *k, double *out, size_t n, char **err) {
  const fg_value *v = fg_value_dict_get(d, k);
  if (v == NULL || fg_value_kind_of(v) != FG_VALUE_LIST || fg_value_len(v) != n)
    return fg_err_set(err, FG_EDATA, "scheduler state: '%s' must list %zu learning rates", k, n);
  for (size_t i = 0; i < n; i++) out[i] = fg_value_as_double(fg_value_list_at(v, i));
  return 0;
}

int fg_lr_scheduler_load_state_dict(fg_lr_scheduler *s, const fg_value *st, char **err) {
  if (fg_value_kind_of(st) != FG_VALUE_DICT)
    return fg_err_set(err, FG_EDATA, "scheduler state must be a dict");
  int rc = read_int(st, "last_epoch", &s->last_epoch, err);
  if (rc == 0 && s->spec.kind == S_PLATEAU) {
    const fg_value *b = fg_value_dict_get(st, "best");
    if (b == NULL) return fg_err_set(err, FG_EDATA, "scheduler state: 'best' is missing");
    s->best = fg_value_as_double(b);
    rc = read_int(st, "num_bad_epochs", &s->num_bad_epochs, err);
    if (rc == 0) rc = read_int(st, "cooldown_counter", &s->cooldown_counter, err);
  } else if (rc == 0) {
    rc = read_doubles(st, "base_lrs", s->base_lrs, s->n_groups, err);
    if (rc == 0) rc = read_int(st, "_step_count", &s->step_count, err);
  }
  if (rc == 0) rc = read_doubles(st, "_last_lr", s->last_lr, s->n_groups, err);
  return rc;
}

/* ---- classes ----------------------------------------------------------------------- */

static int check_pos_int(const fg_node *v, const char *k, char **err) {
  if (fg_node_int(v) < 1)
    return fg_config_error(err, v, k, "expected a positive integer, got %lld", (long long)fg_node_int(v));
  return 0;
}
static int check_nonneg_int(const fg_node *v, const char *k, char **err) {
  if (fg_node_int(v) < 0)
    return fg_config_error(err, v, k, "expected an integer >= 0, got %lld", (long long)fg_node_int(v));
  return 0;
}
static int check_last_epoch(const fg_node *v, const char *k, char **err) {
  if (fg_node_int(v) != -1)
    return fg_config_error(err, v, k, "only -1 is supported (resume with --ckpt_path instead)");
  return 0;
}
static int check_factor(const fg_node *v, const char *k, char **err) {
  double f = fg_node_float(v);
  if (!(f > 0 && f <= 1))
    return fg_config_error(err, v, k, "expected a factor in (0, 1], got %g", f);
  return 0;
}
static int check_plateau_factor(const fg_node *v, const char *k, char **err) {
  if (!(fg_node_float(v) < 1.0))
    return fg_config_error(err, v, k, "factor should be < 1.0, got %g", fg_node_float(v));
  return 0;
}
static int check_mode(const fg_node *v, const char *k, char **err) {
  const char *s = fg_node_str(v);
  if (strcmp(s, "min") == 0 || strcmp(s, "max") == 0) return 0;
  return fg_config_error(err, v, k, "expected 'min' or 'max', got '%s'", s);
}
static int check_threshold_mode(const fg_node *v, const char *k, char **err) {
  const char *s = fg_node_str(v);
  if (strcmp(s, "rel") == 0 || strcmp(s, "abs") == 0) return 0;
  return fg_config_error(err, v, k, "expected 'rel' or 'abs', got '%s'", s);
}
static int check_warmup_mode(const fg_node *v, const char *k, char **err) {
  const char *s = fg_node_str(v);
  if (strcmp(s, "constant") == 0 || strcmp(s, "linear") == 0 || strcmp(s, "exp") == 0) return 0;
  return fg_config_error(err, v, k, "expected 'constant', 'linear' or 'exp', got '%s'", s);
}
static int check_nonneg(const fg_node *v, const char *k, char **err) {
  if (!(fg_node_float(v) >= 0))
    return fg_config_error(err, v, k, "expected a value >= 0, got %g", fg_node_float(v));
  return 0;
}

#define COMMON_PARAMS                                                                        \
  {"last_epoch", FG_T_INT, "-1", "must be -1", check_last_epoch, 0},                         \
  {"verbose", FG_T_BOOL, "false", "no effect (events report learning rates)", NULL, 0}

static const fg_param step_params[] = {
    {"step_size", FG_T_INT, NULL, "decay every step_size steps", check_pos_int, 0},
    {"gamma", FG_T_FLOAT, "0.1", "decay factor", NULL, 0},
    COMMON_PARAMS,
};
static const fg_param multistep_params[] = {
    {"milestones", FG_T_SEQ, NULL, "steps at which to decay", NULL, FG_T_INT},
    {"gamma", FG_T_FLOAT, "0.1", "decay factor", NULL, 0},
    COMMON_PARAMS,
};
static const fg_param exp_params[] = {
    {"gamma", FG_T_FLOAT, NULL, "decay factor per step", NULL, 0},
    COMMON_PARAMS,
};
static const fg_param cosine_params[] = {
    {"T_max", FG_T_INT, NULL, "steps of a half cosine period", check_pos_int, 0},
    {"eta_min", FG_T_FLOAT, "0.0", "minimum learning rate", NULL, 0},
    COMMON_PARAMS,
};
static const fg_param linear_params[] = {
    {"start_factor", FG_T_FLOAT, "0.3333333333333333", "factor at the start", check_factor, 0},
    {"end_factor", FG_T_FLOAT, "1.0", "factor after total_iters", NULL, 0},
    {"total_iters", FG_T_INT, "5", "steps to go from start to end", check_pos_int, 0},
    COMMON_PARAMS,
};
static const fg_param constant_params[] = {
    {"factor", FG_T_FLOAT, "0.3333333333333333", "factor until total_iters", check_factor, 0},
    {"total_iters", FG_T_INT, "5", "steps with the factor applied", check_pos_int, 0},
    COMMON_PARAMS,
};
static const fg_param plateau_params[] = {
    {"mode", FG_T_STRING, "min", "min: lower is better; max: higher is better", check_mode, 0},
    {"factor", FG_T_FLOAT, "0.1", "new lr = lr * factor", check_plateau_factor, 0},
    {"patience", FG_T_INT, "10", "epochs without improvement before reducing", check_nonneg_int, 0},
    {"threshold", FG_T_FLOAT, "0.0001", "what counts as an improvement", check_nonneg, 0},
    {"threshold_mode", FG_T_STRING, "rel", "rel or abs", check_threshold_mode, 0},
    {"cooldown", FG_T_INT, "0", "epochs to wait after a reduction", check_nonneg_int, 0},
    {"min_lr", FG_T_FLOAT, "0.0", "lower bound of the lr", check_nonneg, 0},
    {"eps", FG_T_FLOAT, "1.0e-08", "smallest change applied", check_nonneg, 0},
    {"verbose", FG_T_BOOL, "false", "no effect (events report learning rates)", NULL, 0},
};
static const fg_param warmup_params[] = {
    {"warmup_iters", FG_T_INT, NULL, "steps of warmup", check_pos_int, 0},
    {"warmup_ratio", FG_T_FLOAT, "0.1", "lr ratio at the start of warmup, in (0, 1]", check_factor, 0},
    {"warmup_mode", FG_T_STRING, "linear", "constant, linear or exp", check_warmup_mode, 0},
    COMMON_PARAMS,
};

static int check_anneal(const fg_node *v, const char *k, char **err) {
  const char *s = fg_node_str(v);
  if (strcmp(s, "cos") == 0 || strcmp(s, "linear") == 0) return 0;
  return fg_config_error(err, v, k, "expected 'cos' or 'linear', got '%s'", s);
}
static int check_opt_pos_int(const fg_node *v, const char *k, char **err) {
  return fg_node_kind_of(v) == FG_NODE_NULL ? 0 : check_pos_int(v, k, err);
}
static int check_pct(const fg_node *v, const char *k, char **err) {
  double f = fg_node_float(v);
  if (f >= 0 && f <= 1) return 0;
  return fg_config_error(err, v, k, "expected a fraction in [0, 1], got %g", f);
}

static const fg_param onecycle_params[] = {
    {"max_lr", FG_T_FLOAT, NULL, "peak learning rate", check_nonneg, 0},
    {"total_steps", FG_T_NULL | FG_T_INT, "null", "steps of the cycle (or epochs * steps_per_epoch)", check_opt_pos_int, 0},
    {"epochs", FG_T_NULL | FG_T_INT, "null", "with steps_per_epoch, when total_steps is null", check_opt_pos_int, 0},
    {"steps_per_epoch", FG_T_NULL | FG_T_INT, "null", "with epochs, when total_steps is null", check_opt_pos_int, 0},
    {"pct_start", FG_T_FLOAT, "0.3", "fraction of the cycle spent increasing the lr", check_pct, 0},
    {"anneal_strategy", FG_T_STRING, "cos", "cos or linear", check_anneal, 0},
    {"cycle_momentum", FG_T_BOOL, "true", "cycle momentum (SGD) or beta1 (Adam) inversely", NULL, 0},
    {"base_momentum", FG_T_FLOAT, "0.85", "lowest momentum", NULL, 0},
    {"max_momentum", FG_T_FLOAT, "0.95", "highest momentum", NULL, 0},
    {"div_factor", FG_T_FLOAT, "25.0", "initial_lr = max_lr / div_factor", NULL, 0},
    {"final_div_factor", FG_T_FLOAT, "10000.0", "min_lr = initial_lr / final_div_factor", NULL, 0},
    {"three_phase", FG_T_BOOL, "false", "fast.ai's three phases", NULL, 0},
    COMMON_PARAMS,
};

static int onecycle_check(const fg_class *cls, fg_node *a, const char *keypath, bool fill,
                          char **err) {
  (void)cls;
  (void)fill;
  const fg_node *t = fg_node_get(a, "total_steps");
  if (fg_node_kind_of(t) == FG_NODE_INT) return 0;
  if (fg_node_kind_of(fg_node_get(a, "epochs")) == FG_NODE_INT &&
      fg_node_kind_of(fg_node_get(a, "steps_per_epoch")) == FG_NODE_INT)
    return 0;
  return fg_config_error(err, a, keypath,
                         "OneCycleLR needs total_steps, or epochs and steps_per_epoch");
}

static double num(const fg_node *a, const char *k) { return fg_node_float(fg_node_get(a, k)); }
static int64_t inum(const fg_node *a, const char *k) { return fg_node_int(fg_node_get(a, k)); }

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return (x > y) - (x < y);
}

static int sched_create(const fg_class *cls, const fg_node *a, const char *keypath, void **out,
                        char **err) {
  (void)keypath;
  (void)err;
  sched_spec *s = fg__xcalloc(1, sizeof *s);
  s->kind = (sched_kind)(intptr_t)cls->data;
  switch (s->kind) {
    case S_STEP:
      s->step_size = inum(a, "step_size");
      s->gamma = num(a, "gamma");
      break;
    case S_MULTISTEP: {
      const fg_node *m = fg_node_get(a, "milestones");
      s->n_milestones = fg_node_len(m);
      s->milestones = fg__xcalloc(s->n_milestones + 1, sizeof *s->milestones);
      for (size_t i = 0; i < s->n_milestones; i++) s->milestones[i] = fg_node_int(fg_node_at(m, i));
      qsort(s->milestones, s->n_milestones, sizeof *s->milestones, cmp_i64);
      s->gamma = num(a, "gamma");
      break;
    }
    case S_EXPONENTIAL: s->gamma = num(a, "gamma"); break;
    case S_COSINE:
      s->T_max = inum(a, "T_max");
      s->eta_min = num(a, "eta_min");
      break;
    case S_LINEAR:
      s->start_factor = num(a, "start_factor");
      s->end_factor = num(a, "end_factor");
      s->total_iters = inum(a, "total_iters");
      break;
    case S_CONSTANT:
      s->factor = num(a, "factor");
      s->total_iters = inum(a, "total_iters");
      break;
    case S_PLATEAU:
      s->mode_max = strcmp(fg_node_str(fg_node_get(a, "mode")), "max") == 0;
      s->factor = num(a, "factor");
      s->patience = inum(a, "patience");
      s->threshold = num(a, "threshold");
      s->threshold_abs = strcmp(fg_node_str(fg_node_get(a, "threshold_mode")), "abs") == 0;
      s->cooldown = inum(a, "cooldown");
      s->min_lr = num(a, "min_lr");
      s->eps = num(a, "eps");
      break;
    case S_ONECYCLE: {
      const fg_node *t = fg_node_get(a, "total_steps");
      s->total_iters = fg_node_kind_of(t) == FG_NODE_INT ? fg_node_int(t)
                                                         : inum(a, "epochs") * inum(a, "steps_per_epoch");
      s->max_lr = num(a, "max_lr");
      s->pct_start = num(a, "pct_start");
      s->anneal_cos = strcmp(fg_node_str(fg_node_get(a, "anneal_strategy")), "cos") == 0;
      s->cycle_momentum = fg_node_bool(fg_node_get(a, "cycle_momentum"));
      s->base_momentum = num(a, "base_momentum");
      s->max_momentum = num(a, "max_momentum");
      s->div_factor = num(a, "div_factor");
      s->final_div_factor = num(a, "final_div_factor");
      s->three_phase = fg_node_bool(fg_node_get(a, "three_phase"));
      break;
    }
    case S_WARMUP: {
      s->warmup_iters = inum(a, "warmup_iters");
      s->warmup_ratio = num(a, "warmup_ratio");
      const char *m = fg_node_str(fg_node_get(a, "warmup_mode"));
      s->wmode = strcmp(m, "constant") == 0 ? W_CONSTANT : strcmp(m, "exp") == 0 ? W_EXP : W_LINEAR;
      break;
    }
  }
  *out = s;
  return 0;
}

#define SCHED_CLASS(var, cname, alias, params_, kind_)                                        \
  static const char *const var##_aliases[] = {alias, NULL};                                 \
  const fg_class var = {.name = cname,                                               \
                               .aliases = var##_aliases,                                    \
                               .kind = FG_KIND_SCHEDULER,                                \
                               .params = params_,                                           \
                               .n_params = sizeof params_ / sizeof params_[0],              \
                               .create = sched_create,                                      \
                               .destroy = spec_free,                                        \
                               .data = (void *)(intptr_t)kind_}

SCHED_CLASS(fg__step_lr_class, "torch.optim.lr_scheduler.StepLR", "StepLR", step_params, S_STEP);
SCHED_CLASS(fg__multistep_lr_class, "torch.optim.lr_scheduler.MultiStepLR", "MultiStepLR",
            multistep_params, S_MULTISTEP);
SCHED_CLASS(fg__exponential_lr_class, "torch.optim.lr_scheduler.ExponentialLR", "ExponentialLR", exp_params,
            S_EXPONENTIAL);
SCHED_CLASS(fg__cosine_lr_class, "torch.optim.lr_scheduler.CosineAnnealingLR", "CosineAnnealingLR",
            cosine_params, S_COSINE);
SCHED_CLASS(fg__linear_lr_class, "torch.optim.lr_scheduler.LinearLR", "LinearLR", linear_params,
            S_LINEAR);
SCHED_CLASS(fg__constant_lr_class, "torch.optim.lr_scheduler.ConstantLR", "ConstantLR",
            constant_params, S_CONSTANT);
SCHED_CLASS(fg__plateau_lr_class, "torch.optim.lr_scheduler.ReduceLROnPlateau", "ReduceLROnPlateau",
            plateau_params, S_PLATEAU);

static const char *const onecycle_aliases[] = {"OneCycleLR", NULL};
const fg_class fg__onecycle_lr_class = {.name = "torch.optim.lr_scheduler.OneCycleLR",
                                        .aliases = onecycle_aliases,
                                        .kind = FG_KIND_SCHEDULER,
                                        .params = onecycle_params,
                                        .n_params = sizeof onecycle_params / sizeof onecycle_params[0],
                                        .create = sched_create,
                                        .destroy = spec_free,
                                        .check = onecycle_check,
                                        .data = (void *)(intptr_t)S_ONECYCLE};

static const char *const warmup_aliases[] = {"WarmupScheduler",
                                             "lightning_template.utils.optim.WarmupScheduler", NULL};
const fg_class fg__warmup_class = {.name = "fulgur.optim.WarmupScheduler",
                                      .aliases = warmup_aliases,
                                      .kind = FG_KIND_SCHEDULER,
                                      .params = warmup_params,
                                      .n_params = sizeof warmup_params / sizeof warmup_params[0],
                                      .create = sched_create,
                                      .destroy = spec_free,
                                      .data = (void *)(intptr_t)S_WARMUP};


/* ---- the lr_scheduler entry ----------------------------------------------------------- */

static int unknown_key(const fg_node *v, const char *path, const char *key,
                       const char *const *known, size_t n, const char *what, char **err) {
  const char *close = fg_closest_name(key, known, n);
  return fg_config_error(err, v, path, "unknown key '%s' in %s%s%s%s", key, what,
                         close ? " (did you mean '" : "", close ? close : "", close ? "'?)" : "");
}

/* Wraps *slot as {scheduler: *slot} unless it has a `scheduler` key. */
static fg_node *wrap_scheduler(fg_node *parent, const char *key) {
  fg_node *v = fg_node_get(parent, key);
  if (fg_node_kind_of(v) == FG_NODE_MAP && fg_node_get(v, "scheduler")) return v;
  fg_node *inner = fg_node_map_take(parent, key);
  fg_node *wrap = fg_node_new_map();
  fg_mark m = fg_node_mark(inner);
  if (m.file) fg_node_set_mark(wrap, m.file, m.line, m.col);
  fg_node_map_set(wrap, "scheduler", inner);
  fg_node_map_set(parent, key, wrap);
  return wrap;
}

static void set_default(fg_node *map, const char *key, fg_node *value) {
  if (fg_node_get(map, key)) {
    fg_node_free(value);
    return;
  }
  fg_mark m = fg_node_mark(map);
  if (m.file) fg_node_set_mark(value, m.file, m.line, m.col);
  fg_node_map_set(map, key, value);
}

static int check_positive_int_key(const fg_node *map, const char *key, const char *path,
                                  char **err) {
  const fg_node *v = fg_node_get(map, key);
  if (v == NULL) return 0;
  char *p = fg__xasprintf("%s.%s", path, key);
  int rc = 0;
  if (fg_node_kind_of(v) != FG_NODE_INT || fg_node_int(v) < 1)
    rc = fg_config_error(err, v, p, "expected a positive integer");
  free(p);
  return rc;
}

static int check_warmup(fg_node *lr, const char *path, bool fill, char **err) {
  fg_node *w = wrap_scheduler(lr, "warmup_config");
  char *wpath = fg__xasprintf("%s.warmup_config", path);
  int rc = 0;
  static const char *const keys[] = {"scheduler", "frequency"};
  for (size_t i = 0; i < fg_node_len(w) && rc == 0; i++) {
    const char *k = fg_node_key_at(w, i);
    if (strcmp(k, "scheduler") != 0 && strcmp(k, "frequency") != 0) {
      char *p = fg__xasprintf("%s.%s", wpath, k);
      rc = unknown_key(fg_node_value_at(w, i), p, k, keys, 2, "warmup_config", err);
      free(p);
    }
  }
  if (rc == 0) rc = check_positive_int_key(w, "frequency", wpath, err);
  if (rc == 0) {
    /* The short form: bare WarmupScheduler init_args, no class_path. */
    fg_node *sch = fg_node_get(w, "scheduler");
    if (fg_node_kind_of(sch) == FG_NODE_MAP && fg_node_get(sch, "class_path") == NULL) {
      fg_node *args = fg_node_map_take(w, "scheduler");
      fg_node *obj = fg_node_new_map();
      fg_mark m = fg_node_mark(args);
      if (m.file) fg_node_set_mark(obj, m.file, m.line, m.col);
      fg_node_map_set(obj, "class_path", fg_node_new_string(fg__warmup_class.name));
      fg_node_map_set(obj, "init_args", args);
      fg_node_map_set(w, "scheduler", obj);
      sch = obj;
    }
    char *p = fg__xasprintf("%s.scheduler", wpath);
    rc = fg_registry_check(sch, p, FG_KIND_SCHEDULER, fill, err);
    free(p);
  }
  if (rc == 0 && fill) set_default(w, "frequency", fg_node_new_int(1));
  free(wpath);
  return rc;
}

int fg__lr_scheduler_entry_check(fg_node *entry, const char *path, bool fill, char **err) {
  fg_node *lr = wrap_scheduler(entry, "lr_scheduler");
  static const char *const keys[] = {"scheduler", "interval", "frequency", "monitor",
                                     "strict",    "name",     "warmup_config"};
  int rc = 0;
  for (size_t i = 0; i < fg_node_len(lr) && rc == 0; i++) {
    const char *k = fg_node_key_at(lr, i);
    fg_node *v = fg_node_value_at(lr, i);
    char *p = fg__xasprintf("%s.%s", path, k);
    size_t j;
    for (j = 0; j < 7 && strcmp(keys[j], k) != 0; j++) {
    }
    if (j == 7) {
      rc = unknown_key(v, p, k, keys, 7, "an lr_scheduler entry", err);
    } else if (strcmp(k, "interval") == 0) {
      const char *s = fg_node_str(v);
      if (s == NULL || (strcmp(s, "epoch") != 0 && strcmp(s, "step") != 0))
        rc = fg_config_error(err, v, p, "expected 'epoch' or 'step'");
    } else if ((strcmp(k, "monitor") == 0 || strcmp(k, "name") == 0) &&
               fg_node_kind_of(v) != FG_NODE_NULL && fg_node_kind_of(v) != FG_NODE_STRING) {
      rc = fg_config_error(err, v, p, "expected a string or null, got %s",
                           fg_node_kind_name(fg_node_kind_of(v)));
    } else if (strcmp(k, "strict") == 0 && fg_node_kind_of(v) != FG_NODE_BOOL) {
      rc = fg_config_error(err, v, p, "expected a boolean");
    }
    free(p);
  }
  if (rc == 0) rc = check_positive_int_key(lr, "frequency", path, err);
  if (rc == 0) {
    char *p = fg__xasprintf("%s.scheduler", path);
    fg_node *sch = fg_node_get(lr, "scheduler");
    rc = fg_registry_check(sch, p, FG_KIND_SCHEDULER, fill, err);
    if (rc == 0) {
      const fg_class *cls = fg_registry_find(fg_node_str(fg_node_get(sch, "class_path")));
      const fg_node *mon = fg_node_get(lr, "monitor");
      if (cls == &fg__warmup_class)
        rc = fg_config_error(err, sch, p,
                             "WarmupScheduler is a manual scheduler: give it as "
                             "lr_scheduler.warmup_config");
      else if (cls == &fg__plateau_lr_class && fg_node_str(fg_node_get(lr, "interval")) &&
               strcmp(fg_node_str(fg_node_get(lr, "interval")), "step") == 0)
        rc = fg_config_error(err, fg_node_get(lr, "interval"), path,
                             "ReduceLROnPlateau steps at epoch ends (interval: epoch)");
      else if (cls == &fg__plateau_lr_class && fg_node_str(mon) == NULL)
        rc = fg_config_error(err, lr, path,
                             "ReduceLROnPlateau needs a 'monitor' (the metric it watches, e.g. "
                             "val/loss)");
    }
    free(p);
  }
  if (rc == 0 && fg_node_get(lr, "warmup_config")) rc = check_warmup(lr, path, fill, err);
  if (rc == 0 && fill) {
    set_default(lr, "interval", fg_node_new_string("epoch"));
    set_default(lr, "frequency", fg_node_new_int(1));
    set_default(lr, "monitor", fg_node_new_null());
    set_default(lr, "strict", fg_node_new_bool(true));
    set_default(lr, "name", fg_node_new_null());
  }
  return rc;
}

/* ---- building --------------------------------------------------------------------------- */

void fg_sched_set_free(fg_sched_set *s) {
  if (s == NULL) return;
  fg_lr_scheduler_free(s->scheduler);
  fg_lr_scheduler_free(s->warmup);
  free(s->monitor);
  free(s);
}

static int create_bound(const fg_node *obj, const char *path, fg_optimizer *opt,
                        const double *initial, fg_lr_scheduler **out, char **err) {
  void *spec = NULL;
  int rc = fg_registry_create(obj, path, FG_KIND_SCHEDULER, &spec, NULL, err);
  if (rc) return rc;
  rc = bind(spec, opt, initial, out, err);
  spec_free(spec);
  return rc;
}

int fg_sched_build(const fg_node *cfg, const char *keypath, fg_optimizer *opt,
                   fg_sched_set **out, char **err) {
  *out = NULL;
  const fg_node *entry = fg_node_kind_of(cfg) == FG_NODE_SEQ ? fg_node_at(cfg, 0) : cfg;
  const fg_node *lr = fg_node_get(entry, "lr_scheduler");
  if (lr == NULL || fg_node_kind_of(lr) == FG_NODE_NULL) return 0;
  /* Both schedulers take the optimizer's lrs before either ran as their
   * base (PyTorch's initial_lr, set by the first scheduler). */
  size_t n = fg_optimizer_num_groups(opt);
  double *initial = fg__xcalloc(n + 1, sizeof *initial);
  for (size_t g = 0; g < n; g++) {
    int rc = fg_optimizer_get_lr(opt, g, &initial[g], err);
    if (rc) {
      free(initial);
      return rc;
    }
  }
  fg_sched_set *s = fg__xcalloc(1, sizeof *s);
  char *p = fg__xasprintf("%s.lr_scheduler.scheduler", keypath);
  int rc = create_bound(fg_node_get(lr, "scheduler"), p, opt, initial, &s->scheduler, err);
  free(p);
  const char *interval = fg_node_str(fg_node_get(lr, "interval"));
  s->interval_step = interval && strcmp(interval, "step") == 0;
  const fg_node *f = fg_node_get(lr, "frequency");
  s->frequency = f ? fg_node_int(f) : 1;
  const char *mon = fg_node_str(fg_node_get(lr, "monitor"));
  s->monitor = mon ? fg__xstrdup(mon) : NULL;
  const fg_node *strict = fg_node_get(lr, "strict");
  s->strict = strict ? fg_node_bool(strict) : true;
  const fg_node *w = fg_node_get(lr, "warmup_config");
  if (rc == 0 && w) {
    p = fg__xasprintf("%s.lr_scheduler.warmup_config.scheduler", keypath);
    rc = create_bound(fg_node_get(w, "scheduler"), p, opt, initial, &s->warmup, err);
    free(p);
    const fg_node *wf = fg_node_get(w, "frequency");
    s->warmup_frequency = wf ? fg_node_int(wf) : 1;
  }
  free(initial);
  if (rc) {
    fg_sched_set_free(s);
    return rc;
  }
  *out = s;
  return 0;
}
