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

// The message of a caught exception: c10::Error without its C++ backtrace
// (users read it), anything else as what() says.
inline const char *what(const std::exception &e) noexcept {
  if (auto *ce = dynamic_cast<const c10::Error *>(&e)) return ce->what_without_backtrace();
  return e.what();
}

}  // namespace fg

// The one error path. Every function the bridge exports to C runs its body
// between FG_GUARD_BEGIN and one of the ends below: no C++ exception ever
// crosses into C (where it would call std::terminate). The bridge's own
// checks throw std::runtime_error, libtorch throws c10::Error (a
// std::exception), anything else lands in `...`.
//
//   FG_GUARD_END                   int functions with `char **err`: the
//                                  message goes to *err, FG_ETORCH returned.
//   FG_GUARD_END_CLEANUP(stmt)     the same, running stmt first (frees what
//                                  the body built before it threw).
//   FG_GUARD_END_RETURN(fallback)  functions that have no err to report into
//                                  (getters, frees): return fallback, which
//                                  each such function documents in its
//                                  header. Only where failing is impossible
//                                  for valid handles, or the fallback is the
//                                  honest answer ("no such method": false).
#define FG_GUARD_BEGIN try {
#define FG_GUARD_CATCH_(cleanup, report, fallback) \
  }                                                 \
  catch (const std::exception &e) {                 \
    cleanup;                                        \
    report(fg::what(e));                            \
    return fallback;                                \
  }                                                 \
  catch (...) {                                     \
    cleanup;                                        \
    report("unknown C++ exception");                \
    return fallback;                                \
  }
#define FG_GUARD_REPORT_(msg) fg::set_err(err, msg)
#define FG_GUARD_IGNORE_(msg) (void)(msg)
#define FG_GUARD_END_CLEANUP(cleanup) FG_GUARD_CATCH_(cleanup, FG_GUARD_REPORT_, FG_ETORCH)
#define FG_GUARD_END FG_GUARD_END_CLEANUP((void)0)
#define FG_GUARD_END_RETURN(fallback) FG_GUARD_CATCH_((void)0, FG_GUARD_IGNORE_, fallback)
// void functions: `return FG_VOID;` is `return;`.
#define FG_VOID

namespace fg {

at::ScalarType to_scalar_type(fg_dtype d);
fg_dtype from_scalar_type(at::ScalarType s);

// fg_value <-> IValue, for pickling.
c10::IValue to_ivalue(const fg_value *v, const char *parent_key);
fg_value *from_ivalue(const c10::IValue &v);

}  // namespace fg
