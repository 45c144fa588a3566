/* A module's state_dict (parameters and buffers, in the order they were
 * added), load_state_dict's strict and non-strict rules and messages, and
 * the train/eval mode forward_step passes to the model. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fulgur/error.h"
#include "fulgur/module.h"

static fg_tensor *filled(int64_t n, double v) {
  fg_tensor *t = NULL;
  cr_assert_eq(fg_tensor_zeros(&n, 1, FG_FLOAT32, &t, NULL), 0);
  cr_assert_eq(fg_tensor_fill_(t, v, NULL), 0);
  return t;
}

static double first(const fg_tensor *t) {
  float x[8];
  cr_assert_eq(fg_tensor_copy_out(t, FG_FLOAT32, x, sizeof x, NULL), 0);
  return x[0];
}

/* forward returns 1 in training mode and 0 in eval mode. */
static int mode_forward(void *self, fg_model *m, const fg_value *in, bool train, fg_value **out,
                        char **err) {
  (void)self, (void)m, (void)in;
  fg_tensor *t = NULL;
  int rc = fg_tensor_scalar(train ? 1.0 : 0.0, FG_FLOAT32, &t, err);
  if (rc == 0) *out = fg_value_tensor(t);
  return rc;
}

static int trains;
static void count_train(void *self, bool mode) {
  (void)self;
  trains += mode ? 1 : 0;
}
static const fg_model_vtable mode_vt = {.forward = mode_forward, .train = count_train};

/* Like a Linear then a BatchNorm: lin.weight, bn.weight, bn.running_mean. */
static fg_module *bn_module(void) {
  fg_model *model = fg_model_create(&mode_vt, NULL);
  fg_model_add_param(model, "lin.weight", filled(3, 1));
  fg_model_add_param(model, "bn.weight", filled(2, 1));
  fg_model_add_buffer(model, "bn.running_mean", filled(2, 0));
  return fg_module_create(model, NULL);
}

Test(state_dict, parameters_and_buffers_in_order) {
  fg_module *m = bn_module();
  cr_assert_eq(fg_module_num_params(m), 2, "a buffer is not a parameter");
  fg_value *sd = fg_value_dict();
  cr_assert_eq(fg_module_state_dict(m, sd, NULL), 0);
  cr_assert_eq(fg_value_len(sd), 3);
  cr_assert_str_eq(fg_value_dict_key_at(sd, 0), "model.lin.weight");
  cr_assert_str_eq(fg_value_dict_key_at(sd, 1), "model.bn.weight");
  cr_assert_str_eq(fg_value_dict_key_at(sd, 2), "model.bn.running_mean");
  cr_assert_not(fg_module_state_is_param(m, 2));
  fg_value_free(sd);
  fg_module_free(m);
}

Test(state_dict, strict_load_copies_buffers) {
  fg_module *m = bn_module();
  fg_value *sd = fg_value_dict();
  fg_value_dict_set(sd, "model.lin.weight", fg_value_tensor(filled(3, 5)));
  fg_value_dict_set(sd, "model.bn.weight", fg_value_tensor(filled(2, 6)));
  fg_value_dict_set(sd, "model.bn.running_mean", fg_value_tensor(filled(2, 7)));
  char *err = NULL;
  cr_assert_eq(fg_module_load_state_dict(m, sd, true, "a.ckpt", NULL, &err), 0, "%s", err);
  cr_assert_float_eq(first(fg_module_state(m, 2)), 7, 1e-6);
  cr_assert_float_eq(first(fg_module_param(m, 0)), 5, 1e-6);
  fg_value_free(sd);
  fg_module_free(m);
}

Test(state_dict, strict_names_missing_unexpected_and_shapes) {
  fg_module *m = bn_module();
  fg_value *sd = fg_value_dict();
  fg_value_dict_set(sd, "model.lin.weight", fg_value_tensor(filled(4, 5)));
  for (int i = 0; i < 7; i++) {
    char k[32];
    snprintf(k, sizeof k, "model.extra%d", i);
    fg_value_dict_set(sd, k, fg_value_tensor(filled(1, 0)));
  }
  char *err = NULL;
  cr_assert_eq(fg_module_load_state_dict(m, sd, true, "a.ckpt", NULL, &err), FG_EDATA);
  cr_assert_str_eq(err,
                   "a.ckpt: the state_dict does not fit the model: missing keys (2): model.bn.weight, "
                   "model.bn.running_mean; unexpected keys (7): model.extra0, model.extra1, "
                   "model.extra2, model.extra3, model.extra4 and 2 more; shape mismatches (1): "
                   "'model.lin.weight' has shape [4] in the checkpoint, [3] in the model");
  cr_assert_float_eq(first(fg_module_param(m, 0)), 1, 1e-6, "nothing is copied");
  free(err);
  fg_value_free(sd);
  fg_module_free(m);
}

Test(state_dict, non_strict_reports_and_loads_what_fits) {
  fg_module *m = bn_module();
  fg_value *sd = fg_value_dict();
  fg_value_dict_set(sd, "model.bn.running_mean", fg_value_tensor(filled(2, 3)));
  fg_value_dict_set(sd, "model.head.bias", fg_value_tensor(filled(2, 3)));
  char *report = NULL, *err = NULL;
  cr_assert_eq(fg_module_load_state_dict(m, sd, false, "a.ckpt", &report, &err), 0, "%s", err);
  cr_assert_str_eq(report, "missing keys (2): model.lin.weight, model.bn.weight; "
                           "unexpected keys (1): model.head.bias");
  cr_assert_float_eq(first(fg_module_state(m, 2)), 3, 1e-6);
  free(report);
  /* A state that fits has nothing to report. */
  fg_value_free(sd);
  sd = fg_value_dict();
  cr_assert_eq(fg_module_state_dict(m, sd, NULL), 0);
  cr_assert_eq(fg_module_load_state_dict(m, sd, false, "a.ckpt", &report, NULL), 0);
  cr_assert_null(report);
  fg_value_free(sd);
  fg_module_free(m);
}

Test(state_dict, forward_step_runs_in_the_module_mode) {
  fg_module *m = bn_module();
  cr_assert(fg_module_is_training(m), "a new module trains, as nn.Module");
  fg_value *batch = fg_value_dict();
  fg_step_result r;
  fg_module_train(m, false);
  cr_assert_eq(fg_module_forward_step(m, FG_SPLIT_FIT, 0, batch, &r, NULL), 0);
  cr_assert_float_eq(first(r.loss), 0, 1e-6, "eval() even in the fit split");
  fg_step_result_clear(&r);
  trains = 0;
  fg_module_train(m, true);
  cr_assert_eq(trains, 1, "the model's own train() is called");
  cr_assert_eq(fg_module_forward_step(m, FG_SPLIT_VAL, 0, batch, &r, NULL), 0);
  cr_assert_float_eq(first(r.loss), 1, 1e-6);
  fg_step_result_clear(&r);
  fg_value_free(batch);
  fg_module_free(m);
}
