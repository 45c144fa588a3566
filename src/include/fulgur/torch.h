/* The C face of libtorch: opaque tensor and optimizer handles and the
 * operations fulgur needs. Implemented in src/torch/bridge.cpp, the only C++
 * in the tree; every libtorch exception is caught there and comes back as
 * FG_ETORCH with the exception's message in *err.
 *
 * Ownership: every function that hands out a fg_tensor* (an out-parameter)
 * gives the caller a new handle to free with fg_tensor_free(). Handles are
 * cheap (a reference to shared storage, like at::Tensor); freeing one never
 * invalidates another. Functions taking `const fg_tensor *` borrow.
 *
 * Threads: handles may move between threads; one handle must not be used
 * by two threads at once. Grad mode is per thread, as in libtorch.
 */
#ifndef FULGUR_TORCH_H
#define FULGUR_TORCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fg_tensor fg_tensor;
typedef struct fg_optimizer fg_optimizer;
typedef struct fg_value fg_value;

#define FG_MAX_DIMS 8

typedef enum {
  FG_FLOAT32 = 0,
  FG_FLOAT64,
  FG_INT64,
  FG_INT32,
  FG_UINT8,
  FG_BOOL,
  FG_BFLOAT16, /* bf16 autocast's compute dtype, and bf16-true's weights */
} fg_dtype;

/* Size in bytes of one element of dtype. */
size_t fg_dtype_size(fg_dtype dtype);
/* "float32", "int64", ... */
const char *fg_dtype_name(fg_dtype dtype);
/* True for float32, float64 and bfloat16. */
bool fg_dtype_is_floating(fg_dtype dtype);

/* ---- process-wide settings ------------------------------------------- */

/* Sets libtorch's intra-op threads and OpenBLAS's threads together (both
 * pools active at once spin against each other). n >= 1. */
int fg_torch_set_num_threads(int n, char **err);
int fg_torch_get_num_threads(void);
/* Seeds libtorch's global CPU generator. */
void fg_torch_manual_seed(uint64_t seed);
/* The global CPU generator's state, what Python's torch.get_rng_state()
 * returns (a uint8 tensor; the caller frees *out), and back, as
 * torch.set_rng_state() takes it (a state of another size or format is
 * FG_ETORCH). Dropout draws from this generator, so a resumed run restores
 * it to draw what an uninterrupted run would. */
int fg_torch_get_rng_state(fg_tensor **out, char **err);
int fg_torch_set_rng_state(const fg_tensor *state, char **err);
/* Grad mode for the calling thread; returns the previous setting. */
bool fg_torch_set_grad_enabled(bool enabled);
bool fg_torch_is_grad_enabled(void);

/* CPU autocast, as torch.autocast("cpu", dtype=...) in PyTorch: between
 * enter and exit, ops on this thread run in autocast's CPU policy
 * (matmuls and convolutions in `dtype`, precision-sensitive ops such as
 * losses and reductions in float32); the tensors the caller holds keep
 * their dtypes. Per thread, as grad mode. Regions nest; the casts of leaf
 * tensors (the parameters) are cached within the outermost region and
 * dropped when it ends, so an optimizer step between regions is seen.
 * fg_autocast_prev holds what exit restores (libtorch's state, opaque). */
typedef struct {
  bool enabled;
  int8_t scalar_type;
} fg_autocast_prev;
int fg_torch_autocast_enter(fg_dtype dtype, fg_autocast_prev *prev, char **err);
/* Can't fail. */
void fg_torch_autocast_exit(const fg_autocast_prev *prev);

/* The dtype factories use when not given one, as
 * torch.set_default_dtype(): what Lightning's bf16-true forward context
 * sets, so a tensor a model's forward creates (torch.zeros(n)) is bf16.
 * libtorch keeps it per process, not per thread, so regions are counted:
 * the first enter sets it, the last exit restores what was there. */
int fg_torch_default_dtype_enter(fg_dtype dtype, char **err);
void fg_torch_default_dtype_exit(void);

/* ---- creation and lifetime ------------------------------------------- */

