/* The built-in LightningModule classes and their config schemas:
 * fulgur.LightningModule (forward = model(batch)) and
 * fulgur.ClassificationModule (forward = model(batch["x"]) with a
 * cross-entropy loss and preds/target metrics). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fulgur/config.h"
#include "fulgur/error.h"
#include "fulgur/module.h"
#include "fulgur/plugin.h"
#include "fulgur/registry.h"
#include "registry/builtins.h"
#include "util/atomic_file.h"
#include "util/xalloc.h"

static int get_tensor(const fg_value *batch, const char *key, const fg_tensor **t,
                      char **err) {
  const fg_value *v = fg_value_kind_of(batch) == FG_VALUE_DICT
                          ? fg_value_dict_get(batch, key) : NULL;
  if (v == NULL || fg_value_kind_of(v) != FG_VALUE_TENSOR)
    return fg_err_set(err, FG_EINVAL, "batch has no tensor '%s'", key);
  *t = fg_value_as_tensor(v);
  return 0;
}

static int classification_forward(fg_module *m, const fg_value *batch, bool train,
                                  fg_value **out, char **err) {
  const fg_tensor *x, *y;
  int rc;
  if ((rc = get_tensor(batch, "x", &x, err)) || (rc = get_tensor(batch, "y", &y, err)))
    return fg_err_prefix(err, rc, "ClassificationModule.forward");
  fg_value *xin = fg_value_tensor(fg_tensor_ref(x));
  fg_value *logits = NULL;
  rc = fg_model_forward(fg_module_model(m), xin, train, &logits, err);
  fg_value_free(xin);
  if (rc) return rc;
  if (fg_value_kind_of(logits) != FG_VALUE_TENSOR) {
    fg_value_free(logits);
    return fg_err_set(err, FG_EINVAL,
                      "ClassificationModule.forward: the model must return a tensor of logits");
  }
  const fg_tensor *lt = fg_value_as_tensor(logits);
  if (fg_tensor_dtype(y) != FG_INT64) {
    fg_value_free(logits);
    return fg_err_set(err, FG_EINVAL,
                      "ClassificationModule: labels 'y' must be int64 class indices, got %s",
                      fg_dtype_name(fg_tensor_dtype(y)));
  }
  if (fg_tensor_ndim(lt) != 2 || fg_tensor_size(lt, 0) != fg_tensor_size(y, 0)) {
    char ls[64], ys[64];
    fg_tensor_shape_str(lt, ls, sizeof ls);
    fg_tensor_shape_str(y, ys, sizeof ys);
    fg_value_free(logits);
    return fg_err_set(err, FG_EINVAL,
                      "ClassificationModule: logits of shape %s do not match labels of shape %s",
                      ls, ys);
  }
  fg_tensor *ce = NULL;
  if ((rc = fg_op_cross_entropy(lt, y, &ce, err))) {
    fg_value_free(logits);
    return fg_err_prefix(err, rc, "ClassificationModule: cross entropy");
  }
  fg_value *o = fg_value_dict();
  fg_value *ld = fg_value_dict();
  fg_value_dict_set(ld, "ce_loss", fg_value_tensor(ce));
  fg_value_dict_set(o, "loss_dict", ld);
  fg_value *md = fg_value_dict();
  fg_value_dict_set(md, "preds", logits);
  fg_value_dict_set(md, "target", fg_value_tensor(fg_tensor_ref(y)));
  fg_value_dict_set(o, "metric_dict", md);
  fg_value_dict_set(o, "batch_size", fg_value_int(fg_tensor_size(y, 0)));
  *out = o;
  return 0;
}

/* ---- ClassificationModule's predict tasks ---------------------------------------
 * logits, probs and labels, sharing one `logits` dependency (the model run
 * once per batch however many of the tasks are asked for). */

static int cls_logits_dependency(fg_module *m, const fg_value *const *args, size_t n,
                                 fg_value **out, char **err) {
  const fg_tensor *x;
  int rc = n < 1 ? fg_err_set(err, FG_EINVAL, "expected the batch") : get_tensor(args[0], "x", &x, err);
  if (rc) return rc;
  fg_value *xin = fg_value_tensor(fg_tensor_ref(x));
  rc = fg_model_forward(fg_module_model(m), xin, false, out, err);
  fg_value_free(xin);
  if (rc == 0 && fg_value_kind_of(*out) != FG_VALUE_TENSOR) {
    fg_value_free(*out);
    *out = NULL;
    rc = fg_err_set(err, FG_EINVAL, "the model must return a tensor of logits");
  }
  return rc;
}

