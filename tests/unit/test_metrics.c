/* The TorchMetrics-compatible evaluators (Precision, Recall, F1Score,
 * ConfusionMatrix, AUROC, MeanSquaredError, MeanAbsoluteError,
 * MetricCollection) on small tensors whose results are worked out by hand
 * in the comments; accumulation, reset and config errors. */
#include <criterion/criterion.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "fulgur/config.h"
#include "fulgur/error.h"
#include "fulgur/metrics.h"
#include "fulgur/registry.h"
#include "tensor_args.h"

/* ---- helpers ---- */

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

/* Creating the metric fails with FG_ECONFIG and a message containing
 * `path` and `what`. */
static void expect_config_error(const char *yaml, const char *path, const char *what) {
  fg_node *n = NULL;
  cr_assert_eq(fg_node_parse(yaml, strlen(yaml), "m.yaml", &n, NULL), 0);
  char *err = NULL;
  void *obj = NULL;
  cr_assert_eq(fg_registry_create(n, "model.init_args.evaluator_cfg", FG_KIND_METRIC, &obj, NULL,
                                  &err),
               FG_ECONFIG, "%s: expected a config error", yaml);
  cr_assert(err && strstr(err, path), "message '%s' lacks '%s'", err, path);
  cr_assert(strstr(err, what), "message '%s' lacks '%s'", err, what);
  cr_assert(strstr(err, "m.yaml:1:"), "message '%s' has no mark", err);
  free(err);
  fg_node_free(n);
}

/* Updates m with (preds, target) and frees the arguments. */
static void update(fg_metric *m, fg_tensor *preds, fg_tensor *target) {
  fg_value *k = kw(preds, target);
  char *err = NULL;
  cr_assert_eq(fg_metric_update(m, k, &err), 0, "%s", err);
  fg_value_free(k);
}

/* Updates m and expects FG_EINVAL with `what` in the message. */
static void update_fails(fg_metric *m, fg_tensor *preds, fg_tensor *target, const char *what) {
  fg_value *k = kw(preds, target);
  char *err = NULL;
  cr_assert_eq(fg_metric_update(m, k, &err), FG_EINVAL);
  cr_assert(err && strstr(err, what), "message '%s' lacks '%s'", err, what);
  free(err);
  fg_value_free(k);
}

static double compute(fg_metric *m) {
  fg_value *r = NULL;
  char *err = NULL;
  cr_assert_eq(fg_metric_compute(m, &r, &err), 0, "%s", err);
  cr_assert_eq(fg_value_kind_of(r), FG_VALUE_DOUBLE, "%s: a number", fg_metric_name(m));
  double d = fg_value_as_double(r);
  fg_value_free(r);
  return d;
}

/* compute() as a tensor, checked against dtype and n values. */
static void compute_tensor(fg_metric *m, fg_dtype dtype, const double *want, int64_t n) {
  fg_value *r = NULL;
  cr_assert_eq(fg_metric_compute(m, &r, NULL), 0);
  cr_assert_eq(fg_value_kind_of(r), FG_VALUE_TENSOR);
  const fg_tensor *t = fg_value_as_tensor(r);
  cr_assert_eq(fg_tensor_dtype(t), dtype, "dtype %s", fg_dtype_name(fg_tensor_dtype(t)));
  cr_assert_eq(fg_tensor_numel(t), n);
  double got[16];
  cr_assert_eq(fg_tensor_copy_out(t, FG_FLOAT64, got, sizeof got, NULL), 0);
  for (int64_t i = 0; i < n; i++)
    cr_assert_float_eq(got[i], want[i], 1e-6, "item %lld: %g != %g", (long long)i, got[i], want[i]);
  fg_value_free(r);
}

/* TorchMetrics' documentation example: target [2, 1, 0, 0], predicted
 * labels [2, 1, 0, 1], as scores and as labels. Per class (tp, fp, fn):
 * 0: (1, 0, 1), 1: (1, 1, 0), 2: (1, 0, 0). */
static const float mc_scores[] = {0.16f, 0.26f, 0.58f, 0.22f, 0.61f, 0.17f,
                                  0.71f, 0.09f, 0.20f, 0.05f, 0.82f, 0.13f};
static const int64_t mc_labels[] = {2, 1, 0, 1};
static const int64_t mc_target[] = {2, 1, 0, 0};

static double mc_value(const char *yaml, bool as_labels) {
  fg_metric *m = make_metric(yaml);
  update(m, as_labels ? tensor_l(mc_labels, 4) : tensor_f(mc_scores, 4, 3), tensor_l(mc_target, 4));
  double d = compute(m);
  fg_metric_free(m);
  return d;
}

#define MC(cls, extra) "{class_path: " cls ", init_args: {task: multiclass, num_classes: 3" extra "}}"

/* ---- Precision, Recall, F1Score ---- */

Test(precision_recall_f1, multiclass_averages) {
  for (int labels = 0; labels < 2; labels++) {
    /* micro: 3 of 4 right, for all three. */
    cr_assert_float_eq(mc_value(MC("fulgur.metrics.Precision", ""), labels), 0.75, 1e-12,
                       "the wrapper's default average is micro");
    cr_assert_float_eq(mc_value(MC("fulgur.metrics.Recall", ""), labels), 0.75, 1e-12);
    cr_assert_float_eq(mc_value(MC("fulgur.metrics.F1Score", ""), labels), 0.75, 1e-12);
    /* precision (1, 1/2, 1), recall (1/2, 1, 1), F1 (2/3, 2/3, 1). */
    cr_assert_float_eq(mc_value(MC("torchmetrics.Precision", ", average: macro"), labels), 2.5 / 3, 1e-12);
    cr_assert_float_eq(mc_value(MC("fulgur.metrics.Recall", ", average: macro"), labels), 2.5 / 3, 1e-12);
    cr_assert_float_eq(mc_value(MC("fulgur.metrics.F1Score", ", average: macro"), labels), 7.0 / 9, 1e-12);
    /* weighted by support (2, 1, 1). */
    cr_assert_float_eq(mc_value(MC("fulgur.metrics.Precision", ", average: weighted"), labels), 3.5 / 4, 1e-12);
    cr_assert_float_eq(mc_value(MC("torchmetrics.F1Score", ", average: weighted"), labels), 0.75, 1e-12);
  }
}

Test(precision_recall_f1, macro_skips_classes_never_seen) {
  /* Class 3 is neither predicted nor a target: left out, not counted as 0. */
  const char *y = "{class_path: fulgur.metrics.Precision, init_args: {task: multiclass, num_classes: 4, average: macro}}";
  fg_metric *m = make_metric(y);
  update(m, tensor_l(mc_labels, 4), tensor_l(mc_target, 4));
  cr_assert_float_eq(compute(m), 2.5 / 3, 1e-12);
  fg_metric_free(m);
}

Test(precision_recall_f1, average_none_is_a_per_class_tensor) {
  fg_metric *m = make_metric(MC("fulgur.metrics.Recall", ", average: none"));
  update(m, tensor_l(mc_labels, 4), tensor_l(mc_target, 4));
  const double want[] = {0.5, 1, 1};
  compute_tensor(m, FG_FLOAT32, want, 3);
  fg_metric_free(m);
  m = make_metric(MC("fulgur.metrics.Precision", ", average: null"));
  update(m, tensor_l(mc_labels, 4), tensor_l(mc_target, 4));
  const double want_p[] = {1, 0.5, 1};
  compute_tensor(m, FG_FLOAT32, want_p, 3);
  fg_metric_free(m);
}

/* Rows' best classes: 2, 0, 1, 1; second best: 1, 2, 0, 2. */
static const float logits[] = {0.1f, 0.3f, 0.9f, 0.8f, 0.1f, 0.5f, 0.4f, 0.7f, 0.2f, 0.0f, 0.6f, 0.5f};
static const int64_t logits_target[] = {2, 2, 0, 1};

