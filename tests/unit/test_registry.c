/* The class registry: lookups, aliases, schema checks through classes,
 * suggestions for typos, plugin-style additions. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "fulgur/config.h"
#include "fulgur/error.h"
#include "fulgur/registry.h"
#include "fulgur/run.h"

static fg_node *parse(const char *y) {
  fg_node *n = NULL;
  char *err = NULL;
  cr_assert_eq(fg_node_parse(y, strlen(y), "r.yaml", &n, &err), 0, "%s", err);
  return n;
}

Test(registry, builtins_and_aliases) {
  cr_assert_not_null(fg_registry_find("fulgur.models.MLP"));
  cr_assert_eq(fg_registry_find("ModelCheckpoint"),
               fg_registry_find("lightning.pytorch.callbacks.ModelCheckpoint"));
  cr_assert_eq(fg_registry_find("CSVLogger")->kind, FG_KIND_LOGGER);
  cr_assert_null(fg_registry_find("fulgur.models.Nope"));
}

Test(registry, alias_normalized_and_defaults_filled) {
  fg_node *n = parse("{class_path: ModelCheckpoint, init_args: {monitor: val/loss}}");
  cr_assert_eq(fg_registry_check(n, "trainer.callbacks.0", FG_KIND_CALLBACK, true, NULL), 0);
  cr_assert_str_eq(fg_node_str(fg_node_get(n, "class_path")), "fulgur.callbacks.ModelCheckpoint");
  fg_node *args = fg_node_get(n, "init_args");
  cr_assert_str_eq(fg_node_str(fg_node_get(args, "mode")), "min");
  cr_assert_eq(fg_node_int(fg_node_get(args, "save_top_k")), 1);
  fg_node_free(n);
}

Test(registry, unknown_class_suggests) {
  fg_node *n = parse("{class_path: fulgur.data.Synthetik}");
  char *err = NULL;
  cr_assert_eq(fg_registry_check(n, "data.init_args.dataset_cfg.fit", FG_KIND_DATASET, false, &err), FG_ECONFIG);
  cr_assert_str_eq(err, "r.yaml:1:14: data.init_args.dataset_cfg.fit.class_path: unknown class "
                        "'fulgur.data.Synthetik' (did you mean 'fulgur.data.Synthetic'?)");
  free(err);
  fg_node_free(n);
}

Test(registry, wrong_kind) {
  fg_node *n = parse("{class_path: fulgur.models.MLP, init_args: {in_features: 1, out_features: 1}}");
  char *err = NULL;
  cr_assert_eq(fg_registry_check(n, "trainer.callbacks.0", FG_KIND_CALLBACK, false, &err), FG_ECONFIG);
  cr_assert(strstr(err, "'fulgur.models.MLP' is a model, expected a callback"), "%s", err);
  free(err);
  fg_node_free(n);
}

Test(registry, init_args_errors) {
  fg_node *n = parse("{class_path: fulgur.models.MLP, init_args: {in_features: 4, out_feature: 2}}");
  char *err = NULL;
  cr_assert_eq(fg_registry_check(n, "model.init_args.model", FG_KIND_MODEL, false, &err), FG_ECONFIG);
  cr_assert(strstr(err, "model.init_args.model.init_args.out_feature: unknown key 'out_feature' "
                        "(did you mean 'out_features'?)"), "%s", err);
  free(err);
  fg_node_free(n);
  n = parse("{class_path: fulgur.models.MLP, init_args: {in_features: 4, out_features: 2, activation: relux}}");
  err = NULL;
  cr_assert_eq(fg_registry_check(n, "m", FG_KIND_MODEL, false, &err), FG_ECONFIG);
  cr_assert(strstr(err, "m.init_args.activation: expected one of relu, gelu, tanh, sigmoid, got 'relux'"), "%s", err);
  free(err);
  fg_node_free(n);
  n = parse("{class_path: fulgur.models.MLP, init_arg: {}}");
  err = NULL;
  cr_assert_eq(fg_registry_check(n, "m", FG_KIND_MODEL, false, &err), FG_ECONFIG);
  cr_assert(strstr(err, "m.init_arg: unknown key 'init_arg'"), "%s", err);
  free(err);
  fg_node_free(n);
}

static int plugin_create(const fg_class *cls, const fg_node *a, const char *k, void **out, char **err) {
  *out = strdup("made");
  return 0;
}
static const fg_class plugin_class = {.name = "my.plugin.Thing", .kind = FG_KIND_METRIC,
                                      .create = plugin_create, .destroy = free};

Test(registry, added_class_is_found_and_created_once) {
  cr_assert_eq(fg_registry_add(&plugin_class, NULL), 0);
  char *err = NULL;
  cr_assert_eq(fg_registry_add(&plugin_class, &err), FG_EINVAL);
  cr_assert(strstr(err, "already registered"), "%s", err);
  free(err);
  fg_node *n = parse("{class_path: my.plugin.Thing}");
  void *obj = NULL;
  const fg_class *cls = NULL;
  cr_assert_eq(fg_registry_create(n, "x", FG_KIND_METRIC, &obj, &cls, NULL), 0);
  cr_assert_str_eq(obj, "made");
  cls->destroy(obj);
  fg_node_free(n);
}

Test(config_check, whole_config) {
  fg_node *n = parse(
      "model: {class_path: fulgur.ClassificationModule, init_args: {model: {class_path: fulgur.models.MLP,"
      " init_args: {in_features: 4, out_features: 2}}, evaluator_cfg: {class_path: fulgur.metrics.Accuracy,"
      " init_args: {task: multiclass, num_classes: 2}}}}\n"
      "data: {class_path: fulgur.DataModule, init_args: {dataset_cfg: {fit: {class_path: fulgur.data.Synthetic,"
      " init_args: {num_samples: 8, shape: [4]}}, val: {init_args: {seed: 3}}}}}\n"
      "optimizer_config: {class_path: torch.optim.SGD, init_args: {lr: 0.1}}\n");
  char *err = NULL;
  cr_assert_eq(fg_config_check(n, true, &err), 0, "%s", err);
  /* Splits expanded, val inherits fit, defaults filled everywhere. */
  cr_assert_eq(fg_node_int(fg_node_path(n, "data.init_args.dataset_cfg.val.init_args.seed")), 3);
  cr_assert_eq(fg_node_int(fg_node_path(n, "data.init_args.dataset_cfg.test.init_args.num_samples")), 8);
  cr_assert_eq(fg_node_int(fg_node_path(n, "data.init_args.dataloader_cfg.predict.batch_size")), 1);
  cr_assert_str_eq(fg_node_str(fg_node_path(n, "model.init_args.evaluator_cfg.test.class_path")),
                   "fulgur.metrics.Accuracy");
  cr_assert_eq(fg_node_int(fg_node_path(n, "trainer.log_every_n_steps")), 50);
  cr_assert_not_null(fg_node_path(n, "optimizer_config.optimizer.init_args.momentum"));
  fg_node_free(n);
}

