// Tensors and operations: the libtorch calls fulgur needs, each behind the
// exception guard. No training logic lives here.
#include <dlfcn.h>

#include <ATen/autocast_mode.h>

#include "torch/bridge_internal.hpp"

namespace fg {

at::ScalarType to_scalar_type(fg_dtype d) {
  switch (d) {
    case FG_FLOAT32: return at::kFloat;
    case FG_FLOAT64: return at::kDouble;
    case FG_INT64: return at::kLong;
    case FG_INT32: return at::kInt;
    case FG_UINT8: return at::kByte;
    case FG_BOOL: return at::kBool;
    case FG_BFLOAT16: return at::kBFloat16;
  }
  throw std::runtime_error("unknown dtype");
}

fg_dtype from_scalar_type(at::ScalarType s) {
  switch (s) {
    case at::kFloat: return FG_FLOAT32;
    case at::kDouble: return FG_FLOAT64;
    case at::kLong: return FG_INT64;
    case at::kInt: return FG_INT32;
    case at::kByte: return FG_UINT8;
    case at::kBool: return FG_BOOL;
    case at::kBFloat16: return FG_BFLOAT16;
    default: break;
  }
  // Other dtypes (half, int16...) are reported as float32-compatible only
  // after conversion; callers convert with fg_op_to_dtype.
  return FG_FLOAT32;
}

}  // namespace fg

using fg::wrap;