Test(precision_recall_f1, top_k) {
  /* top 1: labels 2, 0, 1, 1 against 2, 2, 0, 1; per class (tp, fp, fn):
   * 0: (0, 1, 1), 1: (1, 1, 0), 2: (1, 0, 1). */
  fg_metric *p1 = make_metric(MC("fulgur.metrics.Precision", ", average: macro"));
  fg_metric *r1 = make_metric(MC("fulgur.metrics.Recall", ", average: macro"));
  /* top 2: every target is among the two best, so each counts as right. */
  fg_metric *p2 = make_metric(MC("fulgur.metrics.Precision", ", average: macro, top_k: 2"));
  fg_metric *f2 = make_metric(MC("fulgur.metrics.F1Score", ", top_k: 2"));
  fg_metric *all[] = {p1, r1, p2, f2};
  for (int i = 0; i < 4; i++) update(all[i], tensor_f(logits, 4, 3), tensor_l(logits_target, 4));
  cr_assert_float_eq(compute(p1), (0 + 0.5 + 1) / 3, 1e-12);
  cr_assert_float_eq(compute(r1), (0 + 1 + 0.5) / 3, 1e-12);
  cr_assert_float_eq(compute(p2), 1.0, 1e-12);
  cr_assert_float_eq(compute(f2), 1.0, 1e-12);
  for (int i = 0; i < 4; i++) fg_metric_free(all[i]);
}

Test(precision_recall_f1, accumulate_and_reset) {
  fg_metric *m = make_metric(MC("fulgur.metrics.Precision", ", average: macro"));
  /* The documentation example split over two updates gives the same. */
  update(m, tensor_l(mc_labels, 2), tensor_l(mc_target, 2));
  update(m, tensor_l(mc_labels + 2, 2), tensor_l(mc_target + 2, 2));
  cr_assert_float_eq(compute(m), 2.5 / 3, 1e-12);
  /* compute does not clear; reset does. */
  cr_assert_float_eq(compute(m), 2.5 / 3, 1e-12);
  fg_metric_reset(m);
  cr_assert_float_eq(compute(m), 0.0, 1e-12, "nothing seen: every class left out, 0");
  const int64_t right[] = {1, 1};
  update(m, tensor_l(right, 2), tensor_l(right, 2));
  cr_assert_float_eq(compute(m), 1.0, 1e-12);
  cr_assert_str_eq(fg_metric_name(m), "Precision");
  fg_metric_free(m);
}

Test(precision_recall_f1, binary_probs_logits_labels) {
  /* probs > 0.5: 1, 0, 1, 0 against 1, 0, 0, 0: tp 1, fp 1, fn 0. */
  const float probs[] = {0.9f, 0.2f, 0.6f, 0.4f};
  const float lg[] = {3.0f, -2.0f, 0.5f, -0.1f}; /* sigmoid > 0.5: 1, 0, 1, 0 */
  const int64_t labels[] = {1, 0, 1, 0};
  const int64_t target[] = {1, 0, 0, 0};
  const char *ys[] = {"{class_path: fulgur.metrics.Precision, init_args: {task: binary}}",
                      "{class_path: fulgur.metrics.Recall, init_args: {task: binary}}",
                      "{class_path: fulgur.metrics.F1Score, init_args: {task: binary, average: macro}}"};
  const double want[] = {0.5, 1.0, 2.0 / 3};
  for (int i = 0; i < 3; i++) {
    fg_metric *m = make_metric(ys[i]);
    update(m, tensor_f(probs, 4, 0), tensor_l(target, 4));
    cr_assert_float_eq(compute(m), want[i], 1e-12, "%s on probabilities", ys[i]);
    fg_metric_reset(m);
    update(m, tensor_f(lg, 4, 0), tensor_l(target, 4));
    cr_assert_float_eq(compute(m), want[i], 1e-12, "%s on logits", ys[i]);
    fg_metric_reset(m);
    update(m, tensor_l(labels, 4), tensor_l(target, 4));
    cr_assert_float_eq(compute(m), want[i], 1e-12, "%s on labels", ys[i]);
    fg_metric_free(m);
  }
}

Test(precision_recall_f1, binary_threshold_and_zero_division) {
  /* probs > 0.3: 1, 0, 1, 1: tp 1, fp 2. */
  const float probs[] = {0.9f, 0.2f, 0.6f, 0.4f};
  const int64_t target[] = {1, 0, 0, 0};
  fg_metric *m = make_metric("{class_path: fulgur.metrics.Precision, init_args: {task: binary, threshold: 0.3}}");
  update(m, tensor_f(probs, 4, 0), tensor_l(target, 4));
  cr_assert_float_eq(compute(m), 1.0 / 3, 1e-12);
  fg_metric_free(m);
  /* Nothing predicted positive: precision is 0/0, which zero_division sets. */
  const int64_t none[] = {0, 0};
  const int64_t t2[] = {1, 0};
  fg_metric *z0 = make_metric("{class_path: fulgur.metrics.Precision, init_args: {task: binary}}");
  fg_metric *z1 = make_metric("{class_path: fulgur.metrics.Precision, init_args: {task: binary, zero_division: 1}}");
  update(z0, tensor_l(none, 2), tensor_l(t2, 2));
  update(z1, tensor_l(none, 2), tensor_l(t2, 2));
  cr_assert_float_eq(compute(z0), 0.0, 1e-12);
  cr_assert_float_eq(compute(z1), 1.0, 1e-12);
  fg_metric_free(z0);
  fg_metric_free(z1);
}

Test(precision_recall_f1, bad_arguments) {
  fg_metric *m = make_metric(MC("fulgur.metrics.F1Score", ""));
  update_fails(m, tensor_f(logits, 3, 4), tensor_l(logits_target, 4), "num_classes=3");
  const int64_t out_of_range[] = {0, 3, 1, 1};
  update_fails(m, tensor_f(logits, 4, 3), tensor_l(out_of_range, 4), "class 3");
  const float ft[] = {0, 1, 2, 1};
  update_fails(m, tensor_f(logits, 4, 3), tensor_f(ft, 4, 0), "integer tensor");
  fg_value *k = kw(tensor_f(logits, 4, 3), tensor_l(logits_target, 4));
  fg_value_dict_set(k, "weights", fg_value_int(1));
  char *err = NULL;
  cr_assert_eq(fg_metric_update(m, k, &err), FG_EINVAL);
  cr_assert(strstr(err, "F1Score.update: unexpected keyword argument 'weights'"), "%s", err);
  free(err);
  fg_value_free(k);
  fg_metric_free(m);
  fg_metric *b = make_metric("{class_path: fulgur.metrics.Recall, init_args: {task: binary}}");
  const int64_t two[] = {0, 2};
  update_fails(b, tensor_l(two, 2), tensor_l(two, 2), "expected only 0 and 1");
  const float p3[] = {0.1f, 0.2f, 0.3f};
  update_fails(b, tensor_f(p3, 3, 1), tensor_l(two, 2), "same shape");
  fg_metric_free(b);
}

Test(precision_recall_f1, config_errors) {
  expect_config_error("{class_path: fulgur.metrics.Precision, init_args: {task: multitask}}",
                      "evaluator_cfg.init_args.task", "expected 'binary', 'multiclass' or 'multilabel'");
  expect_config_error("{class_path: fulgur.metrics.Precision, init_args: {task: multilabel}}",
                      "evaluator_cfg.init_args.num_labels", "expected an integer >= 2 for task 'multilabel'");
  expect_config_error("{class_path: fulgur.metrics.Recall, init_args: {task: multiclass, num_classes: 3, average: samples}}",
                      "evaluator_cfg.init_args.average", "'samples'");
  expect_config_error("{class_path: fulgur.metrics.F1Score, init_args: {task: multiclass}}",
                      "evaluator_cfg.init_args.num_classes", "expected an integer >= 2");
  expect_config_error("{class_path: fulgur.metrics.F1Score, init_args: {task: multiclass, num_classes: 3, top_k: 4}}",
                      "evaluator_cfg.init_args.top_k", "1 <= top_k <= num_classes=3");
  expect_config_error("{class_path: fulgur.metrics.Precision, init_args: {task: binary, threshold: 1.5}}",
                      "evaluator_cfg.init_args.threshold", "[0, 1]");
  expect_config_error("{class_path: fulgur.metrics.Precision, init_args: {task: binary, zero_division: 0.5}}",
                      "evaluator_cfg.init_args.zero_division", "0 or 1");
  expect_config_error("{class_path: fulgur.metrics.Precision, init_args: {task: binary, ignore_index: x}}",
                      "evaluator_cfg.init_args.ignore_index", "");
  expect_config_error("{class_path: fulgur.metrics.Precision, init_args: {task: binary, multidim_average: samplewise}}",
                      "evaluator_cfg.init_args.multidim_average", "only 'global'");
}