static int cls_start(fg_module *m, const fg_value *const *args, size_t n, fg_value **out,
                     char **err) {
  (void)m, (void)args, (void)n, (void)err;
  fg_value *d = fg_value_dict(), *deps = fg_value_list();
  fg_value_list_append(deps, fg_value_string("logits"));
  fg_value_dict_set(d, "dependency", deps);
  fg_value_dict_set(d, "result", fg_value_list());
  *out = d;
  return 0;
}

/* The logits dependency from a task's deps argument. */
static int dep_logits(const fg_value *const *args, size_t n, const fg_tensor **t, char **err) {
  const fg_value *v = n >= 2 ? fg_value_dict_get(args[1], "logits") : NULL;
  if (v == NULL || fg_value_kind_of(v) != FG_VALUE_TENSOR)
    return fg_err_set(err, FG_EINVAL, "expected the logits dependency");
  *t = fg_value_as_tensor(v);
  return 0;
}

static int cls_logits(fg_module *m, const fg_value *const *args, size_t n, fg_value **out,
                      char **err) {
  (void)m;
  const fg_tensor *t;
  int rc = dep_logits(args, n, &t, err);
  if (rc == 0) *out = fg_value_tensor(fg_tensor_ref(t));
  return rc;
}

static int cls_probs(fg_module *m, const fg_value *const *args, size_t n, fg_value **out,
                     char **err) {
  (void)m;
  const fg_tensor *t;
  fg_tensor *p = NULL;
  int rc = dep_logits(args, n, &t, err);
  if (rc == 0) rc = fg_op_softmax(t, 1, &p, err);
  if (rc == 0) *out = fg_value_tensor(p);
  return rc;
}

static int cls_labels(fg_module *m, const fg_value *const *args, size_t n, fg_value **out,
                      char **err) {
  (void)m;
  const fg_tensor *t;
  fg_tensor *l = NULL;
  int rc = dep_logits(args, n, &t, err);
  if (rc == 0) rc = fg_op_argmax(t, 1, &l, err);
  if (rc == 0) *out = fg_value_tensor(l);
  return rc;
}

/* labels.csv beside predictions.pt: index,label for every sample in
 * order; written to a temporary name and renamed, so a file that exists
 * is complete. Under ddp without predict_gather the engine passes (rank,
 * world size) too: rank r > 0 writes labels_<r>.csv, and the index is the
 * dataset's (rank r holds samples r, r + world, ...). */
static int cls_labels_end(fg_module *m, const fg_value *const *args, size_t n, fg_value **out,
                          char **err) {
  (void)m;
  if (n < 2 || fg_value_kind_of(args[0]) != FG_VALUE_LIST || fg_value_as_string(args[1]) == NULL)
    return fg_err_set(err, FG_EINVAL, "expected (results, output_path)");
  int64_t rank = 0, world = 1;
  if (n >= 4 && fg_value_kind_of(args[2]) == FG_VALUE_INT && fg_value_kind_of(args[3]) == FG_VALUE_INT) {
    rank = fg_value_as_int(args[2]);
    world = fg_value_as_int(args[3]) > 0 ? fg_value_as_int(args[3]) : 1;
  }
  char *path = rank == 0 ? fg__xasprintf("%s/labels.csv", fg_value_as_string(args[1]))
                         : fg__xasprintf("%s/labels_%lld.csv", fg_value_as_string(args[1]), (long long)rank);
  /* Built in memory, then written in one atomic step (util/atomic_file). */
  char *text = NULL;
  size_t text_len = 0;
  FILE *f = open_memstream(&text, &text_len);
  int rc = 0;
  if (f == NULL) {
    rc = fg_err_set(err, FG_ENOMEM, "%s: out of memory", path);
  } else {
    fputs("index,label\n", f);
    int64_t idx = rank;
    for (size_t b = 0; b < fg_value_len(args[0]) && rc == 0; b++) {
      const fg_tensor *t = fg_value_as_tensor(fg_value_list_at(args[0], b));
      int64_t k = fg_tensor_numel(t);
      int64_t *v = malloc((size_t)(k ? k : 1) * sizeof *v);
      if (v == NULL) rc = fg_err_set(err, FG_ENOMEM, "labels.csv: out of memory");
      else rc = fg_tensor_copy_out(t, FG_INT64, v, (size_t)k * sizeof *v, err);
      for (int64_t i = 0; rc == 0 && i < k; i++) {
        fprintf(f, "%lld,%lld\n", (long long)idx, (long long)v[i]);
        idx += world;
      }
      free(v);
    }
    if (fclose(f) != 0 && rc == 0) rc = fg_err_set(err, FG_ENOMEM, "%s: out of memory", path);
    if (rc == 0) rc = fg__write_file_atomic(path, text, text_len, err);
    free(text);
  }
  free(path);
  *out = rc == 0 ? fg_value_none() : NULL;
  return rc;
}

