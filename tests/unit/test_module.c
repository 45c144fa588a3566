/* The LightningModule's forward_step rules (ARCHITECTURE.md 3.2) with a
 * test model whose forward returns what each case needs, and the built-in
 * evaluators. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fulgur/config.h"
#include "fulgur/error.h"
#include "fulgur/metrics.h"
#include "fulgur/module.h"
#include "fulgur/registry.h"
#include "tensor_args.h"

static fg_tensor *scalar(double v) {
  fg_tensor *t = NULL;
  cr_assert_eq(fg_tensor_scalar(v, FG_FLOAT32, &t, NULL), 0);
  return t;
}

static double item(const fg_tensor *t) {
  double d;
  cr_assert_eq(fg_tensor_item(t, &d, NULL), 0);
  return d;
}

/* The test model returns a copy of the value stored in self, so each test
 * decides what "forward" gives. */
static int echo_forward(void *self, fg_model *m, const fg_value *in, bool train, fg_value **out,
                        char **err) {
  *out = fg_value_copy(self);
  return 0;
}
static void echo_free(void *self) { fg_value_free(self); }
static const fg_model_vtable echo_vt = {echo_forward, echo_free};

static fg_module *module_returning(fg_value *output) {
  return fg_module_create(fg_model_create(&echo_vt, output), NULL);
}

static fg_value *dummy_batch(int64_t n) {
  fg_value *b = fg_value_dict();
  int64_t shape[2] = {n, 3};
  fg_tensor *x = NULL;
  cr_assert_eq(fg_tensor_zeros(shape, 2, FG_FLOAT32, &x, NULL), 0);
  fg_value_dict_set(b, "x", fg_value_tensor(x));
  return b;
}

Test(loss_step, non_dict_output_is_the_loss) {
  fg_module *m = module_returning(fg_value_tensor(scalar(2.5)));
  fg_value *batch = dummy_batch(4);
  fg_step_result r;
  cr_assert_eq(fg_module_forward_step(m, FG_SPLIT_FIT, 0, batch, &r, NULL), 0);
  cr_assert_float_eq(item(r.loss), 2.5, 1e-6);
  cr_assert_eq(fg_value_len(r.loss_dict), 1);
  cr_assert_str_eq(fg_value_dict_key_at(r.loss_dict, 0), "loss");
  cr_assert_eq(r.batch_size, 4, "batch size from the batch's first tensor");
  fg_step_result_clear(&r);
  fg_value_free(batch);
  fg_module_free(m);
}

Test(loss_step, loss_dict_weighted_and_summed) {
  fg_value *out = fg_value_dict();
  fg_value *ld = fg_value_dict();
  fg_value_dict_set(ld, "a_loss", fg_value_tensor(scalar(1.0)));
  fg_value_dict_set(ld, "b_loss", fg_value_tensor(scalar(2.0)));
  fg_value_dict_set(ld, "aux", fg_value_tensor(scalar(100.0)));
  fg_value_dict_set(out, "loss_dict", ld);
  fg_value_dict_set(out, "batch_size", fg_value_int(7));
  fg_module *m = module_returning(out);
  fg_module_set_loss_weight(m, "b_loss", 0.5);
  fg_module_set_loss_weight(m, "aux", 3.0);
  fg_value *batch = dummy_batch(4);
  fg_step_result r;
  cr_assert_eq(fg_module_forward_step(m, FG_SPLIT_FIT, 0, batch, &r, NULL), 0);
  /* loss = a_loss + 0.5 * b_loss; "aux" has no "loss" in its name. */
  cr_assert_float_eq(item(r.loss), 2.0, 1e-6);
  cr_assert_float_eq(item(fg_value_as_tensor(fg_value_dict_get(r.loss_dict, "b_loss"))), 1.0, 1e-6);
  cr_assert_float_eq(item(fg_value_as_tensor(fg_value_dict_get(r.loss_dict, "aux"))), 300.0, 1e-4);
  cr_assert_float_eq(item(fg_value_as_tensor(fg_value_dict_get(r.loss_dict, "loss"))), 2.0, 1e-6);
  cr_assert_eq(r.batch_size, 7, "batch_size from the output wins");
  fg_step_result_clear(&r);
  fg_value_free(batch);
  fg_module_free(m);
}