Test(precision_recall_f1, check_catches_cross_field_errors) {
  /* fg_registry_check alone (what print-config and validation run) already
   * sees the missing num_classes. */
  const char *y = "{class_path: torchmetrics.Precision, init_args: {task: multiclass, average: macro}}";
  fg_node *n = NULL;
  cr_assert_eq(fg_node_parse(y, strlen(y), "m.yaml", &n, NULL), 0);
  char *err = NULL;
  cr_assert_eq(fg_registry_check(n, "e", FG_KIND_METRIC, false, &err), FG_ECONFIG);
  cr_assert(strstr(err, "e.init_args.num_classes"), "%s", err);
  free(err);
  fg_node_free(n);
}

/* ---- ConfusionMatrix ---- */

Test(confusion_matrix, multiclass_counts_and_normalize) {
  /* Rows are targets, columns predictions. */
  fg_metric *counts = make_metric(MC("fulgur.metrics.ConfusionMatrix", ""));
  fg_metric *rows = make_metric(MC("torchmetrics.ConfusionMatrix", ", normalize: true"));
  fg_metric *cols = make_metric(MC("fulgur.metrics.ConfusionMatrix", ", normalize: pred"));
  fg_metric *all = make_metric(MC("fulgur.metrics.ConfusionMatrix", ", normalize: all"));
  fg_metric *ms[] = {counts, rows, cols, all};
  for (int i = 0; i < 4; i++) {
    update(ms[i], tensor_f(mc_scores, 2, 3), tensor_l(mc_target, 2));
    update(ms[i], tensor_l(mc_labels + 2, 2), tensor_l(mc_target + 2, 2));
  }
  const double want_counts[] = {1, 1, 0, 0, 1, 0, 0, 0, 1};
  const double want_rows[] = {0.5, 0.5, 0, 0, 1, 0, 0, 0, 1};
  const double want_cols[] = {1, 0.5, 0, 0, 0.5, 0, 0, 0, 1};
  const double want_all[] = {0.25, 0.25, 0, 0, 0.25, 0, 0, 0, 0.25};
  compute_tensor(counts, FG_INT64, want_counts, 9);
  compute_tensor(rows, FG_FLOAT32, want_rows, 9);
  compute_tensor(cols, FG_FLOAT32, want_cols, 9);
  compute_tensor(all, FG_FLOAT32, want_all, 9);
  cr_assert_str_eq(fg_metric_name(counts), "ConfusionMatrix");
  fg_metric_reset(counts);
  const double zeros[9] = {0};
  compute_tensor(counts, FG_INT64, zeros, 9);
  fg_metric_reset(rows);
  compute_tensor(rows, FG_FLOAT32, zeros, 9); /* 0/0 is 0, not NaN */
  for (int i = 0; i < 4; i++) fg_metric_free(ms[i]);
}

Test(confusion_matrix, binary) {
  /* probs > 0.5: 1, 0, 1, 0 against 1, 0, 0, 0. */
  const float probs[] = {0.9f, 0.2f, 0.6f, 0.4f};
  const int64_t target[] = {1, 0, 0, 0};
  fg_metric *m = make_metric("{class_path: fulgur.metrics.ConfusionMatrix, init_args: {task: binary}}");
  update(m, tensor_f(probs, 4, 0), tensor_l(target, 4));
  const double want[] = {2, 1, 0, 1};
  compute_tensor(m, FG_INT64, want, 4);
  fg_metric_free(m);
  m = make_metric("{class_path: fulgur.metrics.ConfusionMatrix, init_args: {task: binary, normalize: 'true'}}");
  update(m, tensor_f(probs, 4, 0), tensor_l(target, 4));
  const double want_n[] = {2.0 / 3, 1.0 / 3, 0, 1};
  compute_tensor(m, FG_FLOAT32, want_n, 4);
  fg_metric_free(m);
}

Test(confusion_matrix, config_errors) {
  expect_config_error("{class_path: fulgur.metrics.ConfusionMatrix, init_args: {task: multiclass, num_classes: 3, normalize: rows}}",
                      "evaluator_cfg.init_args.normalize", "'rows'");
  expect_config_error("{class_path: fulgur.metrics.ConfusionMatrix, init_args: {task: multiclass, num_classes: 1}}",
                      "evaluator_cfg.init_args.num_classes", "expected an integer >= 2");
}

/* ---- AUROC ---- */

static double auroc_binary(const float *p, const int64_t *t, int64_t n) {
  fg_metric *m = make_metric("{class_path: fulgur.metrics.AUROC, init_args: {task: binary}}");
  update(m, tensor_f(p, n, 0), tensor_l(t, n));
  double d = compute(m);
  fg_metric_free(m);
  return d;
}

Test(auroc, binary_exact_with_ties) {
  /* sklearn's roc_auc_score example. */
  const float p[] = {0.1f, 0.4f, 0.35f, 0.8f};
  const int64_t t[] = {0, 0, 1, 1};
  cr_assert_float_eq(auroc_binary(p, t, 4), 0.75, 1e-12);
  /* Logits rank the same way, so the area is the same. */
  const float lg[] = {-2.0f, 0.3f, 0.1f, 3.0f};
  cr_assert_float_eq(auroc_binary(lg, t, 4), 0.75, 1e-12);
  /* A tie between a positive and a negative counts half: pairs
   * (0.5, 0.1) 1, (0.5, 0.5) 1/2, (0.9, 0.1) 1, (0.9, 0.5) 1. */
  const float tie[] = {0.1f, 0.5f, 0.5f, 0.9f};
  cr_assert_float_eq(auroc_binary(tie, t, 4), 3.5 / 4, 1e-12);
  const float same[] = {0.5f, 0.5f, 0.5f, 0.5f};
  cr_assert_float_eq(auroc_binary(same, t, 4), 0.5, 1e-12);
  /* No positives: TorchMetrics' 0. */
  const int64_t neg[] = {0, 0, 0, 0};
  cr_assert_float_eq(auroc_binary(p, neg, 4), 0.0, 1e-12);
}

Test(auroc, binary_accumulates_every_score) {
  const float p[] = {0.1f, 0.4f, 0.35f, 0.8f};
  const int64_t t[] = {0, 0, 1, 1};
  fg_metric *m = make_metric("{class_path: torchmetrics.AUROC, init_args: {task: binary}}");
  /* 300 updates force the stored arrays to grow. */
  for (int i = 0; i < 300; i++) update(m, tensor_f(p + (i % 2) * 2, 2, 0), tensor_l(t + (i % 2) * 2, 2));
  cr_assert_float_eq(compute(m), 0.75, 1e-12);
  fg_metric_reset(m);
  const float p2[] = {0.2f, 0.7f};
  const int64_t t2[] = {0, 1};
  update(m, tensor_f(p2, 2, 0), tensor_l(t2, 2));
  cr_assert_float_eq(compute(m), 1.0, 1e-12, "reset forgot the earlier scores");
  fg_metric_free(m);
}

Test(auroc, multiclass_macro_weighted_none) {
  /* One-vs-rest per class: class 0 and 1 are ranked perfectly; class 2
   * has positives 0.6 and 0.3 against negatives 0.1 and 0.3: 3.5 / 4. */
  const float p[] = {0.7f, 0.2f, 0.1f, 0.2f, 0.5f, 0.3f, 0.1f, 0.3f, 0.6f, 0.3f, 0.4f, 0.3f};
  const int64_t t[] = {0, 1, 2, 2};
  fg_metric *macro = make_metric(MC("fulgur.metrics.AUROC", ""));
  fg_metric *weighted = make_metric(MC("fulgur.metrics.AUROC", ", average: weighted"));
  fg_metric *none = make_metric(MC("fulgur.metrics.AUROC", ", average: none"));
  fg_metric *ms[] = {macro, weighted, none};
  for (int i = 0; i < 3; i++) {
    update(ms[i], tensor_f(p, 2, 3), tensor_l(t, 2));
    update(ms[i], tensor_f(p + 6, 2, 3), tensor_l(t + 2, 2));
  }
  cr_assert_float_eq(compute(macro), (1 + 1 + 0.875) / 3, 1e-12);
  cr_assert_float_eq(compute(weighted), (1 + 1 + 2 * 0.875) / 4, 1e-12);
  const double want[] = {1, 1, 0.875};
  compute_tensor(none, FG_FLOAT32, want, 3);
  for (int i = 0; i < 3; i++) fg_metric_free(ms[i]);
}

