// Autograd modes (fulgur/autograd.h): RAII guards of libtorch held across
// C calls in heap handles, each entry point behind the exception guard.
#include <fstream>
#include <memory>

#include <torch/csrc/autograd/anomaly_mode.h>
#include <torch/csrc/autograd/profiler_legacy.h>

#include "fulgur/autograd.h"
#include "torch/bridge_internal.hpp"

struct fg_grad_mode {
  std::unique_ptr<c10::InferenceMode> inference;
  std::unique_ptr<at::NoGradGuard> no_grad;
};

fg_grad_mode *fg_torch_no_grad_begin(bool inference) {
  FG_GUARD_BEGIN
  auto g = std::make_unique<fg_grad_mode>();
  if (inference)
    g->inference = std::make_unique<c10::InferenceMode>();
  else
    g->no_grad = std::make_unique<at::NoGradGuard>();
  return g.release();
  FG_GUARD_END_RETURN(nullptr)
}

void fg_torch_no_grad_end(fg_grad_mode *g) {
  FG_GUARD_BEGIN
  delete g;
  FG_GUARD_END_RETURN(FG_VOID)
}

bool fg_torch_set_anomaly_enabled(bool enabled) {
  FG_GUARD_BEGIN
  bool was = torch::autograd::AnomalyMode::is_enabled();
  torch::autograd::AnomalyMode::set_enabled(enabled);
  return was;
  FG_GUARD_END_RETURN(false)
}

struct fg_torch_profile {
  std::unique_ptr<torch::autograd::profiler::RecordProfile> rec;
};

int fg_torch_profile_start(const char *path, fg_torch_profile **out, char **err) {
  FG_GUARD_BEGIN
  {
    // RecordProfile opens the file itself and would fail only at the end.
    std::ofstream probe(path);
    if (!probe) throw std::runtime_error(std::string("cannot write ") + path);
  }
  auto p = std::make_unique<fg_torch_profile>();
  p->rec = std::make_unique<torch::autograd::profiler::RecordProfile>(std::string(path));
  *out = p.release();
  return 0;
  FG_GUARD_END
}

int fg_torch_profile_stop(fg_torch_profile *p, char **err) {
  FG_GUARD_BEGIN
  // RecordProfile's destructor stops the profiler and writes the trace.
  std::unique_ptr<fg_torch_profile> owned(p);
  owned->rec.reset();
  return 0;
  FG_GUARD_END
}