void fg_tensor_free(fg_tensor *t); /* NULL is a no-op */
/* A new handle to the same storage (no copy). Never fails. */
fg_tensor *fg_tensor_ref(const fg_tensor *t);
/* Copies `data` (contiguous, row-major) into a new tensor. */
int fg_tensor_from_data(const void *data, fg_dtype dtype, const int64_t *shape,
                        int ndim, fg_tensor **out, char **err);
int fg_tensor_zeros(const int64_t *shape, int ndim, fg_dtype dtype,
                    fg_tensor **out, char **err);
int fg_tensor_empty(const int64_t *shape, int ndim, fg_dtype dtype,
                    fg_tensor **out, char **err);
int fg_tensor_scalar(double v, fg_dtype dtype, fg_tensor **out, char **err);
/* 0..n-1 as int64. */
int fg_tensor_arange(int64_t n, fg_tensor **out, char **err);
/* A random permutation of 0..n-1 (int64) drawn from a generator seeded
 * with `seed`, independent of the global generator. */
int fg_tensor_randperm(int64_t n, uint64_t seed, fg_tensor **out, char **err);
/* Deep copy (new storage, detached from autograd). */
int fg_tensor_clone(const fg_tensor *t, fg_tensor **out, char **err);
/* A view sharing storage, cut off from autograd. */
int fg_tensor_detach(const fg_tensor *t, fg_tensor **out, char **err);

/* ---- inspection (never fail) ------------------------------------------ */

int fg_tensor_ndim(const fg_tensor *t);
int64_t fg_tensor_size(const fg_tensor *t, int dim); /* negative dim counts back */
int64_t fg_tensor_numel(const fg_tensor *t);
fg_dtype fg_tensor_dtype(const fg_tensor *t);
bool fg_tensor_is_defined(const fg_tensor *t);
/* Writes "[64, 784]" into buf (always NUL-terminated). */
void fg_tensor_shape_str(const fg_tensor *t, char *buf, size_t len);

/* ---- data access ------------------------------------------------------ */

/* The value of a one-element tensor as a double. */
int fg_tensor_item(const fg_tensor *t, double *out, char **err);
/* Copies the elements, converted to `dtype`, row-major into buf, which must
 * hold numel * fg_dtype_size(dtype) bytes (checked against `bytes`). */
int fg_tensor_copy_out(const fg_tensor *t, fg_dtype dtype, void *buf,
                       size_t bytes, char **err);
/* Pointer to the first element of a contiguous tensor; NULL when the tensor
 * is not contiguous. Valid while the storage lives. */
void *fg_tensor_data_ptr(const fg_tensor *t);

/* ---- autograd ---------------------------------------------------------- */

int fg_tensor_set_requires_grad(fg_tensor *t, bool requires_grad, char **err);
bool fg_tensor_requires_grad(const fg_tensor *t);
int fg_tensor_backward(const fg_tensor *loss, char **err);
/* *out = NULL when the tensor has no gradient. */
int fg_tensor_grad(const fg_tensor *t, fg_tensor **out, char **err);
/* Sets t's gradient to a copy of grad (same shape; converted to t's dtype),
 * as a resumed run restores gradients accumulated before a pause; grad
 * NULL clears it (None). Later backward passes add to it. */
int fg_tensor_set_grad(fg_tensor *t, const fg_tensor *grad, char **err);

/* ---- in-place updates (used for init and loading) --------------------- */

int fg_tensor_uniform_(fg_tensor *t, double lo, double hi, char **err);
int fg_tensor_normal_(fg_tensor *t, double mean, double std, char **err);
int fg_tensor_fill_(fg_tensor *t, double v, char **err);
/* dst <- src under no-grad (shapes must match, dtype converted). */
int fg_tensor_copy_(fg_tensor *dst, const fg_tensor *src, char **err);
/* t's data converted to dtype in place, as Module.to(dtype) does to a
 * parameter (param.data = param.to(dtype)): every handle to t, the
 * model's own included, sees the new dtype; requires_grad is kept. */
int fg_tensor_convert_(fg_tensor *t, fg_dtype dtype, char **err);