Test(auroc, multiclass_logits_get_a_softmax) {
  /* Scores outside [0, 1] are logits; softmax keeps each row's order but
   * not the order across rows, so the result is that of the softmax. Row
   * logits (0, 0, 0) and (2, 0, 0): softmax column 0 is 1/3 and 0.787,
   * column 1 is 1/3 and 0.107. Targets 0 and 1: class 0 is ranked right,
   * class 1 as well (1/3 > 0.107). */
  const float lg[] = {0, 0, 0, 2, 0, 0};
  const int64_t t[] = {1, 0};
  fg_metric *m = make_metric(MC("fulgur.metrics.AUROC", ", average: none"));
  update(m, tensor_f(lg, 2, 3), tensor_l(t, 2));
  const double want[] = {1, 1, 0};
  compute_tensor(m, FG_FLOAT32, want, 3);
  fg_metric_free(m);
}

Test(auroc, bad_arguments_and_config) {
  fg_metric *m = make_metric("{class_path: fulgur.metrics.AUROC, init_args: {task: binary}}");
  const int64_t l[] = {0, 1};
  update_fails(m, tensor_l(l, 2), tensor_l(l, 2), "float tensor");
  fg_metric_free(m);
  expect_config_error("{class_path: fulgur.metrics.AUROC, init_args: {task: multiclass}}",
                      "evaluator_cfg.init_args.num_classes", "expected an integer >= 2");
  expect_config_error("{class_path: fulgur.metrics.AUROC, init_args: {task: multiclass, num_classes: 3, average: micro}}",
                      "evaluator_cfg.init_args.average", "'micro'");
  expect_config_error("{class_path: fulgur.metrics.AUROC, init_args: {task: binary, thresholds: 100}}",
                      "evaluator_cfg.init_args.thresholds", "not supported");
}

/* ---- MeanSquaredError, MeanAbsoluteError ---- */

Test(regression, mse_mae_rmse) {
  /* sklearn's example: errors 0.5, 0.5, 0, 1. */
  const float p[] = {2.5f, 0.0f, 2.0f, 8.0f};
  const float t[] = {3.0f, -0.5f, 2.0f, 7.0f};
  fg_metric *mse = make_metric("{class_path: fulgur.metrics.MeanSquaredError}");
  fg_metric *rmse = make_metric("{class_path: torchmetrics.MeanSquaredError, init_args: {squared: false}}");
  fg_metric *mae = make_metric("{class_path: torchmetrics.MeanAbsoluteError}");
  fg_metric *ms[] = {mse, rmse, mae};
  for (int i = 0; i < 3; i++) {
    /* As one [2, 2] update and as two [2] updates: the same. */
    update(ms[i], tensor_f(p, 2, 2), tensor_f(t, 2, 2));
    cr_assert_float_eq(compute(ms[i]), i == 0 ? 0.375 : i == 1 ? sqrt(0.375) : 0.5, 1e-12);
    fg_metric_reset(ms[i]);
    update(ms[i], tensor_f(p, 2, 0), tensor_f(t, 2, 0));
    update(ms[i], tensor_f(p + 2, 2, 0), tensor_f(t + 2, 2, 0));
    cr_assert_float_eq(compute(ms[i]), i == 0 ? 0.375 : i == 1 ? sqrt(0.375) : 0.5, 1e-12);
  }
  cr_assert_str_eq(fg_metric_name(mse), "MeanSquaredError");
  cr_assert_str_eq(fg_metric_name(mae), "MeanAbsoluteError");
  fg_metric_reset(mae);
  cr_assert(isnan(compute(mae)), "nothing seen is 0/0");
  update_fails(mse, tensor_f(p, 4, 0), tensor_f(t, 2, 2), "same shape");
  for (int i = 0; i < 3; i++) fg_metric_free(ms[i]);
  expect_config_error("{class_path: fulgur.metrics.MeanSquaredError, init_args: {squared: 1}}",
                      "evaluator_cfg.init_args.squared", "boolean");
}

/* ---- MetricCollection ---- */

static fg_value *compute_dict(fg_metric *m) {
  fg_value *r = NULL;
  char *err = NULL;
  cr_assert_eq(fg_metric_compute(m, &r, &err), 0, "%s", err);
  cr_assert_eq(fg_value_kind_of(r), FG_VALUE_DICT);
  return r;
}

static double entry(const fg_value *d, const char *key) {
  const fg_value *v = fg_value_dict_get(d, key);
  cr_assert(v, "no key '%s'", key);
  return fg_value_as_double(v);
}

Test(metric_collection, list_names_by_class) {
  fg_metric *m = make_metric(
      "{class_path: fulgur.metrics.MetricCollection, init_args: {metrics: ["
      "{class_path: fulgur.metrics.Accuracy, init_args: {task: multiclass, num_classes: 3}},"
      "{class_path: torchmetrics.F1Score, init_args: {task: multiclass, num_classes: 3, average: macro}},"
      "{class_path: fulgur.metrics.ConfusionMatrix, init_args: {task: multiclass, num_classes: 3}}]}}");
  cr_assert_str_eq(fg_metric_name(m), "MetricCollection");
  update(m, tensor_f(mc_scores, 2, 3), tensor_l(mc_target, 2));
  update(m, tensor_f(mc_scores + 6, 2, 3), tensor_l(mc_target + 2, 2));
  fg_value *r = compute_dict(m);
  cr_assert_eq(fg_value_len(r), 3);
  cr_assert_str_eq(fg_value_dict_key_at(r, 0), "Accuracy");
  cr_assert_str_eq(fg_value_dict_key_at(r, 1), "F1Score");
  cr_assert_str_eq(fg_value_dict_key_at(r, 2), "ConfusionMatrix");
  cr_assert_float_eq(entry(r, "Accuracy"), 0.75, 1e-12);
  cr_assert_float_eq(entry(r, "F1Score"), 7.0 / 9, 1e-12);
  cr_assert_eq(fg_value_kind_of(fg_value_dict_get(r, "ConfusionMatrix")), FG_VALUE_TENSOR);
  fg_value_free(r);
  fg_metric_reset(m);
  const int64_t right[] = {0, 1};
  update(m, tensor_l(right, 2), tensor_l(right, 2));
  r = compute_dict(m);
  cr_assert_float_eq(entry(r, "Accuracy"), 1.0, 1e-12, "reset reached every member");
  cr_assert_float_eq(entry(r, "F1Score"), 1.0, 1e-12);
  fg_value_free(r);
  fg_metric_free(m);
}

Test(metric_collection, mapping_prefix_postfix_and_nesting) {
  fg_metric *m = make_metric(
      "{class_path: torchmetrics.MetricCollection, init_args: {prefix: val_, postfix: _x, metrics: {"
      "p: {class_path: fulgur.metrics.Precision, init_args: {task: multiclass, num_classes: 3, average: macro}},"
      "inner: {class_path: fulgur.metrics.MetricCollection, init_args: {metrics: "
      "{class_path: fulgur.metrics.Recall, init_args: {task: multiclass, num_classes: 3, average: macro}}}}}}}");
  update(m, tensor_l(mc_labels, 4), tensor_l(mc_target, 4));
  fg_value *r = compute_dict(m);
  cr_assert_eq(fg_value_len(r), 2);
  cr_assert_float_eq(entry(r, "val_p_x"), 2.5 / 3, 1e-12);
  /* The nested collection's own keys, merged. */
  cr_assert_float_eq(entry(r, "val_Recall_x"), 2.5 / 3, 1e-12);
  fg_value_free(r);
  fg_metric_free(m);
}

Test(metric_collection, update_errors_name_the_member) {
  fg_metric *m = make_metric(
      "{class_path: fulgur.metrics.MetricCollection, init_args: {metrics: ["
      "{class_path: fulgur.metrics.MeanSquaredError}]}}");
  update_fails(m, tensor_l(mc_labels, 4), tensor_l(mc_target, 2), "MeanSquaredError.update");
  fg_metric_free(m);
}