Test(config_check, top_level_typo) {
  fg_node *n = parse("model: {class_path: fulgur.LightningModule}\ntrainr: {}\n");
  char *err = NULL;
  cr_assert_eq(fg_config_check(n, false, &err), FG_ECONFIG);
  cr_assert(strstr(err, "r.yaml:2:9: trainr: unknown key 'trainr' (did you mean 'trainer'?)") ||
                strstr(err, "trainr: unknown key 'trainr' (did you mean 'trainer'?)"),
            "%s", err);
  free(err);
  fg_node_free(n);
}

/* ---- check once ------------------------------------------------------------
 * An outer class whose init_args hold an inner object, as a module holds its
 * metrics: the outer check checks the inner one, the outer create creates
 * it. Each check counts. */
static int inner_checks, outer_checks;

static int inner_check(const fg_class *cls, fg_node *a, const char *k, bool fill, char **err) {
  inner_checks++;
  return 0;
}
static int inner_create(const fg_class *cls, const fg_node *a, const char *k, void **out, char **err) {
  *out = strdup("inner");
  return 0;
}
static const fg_class inner_class = {.name = "my.test.Inner", .kind = FG_KIND_METRIC,
                                     .create = inner_create, .destroy = free, .check = inner_check};

static int outer_check(const fg_class *cls, fg_node *a, const char *k, bool fill, char **err) {
  outer_checks++;
  return fg_registry_check(fg_node_get(a, "inner"), "outer.init_args.inner", FG_KIND_METRIC, fill, err);
}
static int outer_create(const fg_class *cls, const fg_node *a, const char *k, void **out, char **err) {
  void *inner = NULL;
  const fg_class *icls = NULL;
  int rc = fg_registry_create(fg_node_get(a, "inner"), "outer.init_args.inner", FG_KIND_METRIC, &inner,
                              &icls, err);
  if (rc) return rc;
  icls->destroy(inner);
  *out = strdup("outer");
  return 0;
}
static const fg_param outer_params[] = {{"inner", FG_T_MAP, NULL, "an inner object", NULL, 0}};
static const fg_class outer_class = {.name = "my.test.Outer", .kind = FG_KIND_CALLBACK,
                                     .params = outer_params, .n_params = 1, .create = outer_create,
                                     .destroy = free, .check = outer_check};

static void add_counting_classes(void) {
  cr_assert_eq(fg_registry_add(&inner_class, NULL), 0);
  cr_assert_eq(fg_registry_add(&outer_class, NULL), 0);
}

static void create_outer(const fg_node *n) {
  void *obj = NULL;
  const fg_class *cls = NULL;
  char *err = NULL;
  cr_assert_eq(fg_registry_create(n, "outer", FG_KIND_CALLBACK, &obj, &cls, &err), 0, "%s", err);
  cr_assert_str_eq(obj, "outer");
  cls->destroy(obj);
}

