/* The base LightningModule: the seed's forward_step (forward, loss_step,
 * metric_step) and epoch-end evaluator handling, with hooks that subclasses
 * (built-in, plugin) override. */
#include <stdlib.h>
#include <string.h>

#include "fulgur/config.h"
#include "fulgur/error.h"
#include "fulgur/module.h"
#include "util/assert.h"
#include "util/xalloc.h"

typedef struct {
  char *key;
  double w;
} loss_weight;

struct fg_module {
  fg_model *model;
  fg_module_hooks hooks;
  loss_weight *weights;
  size_t n_weights;
  fg_metric **evals[FG_SPLIT_COUNT];
  size_t n_evals[FG_SPLIT_COUNT];
  char **param_names; /* "model." + model names, built on first use */
  char **state_names; /* "model." + model state names, built on first use */
  char **init_ckpts;  /* ckpt_path */
  size_t n_init_ckpts;
  bool evaluators_in_state; /* evaluator_as_submodule */
  char **predict_tasks;
  size_t n_predict_tasks;
  char *predict_path;
  bool predict_gather;
  char **finetune_patterns; /* finetune_cfg */
  size_t n_finetune;
  bool finetune;
};

static char **copy_strings(const char *const *s, size_t n) {
  char **out = fg__xcalloc(n ? n : 1, sizeof *out);
  for (size_t i = 0; i < n; i++) out[i] = fg__xstrdup(s[i]);
  return out;
}

static void free_strings(char **s, size_t n) {
  for (size_t i = 0; s && i < n; i++) free(s[i]);
  free(s);
}

void fg_module_set_init_ckpts(fg_module *m, const char *const *paths, size_t n) {
  free_strings(m->init_ckpts, m->n_init_ckpts);
  m->init_ckpts = copy_strings(paths, n);
  m->n_init_ckpts = n;
}

size_t fg_module_num_init_ckpts(const fg_module *m) { return m->n_init_ckpts; }

const char *fg_module_init_ckpt(const fg_module *m, size_t i) {
  return i < m->n_init_ckpts ? m->init_ckpts[i] : NULL;
}

void fg_module_set_finetune(fg_module *m, bool finetune, const char *const *patterns,
                            size_t n) {
  free_strings(m->finetune_patterns, m->n_finetune);
  m->finetune_patterns = copy_strings(patterns, n);
  m->n_finetune = n;
  m->finetune = finetune;
}

size_t fg_module_apply_finetune(fg_module *m, void (*warn)(void *ctx, const char *pattern),
                                void *ctx) {
  size_t n = fg_module_num_params(m), trainable = 0;
  bool *used = fg__xcalloc(m->n_finetune + 1, sizeof *used);
  for (size_t i = 0; i < n; i++) {
    const char *name = fg_module_param_name(m, i);
    /* The seed's rule: the longest pattern contained in the name decides.
     * All patterns share one `finetune` flag, so "matched at all" is what
     * sets requires_grad. */
    long best = -1;
    for (size_t p = 0; p < m->n_finetune; p++) {
      if (strstr(name, m->finetune_patterns[p]) == NULL) continue;
      used[p] = true;
      if (best < 0 || strlen(m->finetune_patterns[p]) > strlen(m->finetune_patterns[best]))
        best = (long)p;
    }
    bool grad = m->n_finetune == 0 ? true : (best >= 0 ? m->finetune : !m->finetune);
    fg_tensor_set_requires_grad(fg_module_param(m, i), grad, NULL);
    if (grad) trainable++;
  }
  for (size_t p = 0; p < m->n_finetune; p++)
    if (!used[p] && warn) warn(ctx, m->finetune_patterns[p]);
  free(used);
  return trainable;
}

fg_module *fg_module_create(fg_model *model, const fg_module_hooks *hooks) {
  fg_module *m = fg__xcalloc(1, sizeof *m);
  m->model = model;
  if (hooks) m->hooks = *hooks;
  return m;
}