Test(metric_collection, config_errors) {
  expect_config_error("{class_path: fulgur.metrics.MetricCollection, init_args: {metrics: ["
                      "{class_path: fulgur.metrics.Accuracy, init_args: {task: binary}},"
                      "{class_path: fulgur.metrics.F1Score, init_args: {task: multiclass}}]}}",
                      "evaluator_cfg.init_args.metrics.1.init_args.num_classes",
                      "expected an integer >= 2");
  expect_config_error("{class_path: fulgur.metrics.MetricCollection, init_args: {metrics: {"
                      "f1: {class_path: fulgur.metrics.F1Score, init_args: {task: binary, average: bad}}}}}",
                      "evaluator_cfg.init_args.metrics.f1.init_args.average", "'bad'");
  expect_config_error("{class_path: fulgur.metrics.MetricCollection, init_args: {metrics: ["
                      "{class_path: fulgur.metrics.Accuracy, init_args: {task: binary}},"
                      "{class_path: torchmetrics.Accuracy, init_args: {task: binary, threshold: 0.2}}]}}",
                      "evaluator_cfg.init_args.metrics.1", "two metrics are named 'Accuracy'");
  expect_config_error("{class_path: fulgur.metrics.MetricCollection, init_args: {metrics: []}}",
                      "evaluator_cfg.init_args.metrics", "at least one metric");
  expect_config_error("{class_path: fulgur.metrics.MetricCollection, init_args: {metrics: [{class_path: torch.optim.SGD}]}}",
                      "evaluator_cfg.init_args.metrics.0.class_path", "expected a metric");
}

Test(metric_collection, members_get_only_their_arguments) {
  /* MeanMetric takes value (and weight), Accuracy preds and target: in one
   * collection each gets its own, as TorchMetrics' _filter_kwargs does. */
  fg_metric *m = make_metric(
      "{class_path: fulgur.metrics.MetricCollection, init_args: {metrics: ["
      "{class_path: fulgur.metrics.MeanMetric}, "
      "{class_path: fulgur.metrics.Accuracy, init_args: {task: multiclass, num_classes: 2}}]}}");
  const float p[] = {0.9f, 0.1f, 0.2f, 0.8f};
  const int64_t t[] = {0, 0};
  fg_value *k = kw(tensor_f(p, 2, 2), tensor_l(t, 2));
  fg_value_dict_set(k, "value", fg_value_double(3.0));
  char *err = NULL;
  cr_assert_eq(fg_metric_update(m, k, &err), 0, "%s", err);
  fg_value *r = NULL;
  cr_assert_eq(fg_metric_compute(m, &r, NULL), 0);
  cr_assert_float_eq(fg_value_as_double(fg_value_dict_get(r, "MeanMetric")), 3.0, 1e-12);
  cr_assert_float_eq(fg_value_as_double(fg_value_dict_get(r, "Accuracy")), 0.5, 1e-12);
  fg_value_free(r);
  fg_value_free(k);
  fg_metric_free(m);
}

/* ---- states (evaluator_as_submodule, pause checkpoints) ---- */

/* A result as text, tensors element by element, for exact comparisons. */
static void result_text(const fg_value *v, char *buf, size_t len) {
  size_t used = strlen(buf);
  switch (fg_value_kind_of(v)) {
    case FG_VALUE_DOUBLE:
      snprintf(buf + used, len - used, "%.17g;", fg_value_as_double(v));
      break;
    case FG_VALUE_TENSOR: {
      const fg_tensor *t = fg_value_as_tensor(v);
      int64_t n = fg_tensor_numel(t);
      double *d = malloc((size_t)(n ? n : 1) * sizeof *d);
      cr_assert_eq(fg_tensor_copy_out(t, FG_FLOAT64, d, (size_t)n * sizeof *d, NULL), 0);
      for (int64_t i = 0; i < n; i++) {
        used = strlen(buf);
        snprintf(buf + used, len - used, "%.17g,", d[i]);
      }
      free(d);
      break;
    }
    case FG_VALUE_DICT:
      for (size_t i = 0; i < fg_value_len(v); i++) {
        used = strlen(buf);
        snprintf(buf + used, len - used, "%s=", fg_value_dict_key_at(v, i));
        result_text(fg_value_dict_value_at(v, i), buf, len);
      }
      break;
    default:
      cr_assert_fail("unexpected result kind");
  }
}

/* Update a metric with batch 1, save its state, load it into a fresh one,
 * update both with batch 2: both compute the same, and it differs from
 * batch 2 alone (the state carried batch 1). */
static void check_state_round_trip(const char *yaml, bool binary) {
  fg_metric *a = make_metric(yaml), *b = make_metric(yaml), *only2 = make_metric(yaml);
  cr_assert(fg_metric_has_state(a), "%s has a state", yaml);
  const float p1[] = {2, 0, 0, 0, 1, 0, 0, 0, 3, 1, 2, 0}, p2[] = {0, 1, 0, 0, 2, 0, 5, 0, 0};
  const float bp1[] = {0.9f, 0.2f, 0.7f, 0.4f}, bp2[] = {0.1f, 0.8f, 0.6f};
  const int64_t t1[] = {0, 1, 2, 0}, t2[] = {1, 2, 0};
  const int64_t bt1[] = {1, 0, 0, 1}, bt2[] = {0, 1, 1};
  const float r1[] = {0.5f, 1.5f, -2, 3}, r2[] = {1, 2, 3};
  bool regression = strstr(yaml, "Error") != NULL;
  fg_value *k1 = regression ? kw(tensor_f(r1, 4, 0), tensor_f(r1, 4, 0))
                 : binary   ? kw(tensor_f(bp1, 4, 0), tensor_l(bt1, 4))
                            : kw(tensor_f(p1, 4, 3), tensor_l(t1, 4));
  if (regression) {
    const float z[] = {0, 1, 0, 1};
    fg_value_dict_set(k1, "target", fg_value_tensor(tensor_f(z, 4, 0)));
  }
  fg_value *k2 = regression ? kw(tensor_f(r2, 3, 0), tensor_f((const float[]){0, 0, 0}, 3, 0))
                 : binary   ? kw(tensor_f(bp2, 3, 0), tensor_l(bt2, 3))
                            : kw(tensor_f(p2, 3, 3), tensor_l(t2, 3));
  char *err = NULL;
  cr_assert_eq(fg_metric_update(a, k1, &err), 0, "%s", err);
  fg_value *st = NULL;
  cr_assert_eq(fg_metric_state_dict(a, &st, &err), 0, "%s", err);
  cr_assert_eq(fg_metric_load_state_dict(b, st, &err), 0, "%s: %s", yaml, err);
  cr_assert_eq(fg_metric_update(a, k2, NULL), 0);
  cr_assert_eq(fg_metric_update(b, k2, NULL), 0);
  cr_assert_eq(fg_metric_update(only2, k2, NULL), 0);
  fg_value *ra = NULL, *rb = NULL, *r2v = NULL;
  cr_assert_eq(fg_metric_compute(a, &ra, NULL), 0);
  cr_assert_eq(fg_metric_compute(b, &rb, NULL), 0);
  cr_assert_eq(fg_metric_compute(only2, &r2v, NULL), 0);
  char ta[4096] = "", tb[4096] = "", t2s[4096] = "";
  result_text(ra, ta, sizeof ta);
  result_text(rb, tb, sizeof tb);
  result_text(r2v, t2s, sizeof t2s);
  cr_assert_str_eq(ta, tb, "%s: restored state", yaml);
  cr_assert_str_neq(ta, t2s, "%s: the state carried the first batch", yaml);
  /* A state of the wrong size is refused. */
  for (size_t i = 0; i < fg_value_len(st); i++) {
    if (fg_value_kind_of(fg_value_dict_value_at(st, i)) != FG_VALUE_TENSOR) continue;
    fg_value *bad = fg_value_copy(st);
    const int64_t one[] = {1, 2, 3, 4, 5, 6, 7};
    fg_value_dict_set(bad, fg_value_dict_key_at(st, i), fg_value_tensor(tensor_l(one, 7)));
    cr_assert_eq(fg_metric_load_state_dict(b, bad, &err), FG_EDATA, "%s", yaml);
    cr_assert(strstr(err, "elements, expected"), "%s", err);
    free(err);
    err = NULL;
    fg_value_free(bad);
    break;
  }
  fg_value_free(ra);
  fg_value_free(rb);
  fg_value_free(r2v);
  fg_value_free(st);
  fg_value_free(k1);
  fg_value_free(k2);
  fg_metric_free(a);
  fg_metric_free(b);
  fg_metric_free(only2);
}