static const fg_named_hook classification_named[] = {
    {"predict_logits_dependency", cls_logits_dependency},
    {"predict_logits_start", cls_start},
    {"predict_probs_start", cls_start},
    {"predict_labels_start", cls_start},
    {"predict_logits", cls_logits},
    {"predict_probs", cls_probs},
    {"predict_labels", cls_labels},
    {"predict_labels_end", cls_labels_end},
    {NULL, NULL},
};

static const fg_module_hooks classification_hooks = {
    .forward = classification_forward,
    .named = classification_named,
};

/* evaluator_cfg: expanded into fit/val/test/predict, each null, a metric
 * object or a list of them (one per dataloader). */
static int check_module(const fg_class *cls, fg_node *args, const char *keypath,
                        bool fill, char **err) {
  char *path = fg__xasprintf("%s.model", keypath);
  int rc = fg_registry_check(fg_node_get(args, "model"), path, FG_KIND_MODEL, fill, err);
  free(path);
  if (rc) return rc;
  fg_node *lw = fg_node_get(args, "loss_weights");
  for (size_t i = 0; i < fg_node_len(lw); i++) {
    fg_node *v = fg_node_value_at(lw, i);
    if (fg_node_kind_of(v) != FG_NODE_INT && fg_node_kind_of(v) != FG_NODE_FLOAT) {
      char *p = fg__xasprintf("%s.loss_weights.%s", keypath, fg_node_key_at(lw, i));
      rc = fg_config_error(err, v, p, "expected a number, got %s",
                           fg_node_kind_name(fg_node_kind_of(v)));
      free(p);
      return rc;
    }
  }
  fg_node *ec = fg_node_get(args, "evaluator_cfg");
  if (ec == NULL || fg_node_kind_of(ec) == FG_NODE_NULL) return 0;
  char *epath = fg__xasprintf("%s.evaluator_cfg", keypath);
  fg_node *expanded = NULL;
  rc = fg_config_expand_split(ec, epath, &expanded, err);
  for (int s = 0; rc == 0 && s < FG_SPLIT_COUNT; s++) {
    fg_node *v = fg_node_get(expanded, fg_split_names[s]);
    if (v == NULL || fg_node_kind_of(v) == FG_NODE_NULL) continue;
    if (fg_node_kind_of(v) == FG_NODE_SEQ) {
      for (size_t i = 0; rc == 0 && i < fg_node_len(v); i++) {
        char *p = fg__xasprintf("%s.%s.%zu", epath, fg_split_names[s], i);
        rc = fg_registry_check(fg_node_at(v, i), p, FG_KIND_METRIC, fill, err);
        free(p);
      }
    } else {
      char *p = fg__xasprintf("%s.%s", epath, fg_split_names[s]);
      rc = fg_registry_check(v, p, FG_KIND_METRIC, fill, err);
      free(p);
    }
  }
  free(epath);
  if (rc == 0) {
    fg_node_map_set(args, "evaluator_cfg", expanded);
  } else {
    fg_node_free(expanded);
  }
  return rc;
}

