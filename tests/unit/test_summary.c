/* The model summary's formatter against Lightning's documented outputs
 * (get_human_readable_count's examples, the "other params" row, sizes
 * with thousands separators), and fg_module_summarize's depth rule on the
 * built-in MLP. The tables of real modules are checked against
 * python3-torch in tests/interop/test_model_summary.py. */
#include <criterion/criterion.h>
#include <stdlib.h>
#include <string.h>

#include "fulgur/config.h"
#include "fulgur/module.h"
#include "fulgur/registry.h"
#include "fulgur/summary.h"

Test(summary, human_readable_counts_are_lightnings) {
  static const struct {
    int64_t n;
    const char *want;
  } cases[] = {{0, "0  "},          {123, "123  "},      {999, "999  "},      {1000, "1.0 K"},
               {1234, "1.2 K"},     {99949, "99.9 K"},   {132096, "132 K"},   {2000000, "2.0 M"},
               {3000000000, "3.0 B"}, {400000000000000, "400 T"}, {5000000000000000, "5,000 T"}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char buf[32];
    fg_human_readable_count(cases[i].n, buf, sizeof buf);
    cr_assert_str_eq(buf, cases[i].want, "%lld", (long long)cases[i].n);
  }
}

Test(summary, leftover_parameters_and_big_sizes) {
  fg_summary_row rows[1] = {{"model", "Big", 300000000, false}};
  fg_model_summary s = {.rows = rows, .n_rows = 1, .total_params = 400000000,
                        .trainable_params = 100000000, .modules_train = 0, .modules_eval = 1,
                        .precision_bits = 32};
  char *t = fg_model_summary_format(&s);
  const char *want =
      "  | Name         | Type | Params | Mode\n"
      "---------------------------------------------\n"
      "0 | model        | Big  | 300 M  | eval\n"
      "  | other params | n/a  | 100 M  | n/a \n"
      "---------------------------------------------\n"
      "100 M     Trainable params\n"
      "300 M     Non-trainable params\n"
      "400 M     Total params\n"
      "1,600.000 Total estimated model params size (MB)\n"
      "0         Modules in train mode\n"
      "1         Modules in eval mode";
  cr_assert_str_eq(t, want);
  free(t);
}

Test(summary, depth_rule_on_the_builtin_mlp) {
  const char *yaml =
      "class_path: fulgur.LightningModule\n"
      "init_args:\n"
      "  model: {class_path: fulgur.models.MLP, init_args: {in_features: 4, hidden: [5], out_features: 2}}\n";
  fg_node *n = NULL;
  char *err = NULL;
  cr_assert_eq(fg_node_parse(yaml, strlen(yaml), "<test>", &n, &err), 0, "%s", err);
  void *obj = NULL;
  cr_assert_eq(fg_registry_create(n, "model", FG_KIND_MODULE, &obj, NULL, &err), 0, "%s", err);
  fg_node_free(n);
  fg_module *m = obj;
  static const struct {
    int depth;
    size_t rows;
  } cases[] = {{0, 0}, {1, 1}, {2, 2}, {3, 5}, {-1, 5}};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    fg_model_summary *s = NULL;
    cr_assert_eq(fg_module_summarize(m, cases[i].depth, &s, &err), 0, "%s", err);
    cr_assert_eq(s->n_rows, cases[i].rows, "depth %d: %zu rows", cases[i].depth, s->n_rows);
    cr_assert_eq(s->total_params, 4 * 5 + 5 + 5 * 2 + 2);
    cr_assert_eq(s->modules_train, 5, "MLP, Sequential, Linear, ReLU, Linear");
    if (s->n_rows >= 3) {
      cr_assert_str_eq(s->rows[2].name, "model.layers.0");
      cr_assert_str_eq(s->rows[2].type, "Linear");
      cr_assert_eq(s->rows[2].params, 25);
    }
    fg_model_summary_free(s);
  }
  fg_module_free(m);
}