/* ---- operations (each returns a new handle in *out) -------------------- */

/* x @ w^T + b, as torch.nn.functional.linear; b may be NULL. */
int fg_op_linear(const fg_tensor *x, const fg_tensor *w, const fg_tensor *b,
                 fg_tensor **out, char **err);
int fg_op_relu(const fg_tensor *x, fg_tensor **out, char **err);
int fg_op_gelu(const fg_tensor *x, fg_tensor **out, char **err);
int fg_op_tanh(const fg_tensor *x, fg_tensor **out, char **err);
int fg_op_sigmoid(const fg_tensor *x, fg_tensor **out, char **err);
int fg_op_dropout(const fg_tensor *x, double p, bool train, fg_tensor **out,
                  char **err);
/* Mean cross entropy of logits [N, C] against int64 targets [N]. */
int fg_op_cross_entropy(const fg_tensor *logits, const fg_tensor *target,
                        fg_tensor **out, char **err);
int fg_op_mse(const fg_tensor *a, const fg_tensor *b, fg_tensor **out,
              char **err);
int fg_op_softmax(const fg_tensor *x, int64_t dim, fg_tensor **out, char **err);
int fg_op_argmax(const fg_tensor *x, int64_t dim, fg_tensor **out, char **err);
/* Indices of the k largest along dim (int64). */
int fg_op_topk_indices(const fg_tensor *x, int64_t k, int64_t dim,
                       fg_tensor **out, char **err);
int fg_op_add(const fg_tensor *a, const fg_tensor *b, fg_tensor **out,
              char **err);
int fg_op_sub(const fg_tensor *a, const fg_tensor *b, fg_tensor **out,
              char **err);
int fg_op_mul(const fg_tensor *a, const fg_tensor *b, fg_tensor **out,
              char **err);
int fg_op_div(const fg_tensor *a, const fg_tensor *b, fg_tensor **out,
              char **err);
int fg_op_add_scalar(const fg_tensor *a, double s, fg_tensor **out, char **err);
int fg_op_mul_scalar(const fg_tensor *a, double s, fg_tensor **out, char **err);
/* Element-wise a == b as bool. */
int fg_op_eq(const fg_tensor *a, const fg_tensor *b, fg_tensor **out,
             char **err);
int fg_op_sum(const fg_tensor *x, fg_tensor **out, char **err);
int fg_op_mean(const fg_tensor *x, fg_tensor **out, char **err);
/* Sum over one dim (keepdim false). */
int fg_op_sum_dim(const fg_tensor *x, int64_t dim, fg_tensor **out, char **err);
/* any(dim) of a bool tensor. */
int fg_op_any_dim(const fg_tensor *x, int64_t dim, fg_tensor **out, char **err);
int fg_op_to_dtype(const fg_tensor *x, fg_dtype dtype, fg_tensor **out,
                   char **err);
int fg_op_reshape(const fg_tensor *x, const int64_t *shape, int ndim,
                  fg_tensor **out, char **err);
/* Flattens dims start_dim..end into one. */
int fg_op_flatten(const fg_tensor *x, int64_t start_dim, fg_tensor **out,
                  char **err);
/* Adds a dim of size 1 at `dim`. */
int fg_op_unsqueeze(const fg_tensor *x, int64_t dim, fg_tensor **out,
                    char **err);
int fg_op_index_select(const fg_tensor *x, int64_t dim, const fg_tensor *index,
                       fg_tensor **out, char **err);
/* Rows start..end-1 along dim 0 (a view). */
int fg_op_slice(const fg_tensor *x, int64_t start, int64_t end, fg_tensor **out,
                char **err);
int fg_op_cat(const fg_tensor *const *ts, size_t n, int64_t dim,
              fg_tensor **out, char **err);
int fg_op_stack(const fg_tensor *const *ts, size_t n, int64_t dim,
                fg_tensor **out, char **err);
/* True when every element of a and b is within atol + rtol*|b|. */
int fg_op_allclose(const fg_tensor *a, const fg_tensor *b, double rtol,
                   double atol, bool *out, char **err);

/* ---- optimizers --------------------------------------------------------- */