static int create_evaluators(fg_module *m, const fg_node *ec, const char *keypath,
                             char **err) {
  for (int s = 0; s < FG_SPLIT_COUNT; s++) {
    const fg_node *v = fg_node_get(ec, fg_split_names[s]);
    if (v == NULL || fg_node_kind_of(v) == FG_NODE_NULL) continue;
    bool list = fg_node_kind_of(v) == FG_NODE_SEQ;
    size_t n = list ? fg_node_len(v) : 1;
    fg_metric **evals = fg__xcalloc(n, sizeof *evals);
    for (size_t i = 0; i < n; i++) {
      char *p = list ? fg__xasprintf("%s.evaluator_cfg.%s.%zu", keypath, fg_split_names[s], i)
                     : fg__xasprintf("%s.evaluator_cfg.%s", keypath, fg_split_names[s]);
      void *obj = NULL;
      int rc = fg_registry_create(list ? fg_node_at(v, i) : v, p, FG_KIND_METRIC, &obj,
                                  NULL, err);
      free(p);
      if (rc) {
        for (size_t k = 0; k < i; k++) fg_metric_free(evals[k]);
        free(evals);
        return rc;
      }
      evals[i] = obj;
    }
    fg_module_set_evaluators(m, (fg_split)s, evals, n);
    free(evals);
  }
  return 0;
}

static void set_fit_start_options(fg_module *m, const fg_node *args);

static int module_create(const fg_class *cls, const fg_node *args,
                         const char *keypath, void **out, char **err) {
  char *path = fg__xasprintf("%s.model", keypath);
  void *model = NULL;
  int rc = fg_registry_create(fg_node_get(args, "model"), path, FG_KIND_MODEL, &model,
                              NULL, err);
  free(path);
  if (rc) return rc;
  fg_module *m = fg_module_create(model, cls->data);
  set_fit_start_options(m, args);
  const fg_node *lw = fg_node_get(args, "loss_weights");
  for (size_t i = 0; i < fg_node_len(lw); i++)
    fg_module_set_loss_weight(m, fg_node_key_at(lw, i), fg_node_float(fg_node_value_at(lw, i)));
  const fg_node *ec = fg_node_get(args, "evaluator_cfg");
  if ((ec && fg_node_kind_of(ec) == FG_NODE_MAP && (rc = create_evaluators(m, ec, keypath, err))) ||
      (rc = fg_module_set_evaluator_as_submodule(
           m, fg_node_bool(fg_node_get(args, "evaluator_as_submodule")), err))) {
    fg_module_free(m);
    return rc;
  }
  *out = m;
  return 0;
}

static void module_destroy(void *obj) { fg_module_free(obj); }

/* finetune_cfg: a pattern, a list of them, or {finetune: bool, params: ...}. */
static int check_finetune(const fg_node *v, const char *keypath, char **err) {
  const fg_node *params = v;
  if (fg_node_kind_of(v) == FG_NODE_NULL) return 0;
  if (fg_node_kind_of(v) == FG_NODE_MAP) {
    for (size_t i = 0; i < fg_node_len(v); i++) {
      const char *k = fg_node_key_at(v, i);
      if (strcmp(k, "finetune") != 0 && strcmp(k, "params") != 0) {
        char *p = fg__xasprintf("%s.%s", keypath, k);
        int rc = fg_config_error(err, fg_node_value_at(v, i), p,
                                 "unknown key '%s' (expected finetune and params)", k);
        free(p);
        return rc;
      }
    }
    const fg_node *ft = fg_node_get(v, "finetune");
    if (ft && fg_node_kind_of(ft) != FG_NODE_BOOL) {
      char *p = fg__xasprintf("%s.finetune", keypath);
      int rc = fg_config_error(err, ft, p, "expected a boolean, got %s",
                               fg_node_kind_name(fg_node_kind_of(ft)));
      free(p);
      return rc;
    }
    params = fg_node_get(v, "params");
    if (params == NULL)
      return fg_config_error(err, v, keypath, "missing 'params' (a parameter name pattern or a list of them)");
  }
  bool list = fg_node_kind_of(params) == FG_NODE_SEQ;
  if (!list && fg_node_kind_of(params) != FG_NODE_STRING)
    return fg_config_error(err, params, keypath,
                           "expected a parameter name pattern, a list of them, or {finetune, params}, got %s",
                           fg_node_kind_name(fg_node_kind_of(params)));
  for (size_t i = 0; list && i < fg_node_len(params); i++)
    if (fg_node_kind_of(fg_node_at(params, i)) != FG_NODE_STRING)
      return fg_config_error(err, fg_node_at(params, i), keypath,
                             "expected parameter name patterns (strings), got %s",
                             fg_node_kind_name(fg_node_kind_of(fg_node_at(params, i))));
  return 0;
}