Test(loss_step, explicit_loss_key_is_weighted_too) {
  fg_value *out = fg_value_dict();
  fg_value_dict_set(out, "loss", fg_value_tensor(scalar(4.0)));
  fg_value_dict_set(out, "x_loss", fg_value_tensor(scalar(9.0)));
  fg_module *m = module_returning(out);
  fg_module_set_loss_weight(m, "loss", 0.25);
  fg_value *batch = dummy_batch(2);
  fg_step_result r;
  cr_assert_eq(fg_module_forward_step(m, FG_SPLIT_FIT, 0, batch, &r, NULL), 0);
  cr_assert_float_eq(item(r.loss), 1.0, 1e-6, "the dict itself is the loss dict; loss weighted");
  fg_step_result_clear(&r);
  fg_value_free(batch);
  fg_module_free(m);
}

Test(loss_step, no_loss_is_an_error) {
  fg_value *out = fg_value_dict();
  fg_value_dict_set(out, "accuracy", fg_value_tensor(scalar(1.0)));
  fg_module *m = module_returning(out);
  fg_value *batch = dummy_batch(2);
  fg_step_result r;
  char *err = NULL;
  cr_assert_eq(fg_module_forward_step(m, FG_SPLIT_FIT, 0, batch, &r, &err), FG_EINVAL);
  cr_assert(err && strstr(err, "no loss"), "message: %s", err);
  free(err);
  fg_value_free(batch);
  fg_module_free(m);
}

Test(loss_step, non_tensor_loss_is_an_error) {
  fg_value *out = fg_value_dict();
  fg_value_dict_set(out, "loss", fg_value_string("oops"));
  fg_module *m = module_returning(out);
  fg_value *batch = dummy_batch(2);
  fg_step_result r;
  char *err = NULL;
  cr_assert_eq(fg_module_forward_step(m, FG_SPLIT_FIT, 0, batch, &r, &err), FG_EINVAL);
  cr_assert(err && strstr(err, "'loss' must be a tensor"), "message: %s", err);
  free(err);
  fg_value_free(batch);
  fg_module_free(m);
}

/* ---- evaluators ---- */

static fg_metric *make_metric(const char *yaml) {
  fg_node *n = NULL;
  char *err = NULL;
  cr_assert_eq(fg_node_parse(yaml, strlen(yaml), "<test>", &n, &err), 0, "%s", err);
  void *obj = NULL;
  int rc = fg_registry_create(n, "m", FG_KIND_METRIC, &obj, NULL, &err);
  cr_assert_eq(rc, 0, "%s", err);
  fg_node_free(n);
  return obj;
}

static double compute(fg_metric *m) {
  fg_value *r = NULL;
  cr_assert_eq(fg_metric_compute(m, &r, NULL), 0);
  double d = fg_value_as_double(r);
  fg_value_free(r);
  return d;
}

/* Rows' argmax: 2, 0, 1, 1; second best: 1, 2, 0, 2. */
static const float logits[] = {0.1f, 0.3f, 0.9f, 0.8f, 0.1f, 0.5f, 0.4f, 0.7f, 0.2f, 0.0f, 0.6f, 0.5f};

