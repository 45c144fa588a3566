/* An example fulgur plugin, built as a shared object and named in a
 * config's `plugins:` list. It adds two classes:
 *
 * - example.PenalizedClassifier, a LightningModule that overrides three
 *   of the seed's hooks (forward, loss_step, compute_evaluator) and
 *   inherits the rest (metric_step through the output's metric_dict,
 *   update_evaluator, loss_weights, ckpt_path, finetune_cfg): its loss
 *   dict has the cross-entropy and a logit penalty, weighted through
 *   loss_weights, and each evaluator also reports an error rate. Its
 *   predict hooks (a hook table by name) give a `probs` task fed by a
 *   `scores` dependency.
 * - example.data.XOR, a dataset of noisy XOR points (x: [N, 2], y: 0/1).
 *
 * Build: see CMakeLists.txt (`example_plugin` target) or
 *   cc -shared -fPIC -I<fulgur>/src/include example_plugin.c -o example_plugin.so
 */
#include <fulgur/data.h>
#include <fulgur/error.h>
#include <fulgur/plugin.h>
#include <stdlib.h>

FG_PLUGIN_DECLARE();

/* ---- the module ------------------------------------------------------------ */

static const fg_tensor *tensor_of(const fg_value *batch, const char *key) {
  const fg_value *v = fg_value_dict_get(batch, key);
  return v && fg_value_kind_of(v) == FG_VALUE_TENSOR ? fg_value_as_tensor(v) : NULL;
}

/* forward: logits = model(batch["x"]), returned with the metric_dict the
 * base metric_step feeds to the evaluators. */
static int pc_forward(fg_module *m, const fg_value *batch, bool train, fg_value **out,
                      char **err) {
  const fg_tensor *x = tensor_of(batch, "x"), *y = tensor_of(batch, "y");
  if (x == NULL || y == NULL)
    return fg_err_set(err, FG_EINVAL, "PenalizedClassifier: the batch needs tensors x and y");
  fg_value *xin = fg_value_tensor(fg_tensor_ref(x));
  fg_value *logits = NULL;
  int rc = fg_model_forward(fg_module_model(m), xin, train, &logits, err);
  fg_value_free(xin);
  if (rc) return rc;
  fg_value *md = fg_value_dict();
  fg_value_dict_set(md, "preds", fg_value_copy(logits));
  fg_value_dict_set(md, "target", fg_value_tensor(fg_tensor_ref(y)));
  fg_value *o = fg_value_dict();
  fg_value_dict_set(o, "logits", logits);
  fg_value_dict_set(o, "metric_dict", md);
  *out = o;
  return 0;
}

/* loss_step: {"ce_loss": CE(logits, y), "penalty_loss": mean(logits^2)};
 * the base adds "loss" as the weighted sum. */
static int pc_loss_step(fg_module *m, const fg_value *batch, const fg_value *output,
                        fg_value **loss_dict, char **err) {
  (void)m;
  const fg_tensor *logits = tensor_of(output, "logits"), *y = tensor_of(batch, "y");
  fg_tensor *ce = NULL, *sq = NULL, *pen = NULL;
  int rc = fg_op_cross_entropy(logits, y, &ce, err);
  if (rc == 0) rc = fg_op_mul(logits, logits, &sq, err);
  if (rc == 0) rc = fg_op_mean(sq, &pen, err);
  fg_tensor_free(sq);
  if (rc) {
    fg_tensor_free(ce);
    return rc;
  }
  fg_value *d = fg_value_dict();
  fg_value_dict_set(d, "ce_loss", fg_value_tensor(ce));
  fg_value_dict_set(d, "penalty_loss", fg_value_tensor(pen));
  *loss_dict = d;
  return 0;
}

/* compute_evaluator: the evaluator's result, plus its complement when it
 * is a number (an accuracy gives an error rate). */
static int pc_compute_evaluator(fg_module *m, fg_metric *ev, fg_value **out, char **err) {
  (void)m;
  fg_value *r = NULL;
  int rc = fg_metric_compute(ev, &r, err);
  if (rc) return rc;
  if (fg_value_kind_of(r) != FG_VALUE_DOUBLE) {
    *out = r;
    return 0;
  }
  fg_value *d = fg_value_dict();
  fg_value_dict_set(d, fg_metric_name(ev), fg_value_double(fg_value_as_double(r)));
  fg_value_dict_set(d, "error_rate", fg_value_double(1.0 - fg_value_as_double(r)));
  fg_value_free(r);
  *out = d;
  return 0;
}

/* Predict hooks, found by name: a `scores` dependency (the model's logits,
 * computed once per batch) and a `probs` task returning their softmax. */