void fg_module_free(fg_module *m) {
  if (m == NULL) return;
  for (int s = 0; s < FG_SPLIT_COUNT; s++) {
    for (size_t i = 0; i < m->n_evals[s]; i++) fg_metric_free(m->evals[s][i]);
    free(m->evals[s]);
  }
  for (size_t i = 0; i < m->n_weights; i++) free(m->weights[i].key);
  free(m->weights);
  if (m->param_names) {
    for (size_t i = 0; i < fg_model_num_params(m->model); i++) free(m->param_names[i]);
    free(m->param_names);
  }
  if (m->state_names) free_strings(m->state_names, fg_model_num_state(m->model));
  free_strings(m->init_ckpts, m->n_init_ckpts);
  free_strings(m->finetune_patterns, m->n_finetune);
  free_strings(m->predict_tasks, m->n_predict_tasks);
  free(m->predict_path);
  fg_model_free(m->model);
  free(m);
}

fg_model *fg_module_model(const fg_module *m) { return m->model; }

void fg_module_set_loss_weight(fg_module *m, const char *key, double w) {
  for (size_t i = 0; i < m->n_weights; i++)
    if (strcmp(m->weights[i].key, key) == 0) {
      m->weights[i].w = w;
      return;
    }
  m->weights = fg__xrealloc(m->weights, (m->n_weights + 1) * sizeof *m->weights);
  m->weights[m->n_weights].key = fg__xstrdup(key);
  m->weights[m->n_weights].w = w;
  m->n_weights++;
}

void fg_module_set_evaluators(fg_module *m, fg_split split, fg_metric **evals,
                              size_t n) {
  for (size_t i = 0; i < m->n_evals[split]; i++) fg_metric_free(m->evals[split][i]);
  free(m->evals[split]);
  m->evals[split] = n ? fg__xmalloc(n * sizeof *evals) : NULL;
  if (n) memcpy(m->evals[split], evals, n * sizeof *evals);
  m->n_evals[split] = n;
}

size_t fg_module_num_evaluators(const fg_module *m, fg_split split) {
  return m->n_evals[split];
}

fg_metric *fg_module_evaluator(const fg_module *m, fg_split split, size_t i) {
  FG_ASSERT(i < m->n_evals[split]);
  return m->evals[split][i];
}

size_t fg_module_num_params(const fg_module *m) { return fg_model_num_params(m->model); }

const char *fg_module_param_name(const fg_module *m, size_t i) {
  if (m->param_names == NULL) {
    size_t n = fg_model_num_params(m->model);
    ((fg_module *)m)->param_names = fg__xcalloc(n ? n : 1, sizeof(char *));
    for (size_t k = 0; k < n; k++)
      m->param_names[k] = fg__xasprintf("model.%s", fg_model_param_name(m->model, k));
  }
  return m->param_names[i];
}

fg_tensor *fg_module_param(const fg_module *m, size_t i) {
  return fg_model_param(m->model, i);
}

size_t fg_module_num_state(const fg_module *m) { return fg_model_num_state(m->model); }

const char *fg_module_state_name(const fg_module *m, size_t i) {
  if (m->state_names == NULL) {
    size_t n = fg_model_num_state(m->model);
    ((fg_module *)m)->state_names = fg__xcalloc(n ? n : 1, sizeof(char *));
    for (size_t k = 0; k < n; k++)
      m->state_names[k] = fg__xasprintf("model.%s", fg_model_state_name(m->model, k));
  }
  return m->state_names[i];
}

fg_tensor *fg_module_state(const fg_module *m, size_t i) { return fg_model_state(m->model, i); }

bool fg_module_state_is_param(const fg_module *m, size_t i) {
  return fg_model_state_is_param(m->model, i);
}

void fg_module_train(fg_module *m, bool mode) { fg_model_train(m->model, mode); }

bool fg_module_is_training(const fg_module *m) { return fg_model_is_training(m->model); }