Test(accuracy, multiclass_top1_and_top2) {
  fg_metric *top1 = make_metric("{class_path: fulgur.metrics.Accuracy, init_args: {task: multiclass, num_classes: 3}}");
  fg_metric *top2 = make_metric("{class_path: torchmetrics.Accuracy, init_args: {task: multiclass, num_classes: 3, top_k: 2}}");
  const int64_t target[] = {2, 2, 0, 1};
  fg_value *k = kw(tensor_f(logits, 4, 3), tensor_l(target, 4));
  cr_assert_eq(fg_metric_update(top1, k, NULL), 0);
  cr_assert_eq(fg_metric_update(top2, k, NULL), 0);
  cr_assert_float_eq(compute(top1), 0.5, 1e-12);  /* rows 0 and 3 */
  cr_assert_float_eq(compute(top2), 1.0, 1e-12);
  /* Accumulates over updates, and reset starts over. */
  cr_assert_eq(fg_metric_update(top1, k, NULL), 0);
  cr_assert_float_eq(compute(top1), 0.5, 1e-12);
  fg_metric_reset(top1);
  const int64_t all_right[] = {2, 0, 1, 1};
  fg_value *k2 = kw(tensor_f(logits, 4, 3), tensor_l(all_right, 4));
  cr_assert_eq(fg_metric_update(top1, k2, NULL), 0);
  cr_assert_float_eq(compute(top1), 1.0, 1e-12);
  cr_assert_str_eq(fg_metric_name(top1), "Accuracy");
  fg_value_free(k);
  fg_value_free(k2);
  fg_metric_free(top1);
  fg_metric_free(top2);
}

Test(accuracy, binary_probs_and_logits) {
  fg_metric *m = make_metric("{class_path: fulgur.metrics.Accuracy, init_args: {task: binary}}");
  const float probs[] = {0.9f, 0.2f, 0.6f, 0.4f};
  const int64_t target[] = {1, 0, 0, 0};
  fg_value *k = kw(tensor_f(probs, 4, 0), tensor_l(target, 4));
  cr_assert_eq(fg_metric_update(m, k, NULL), 0);
  cr_assert_float_eq(compute(m), 0.75, 1e-12);
  fg_metric_reset(m);
  const float lg[] = {3.0f, -2.0f, 0.5f, -0.1f}; /* sigmoid: 1, 0, 1, 0 */
  fg_value *k2 = kw(tensor_f(lg, 4, 0), tensor_l(target, 4));
  cr_assert_eq(fg_metric_update(m, k2, NULL), 0);
  cr_assert_float_eq(compute(m), 0.75, 1e-12);
  /* Label predictions shaped [N, 1] compare element by element with [N]. */
  fg_metric_reset(m);
  const int64_t labels[] = {1, 1, 0, 0};
  fg_tensor *col = NULL;
  int64_t shape[2] = {4, 1};
  cr_assert_eq(fg_tensor_from_data(labels, FG_INT64, shape, 2, &col, NULL), 0);
  fg_value *k3 = kw(col, tensor_l(target, 4));
  cr_assert_eq(fg_metric_update(m, k3, NULL), 0);
  cr_assert_float_eq(compute(m), 0.75, 1e-12);
  fg_value_free(k);
  fg_value_free(k2);
  fg_value_free(k3);
  fg_metric_free(m);
}

Test(accuracy, macro_average_is_per_class_recall) {
  /* preds (argmax) 2, 0, 1, 1 against targets 2, 0, 0, 0: class 0 recall
   * 1/3, class 1 has no target but false positives (0), class 2 recall 1. */
  fg_metric *m = make_metric("{class_path: fulgur.metrics.Accuracy, init_args: {task: multiclass, num_classes: 3, average: macro}}");
  cr_assert_str_eq(fg_metric_name(m), "Accuracy");
  const int64_t target[] = {2, 0, 0, 0};
  fg_value *k = kw(tensor_f(logits, 4, 3), tensor_l(target, 4));
  cr_assert_eq(fg_metric_update(m, k, NULL), 0);
  cr_assert_float_eq(compute(m), (1.0 / 3 + 0 + 1) / 3, 1e-12);
  fg_value_free(k);
  fg_metric_free(m);
}

Test(accuracy, bad_arguments) {
  fg_metric *m = make_metric("{class_path: fulgur.metrics.Accuracy, init_args: {task: multiclass, num_classes: 4}}");
  const int64_t target[] = {2, 2, 0, 1};
  fg_value *k = kw(tensor_f(logits, 4, 3), tensor_l(target, 4));
  char *err = NULL;
  cr_assert_eq(fg_metric_update(m, k, &err), FG_EINVAL);
  cr_assert(strstr(err, "num_classes=4"), "%s", err);
  free(err);
  err = NULL;
  fg_value_dict_set(k, "weights", fg_value_int(1));
  cr_assert_eq(fg_metric_update(m, k, &err), FG_EINVAL);
  cr_assert(strstr(err, "unexpected keyword argument 'weights'"), "%s", err);
  free(err);
  fg_value_free(k);
  fg_metric_free(m);
}