static int pc_scores_dependency(fg_module *m, const fg_value *const *args, size_t n,
                                fg_value **out, char **err) {
  const fg_tensor *x = n >= 1 ? tensor_of(args[0], "x") : NULL;
  if (x == NULL) return fg_err_set(err, FG_EINVAL, "the batch needs a tensor x");
  fg_value *xin = fg_value_tensor(fg_tensor_ref(x));
  int rc = fg_model_forward(fg_module_model(m), xin, false, out, err);
  fg_value_free(xin);
  return rc;
}

static int pc_probs_start(fg_module *m, const fg_value *const *args, size_t n, fg_value **out,
                          char **err) {
  (void)m, (void)args, (void)n, (void)err;
  fg_value *d = fg_value_dict(), *deps = fg_value_list();
  fg_value_list_append(deps, fg_value_string("scores"));
  fg_value_dict_set(d, "dependency", deps);
  *out = d;
  return 0;
}

static int pc_probs(fg_module *m, const fg_value *const *args, size_t n, fg_value **out,
                    char **err) {
  (void)m;
  const fg_tensor *s = n >= 2 ? tensor_of(args[1], "scores") : NULL;
  if (s == NULL) return fg_err_set(err, FG_EINVAL, "expected the scores dependency");
  fg_tensor *p = NULL;
  int rc = fg_op_softmax(s, 1, &p, err);
  if (rc == 0) *out = fg_value_tensor(p);
  return rc;
}

static const fg_named_hook pc_named[] = {
    {"predict_scores_dependency", pc_scores_dependency},
    {"predict_probs_start", pc_probs_start},
    {"predict_probs", pc_probs},
    {NULL, NULL},
};

static const fg_module_hooks pc_hooks = {.forward = pc_forward,
                                         .loss_step = pc_loss_step,
                                         .compute_evaluator = pc_compute_evaluator,
                                         .named = pc_named};
static fg_class pc_class;

/* ---- the dataset -------------------------------------------------------------- */

static const fg_param xor_params[] = {
    {"num_samples", FG_T_INT, NULL, "points", NULL, 0},
    {"noise", FG_T_FLOAT, "0.1", "standard deviation added to the corners", NULL, 0},
    {"seed", FG_T_INT, "0", "generator seed", NULL, 0},
};

static double uniform(uint64_t *s) {
  *s = *s * 6364136223846793005ULL + 1442695040888963407ULL;
  return ((*s >> 11) + 0.5) * 0x1.0p-53;
}

static int xor_create(const fg_class *cls, const fg_node *a, const char *keypath, void **out,
                      char **err) {
  (void)cls;
  int64_t n = fg_node_int(fg_node_get(a, "num_samples"));
  if (n < 1) return fg_err_set(err, FG_EINVAL, "%s.num_samples: expected a positive count", keypath);
  double noise = fg_node_float(fg_node_get(a, "noise"));
  uint64_t s = (uint64_t)fg_node_int(fg_node_get(a, "seed")) + 1;
  float *x = malloc((size_t)n * 2 * sizeof *x);
  int64_t *y = malloc((size_t)n * sizeof *y);
  if (x == NULL || y == NULL) {
    free(x);
    free(y);
    return fg_err_set(err, FG_ENOMEM, "%s: out of memory", keypath);
  }
  for (int64_t i = 0; i < n; i++) {
    int a0 = uniform(&s) < 0.5, a1 = uniform(&s) < 0.5;
    x[2 * i] = (float)(a0 + noise * (uniform(&s) - 0.5) * 2);
    x[2 * i + 1] = (float)(a1 + noise * (uniform(&s) - 0.5) * 2);
    y[i] = a0 ^ a1;
  }
  int64_t xs[2] = {n, 2}, ys[1] = {n};
  fg_tensor *xt = NULL, *yt = NULL;
  int rc = fg_tensor_from_data(x, FG_FLOAT32, xs, 2, &xt, err);
  if (rc == 0) rc = fg_tensor_from_data(y, FG_INT64, ys, 1, &yt, err);
  free(x);
  free(y);
  fg_dataset *ds = NULL;
  if (rc == 0) rc = fg_dataset_tensor_create(xt, yt, &ds, err); /* takes xt, yt */
  else fg_tensor_free(xt);
  if (rc == 0) *out = ds;
  return rc;
}

static void xor_destroy(void *obj) { fg_dataset_unref(obj); }

static const fg_class xor_class = {
    .name = "example.data.XOR",
    .kind = FG_KIND_DATASET,
    .params = xor_params,
    .n_params = sizeof xor_params / sizeof xor_params[0],
    .create = xor_create,
    .destroy = xor_destroy,
};

/* ---- the entry point ------------------------------------------------------------ */

__attribute__((visibility("default"))) int fulgur_plugin_init(char **err) {
  fg_module_class_init(&pc_class, "example.PenalizedClassifier", &pc_hooks);
  int rc = fg_registry_add(&pc_class, err);
  if (rc == 0) rc = fg_registry_add(&xor_class, err);
  return rc;
}