void fg_step_result_clear(fg_step_result *r) {
  fg_tensor_free(r->loss);
  fg_value_free(r->loss_dict);
  memset(r, 0, sizeof *r);
}

/* Base loss_step (ARCHITECTURE.md 3.2): a non-dict output is the loss; a
 * dict gives its loss_dict, else the dict itself. */
static int base_loss_step(fg_module *m, const fg_value *batch, const fg_value *output,
                          fg_value **out, char **err) {
  bool has_ld = fg_value_kind_of(output) == FG_VALUE_DICT && fg_value_dict_get(output, "loss_dict");
  if (!has_ld && fg_model_has_method(m->model, "loss_step")) {
    /* The model's own loss_step(batch, output), as the seed's hasattr. */
    const fg_value *args[2] = {batch, output};
    int rc = fg_model_call(m->model, "loss_step", args, 2, out, err);
    if (rc) return fg_err_prefix(err, rc, "model.loss_step");
    if (fg_value_kind_of(*out) != FG_VALUE_DICT) {
      fg_value *d = fg_value_dict();
      fg_value_dict_set(d, "loss", *out);
      *out = d;
    }
    return 0;
  }
  if (fg_value_kind_of(output) != FG_VALUE_DICT) {
    *out = fg_value_dict();
    fg_value_dict_set(*out, "loss", fg_value_copy(output));
    return 0;
  }
  const fg_value *ld = fg_value_dict_get(output, "loss_dict");
  if (ld) {
    if (fg_value_kind_of(ld) != FG_VALUE_DICT)
      return fg_err_set(err, FG_EINVAL, "forward: loss_dict must be a dict, got %s",
                        fg_value_kind_name(fg_value_kind_of(ld)));
    *out = fg_value_copy(ld);
    return 0;
  }
  /* The output itself is the loss dict, minus the two keys outputs use
   * for other things (metric_dict feeds the evaluators, batch_size the
   * epoch means). */
  *out = fg_value_copy(output);
  fg_value_free(fg_value_dict_take(*out, "metric_dict"));
  fg_value_free(fg_value_dict_take(*out, "batch_size"));
  return 0;
}

/* Weights and totals a loss dict in place; *total gets the "loss" tensor. */
static int weigh_losses(fg_module *m, fg_value *ld, fg_tensor **total, char **err) {
  int rc = 0;
  for (size_t i = 0; i < fg_value_len(ld); i++) {
    const char *k = fg_value_dict_key_at(ld, i);
    fg_value *v = fg_value_dict_value_at(ld, i);
    if (fg_value_kind_of(v) != FG_VALUE_TENSOR)
      return fg_err_set(err, FG_EINVAL, "loss_step: loss '%s' must be a tensor, got %s",
                        k, fg_value_kind_name(fg_value_kind_of(v)));
    for (size_t j = 0; j < m->n_weights; j++) {
      if (strcmp(m->weights[j].key, k) != 0) continue;
      fg_tensor *w = NULL;
      if ((rc = fg_op_mul_scalar(fg_value_as_tensor(v), m->weights[j].w, &w, err)))
        return rc;
      fg_value_dict_set(ld, k, fg_value_tensor(w));
      break;
    }
  }
  const fg_value *loss = fg_value_dict_get(ld, "loss");
  if (loss) {
    *total = fg_tensor_ref(fg_value_as_tensor(loss));
    return 0;
  }
  fg_tensor *sum = NULL;
  for (size_t i = 0; i < fg_value_len(ld); i++) {
    if (strstr(fg_value_dict_key_at(ld, i), "loss") == NULL) continue;
    const fg_tensor *t = fg_value_as_tensor(fg_value_dict_value_at(ld, i));
    if (sum == NULL) {
      sum = fg_tensor_ref(t);
      continue;
    }
    fg_tensor *s2 = NULL;
    rc = fg_op_add(sum, t, &s2, err);
    fg_tensor_free(sum);
    sum = s2;
    if (rc) return rc;
  }
  if (sum == NULL)
    return fg_err_set(err, FG_EINVAL,
                      "loss_step: no loss: the loss dict has no 'loss' key and "
                      "no key containing 'loss'");
  fg_value_dict_set(ld, "loss", fg_value_tensor(fg_tensor_ref(sum)));
  *total = sum;
  return 0;
}

