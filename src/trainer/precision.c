/* trainer.precision: bf16-mixed is Lightning's MixedPrecision plugin on
 * CPU. Its forward_context, torch.autocast("cpu", dtype=torch.bfloat16),
 * wraps training_step, validation_step, test_step and predict_step: the
 * forward, the loss and the metric updates of a step. Backward runs
 * outside it, and what a run keeps (parameters, gradients, optimizer
 * state, buffers such as BatchNorm's running statistics) stays float32,
 * because autocast casts copies for the ops in its list and never the
 * tensors themselves. */
#include <stdlib.h>

#include "fulgur/torch.h"
#include "trainer/trainer.h"
#include "util/blas_kernel.h"
#include "util/cpu_features.h"

int fg__precision_begin(fg_precision p, fg_autocast_prev *prev, char **err) {
  if (p != FG_PRECISION_BF16_MIXED) return 0;
  return fg_torch_autocast_enter(FG_BFLOAT16, prev, err);
}

void fg__precision_end(fg_precision p, const fg_autocast_prev *prev) {
  if (p == FG_PRECISION_BF16_MIXED) fg_torch_autocast_exit(prev);
}

int fg__loop_forward_step(fg_loop *l, fg_split split, size_t dataloader_idx, const fg_value *batch,
                          fg_step_result *out, char **err) {
  fg_autocast_prev prev;
  int rc = fg__precision_begin(l->opts->precision, &prev, err);
  if (rc) return rc;
  rc = fg_module_forward_step(l->module, split, dataloader_idx, batch, out, err);
  fg__precision_end(l->opts->precision, &prev);
  return rc;
}

void fg__precision_warn(const fg_trainer_opts *o, fg_events *bus) {
  if (o->precision != FG_PRECISION_BF16_MIXED) return;
  /* The features the BLAS choice sees (FULGUR_TEST_CPU_FLAGS narrows them
   * in tests). */
  fg__cpu_features f;
  fg__blas_kernel_cpu(&f);
  if (!fg__cpu_has_bf16(&f))
    fg_events_log(bus, FG_LOG_WARNING,
                  "trainer.precision: bf16-mixed on a CPU without bf16 instructions (avx512_bf16 or "
                  "amx_bf16): bf16 matmuls and convolutions are emulated and will be slow, likely slower "
                  "than 32-true");
}