extern "C" {

size_t fg_dtype_size(fg_dtype d) {
  FG_GUARD_BEGIN
  switch (d) {
    case FG_FLOAT32: case FG_INT32: return 4;
    case FG_FLOAT64: case FG_INT64: return 8;
    case FG_UINT8: case FG_BOOL: return 1;
    case FG_BFLOAT16: return 2;
  }
  return 0;
  FG_GUARD_END_RETURN(0)
}

bool fg_dtype_is_floating(fg_dtype dtype) {
  FG_GUARD_BEGIN
  return dtype == FG_FLOAT32 || dtype == FG_FLOAT64 || dtype == FG_BFLOAT16;
  FG_GUARD_END_RETURN(false)
}

const char *fg_dtype_name(fg_dtype d) {
  FG_GUARD_BEGIN
  static const char *const names[] = {"float32", "float64", "int64", "int32", "uint8", "bool", "bfloat16"};
  return (unsigned)d < sizeof names / sizeof names[0] ? names[d] : "unknown";
  FG_GUARD_END_RETURN("unknown")
}

int fg_torch_set_num_threads(int n, char **err) {
  FG_GUARD_BEGIN
  if (n < 1) throw std::runtime_error("num_threads must be >= 1");
  at::set_num_threads(n);
  // OpenBLAS keeps its own pool; left at its default it spins against
  // libtorch's threads. Looked up at run time so there is no link-time tie.
  using setter = void (*)(int);
  if (auto f = reinterpret_cast<setter>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"))) f(n);
  return 0;
  FG_GUARD_END
}

int fg_torch_get_num_threads(void) {
  FG_GUARD_BEGIN
  return at::get_num_threads();
  FG_GUARD_END_RETURN(1)
}

int fg_torch_set_deterministic(bool on, char **err) {
  FG_GUARD_BEGIN
  at::globalContext().setDeterministicAlgorithms(on, /*warn_only=*/false);
  return 0;
  FG_GUARD_END
}

void fg_torch_manual_seed(uint64_t seed) {
  FG_GUARD_BEGIN
  torch::manual_seed(seed);
  FG_GUARD_END_RETURN(FG_VOID)
}

int fg_torch_get_rng_state(fg_tensor **out, char **err) {
  FG_GUARD_BEGIN
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  *out = wrap(gen.get_state());
  return 0;
  FG_GUARD_END
}

int fg_torch_set_rng_state(const fg_tensor *state, char **err) {
  FG_GUARD_BEGIN
  if (!state->t.defined() || state->t.scalar_type() != at::kByte)
    throw std::runtime_error("a generator state is a uint8 tensor");
  auto gen = at::detail::getDefaultCPUGenerator();
  std::lock_guard<std::mutex> lock(gen.mutex());
  // set_state checks the size and the format itself.
  gen.set_state(state->t.contiguous());
  return 0;
  FG_GUARD_END
}

bool fg_torch_set_grad_enabled(bool enabled) {
  FG_GUARD_BEGIN
  bool was = at::GradMode::is_enabled();
  at::GradMode::set_enabled(enabled);
  return was;
  FG_GUARD_END_RETURN(enabled)
}

// What torch.autocast's __enter__ and __exit__ do for device_type "cpu"
// (torch/amp/autocast_mode.py, 1.13): dtype and enabled flag saved and
// set, the nesting counted so the outermost exit clears the cast cache.
int fg_torch_autocast_enter(fg_dtype dtype, fg_autocast_prev *prev, char **err) {
  FG_GUARD_BEGIN
  at::ScalarType st = fg::to_scalar_type(dtype);
  if (st != at::kBFloat16) throw std::runtime_error("CPU autocast runs in bfloat16 only");
  prev->enabled = at::autocast::is_cpu_enabled();
  prev->scalar_type = static_cast<int8_t>(at::autocast::get_autocast_cpu_dtype());
  at::autocast::set_autocast_cpu_dtype(st);
  at::autocast::set_cpu_enabled(true);
  at::autocast::increment_nesting();
  return 0;
  FG_GUARD_END
}

void fg_torch_autocast_exit(const fg_autocast_prev *prev) {
  FG_GUARD_BEGIN
  if (at::autocast::decrement_nesting() == 0) at::autocast::clear_cache();
  at::autocast::set_cpu_enabled(prev->enabled);
  at::autocast::set_autocast_cpu_dtype(static_cast<at::ScalarType>(prev->scalar_type));
  return FG_VOID;
  FG_GUARD_END_RETURN(FG_VOID)
}

namespace {
std::mutex default_dtype_mutex;
int default_dtype_depth = 0;
caffe2::TypeMeta default_dtype_prev;
}  // namespace

int fg_torch_default_dtype_enter(fg_dtype dtype, char **err) {
  FG_GUARD_BEGIN
  caffe2::TypeMeta want = caffe2::TypeMeta::fromScalarType(fg::to_scalar_type(dtype));
  std::lock_guard<std::mutex> lock(default_dtype_mutex);
  if (default_dtype_depth == 0) {
    default_dtype_prev = c10::get_default_dtype();
    c10::set_default_dtype(want);
  } else if (c10::get_default_dtype() != want) {
    throw std::runtime_error("another default dtype is already in effect");
  }
  default_dtype_depth++;
  return 0;
  FG_GUARD_END
}

void fg_torch_default_dtype_exit(void) {
  FG_GUARD_BEGIN
  std::lock_guard<std::mutex> lock(default_dtype_mutex);
  if (default_dtype_depth > 0 && --default_dtype_depth == 0) c10::set_default_dtype(default_dtype_prev);
  return FG_VOID;
  FG_GUARD_END_RETURN(FG_VOID)
}

bool fg_torch_is_grad_enabled(void) {
  FG_GUARD_BEGIN
  return at::GradMode::is_enabled();
  FG_GUARD_END_RETURN(false)
}

void fg_tensor_free(fg_tensor *t) {
  FG_GUARD_BEGIN
  delete t;
  FG_GUARD_END_RETURN(FG_VOID)
}

fg_tensor *fg_tensor_ref(const fg_tensor *t) {
  FG_GUARD_BEGIN
  return wrap(t->t);
  FG_GUARD_END_RETURN(nullptr)
}

static at::IntArrayRef dims(const int64_t *shape, int ndim) {
  if (ndim < 0 || ndim > FG_MAX_DIMS) throw std::runtime_error("bad number of dimensions");
  return at::IntArrayRef(shape, (size_t)ndim);
}

int fg_tensor_from_data(const void *data, fg_dtype dtype, const int64_t *shape, int ndim,
                        fg_tensor **out, char **err) {
  FG_GUARD_BEGIN
  auto t = torch::empty(dims(shape, ndim), at::TensorOptions().dtype(fg::to_scalar_type(dtype)));
  if (t.numel() > 0) std::memcpy(t.data_ptr(), data, (size_t)t.numel() * fg_dtype_size(dtype));
  *out = wrap(t);
  return 0;
  FG_GUARD_END
}

int fg_tensor_zeros(const int64_t *shape, int ndim, fg_dtype dtype, fg_tensor **out, char **err) {
  FG_GUARD_BEGIN
  *out = wrap(torch::zeros(dims(shape, ndim), at::TensorOptions().dtype(fg::to_scalar_type(dtype))));
  return 0;
  FG_GUARD_END
}

int fg_tensor_empty(const int64_t *shape, int ndim, fg_dtype dtype, fg_tensor **out, char **err) {
  FG_GUARD_BEGIN
  *out = wrap(torch::empty(dims(shape, ndim), at::TensorOptions().dtype(fg::to_scalar_type(dtype))));
  return 0;
  FG_GUARD_END
}

int fg_tensor_scalar(double v, fg_dtype dtype, fg_tensor **out, char **err) {
  FG_GUARD_BEGIN
  *out = wrap(torch::scalar_tensor(v, at::TensorOptions().dtype(fg::to_scalar_type(dtype))));
  return 0;
  FG_GUARD_END
}

int fg_tensor_arange(int64_t n, fg_tensor **out, char **err) {
  FG_GUARD_BEGIN
  *out = wrap(torch::arange(n, at::TensorOptions().dtype(at::kLong)));
  return 0;
  FG_GUARD_END
}

int fg_tensor_randperm(int64_t n, uint64_t seed, fg_tensor **out, char **err) {
  FG_GUARD_BEGIN
  auto gen = at::detail::createCPUGenerator(seed);
  *out = wrap(torch::randperm(n, gen, at::TensorOptions().dtype(at::kLong)));
  return 0;
  FG_GUARD_END
}

int fg_tensor_clone(const fg_tensor *t, fg_tensor **out, char **err) {
  FG_GUARD_BEGIN
  *out = wrap(t->t.detach().clone());
  return 0;
  FG_GUARD_END
}

int fg_tensor_detach(const fg_tensor *t, fg_tensor **out, char **err) {
  FG_GUARD_BEGIN
  *out = wrap(t->t.detach());
  return 0;
  FG_GUARD_END
}

int fg_tensor_ndim(const fg_tensor *t) {
  FG_GUARD_BEGIN
  return t->t.defined() ? (int)t->t.dim() : 0;
  FG_GUARD_END_RETURN(0)
}
int64_t fg_tensor_size(const fg_tensor *t, int dim) {
  FG_GUARD_BEGIN
  int nd = t->t.defined() ? (int)t->t.dim() : 0;
  if (dim < 0) dim += nd;
  return dim >= 0 && dim < nd ? t->t.size(dim) : 0;
  FG_GUARD_END_RETURN(0)
}
int64_t fg_tensor_numel(const fg_tensor *t) {
  FG_GUARD_BEGIN
  return t->t.defined() ? t->t.numel() : 0;
  FG_GUARD_END_RETURN(0)
}
fg_dtype fg_tensor_dtype(const fg_tensor *t) {
  FG_GUARD_BEGIN
  return fg::from_scalar_type(t->t.scalar_type());
  FG_GUARD_END_RETURN(FG_FLOAT32)
}
bool fg_tensor_is_defined(const fg_tensor *t) {
  FG_GUARD_BEGIN
  return t->t.defined();
  FG_GUARD_END_RETURN(false)
}

void fg_tensor_shape_str(const fg_tensor *t, char *buf, size_t len) {
  FG_GUARD_BEGIN
  std::string s = "[";
  for (int64_t i = 0; i < t->t.dim(); i++) {
    if (i) s += ", ";
    s += std::to_string(t->t.size(i));
  }
  s += "]";
  snprintf(buf, len, "%s", s.c_str());
  FG_GUARD_END_RETURN(FG_VOID)
}

int fg_tensor_item(const fg_tensor *t, double *out, char **err) {
  FG_GUARD_BEGIN
  *out = t->t.item<double>();
  return 0;
  FG_GUARD_END
}

int fg_tensor_copy_out(const fg_tensor *t, fg_dtype dtype, void *buf, size_t bytes, char **err) {
  FG_GUARD_BEGIN
  auto c = t->t.detach().to(fg::to_scalar_type(dtype)).contiguous();
  size_t need = (size_t)c.numel() * fg_dtype_size(dtype);
  if (need > bytes) throw std::runtime_error("copy_out: buffer too small");
  if (need) std::memcpy(buf, c.data_ptr(), need);
  return 0;
  FG_GUARD_END
}

void *fg_tensor_data_ptr(const fg_tensor *t) {
  FG_GUARD_BEGIN
  return t->t.defined() && t->t.is_contiguous() ? t->t.data_ptr() : nullptr;
  FG_GUARD_END_RETURN(nullptr)
}

int fg_tensor_set_requires_grad(fg_tensor *t, bool rg, char **err) {
  FG_GUARD_BEGIN
  t->t.set_requires_grad(rg);
  return 0;
  FG_GUARD_END
}

bool fg_tensor_requires_grad(const fg_tensor *t) {
  FG_GUARD_BEGIN
  return t->t.defined() && t->t.requires_grad();
  FG_GUARD_END_RETURN(false)
}

int fg_tensor_backward(const fg_tensor *loss, char **err) {
  FG_GUARD_BEGIN
  loss->t.backward();
  return 0;
  FG_GUARD_END
}

int fg_tensor_grad(const fg_tensor *t, fg_tensor **out, char **err) {
  FG_GUARD_BEGIN
  const auto &g = t->t.grad();
  *out = g.defined() ? wrap(g) : nullptr;
  return 0;
  FG_GUARD_END
}

int fg_tensor_set_grad(fg_tensor *t, const fg_tensor *grad, char **err) {
  FG_GUARD_BEGIN
  if (grad == nullptr) {
    t->t.mutable_grad() = at::Tensor();
    return 0;
  }
  if (!grad->t.sizes().equals(t->t.sizes()))
    throw std::runtime_error("gradient of shape " + c10::str(grad->t.sizes()) +
                             " for a tensor of shape " + c10::str(t->t.sizes()));
  t->t.mutable_grad() = grad->t.detach().to(t->t.scalar_type()).clone(at::MemoryFormat::Contiguous);
  return 0;
  FG_GUARD_END
}

int fg_tensor_uniform_(fg_tensor *t, double lo, double hi, char **err) {
  FG_GUARD_BEGIN
  torch::NoGradGuard ng;
  t->t.uniform_(lo, hi);
  return 0;
  FG_GUARD_END
}

int fg_tensor_normal_(fg_tensor *t, double mean, double std, char **err) {
  FG_GUARD_BEGIN
  torch::NoGradGuard ng;
  t->t.normal_(mean, std);
  return 0;
  FG_GUARD_END
}

int fg_tensor_fill_(fg_tensor *t, double v, char **err) {
  FG_GUARD_BEGIN
  torch::NoGradGuard ng;
  t->t.fill_(v);
  return 0;
  FG_GUARD_END
}

int fg_tensor_copy_(fg_tensor *dst, const fg_tensor *src, char **err) {
  FG_GUARD_BEGIN
  torch::NoGradGuard ng;
  if (!dst->t.sizes().equals(src->t.sizes())) throw std::runtime_error("copy_: shapes differ");
  dst->t.copy_(src->t);
  return 0;
  FG_GUARD_END
}

int fg_tensor_convert_(fg_tensor *t, fg_dtype dtype, char **err) {
  FG_GUARD_BEGIN
  torch::NoGradGuard ng;
  at::ScalarType st = fg::to_scalar_type(dtype);
  if (t->t.scalar_type() != st) t->t.set_data(t->t.to(st));
  return 0;
  FG_GUARD_END
}

#define FG_UNARY(name, expr)                                              \
  int name(const fg_tensor *x, fg_tensor **out, char **err) {           \
    FG_GUARD_BEGIN                                                      \
    *out = wrap(expr);                                                  \
    return 0;                                                           \
    FG_GUARD_END                                                        \
  }
#define FG_BINARY(name, expr)                                                       \
  int name(const fg_tensor *a, const fg_tensor *b, fg_tensor **out, char **err) { \
    FG_GUARD_BEGIN                                                                \
    *out = wrap(expr);                                                            \
    return 0;                                                                     \
    FG_GUARD_END                                                                  \
  }

FG_UNARY(fg_op_relu, torch::relu(x->t))
FG_UNARY(fg_op_gelu, torch::gelu(x->t))
FG_UNARY(fg_op_tanh, torch::tanh(x->t))
FG_UNARY(fg_op_sigmoid, torch::sigmoid(x->t))
FG_UNARY(fg_op_sum, x->t.sum())
FG_UNARY(fg_op_mean, x->t.mean())
FG_BINARY(fg_op_add, a->t + b->t)
FG_BINARY(fg_op_sub, a->t - b->t)
FG_BINARY(fg_op_mul, a->t * b->t)
FG_BINARY(fg_op_div, a->t / b->t)
FG_BINARY(fg_op_eq, a->t.eq(b->t))
FG_BINARY(fg_op_mse, torch::mse_loss(a->t, b->t))

int fg_op_linear(const fg_tensor *x, const fg_tensor *w, const fg_tensor *b, fg_tensor **out,
                 char **err) {
  FG_GUARD_BEGIN
  *out = wrap(b ? torch::addmm(b->t, x->t, w->t.t()) : torch::mm(x->t, w->t.t()));
  return 0;
  FG_GUARD_END
}

int fg_op_dropout(const fg_tensor *x, double p, bool train, fg_tensor **out, char **err) {
  FG_GUARD_BEGIN
  *out = wrap(torch::dropout(x->t, p, train));
  return 0;
  FG_GUARD_END
}

int fg_op_cross_entropy(const fg_tensor *logits, const fg_tensor *target, fg_tensor **out,
                        char **err) {
  FG_GUARD_BEGIN
  *out = wrap(torch::nn::functional::cross_entropy(logits->t, target->t));
  return 0;
  FG_GUARD_END
}

int fg_op_softmax(const fg_tensor *x, int64_t dim, fg_tensor **out, char **err) {
  FG_GUARD_BEGIN
  *out = wrap(torch::softmax(x->t, dim));
  return 0;
  FG_GUARD_END
}

int fg_op_argmax(const fg_tensor *x, int64_t dim, fg_tensor **out, char **err) {
  FG_GUARD_BEGIN
  *out = wrap(x->t.argmax(dim));
  return 0;
  FG_GUARD_END
}

int fg_op_topk_indices(const fg_tensor *x, int64_t k, int64_t dim, fg_tensor **out, char **err) {
  FG_GUARD_BEGIN
  *out = wrap(std::get<1>(x->t.topk(k, dim)));
  return 0;
  FG_GUARD_END
}

int fg_op_add_scalar(const fg_tensor *a, double s, fg_tensor **out, char **err) {
  FG_GUARD_BEGIN
  *out = wrap(a->t + s);
  return 0;
  FG_GUARD_END
}

int fg_op_mul_scalar(const fg_tensor *a, double s, fg_tensor **out, char **err) {
  FG_GUARD_BEGIN
  *out = wrap(a->t * s);
  return 0;
  FG_GUARD_END
}

int fg_op_sum_dim(const fg_tensor *x, int64_t dim, fg_tensor **out, char **err) {
  FG_GUARD_BEGIN
  *out = wrap(x->t.sum(dim));
  return 0;
  FG_GUARD_END
}

int fg_op_any_dim(const fg_tensor *x, int64_t dim, fg_tensor **out, char **err) {
  FG_GUARD_BEGIN
  *out = wrap(x->t.any(dim));
  return 0;
  FG_GUARD_END
}

int fg_op_to_dtype(const fg_tensor *x, fg_dtype dtype, fg_tensor **out, char **err) {
  FG_GUARD_BEGIN
  *out = wrap(x->t.to(fg::to_scalar_type(dtype)));
  return 0;
  FG_GUARD_END
}

int fg_op_reshape(const fg_tensor *x, const int64_t *shape, int ndim, fg_tensor **out, char **err) {
  FG_GUARD_BEGIN
  *out = wrap(x->t.reshape(dims(shape, ndim)));
  return 0;
  FG_GUARD_END
}

int fg_op_flatten(const fg_tensor *x, int64_t start_dim, fg_tensor **out, char **err) {
  FG_GUARD_BEGIN
  *out = wrap(x->t.flatten(start_dim));
  return 0;
  FG_GUARD_END
}

int fg_op_unsqueeze(const fg_tensor *x, int64_t dim, fg_tensor **out, char **err) {
  FG_GUARD_BEGIN
  *out = wrap(x->t.unsqueeze(dim));
  return 0;
  FG_GUARD_END
}

int fg_op_index_select(const fg_tensor *x, int64_t dim, const fg_tensor *index, fg_tensor **out,
                       char **err) {
  FG_GUARD_BEGIN
  *out = wrap(x->t.index_select(dim, index->t));
  return 0;
  FG_GUARD_END
}

int fg_op_slice(const fg_tensor *x, int64_t start, int64_t end, fg_tensor **out, char **err) {
  FG_GUARD_BEGIN
  *out = wrap(x->t.slice(0, start, end));
  return 0;
  FG_GUARD_END
}

static std::vector<at::Tensor> tensor_list(const fg_tensor *const *ts, size_t n) {
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (size_t i = 0; i < n; i++) v.push_back(ts[i]->t);
  return v;
}

int fg_op_cat(const fg_tensor *const *ts, size_t n, int64_t dim, fg_tensor **out, char **err) {
  FG_GUARD_BEGIN
  *out = wrap(torch::cat(tensor_list(ts, n), dim));
  return 0;
  FG_GUARD_END
}

int fg_op_stack(const fg_tensor *const *ts, size_t n, int64_t dim, fg_tensor **out, char **err) {
  FG_GUARD_BEGIN
  *out = wrap(torch::stack(tensor_list(ts, n), dim));
  return 0;
  FG_GUARD_END
}

int fg_op_allclose(const fg_tensor *a, const fg_tensor *b, double rtol, double atol, bool *out,
                   char **err) {
  FG_GUARD_BEGIN
  *out = a->t.sizes().equals(b->t.sizes()) && torch::allclose(a->t, b->t, rtol, atol);
  return 0;
  FG_GUARD_END
}

}  // extern "C"