static int64_t batch_size_of(const fg_value *batch, const fg_value *output) {
  if (output && fg_value_kind_of(output) == FG_VALUE_DICT) {
    const fg_value *bs = fg_value_dict_get(output, "batch_size");
    if (bs && fg_value_kind_of(bs) == FG_VALUE_INT) return fg_value_as_int(bs);
    if (bs && fg_value_kind_of(bs) == FG_VALUE_DOUBLE) return (int64_t)fg_value_as_double(bs);
  }
  if (batch && fg_value_kind_of(batch) == FG_VALUE_DICT) {
    for (size_t i = 0; i < fg_value_len(batch); i++) {
      const fg_value *v = fg_value_dict_value_at(batch, i);
      if (fg_value_kind_of(v) == FG_VALUE_TENSOR && fg_tensor_ndim(fg_value_as_tensor(v)) > 0)
        return fg_tensor_size(fg_value_as_tensor(v), 0);
    }
  }
  return 1;
}

int fg_module_forward_step(fg_module *m, fg_split split, size_t dataloader_idx,
                           const fg_value *batch, fg_step_result *out,
                           char **err) {
  memset(out, 0, sizeof *out);
  /* The mode the loops set (train() in fit, eval() elsewhere), as
   * Lightning's steps run in whatever mode the trainer put the module. */
  bool train = fg_model_is_training(m->model);
  fg_value *output = NULL, *ld = NULL;
  int rc = m->hooks.forward ? m->hooks.forward(m, batch, train, &output, err)
                            : fg_model_forward(m->model, batch, train, &output, err);
  if (rc) goto fail;
  rc = m->hooks.loss_step ? m->hooks.loss_step(m, batch, output, &ld, err)
                          : base_loss_step(m, batch, output, &ld, err);
  if (rc) goto fail;
  if ((rc = weigh_losses(m, ld, &out->loss, err))) goto fail;
  if (m->n_evals[split] > 0) {
    fg_value *md = NULL;
    if (fg_value_kind_of(output) == FG_VALUE_DICT &&
        fg_value_dict_get(output, "metric_dict")) {
      md = fg_value_copy(fg_value_dict_get(output, "metric_dict"));
    } else if (m->hooks.metric_step) {
      if ((rc = m->hooks.metric_step(m, batch, output, &md, err))) goto fail;
    } else if (fg_model_has_method(m->model, "metric_step")) {
      const fg_value *args[2] = {batch, output};
      if ((rc = fg_model_call(m->model, "metric_step", args, 2, &md, err))) {
        fg_err_prefix(err, rc, "model.metric_step");
        goto fail;
      }
      if (fg_value_kind_of(md) != FG_VALUE_DICT) {
        fg_value_free(md);
        md = NULL;
        rc = fg_err_set(err, FG_EINVAL, "model.metric_step must return a dict of evaluator arguments");
        goto fail;
      }
    }
    if (md) {
      size_t idx = dataloader_idx < m->n_evals[split] ? dataloader_idx : 0;
      rc = m->hooks.update_evaluator
               ? m->hooks.update_evaluator(m, m->evals[split][idx], md, err)
               : fg_metric_update(m->evals[split][idx], md, err);
      fg_value_free(md);
      if (rc) goto fail;
    }
  }
  out->loss_dict = ld;
  out->batch_size = batch_size_of(batch, output);
  fg_value_free(output);
  return 0;
fail:
  fg_value_free(output);
  fg_value_free(ld);
  fg_tensor_free(out->loss);
  out->loss = NULL;
  return rc;
}

