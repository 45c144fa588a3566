// Shared by the bridge's C++ files: the handle structs and the guard that
// turns every C++ exception into an FG_ETORCH return with a message.
#pragma once

#include <torch/torch.h>

#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>

extern "C" {
#include "fulgur/error.h"
#include "fulgur/torch.h"
#include "fulgur/value.h"
}

struct fg_tensor {
  at::Tensor t;
};

namespace fg {

inline fg_tensor *wrap(at::Tensor t) { return new fg_tensor{std::move(t)}; }

inline void set_err(char **err, const char *msg) {
  if (err != nullptr && *err == nullptr) *err = strdup(msg);
}

// The one error path: the bridge's own checks throw std::runtime_error,
// libtorch throws c10::Error; both end up here.
#define FG_GUARD_BEGIN try {
#define FG_GUARD_END                                          \
  }                                                           \
  catch (const c10::Error &e) {                               \
    fg::set_err(err, e.what_without_backtrace());             \
    return FG_ETORCH;                                         \
  }                                                           \
  catch (const std::exception &e) {                           \
    fg::set_err(err, e.what());                               \
    return FG_ETORCH;                                         \
  }                                                           \
  catch (...) {                                               \
    fg::set_err(err, "unknown C++ exception");                \
    return FG_ETORCH;                                         \
  }

at::ScalarType to_scalar_type(fg_dtype d);
fg_dtype from_scalar_type(at::ScalarType s);

// fg_value <-> IValue, for pickling.
c10::IValue to_ivalue(const fg_value *v, const char *parent_key);
fg_value *from_ivalue(const c10::IValue &v);

}  // namespace fg