/* A string or a list of strings, as a borrowed array (n items). */
static const char **string_list(const fg_node *v, size_t *n) {
  bool list = fg_node_kind_of(v) == FG_NODE_SEQ;
  *n = list ? fg_node_len(v) : (fg_node_kind_of(v) == FG_NODE_STRING ? 1 : 0);
  const char **out = fg__xcalloc(*n + 1, sizeof *out);
  for (size_t i = 0; i < *n; i++) out[i] = fg_node_str(list ? fg_node_at(v, i) : v);
  return out;
}

static void set_fit_start_options(fg_module *m, const fg_node *args) {
  size_t n;
  const char **paths = string_list(fg_node_get(args, "ckpt_path"), &n);
  fg_module_set_init_ckpts(m, paths, n);
  free(paths);
  const fg_node *ft = fg_node_get(args, "finetune_cfg");
  bool finetune = true;
  const fg_node *params = ft;
  if (fg_node_kind_of(ft) == FG_NODE_MAP) {
    const fg_node *f = fg_node_get(ft, "finetune");
    if (f) finetune = fg_node_bool(f);
    params = fg_node_get(ft, "params");
  }
  const char **pats = string_list(params, &n);
  fg_module_set_finetune(m, finetune, pats, n);
  free(pats);
  const char **tasks = string_list(fg_node_get(args, "predict_tasks"), &n);
  fg_module_set_predict(m, tasks, n, fg_node_str(fg_node_get(args, "predict_path")));
  const fg_node *pg = fg_node_get(args, "predict_gather");
  fg_module_set_predict_gather(m, pg && fg_node_kind_of(pg) == FG_NODE_BOOL && fg_node_bool(pg));
  free(tasks);
}


static const fg_param module_params[] = {
    {"model", FG_T_MAP, NULL, "the network: {class_path, init_args}", NULL, 0},
    {"loss_weights", FG_T_MAP, "{}", "weight per loss key", NULL, 0},
    {"evaluator_cfg", FG_T_ANY, "null", "evaluators per split (a split config)", NULL, 0},
    {"evaluator_as_submodule", FG_T_BOOL, "false", "keep evaluator state in checkpoints", NULL, 0},
    {"ckpt_path", FG_T_NULL | FG_T_STRING | FG_T_SEQ, "null", "checkpoints whose state_dict loads (non-strictly, in order) at fit start", NULL, FG_T_STRING},
    {"finetune_cfg", FG_T_NULL | FG_T_STRING | FG_T_SEQ | FG_T_MAP, "null", "parameters to fine-tune (name patterns; the rest are frozen)", check_finetune, 0},
    {"predict_tasks", FG_T_NULL | FG_T_STRING | FG_T_SEQ, "null", "prediction task names (predict_<task> hooks)", NULL, FG_T_STRING},
    {"predict_path", FG_T_NULL | FG_T_STRING, "null", "where tasks write <predict_path>/<task>/ (relative to the checkpoint's run directory)", NULL, 0},
    {"predict_gather", FG_T_BOOL, "false", "under ddp, gather every task's results to rank 0 in dataset order before predict_<task>_end", NULL, 0},
};

static const char *const lm_aliases[] = {"LightningModule",
                                         "lightning_template.LightningModule", NULL};
static const char *const cm_aliases[] = {"ClassificationModule", NULL};

const fg_class fg__lightning_module_class = {
    .name = "fulgur.LightningModule",
    .aliases = lm_aliases,
    .kind = FG_KIND_MODULE,
    .params = module_params,
    .n_params = sizeof module_params / sizeof module_params[0],
    .create = module_create,
    .destroy = module_destroy,
    .check = check_module,
    .data = NULL,
};

const fg_class fg__classification_module_class = {
    .name = "fulgur.ClassificationModule",
    .aliases = cm_aliases,
    .kind = FG_KIND_MODULE,
    .params = module_params,
    .n_params = sizeof module_params / sizeof module_params[0],
    .create = module_create,
    .destroy = module_destroy,
    .check = check_module,
    .data = (void *)&classification_hooks,
};

void fg_module_class_init(fg_class *cls, const char *name, const fg_module_hooks *hooks) {
  *cls = fg__lightning_module_class;
  cls->name = name;
  cls->aliases = NULL;
  cls->data = (void *)hooks;
}