/* Flattens a compute result into metrics: dicts by key, numbers as is,
 * one-element tensors as numbers; larger tensors (a confusion matrix) stay
 * tensors, for the caller to keep as artifacts rather than scalars. */
static int add_result(fg_value *metrics, const char *prefix, const char *name,
                      const char *suffix, const fg_value *r, char **err) {
  char *key = NULL;
  switch (fg_value_kind_of(r)) {
    case FG_VALUE_DICT:
      for (size_t i = 0; i < fg_value_len(r); i++) {
        int rc = add_result(metrics, prefix, fg_value_dict_key_at(r, i), suffix,
                            fg_value_dict_value_at(r, i), err);
        if (rc) return rc;
      }
      return 0;
    case FG_VALUE_INT:
    case FG_VALUE_DOUBLE:
      key = fg__xasprintf("%s/%s%s", prefix, name, suffix);
      fg_value_dict_set(metrics, key, fg_value_double(fg_value_as_double(r)));
      break;
    case FG_VALUE_TENSOR: {
      const fg_tensor *t = fg_value_as_tensor(r);
      if (fg_tensor_numel(t) != 1) {
        key = fg__xasprintf("%s/%s%s", prefix, name, suffix);
        fg_value_dict_set(metrics, key, fg_value_tensor(fg_tensor_ref(t)));
        break;
      }
      double d;
      int rc = fg_tensor_item(t, &d, err);
      if (rc) return rc;
      key = fg__xasprintf("%s/%s%s", prefix, name, suffix);
      fg_value_dict_set(metrics, key, fg_value_double(d));
      break;
    }
    default:
      return 0;
  }
  free(key);
  return 0;
}

int fg_module_evaluators_epoch_end(fg_module *m, fg_split split,
                                   fg_value *metrics, char **err) {
  size_t n = m->n_evals[split];
  for (size_t i = 0; i < n; i++) {
    fg_value *r = NULL;
    int rc = m->hooks.compute_evaluator
                 ? m->hooks.compute_evaluator(m, m->evals[split][i], &r, err)
                 : fg_metric_compute(m->evals[split][i], &r, err);
    fg_metric_reset(m->evals[split][i]);
    if (rc) return fg_err_prefix(err, rc, "%s evaluator %s", fg_split_names[split],
                                 fg_metric_name(m->evals[split][i]));
    char suffix[32] = "";
    if (n > 1) snprintf(suffix, sizeof suffix, "_%zu", i);
    rc = add_result(metrics, fg_split_names[split], fg_metric_name(m->evals[split][i]),
                    suffix, r, err);
    fg_value_free(r);
    if (rc) return rc;
  }
  return 0;
}

void fg_module_evaluators_reset(fg_module *m, fg_split split) {
  for (size_t i = 0; i < m->n_evals[split]; i++) fg_metric_reset(m->evals[split][i]);
}

int fg_module_set_evaluator_as_submodule(fg_module *m, bool on, char **err) {
  for (int s = 0; on && s < FG_SPLIT_COUNT; s++)
    for (size_t i = 0; i < m->n_evals[s]; i++)
      if (!fg_metric_has_state(m->evals[s][i]))
        return fg_err_set(err, FG_ECONFIG,
                          "evaluator_as_submodule: the %s evaluator %s cannot keep its state in "
                          "checkpoints",
                          fg_split_names[s], fg_metric_name(m->evals[s][i]));
  m->evaluators_in_state = on;
  return 0;
}