Test(accuracy, config_errors) {
  fg_node *n = NULL;
  const char *y = "{class_path: fulgur.metrics.Accuracy, init_args: {task: multiclass}}";
  cr_assert_eq(fg_node_parse(y, strlen(y), "m.yaml", &n, NULL), 0);
  char *err = NULL;
  void *obj = NULL;
  cr_assert_eq(fg_registry_create(n, "model.init_args.evaluator_cfg", FG_KIND_METRIC, &obj, NULL, &err),
               FG_ECONFIG);
  cr_assert(strstr(err, "evaluator_cfg.init_args.num_classes"), "%s", err);
  free(err);
  fg_node_free(n);
}

Test(mean_metric, weighted_mean) {
  fg_metric *m = make_metric("{class_path: fulgur.metrics.MeanMetric}");
  const float v[] = {1, 2, 3};
  fg_value *k = fg_value_dict();
  fg_value_dict_set(k, "value", fg_value_tensor(tensor_f(v, 3, 0)));
  cr_assert_eq(fg_metric_update(m, k, NULL), 0);
  fg_value *k2 = fg_value_dict();
  fg_value_dict_set(k2, "value", fg_value_double(10));
  fg_value_dict_set(k2, "weight", fg_value_double(2));
  cr_assert_eq(fg_metric_update(m, k2, NULL), 0);
  cr_assert_float_eq(compute(m), (1 + 2 + 3 + 20) / 5.0, 1e-12);
  fg_value_free(k);
  fg_value_free(k2);
  fg_metric_free(m);
}

Test(evaluators, epoch_end_names_and_dataloader_suffix) {
  fg_value *out = fg_value_dict();
  const int64_t target[] = {2, 2, 0, 1};
  fg_value *md = kw(tensor_f(logits, 4, 3), tensor_l(target, 4));
  fg_value_dict_set(out, "loss", fg_value_tensor(scalar(1.0)));
  fg_value_dict_set(out, "metric_dict", md);
  fg_module *m = module_returning(out);
  fg_metric *evals[2] = {
      make_metric("{class_path: fulgur.metrics.Accuracy, init_args: {task: multiclass, num_classes: 3}}"),
      make_metric("{class_path: fulgur.metrics.Accuracy, init_args: {task: multiclass, num_classes: 3, top_k: 2}}")};
  fg_module_set_evaluators(m, FG_SPLIT_VAL, evals, 2);
  fg_value *batch = dummy_batch(4);
  fg_step_result r;
  char *ferr = NULL;
  cr_assert_eq(fg_module_forward_step(m, FG_SPLIT_VAL, 1, batch, &r, &ferr), 0, "%s", ferr);
  fg_step_result_clear(&r);
  fg_value *metrics = fg_value_dict();
  cr_assert_eq(fg_module_evaluators_epoch_end(m, FG_SPLIT_VAL, metrics, NULL), 0);
  cr_assert_eq(fg_value_len(metrics), 2);
  cr_assert_str_eq(fg_value_dict_key_at(metrics, 0), "val/Accuracy_0");
  cr_assert_str_eq(fg_value_dict_key_at(metrics, 1), "val/Accuracy_1");
  cr_assert_float_eq(fg_value_as_double(fg_value_dict_value_at(metrics, 1)), 1.0, 1e-12,
                     "dataloader 1 updated the second evaluator");
  /* No evaluator for fit: metric_step is skipped. */
  cr_assert_eq(fg_module_num_evaluators(m, FG_SPLIT_FIT), 0);
  fg_value_free(metrics);
  fg_value_free(batch);
  fg_module_free(m);
}