typedef enum { FG_OPTIM_SGD = 0, FG_OPTIM_ADAM, FG_OPTIM_ADAMW } fg_optim_kind;

/* One parameter group with PyTorch's option names. Options a kind does not
 * use are ignored (SGD ignores betas, Adam ignores momentum). */
typedef struct {
  fg_tensor *const *params; /* borrowed; the optimizer keeps its own refs */
  size_t n_params;
  double lr;
  double momentum;     /* SGD */
  double dampening;    /* SGD */
  bool nesterov;       /* SGD */
  double weight_decay; /* all */
  double beta1, beta2; /* Adam, AdamW */
  double eps;          /* Adam, AdamW */
  bool amsgrad;        /* Adam, AdamW */
} fg_optim_group;

int fg_optimizer_create(fg_optim_kind kind, const fg_optim_group *groups,
                        size_t n_groups, fg_optimizer **out, char **err);
void fg_optimizer_free(fg_optimizer *opt); /* NULL is a no-op */
int fg_optimizer_step(fg_optimizer *opt, char **err);
/* Sets gradients to None, as PyTorch 2's default set_to_none=True. */
int fg_optimizer_zero_grad(fg_optimizer *opt, char **err);
/* torch.nn.utils.clip_grad_norm_ (2-norm over every parameter with a
 * gradient; *total_norm, may be NULL, gets the norm before clipping) and
 * clip_grad_value_, over the optimizer's parameters as Lightning does. */
int fg_optimizer_clip_grad_norm(fg_optimizer *opt, double max_norm, double *total_norm,
                                char **err);
int fg_optimizer_clip_grad_value(fg_optimizer *opt, double clip_value, char **err);
/* at::globalContext().setDeterministicAlgorithms. */
int fg_torch_set_deterministic(bool on, char **err);
/* The number of parameter groups; 0 only if the optimizer is broken. */
size_t fg_optimizer_num_groups(const fg_optimizer *opt);
/* A group's lr, and SGD's momentum or beta1 of Adam/AdamW (what OneCycleLR
 * cycles). A group index >= fg_optimizer_num_groups is FG_ETORCH ("parameter
 * group 3 is out of range: the optimizer has 1") and changes nothing. */
int fg_optimizer_get_lr(const fg_optimizer *opt, size_t group, double *out, char **err);
int fg_optimizer_set_lr(fg_optimizer *opt, size_t group, double lr, char **err);
int fg_optimizer_get_momentum(const fg_optimizer *opt, size_t group, double *out, char **err);
int fg_optimizer_set_momentum(fg_optimizer *opt, size_t group, double m, char **err);
/* The optimizer's state_dict() in PyTorch's layout:
 * {"state": {0: {"momentum_buffer": T} | {"step": T, "exp_avg": T,
 * "exp_avg_sq": T}, ...}, "param_groups": [{"lr": .., ..., "params": [0, 1,
 * ...]}]}. Parameter indices count across groups in order, as in PyTorch.
 * The dict keys of "state" are ints, kept as strings in fg_value ("0").
 * The caller frees *out. */
int fg_optimizer_state_dict(const fg_optimizer *opt, fg_value **out,
                            char **err);
/* Restores what fg_optimizer_state_dict produced (or PyTorch wrote). */
int fg_optimizer_load_state_dict(fg_optimizer *opt, const fg_value *state,
                                 char **err);

/* ---- serialization ------------------------------------------------------ */

/* Serializes a value the way torch.save does (zip archive with data.pkl),
 * so Python's torch.load reads it. Dict keys that are decimal integers
 * under a dict named "state" stay strings; fulgur's checkpoint layer decides
 * key types. *buf is malloc'd; the caller frees it. */
int fg_value_pickle(const fg_value *v, char **buf, size_t *len, char **err);
/* Reads a torch.save / fg_value_pickle archive. Python's OrderedDict (what
 * every state_dict() is) is read as a dict. Non-string dict keys (ints)
 * become their decimal string. */
int fg_value_unpickle(const char *buf, size_t len, fg_value **out, char **err);

#ifdef __cplusplus
}
#endif
#endif