int fg_module_evaluator_state(const fg_module *m, fg_value *sd, char **err) {
  for (int s = 0; m->evaluators_in_state && s < FG_SPLIT_COUNT; s++)
    for (size_t i = 0; i < m->n_evals[s]; i++) {
      fg_value *st = NULL;
      int rc = fg_metric_state_dict(m->evals[s][i], &st, err);
      for (size_t k = 0; rc == 0 && k < fg_value_len(st); k++) {
        const fg_value *v = fg_value_dict_value_at(st, k);
        fg_tensor *t = NULL;
        if (fg_value_kind_of(v) == FG_VALUE_TENSOR) rc = fg_tensor_clone(fg_value_as_tensor(v), &t, err);
        else rc = fg_tensor_scalar(fg_value_as_double(v), FG_FLOAT64, &t, err);
        if (rc) break;
        char *key = fg__xasprintf("_evaluators.%s.%zu.%s", fg_split_names[s], i,
                                  fg_value_dict_key_at(st, k));
        fg_value_dict_set(sd, key, fg_value_tensor(t));
        free(key);
      }
      fg_value_free(st);
      if (rc) return rc;
    }
  return 0;
}

int fg_module_load_evaluator_state(fg_module *m, const fg_value *sd, char **err) {
  for (int s = 0; m->evaluators_in_state && s < FG_SPLIT_COUNT; s++)
    for (size_t i = 0; i < m->n_evals[s]; i++) {
      fg_value *st = NULL;
      int rc = fg_metric_state_dict(m->evals[s][i], &st, err);
      bool found = false;
      for (size_t k = 0; rc == 0 && k < fg_value_len(st); k++) {
        char *key = fg__xasprintf("_evaluators.%s.%zu.%s", fg_split_names[s], i,
                                  fg_value_dict_key_at(st, k));
        const fg_value *v = fg_value_dict_get(sd, key);
        free(key);
        double x;
        if (v == NULL || fg_value_kind_of(v) != FG_VALUE_TENSOR) continue;
        found = true;
        /* A tensor entry (per-class counts) stays a tensor; the metric
         * checks its size. */
        if (fg_value_kind_of(fg_value_dict_value_at(st, k)) == FG_VALUE_TENSOR) {
          fg_value_dict_set(st, fg_value_dict_key_at(st, k), fg_value_copy(v));
          continue;
        }
        if ((rc = fg_tensor_item(fg_value_as_tensor(v), &x, err))) break;
        fg_value_dict_set(st, fg_value_dict_key_at(st, k), fg_value_double(x));
      }
      if (rc == 0 && found) rc = fg_metric_load_state_dict(m->evals[s][i], st, err);
      fg_value_free(st);
      if (rc) return rc;
    }
  return 0;
}

static const fg_named_hook *named_hook(const fg_module *m, const char *name) {
  for (const fg_named_hook *h = m->hooks.named; h && h->name; h++)
    if (strcmp(h->name, name) == 0) return h;
  return NULL;
}

bool fg_module_has_hook(const fg_module *m, const char *name) {
  return named_hook(m, name) != NULL || fg_model_has_method(m->model, name);
}

int fg_module_call_hook(fg_module *m, const char *name, const fg_value *const *args, size_t n,
                        fg_value **out, char **err) {
  *out = NULL;
  const fg_named_hook *h = named_hook(m, name);
  int rc = h ? h->fn(m, args, n, out, err) : fg_model_call(m->model, name, args, n, out, err);
  return rc ? fg_err_prefix(err, rc, "%s", name) : 0;
}

void fg_module_set_predict(fg_module *m, const char *const *tasks, size_t n, const char *path) {
  free_strings(m->predict_tasks, m->n_predict_tasks);
  free(m->predict_path);
  m->predict_tasks = copy_strings(tasks, n);
  m->n_predict_tasks = n;
  m->predict_path = path ? fg__xstrdup(path) : NULL;
}

size_t fg_module_num_predict_tasks(const fg_module *m) { return m->n_predict_tasks; }
const char *fg_module_predict_task(const fg_module *m, size_t i) { return m->predict_tasks[i]; }
const char *fg_module_predict_path(const fg_module *m) { return m->predict_path; }
void fg_module_set_predict_gather(fg_module *m, bool gather) { m->predict_gather = gather; }
bool fg_module_predict_gather(const fg_module *m) { return m->predict_gather; }