Test(states, every_builtin_but_auroc_round_trips) {
  const char *mc = "task: multiclass, num_classes: 3";
  char y[512];
  const char *classes[] = {"Precision", "Recall", "F1Score"};
  const char *avgs[] = {"micro", "macro", "weighted", "none"};
  for (size_t c = 0; c < 3; c++)
    for (size_t a = 0; a < 4; a++) {
      snprintf(y, sizeof y, "{class_path: fulgur.metrics.%s, init_args: {%s, average: %s}}", classes[c], mc, avgs[a]);
      check_state_round_trip(y, false);
    }
  snprintf(y, sizeof y, "{class_path: fulgur.metrics.F1Score, init_args: {task: binary}}");
  check_state_round_trip(y, true);
  snprintf(y, sizeof y, "{class_path: fulgur.metrics.Accuracy, init_args: {%s, average: macro}}", mc);
  check_state_round_trip(y, false);
  snprintf(y, sizeof y, "{class_path: fulgur.metrics.ConfusionMatrix, init_args: {%s}}", mc);
  check_state_round_trip(y, false);
  snprintf(y, sizeof y, "{class_path: fulgur.metrics.ConfusionMatrix, init_args: {task: binary, normalize: true}}");
  check_state_round_trip(y, true);
  check_state_round_trip("{class_path: fulgur.metrics.MeanSquaredError}", false);
  check_state_round_trip("{class_path: fulgur.metrics.MeanAbsoluteError}", false);
  snprintf(y, sizeof y,
           "{class_path: fulgur.metrics.MetricCollection, init_args: {metrics: ["
           "{class_path: fulgur.metrics.Accuracy, init_args: {%s}}, "
           "{class_path: fulgur.metrics.Precision, init_args: {%s, average: none}}, "
           "{class_path: fulgur.metrics.ConfusionMatrix, init_args: {%s}}], prefix: p_}}",
           mc, mc, mc);
  check_state_round_trip(y, false);
}

/* AUROC and AveragePrecision keep every score: their state is the kept
 * inputs, under TorchMetrics' names preds and target. */
Test(states, curve_metrics_keep_their_scores) {
  check_state_round_trip("{class_path: fulgur.metrics.AUROC, init_args: {task: multiclass, num_classes: 3}}", false);
  check_state_round_trip("{class_path: torchmetrics.AveragePrecision, init_args: {task: multiclass, num_classes: 3, average: none}}", false);
  fg_metric *a = make_metric("{class_path: fulgur.metrics.AUROC, init_args: {task: binary}}");
  const float p[] = {0.9f, 0.2f, 0.7f};
  const int64_t t[] = {1, 0, 0};
  update(a, tensor_f(p, 3, 0), tensor_l(t, 3));
  fg_value *st = NULL;
  cr_assert_eq(fg_metric_state_dict(a, &st, NULL), 0);
  const fg_value *sp = fg_value_dict_get(st, "preds"), *stt = fg_value_dict_get(st, "target");
  cr_assert(sp && stt, "preds and target");
  cr_assert_eq(fg_tensor_numel(fg_value_as_tensor(sp)), 3);
  cr_assert_eq(fg_tensor_dtype(fg_value_as_tensor(stt)), FG_INT64);
  fg_value_free(st);
  fg_metric_free(a);
}

Test(states, stat_scores_and_classwise_round_trip) {
  check_state_round_trip("{class_path: fulgur.metrics.StatScores, init_args: {task: multiclass, num_classes: 3, average: none}}", false);
  check_state_round_trip("{class_path: torchmetrics.ClasswiseWrapper, init_args: {metric: "
                         "{class_path: torchmetrics.StatScores, init_args: {task: binary}}}}", true);
}

/* ---- StatScores, AveragePrecision, ClasswiseWrapper, multilabel ---- */

Test(stat_scores, binary_counts) {
  fg_metric *m = make_metric("{class_path: torchmetrics.StatScores, init_args: {task: binary}}");
  /* threshold 0.5: predicted 1, 0, 1, 0 against 1, 0, 0, 1. */
  const float p[] = {0.9f, 0.2f, 0.7f, 0.4f};
  const int64_t t[] = {1, 0, 0, 1};
  update(m, tensor_f(p, 4, 0), tensor_l(t, 4));
  compute_tensor(m, FG_INT64, (const double[]){1, 1, 1, 1, 2}, 5);
  fg_metric_free(m);
}

/* TorchMetrics' own stat_scores example: preds [1, 0, 2, 1] against
 * target [1, 1, 2, 0]. */
Test(stat_scores, multiclass_averages) {
  const int64_t p[] = {1, 0, 2, 1}, t[] = {1, 1, 2, 0};
  const char *avg[] = {"micro", "none", "macro", "weighted"};
  const double micro[] = {2, 2, 6, 2, 4};
  const double none[] = {0, 1, 2, 1, 1, 1, 1, 1, 1, 2, 1, 0, 3, 0, 1};
  /* macro: the column means; weighted: supports 1, 2, 1 of 4. */
  const double macro[] = {2.0 / 3, 2.0 / 3, 2, 2.0 / 3, 4.0 / 3};
  const double weighted[] = {0.75, 0.75, 1.75, 0.75, 1.5};
  for (int i = 0; i < 4; i++) {
    char y[256];
    snprintf(y, sizeof y, "{class_path: fulgur.metrics.StatScores, init_args: {task: multiclass, num_classes: 3, average: %s}}", avg[i]);
    fg_metric *m = make_metric(y);
    update(m, tensor_l(p, 4), tensor_l(t, 4));
    if (i == 0) compute_tensor(m, FG_INT64, micro, 5);
    if (i == 1) compute_tensor(m, FG_INT64, none, 15);
    if (i == 2) compute_tensor(m, FG_FLOAT32, macro, 5);
    if (i == 3) compute_tensor(m, FG_FLOAT32, weighted, 5);
    fg_metric_free(m);
  }
}

Test(stat_scores, config_errors) {
  expect_config_error("{class_path: fulgur.metrics.StatScores, init_args: {task: multi}}",
                      "evaluator_cfg.init_args.task", "expected 'binary', 'multiclass' or 'multilabel'");
  expect_config_error("{class_path: fulgur.metrics.StatScores, init_args: {task: multiclass}}",
                      "evaluator_cfg.init_args.num_classes", "expected an integer >= 2 for task 'multiclass'");
  expect_config_error("{class_path: fulgur.metrics.StatScores, init_args: {task: multilabel, num_labels: 1}}",
                      "evaluator_cfg.init_args.num_labels", "expected an integer >= 2 for task 'multilabel'");
  expect_config_error("{class_path: fulgur.metrics.StatScores, init_args: {task: multiclass, num_classes: 3, average: samples}}",
                      "evaluator_cfg.init_args.average", "removed in TorchMetrics 1.x");
  expect_config_error("{class_path: fulgur.metrics.StatScores, init_args: {task: binary, top_k: 2, num_classes: 3, oops: 1}}",
                      "evaluator_cfg.init_args.oops", "unknown key");
}

/* Multilabel rows [0.9, 0.1], [0.6, 0.8], [0.2, 0.3] predict [1, 0],
 * [1, 1], [0, 0] against [1, 0], [0, 1], [1, 1]: label 0 has tp 1, fp 1,
 * fn 1; label 1 has tp 1, fn 1, tn 1. */
