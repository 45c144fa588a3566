/* Autograd modes around a loop: no-grad evaluation (inference mode or
 * no_grad), anomaly detection, and libtorch's autograd profiler. The
 * trainer's inference_mode, detect_anomaly and profiler: pytorch. */
#ifndef FULGUR_AUTOGRAD_H
#define FULGUR_AUTOGRAD_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Evaluation without autograd for the calling thread, as Lightning's
 * inference_mode argument chooses: torch.inference_mode (inference true:
 * results are inference tensors, without version counters) or
 * torch.no_grad. fg_torch_no_grad_end, on the same thread, restores what
 * was before; begin never fails, and ending NULL does nothing. */
typedef struct fg_grad_mode fg_grad_mode;
fg_grad_mode *fg_torch_no_grad_begin(bool inference);
void fg_torch_no_grad_end(fg_grad_mode *g);

/* torch.autograd.set_detect_anomaly (process-wide): a backward whose
 * function returns NaN fails naming it. Returns the previous setting. */
bool fg_torch_set_anomaly_enabled(bool enabled);

/* libtorch's autograd profiler (this libtorch has no Kineto) over the
 * calling thread's ops from start to stop; stop writes them to path as a
 * Chrome trace (chrome://tracing, Perfetto) and frees p. The caller stops
 * what it started. */
typedef struct fg_torch_profile fg_torch_profile;
int fg_torch_profile_start(const char *path, fg_torch_profile **out, char **err);
int fg_torch_profile_stop(fg_torch_profile *p, char **err);

#ifdef __cplusplus
}
#endif
#endif
