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