Test(multilabel, precision_recall_f1_stat_scores) {
  const float p[] = {0.9f, 0.1f, 0.6f, 0.8f, 0.2f, 0.3f};
  const int64_t tv[] = {1, 0, 0, 1, 1, 1};
  int64_t shape[2] = {3, 2};
  struct {
    const char *yaml;
    double want;
  } cases[] = {
      {"{class_path: fulgur.metrics.Precision, init_args: {task: multilabel, num_labels: 2}}", 2.0 / 3},
      {"{class_path: fulgur.metrics.Precision, init_args: {task: multilabel, num_labels: 2, average: macro}}", 0.75},
      {"{class_path: fulgur.metrics.Recall, init_args: {task: multilabel, num_labels: 2, average: macro}}", 0.5},
      /* F1 per label: 2/4 and 2/3. */
      {"{class_path: fulgur.metrics.F1Score, init_args: {task: multilabel, num_labels: 2, average: macro}}", (0.5 + 2.0 / 3) / 2},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    fg_metric *m = make_metric(cases[i].yaml);
    fg_tensor *t = NULL;
    cr_assert_eq(fg_tensor_from_data(tv, FG_INT64, shape, 2, &t, NULL), 0);
    update(m, tensor_f(p, 3, 2), t);
    cr_assert_float_eq(compute(m), cases[i].want, 1e-6, "%s", cases[i].yaml);
    fg_metric_free(m);
  }
  fg_metric *m = make_metric("{class_path: fulgur.metrics.StatScores, init_args: {task: multilabel, num_labels: 2, average: none}}");
  fg_tensor *t = NULL;
  cr_assert_eq(fg_tensor_from_data(tv, FG_INT64, shape, 2, &t, NULL), 0);
  update(m, tensor_f(p, 3, 2), t);
  compute_tensor(m, FG_INT64, (const double[]){1, 1, 0, 1, 2, 1, 0, 1, 1, 2}, 10);
  /* A target of the wrong width names num_labels. */
  update_fails(m, tensor_f(p, 2, 3), tensor_f(p, 2, 3), "num_labels=2");
  fg_metric_free(m);
}

/* TorchMetrics' own examples of binary_average_precision and
 * multiclass_average_precision (thresholds=None). */
Test(average_precision, torchmetrics_examples) {
  fg_metric *b = make_metric("{class_path: torchmetrics.AveragePrecision, init_args: {task: binary}}");
  const float bp[] = {0, 0.5f, 0.7f, 0.8f};
  const int64_t bt[] = {0, 1, 1, 0};
  update(b, tensor_f(bp, 4, 0), tensor_l(bt, 4));
  cr_assert_float_eq(compute(b), 0.5833333, 1e-6);
  fg_metric_free(b);
  const float mp[] = {0.75f, 0.05f, 0.05f, 0.05f, 0.05f, 0.05f, 0.75f, 0.05f, 0.05f, 0.05f,
                      0.05f, 0.05f, 0.75f, 0.05f, 0.05f, 0.05f, 0.05f, 0.05f, 0.75f, 0.05f};
  const int64_t mt[] = {0, 1, 3, 2};
  fg_metric *macro = make_metric("{class_path: fulgur.metrics.AveragePrecision, init_args: {task: multiclass, num_classes: 5}}");
  update(macro, tensor_f(mp, 4, 5), tensor_l(mt, 4));
  cr_assert_float_eq(compute(macro), 0.625, 1e-6, "class 4 (no positives, NaN) is left out");
  fg_metric_free(macro);
  fg_metric *none = make_metric("{class_path: fulgur.metrics.AveragePrecision, init_args: {task: multiclass, num_classes: 5, average: none}}");
  update(none, tensor_f(mp, 4, 5), tensor_l(mt, 4));
  fg_value *r = NULL;
  cr_assert_eq(fg_metric_compute(none, &r, NULL), 0);
  float got[5];
  cr_assert_eq(fg_tensor_copy_out(fg_value_as_tensor(r), FG_FLOAT32, got, sizeof got, NULL), 0);
  const float want[] = {1, 1, 0.25f, 0.25f};
  for (int i = 0; i < 4; i++) cr_assert_float_eq(got[i], want[i], 1e-6);
  cr_assert(isnan(got[4]), "a class without positives is NaN, got %g", got[4]);
  fg_value_free(r);
  fg_metric_free(none);
}

Test(average_precision, config_errors) {
  expect_config_error("{class_path: fulgur.metrics.AveragePrecision, init_args: {task: multilabel}}",
                      "evaluator_cfg.init_args.num_labels", "expected an integer >= 2 for task 'multilabel'");
  expect_config_error("{class_path: fulgur.metrics.AveragePrecision, init_args: {task: multiclass, num_classes: 3, average: micro}}",
                      "evaluator_cfg.init_args.average", "'micro' is for task 'multilabel'");
  expect_config_error("{class_path: fulgur.metrics.AveragePrecision, init_args: {task: binary, thresholds: 100}}",
                      "evaluator_cfg.init_args.thresholds", "only null");
  expect_config_error("{class_path: fulgur.metrics.AUROC, init_args: {task: multilabel, num_labels: 3, average: samples}}",
                      "evaluator_cfg.init_args.average", "got 'samples'");
}

static const char binary_stats[] = "{class_path: torchmetrics.StatScores, init_args: {task: binary}}";

/* The toy_project's ClasswiseWrapper: entries named by the labels with
 * the lowercased class name TorchMetrics' StatScores(task=binary) has. */