Test(check_once, creating_a_checked_tree_checks_nothing_again) {
  add_counting_classes();
  fg_node *n = parse("{class_path: my.test.Outer, init_args: {inner: {class_path: my.test.Inner}}}");
  cr_assert_eq(fg_registry_check(n, "outer", FG_KIND_CALLBACK, true, NULL), 0);
  cr_assert_eq(outer_checks, 1);
  cr_assert_eq(inner_checks, 1);
  create_outer(n);
  /* Before: the create checked the outer object again (and with it the
   * inner one), and the inner create checked the inner one a third time. */
  cr_assert_eq(outer_checks, 1);
  cr_assert_eq(inner_checks, 1, "the inner object was checked %d times", inner_checks);
  /* Checking a checked tree again is free too. */
  cr_assert_eq(fg_registry_check(n, "outer", FG_KIND_CALLBACK, true, NULL), 0);
  cr_assert_eq(outer_checks + inner_checks, 2);
  fg_node_free(n);
}

Test(check_once, unchecked_or_changed_objects_are_checked_at_create) {
  add_counting_classes();
  /* Never checked: create checks (on its own copy, as it always did). */
  fg_node *n = parse("{class_path: my.test.Outer, init_args: {inner: {class_path: my.test.Inner}}}");
  create_outer(n);
  cr_assert_eq(outer_checks, 1);
  create_outer(n);
  cr_assert_eq(outer_checks, 2, "the caller's unchecked tree stays unchecked");
  /* Checked without defaults: not ready to create, so checked again. */
  cr_assert_eq(fg_registry_check(n, "outer", FG_KIND_CALLBACK, false, NULL), 0);
  cr_assert_eq(outer_checks, 3);
  create_outer(n);
  cr_assert_eq(outer_checks, 4);
  /* Checked, then changed: the change clears the flag. */
  cr_assert_eq(fg_registry_check(n, "outer", FG_KIND_CALLBACK, true, NULL), 0);
  cr_assert_eq(outer_checks, 5);
  fg_node_map_set(n, "init_args", parse("{inner: {class_path: my.test.Nope}}"));
  void *obj = NULL;
  char *err = NULL;
  cr_assert_eq(fg_registry_create(n, "outer", FG_KIND_CALLBACK, &obj, NULL, &err), FG_ECONFIG);
  cr_assert(strstr(err, "outer.init_args.inner.class_path: unknown class 'my.test.Nope'"), "%s", err);
  free(err), err = NULL;
  fg_node_free(n);
  /* Checked as one kind, asked for as another: the full check runs and
   * names the mismatch. */
  n = parse("{class_path: my.test.Inner}");
  cr_assert_eq(fg_registry_check(n, "m", FG_KIND_METRIC, true, NULL), 0);
  cr_assert_eq(fg_registry_create(n, "m", FG_KIND_CALLBACK, &obj, NULL, &err), FG_ECONFIG);
  cr_assert(strstr(err, "m.class_path: 'my.test.Inner' is a metric, expected a callback"), "%s", err);
  free(err);
  fg_node_free(n);
}

/* The check loads nothing and says what a stage needs. */
static const char *small_config =
    "model: {class_path: fulgur.ClassificationModule, init_args: {model: {class_path: fulgur.models.MLP,"
    " init_args: {in_features: 4, out_features: 2}}}}\n"
    "data: {class_path: fulgur.DataModule, init_args: {dataset_cfg: {fit: {class_path: fulgur.data.Synthetic,"
    " init_args: {num_samples: 8, shape: [4]}}}}}\n"
    "plugins: [/nonexistent/libnothing.so]\n";

Test(check_once, the_check_has_no_side_effects) {
  fg_node *n = parse(small_config);
  char *err = NULL;
  cr_assert_eq(fg_config_check(n, true, &err), 0, "the check does not load plugins: %s", err);
  cr_assert_eq(fg_config_load_plugins(n, &err), FG_ECONFIG);
  cr_assert(strstr(err, "plugins.0: ") && strstr(err, "/nonexistent/libnothing.so"), "%s", err);
  free(err);
  fg_node_free(n);
  /* Not a list of strings: nothing loads, the check names the problem. */
  n = parse("plugins: [1]\n");
  cr_assert_eq(fg_config_load_plugins(n, NULL), 0);
  fg_node_free(n);
}

Test(check_once, fit_needs_an_optimizer_config_in_the_check) {
  fg_node *n = parse(small_config);
  fg_node_map_set(n, "plugins", fg_node_new_null());
  char *err = NULL;
  cr_assert_eq(fg_config_check_stage(n, FG_STAGE_VALIDATE, true, &err), 0, "%s", err);
  cr_assert_eq(fg_config_check_stage(n, FG_STAGE_FIT, true, &err), FG_ECONFIG);
  cr_assert(strstr(err, "optimizer_config: fit needs an optimizer_config"), "%s", err);
  free(err);
  fg_node_free(n);
}
