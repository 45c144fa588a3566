/* trainer.precision: bf16-mixed is Lightning's MixedPrecision plugin on
 * CPU. Its forward_context, torch.autocast("cpu", dtype=torch.bfloat16),
 * wraps training_step, validation_step, test_step and predict_step: the
 * forward, the loss and the metric updates of a step. Backward runs
 * outside it, and what a run keeps (parameters, gradients, optimizer
 * state, buffers such as BatchNorm's running statistics) stays float32,
 * because autocast casts copies for the ops in its list and never the
 * tensors themselves.
 *
 * bf16-true is Lightning's HalfPrecision("bf16-true"): convert_module
 * turns the module's floating parameters and buffers into bf16
 * (Module.to(dtype)), convert_input does the same to a batch's floating
 * tensors, and the forward context makes bf16 the default dtype. So the
 * weights, their gradients and the optimizer's state are bf16, and so is
 * what a checkpoint keeps. */
#include <stdlib.h>

#include "fulgur/error.h"

#include "fulgur/torch.h"
#include "trainer/trainer.h"
#include "util/blas_kernel.h"
#include "util/cpu_features.h"

int fg__precision_begin(fg_precision p, fg_autocast_prev *prev, char **err) {
  if (p == FG_PRECISION_BF16_TRUE) return fg_torch_default_dtype_enter(FG_BFLOAT16, err);
  if (p != FG_PRECISION_BF16_MIXED) return 0;
  return fg_torch_autocast_enter(FG_BFLOAT16, prev, err);
}

void fg__precision_end(fg_precision p, const fg_autocast_prev *prev) {
  if (p == FG_PRECISION_BF16_TRUE) fg_torch_default_dtype_exit();
  if (p == FG_PRECISION_BF16_MIXED) fg_torch_autocast_exit(prev);
}

int fg__precision_convert_module(fg_precision p, fg_module *m, char **err) {
  if (p != FG_PRECISION_BF16_TRUE) return 0;
  /* The state holds the parameters and the buffers (BatchNorm's running
   * statistics; its integer count stays as it is, as in Module.to). */
  for (size_t i = 0; i < fg_module_num_state(m); i++) {
    fg_tensor *t = fg_module_state(m, i);
    if (!fg_dtype_is_floating(fg_tensor_dtype(t))) continue;
    int rc = fg_tensor_convert_(t, FG_BFLOAT16, err);
    if (rc) return fg_err_prefix(err, rc, "precision bf16-true: '%s'", fg_module_state_name(m, i));
  }
  return 0;
}

/* A copy of v with its floating tensors in bf16 (the others shared). */
static int to_bf16(const fg_value *v, fg_value **out, char **err) {
  int rc = 0;
  *out = NULL;
  switch (fg_value_kind_of(v)) {
    case FG_VALUE_TENSOR: {
      const fg_tensor *t = fg_value_as_tensor(v);
      fg_tensor *c = NULL;
      if (fg_dtype_is_floating(fg_tensor_dtype(t))) rc = fg_op_to_dtype(t, FG_BFLOAT16, &c, err);
      else c = fg_tensor_ref(t);
      if (rc == 0) *out = fg_value_tensor(c);
      return rc;
    }
    case FG_VALUE_LIST:
    case FG_VALUE_DICT: {
      bool dict = fg_value_kind_of(v) == FG_VALUE_DICT;
      fg_value *acc = dict ? fg_value_dict() : fg_value_list();
      for (size_t i = 0; i < fg_value_len(v) && rc == 0; i++) {
        fg_value *c = NULL;
        rc = to_bf16(dict ? fg_value_dict_value_at(v, i) : fg_value_list_at(v, i), &c, err);
        if (rc) break;
        if (dict) fg_value_dict_set(acc, fg_value_dict_key_at(v, i), c);
        else fg_value_list_append(acc, c);
      }
      if (rc) fg_value_free(acc);
      else *out = acc;
      return rc;
    }
    default:
      *out = fg_value_copy(v);
      return 0;
  }
}

int fg__precision_convert_input(fg_precision p, fg_value **batch, char **err) {
  if (p != FG_PRECISION_BF16_TRUE || *batch == NULL) return 0;
  fg_value *c = NULL;
  int rc = to_bf16(*batch, &c, err);
  if (rc) return fg_err_prefix(err, rc, "precision bf16-true: the batch");
  fg_value_free(*batch);
  *batch = c;
  return 0;
}

int fg__loop_forward_step(fg_loop *l, fg_split split, size_t dataloader_idx, const fg_value *batch,
                          fg_step_result *out, char **err) {
  fg_precision p = l->opts->precision;
  fg_value *own = NULL;
  if (p == FG_PRECISION_BF16_TRUE) {
    int rc = to_bf16(batch, &own, err);
    if (rc) return fg_err_prefix(err, rc, "precision bf16-true: the batch");
    batch = own;
  }
  fg_autocast_prev prev;
  int rc = fg__precision_begin(p, &prev, err);
  if (rc == 0) {
    rc = fg_module_forward_step(l->module, split, dataloader_idx, batch, out, err);
    fg__precision_end(p, &prev);
  }
  fg_value_free(own);
  return rc;
}

void fg__precision_warn(const fg_trainer_opts *o, fg_events *bus) {
  if (o->precision != FG_PRECISION_BF16_MIXED && o->precision != FG_PRECISION_BF16_TRUE) return;
  /* The features the BLAS choice sees (FULGUR_TEST_CPU_FLAGS narrows them
   * in tests). */
  fg__cpu_features f;
  fg__blas_kernel_cpu(&f);
  if (!fg__cpu_has_bf16(&f))
    fg_events_log(bus, FG_LOG_WARNING,
                  "trainer.precision: %s on a CPU without bf16 instructions (avx512_bf16 or "
                  "amx_bf16): bf16 matmuls and convolutions are emulated and will be slow, likely slower "
                  "than 32-true",
                   o->precision == FG_PRECISION_BF16_TRUE ? "bf16-true" : "bf16-mixed");
}