Test(classwise_wrapper, names_entries_as_torchmetrics) {
  const float p[] = {0.9f, 0.2f, 0.7f, 0.4f};
  const int64_t t[] = {1, 0, 0, 1};
  struct {
    const char *args;
    const char *keys;
  } cases[] = {
      {"labels: [tp, fp, tn, fn, support]", "binarystatscores_tp,binarystatscores_fp,binarystatscores_tn,binarystatscores_fn,binarystatscores_support,"},
      {"", "binarystatscores_0,binarystatscores_1,binarystatscores_2,binarystatscores_3,binarystatscores_4,"},
      {"labels: [a, b], prefix: s/", "s/a,s/b,"},
      {"labels: [a, b], postfix: -x", "a-x,b-x,"},
      {"labels: [a, b], prefix: '', postfix: ''", "binarystatscores_a,binarystatscores_b,"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char y[512];
    snprintf(y, sizeof y, "{class_path: torchmetrics.ClasswiseWrapper, init_args: {metric: %s, %s}}",
             binary_stats, cases[i].args);
    fg_metric *m = make_metric(y);
    update(m, tensor_f(p, 4, 0), tensor_l(t, 4));
    fg_value *r = compute_dict(m);
    char keys[512] = "";
    for (size_t k = 0; k < fg_value_len(r); k++) {
      strcat(keys, fg_value_dict_key_at(r, k));
      strcat(keys, ",");
      cr_assert_eq(fg_value_kind_of(fg_value_dict_value_at(r, k)), FG_VALUE_DOUBLE);
    }
    cr_assert_str_eq(keys, cases[i].keys, "%s", y);
    cr_assert_float_eq(fg_value_as_double(fg_value_dict_value_at(r, 4 < fg_value_len(r) ? 4 : 0)),
                       fg_value_len(r) == 5 ? 2 : 1, 1e-12, "support 2, tp 1");
    fg_value_free(r);
    fg_metric_free(m);
  }
}

Test(classwise_wrapper, in_a_collection_and_on_multiclass) {
  fg_metric *m = make_metric(
      "{class_path: torchmetrics.MetricCollection, init_args: {metrics: {"
      "F1: {class_path: torchmetrics.F1Score, init_args: {task: binary}}, "
      "stat: {class_path: torchmetrics.ClasswiseWrapper, init_args: {labels: [tp, fp], "
      "metric: {class_path: torchmetrics.StatScores, init_args: {task: binary}}}}}}}");
  const float p[] = {0.9f, 0.2f, 0.7f, 0.4f};
  const int64_t t[] = {1, 0, 0, 1};
  update(m, tensor_f(p, 4, 0), tensor_l(t, 4));
  fg_value *r = compute_dict(m);
  cr_assert_eq(fg_value_len(r), 3);
  cr_assert_str_eq(fg_value_dict_key_at(r, 1), "binarystatscores_tp", "the wrapper's keys, flattened");
  fg_value_free(r);
  fg_metric_free(m);
  m = make_metric("{class_path: torchmetrics.ClasswiseWrapper, init_args: {labels: [x, y, z], metric: "
                  "{class_path: torchmetrics.Recall, init_args: {task: multiclass, num_classes: 3, average: none}}}}");
  const int64_t mp[] = {1, 0, 2, 1}, mt[] = {1, 1, 2, 0};
  update(m, tensor_l(mp, 4), tensor_l(mt, 4));
  r = compute_dict(m);
  cr_assert_str_eq(fg_value_dict_key_at(r, 0), "multiclassrecall_x");
  cr_assert_float_eq(fg_value_as_double(fg_value_dict_get(r, "multiclassrecall_y")), 0.5, 1e-6);
  fg_value_free(r);
  fg_metric_free(m);
}

Test(classwise_wrapper, errors) {
  expect_config_error("{class_path: torchmetrics.ClasswiseWrapper, init_args: {labels: [a]}}",
                      "evaluator_cfg.init_args.metric", "");
  expect_config_error("{class_path: torchmetrics.ClasswiseWrapper, init_args: {metric: "
                      "{class_path: torchmetrics.StatScores, init_args: {task: multilabel}}}}",
                      "evaluator_cfg.init_args.metric.init_args.num_labels", "expected an integer >= 2");
  /* A metric with one number is not class-wise. */
  fg_metric *m = make_metric("{class_path: torchmetrics.ClasswiseWrapper, init_args: {metric: "
                             "{class_path: torchmetrics.F1Score, init_args: {task: binary}}}}");
  const float p[] = {0.9f};
  const int64_t t[] = {1};
  update(m, tensor_f(p, 1, 0), tensor_l(t, 1));
  fg_value *r = NULL;
  char *err = NULL;
  cr_assert_eq(fg_metric_compute(m, &r, &err), FG_EINVAL);
  cr_assert(strstr(err, "F1Score gave a number") && strstr(err, "average: none"), "%s", err);
  free(err);
  fg_metric_free(m);
}

/* What ddp does at epoch end: each rank's state, reduced, loaded into one
 * metric, computes what one metric fed everything would. */
static void check_reduce(const char *yaml, bool binary) {
  const float p1[] = {2, 0, 0, 0, 1, 0, 0, 0, 3, 1, 2, 0}, p2[] = {0, 1, 0, 0, 2, 0, 5, 0, 0};
  const float bp1[] = {0.9f, 0.2f, 0.7f, 0.4f}, bp2[] = {0.1f, 0.8f, 0.6f};
  const int64_t t1[] = {0, 1, 2, 0}, t2[] = {1, 2, 0};
  const int64_t bt1[] = {1, 0, 0, 1}, bt2[] = {0, 1, 1};
  fg_metric *r0 = make_metric(yaml), *r1 = make_metric(yaml), *all = make_metric(yaml),
            *merged = make_metric(yaml);
  fg_value *k1 = binary ? kw(tensor_f(bp1, 4, 0), tensor_l(bt1, 4)) : kw(tensor_f(p1, 4, 3), tensor_l(t1, 4));
  fg_value *k2 = binary ? kw(tensor_f(bp2, 3, 0), tensor_l(bt2, 3)) : kw(tensor_f(p2, 3, 3), tensor_l(t2, 3));
  cr_assert_eq(fg_metric_update(r0, k1, NULL), 0);
  cr_assert_eq(fg_metric_update(r1, k2, NULL), 0);
  cr_assert_eq(fg_metric_update(all, k1, NULL), 0);
  cr_assert_eq(fg_metric_update(all, k2, NULL), 0);
  fg_value *st[2] = {NULL, NULL}, *red = NULL;
  char *err = NULL;
  cr_assert_eq(fg_metric_state_dict(r0, &st[0], NULL), 0);
  cr_assert_eq(fg_metric_state_dict(r1, &st[1], NULL), 0);
  cr_assert_eq(fg_metric_reduce_states(merged, st, 2, &red, &err), 0, "%s: %s", yaml, err);
  cr_assert_eq(fg_metric_load_state_dict(merged, red, &err), 0, "%s: %s", yaml, err);
  fg_value *ra = NULL, *rm = NULL;
  cr_assert_eq(fg_metric_compute(all, &ra, NULL), 0);
  cr_assert_eq(fg_metric_compute(merged, &rm, NULL), 0);
  char ta[4096] = "", tm[4096] = "";
  result_text(ra, ta, sizeof ta);
  result_text(rm, tm, sizeof tm);
  cr_assert_str_eq(tm, ta, "%s: reduced states", yaml);
  fg_value_free(ra);
  fg_value_free(rm);
  fg_value_free(red);
  fg_value_free(st[0]);
  fg_value_free(st[1]);
  fg_value_free(k1);
  fg_value_free(k2);
  fg_metric_free(r0);
  fg_metric_free(r1);
  fg_metric_free(all);
  fg_metric_free(merged);
}

Test(states, reduced_across_ranks_as_torchmetrics) {
  check_reduce("{class_path: fulgur.metrics.AUROC, init_args: {task: multiclass, num_classes: 3, average: none}}", false);
  check_reduce("{class_path: fulgur.metrics.AveragePrecision, init_args: {task: binary}}", true);
  check_reduce("{class_path: fulgur.metrics.F1Score, init_args: {task: multiclass, num_classes: 3, average: macro}}", false);
  check_reduce("{class_path: fulgur.metrics.MetricCollection, init_args: {metrics: {"
               "AP: {class_path: torchmetrics.AveragePrecision, init_args: {task: binary}}, "
               "stat: {class_path: torchmetrics.ClasswiseWrapper, init_args: {labels: [tp, fp, tn, fn, support], "
               "metric: {class_path: torchmetrics.StatScores, init_args: {task: binary}}}}}}}", true);
}

/* Two wrappers giving the same keys: TorchMetrics then names every dict
 * entry "<member>_<key>"; plain results keep their names. */
Test(metric_collection, clashing_dict_keys_get_the_member_name) {
  fg_metric *m = make_metric(
      "{class_path: torchmetrics.MetricCollection, init_args: {metrics: {"
      "F1: {class_path: torchmetrics.F1Score, init_args: {task: binary}}, "
      "a: {class_path: torchmetrics.ClasswiseWrapper, init_args: {labels: [tp], "
      "metric: {class_path: torchmetrics.StatScores, init_args: {task: binary}}}}, "
      "b: {class_path: torchmetrics.ClasswiseWrapper, init_args: {labels: [tp], "
      "metric: {class_path: torchmetrics.StatScores, init_args: {task: binary, threshold: 0.8}}}}}}}");
  const float p[] = {0.9f, 0.2f, 0.7f, 0.4f};
  const int64_t t[] = {1, 0, 1, 1};
  update(m, tensor_f(p, 4, 0), tensor_l(t, 4));
  fg_value *r = compute_dict(m);
  cr_assert_eq(fg_value_len(r), 3);
  cr_assert_str_eq(fg_value_dict_key_at(r, 0), "F1");
  cr_assert_float_eq(entry(r, "a_binarystatscores_tp"), 2, 1e-12);
  cr_assert_float_eq(entry(r, "b_binarystatscores_tp"), 1, 1e-12);
  fg_value_free(r);
  fg_metric_free(m);
}

/* ignore_index: the ignored sample (target -1) is left out; without it the
 * same target is an error. */
Test(ignore_index, left_out_of_counts_and_curves) {
  const float p[] = {0.9f, 0.8f, 0.2f};
  const int64_t t[] = {1, -1, 0};
  fg_metric *s = make_metric("{class_path: torchmetrics.StatScores, init_args: {task: binary, ignore_index: -1}}");
  update(s, tensor_f(p, 3, 0), tensor_l(t, 3));
  compute_tensor(s, FG_INT64, (const double[]){1, 0, 1, 0, 1}, 5);
  fg_metric_free(s);
  fg_metric *ap = make_metric("{class_path: torchmetrics.AveragePrecision, init_args: {task: binary, ignore_index: -1}}");
  update(ap, tensor_f(p, 3, 0), tensor_l(t, 3));
  cr_assert_float_eq(compute(ap), 1.0, 1e-12, "the ignored 0.8 would be a false positive");
  fg_metric_free(ap);
  fg_metric *plain = make_metric("{class_path: torchmetrics.Precision, init_args: {task: binary}}");
  update_fails(plain, tensor_f(p, 3, 0), tensor_l(t, 3), "binary target holds -1");
  fg_metric_free(plain);
  /* Multiclass: ignore_index inside the classes removes its samples. */
  const int64_t mp[] = {1, 0, 2, 1}, mt[] = {1, 1, 2, 0};
  fg_metric *r = make_metric("{class_path: torchmetrics.Recall, init_args: {task: multiclass, num_classes: 3, average: none, ignore_index: 0}}");
  update(r, tensor_l(mp, 4), tensor_l(mt, 4));
  compute_tensor(r, FG_FLOAT32, (const double[]){0, 0.5, 1}, 3);
  fg_metric_free(r);
}
