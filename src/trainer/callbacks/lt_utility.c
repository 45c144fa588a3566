/* lightning_template's utility callbacks that set up the Python process
 * (lightning_template/utils/callbacks/): SetPrecisionAndCudnnCallback,
 * SetWandbLoggerCallback, CustomReprCallback, SetSharingStrategyCallback.
 * Their arguments are checked as Python types them; what each would change
 * does not exist in a fulgur run (CUDA and cuDNN flags on a CPU-only
 * libtorch, a W&B run, Python's reprs, DataLoader worker processes), so
 * each says why it does nothing, once per run, at setup (a warning event
 * naming the config line). SetPrecisionAndCudnnCallback's
 * deterministic_debug_mode "default" is what trainer.deterministic already
 * does and says nothing. */
#include <stdlib.h>
#include <string.h>

#include "fulgur/config.h"
#include "fulgur/error.h"
#include "trainer/callbacks/callback.h"
#include "util/xalloc.h"

typedef struct {
  fg_callback base;
  char *warning; /* NULL: nothing to say */
} utility_cb;

static int setup(fg_callback *cb, fg_loop *l, fg_stage stage, char **err) {
  (void)stage, (void)err;
  const utility_cb *u = (const utility_cb *)cb;
  if (u->warning && l->rank_zero) fg_events_log(l->events, FG_LOG_WARNING, "%s", u->warning);
  return 0;
}

static void utility_free(fg_callback *cb) {
  free(((utility_cb *)cb)->warning);
  free(cb);
}

static const fg_callback_ops precision_ops = {.name = "SetPrecisionAndCudnnCallback", .setup = setup,
                                              .free = utility_free};
static const fg_callback_ops wandb_ops = {.name = "SetWandbLoggerCallback", .setup = setup,
                                          .free = utility_free};
static const fg_callback_ops repr_ops = {.name = "CustomReprCallback", .setup = setup,
                                         .free = utility_free};
static const fg_callback_ops sharing_ops = {.name = "SetSharingStrategyCallback", .setup = setup,
                                            .free = utility_free};

/* "<file>:<line>:<col>: <keypath>: <why>" at the callback's init_args. */
static void *make(const fg_callback_ops *ops, const fg_node *args, const char *keypath,
                  char *why) {
  utility_cb *u = fg__xcalloc(1, sizeof *u);
  u->base.ops = ops;
  if (why) {
    u->warning = fg_config_warning(args, keypath, "%s", why);
    free(why);
  }
  return &u->base;
}

static bool set(const fg_node *v) { return v && fg_node_kind_of(v) != FG_NODE_NULL; }

/* ---- SetPrecisionAndCudnnCallback ------------------------------------------------ */

static int check_matmul_precision(const fg_node *v, const char *k, char **err) {
  const char *s = fg_node_str(v);
  if (s == NULL || strcmp(s, "highest") == 0 || strcmp(s, "high") == 0 || strcmp(s, "medium") == 0)
    return 0;
  return fg_config_error(err, v, k, "expected 'highest', 'high' or 'medium' (torch.set_float32_matmul_precision), got '%s'", s);
}

/* torch.set_deterministic_debug_mode: "default"/0, "warn"/1, "error"/2. */
static int debug_mode_of(const fg_node *v) {
  if (fg_node_kind_of(v) == FG_NODE_INT) return (int)fg_node_int(v);
  const char *s = fg_node_str(v);
  return strcmp(s, "default") == 0 ? 0 : strcmp(s, "warn") == 0 ? 1 : strcmp(s, "error") == 0 ? 2 : -1;
}
static int check_debug_mode(const fg_node *v, const char *k, char **err) {
  if (!set(v)) return 0;
  int mode = debug_mode_of(v);
  if (mode >= 0 && mode <= 2) return 0;
  return fg_config_error(err, v, k,
                         "expected 'default', 'warn', 'error' or 0, 1, 2 (torch.set_deterministic_debug_mode)");
}

static const fg_param precision_params[] = {
    {"float32_matmul_precision", FG_T_NULL | FG_T_STRING, "null", "torch.set_float32_matmul_precision (CUDA TF32: no effect on CPU)", check_matmul_precision, 0},
    {"allow_fp16_reduced_precision_reduction", FG_T_NULL | FG_T_BOOL, "null", "cuBLAS fp16 reductions (no effect on CPU)", NULL, 0},
    {"deterministic_debug_mode", FG_T_NULL | FG_T_STRING | FG_T_INT, "null", "torch.set_deterministic_debug_mode (trainer.deterministic decides)", check_debug_mode, 0},
    {"cudnn_enabled", FG_T_NULL | FG_T_BOOL, "null", "torch.backends.cudnn.enabled (no cuDNN on CPU)", NULL, 0},
};

static int precision_create(const fg_class *cls, const fg_node *a, const char *keypath, void **out,
                            char **err) {
  (void)cls, (void)err;
  /* The CUDA switches the config set, in one sentence. */
  char *cuda = NULL;
  int n_cuda = 0;
  static const char *const cuda_keys[] = {"float32_matmul_precision",
                                          "allow_fp16_reduced_precision_reduction", "cudnn_enabled"};
  for (size_t i = 0; i < sizeof cuda_keys / sizeof cuda_keys[0]; i++) {
    if (!set(fg_node_get(a, cuda_keys[i]))) continue;
    char *joined = cuda ? fg__xasprintf("%s, %s", cuda, cuda_keys[i]) : fg__xstrdup(cuda_keys[i]);
    free(cuda);
    cuda = joined;
    n_cuda++;
  }
  const fg_node *dm = fg_node_get(a, "deterministic_debug_mode");
  bool debug = set(dm) && debug_mode_of(dm) != 0;
  char *why = NULL;
  if (cuda || debug)
    why = fg__xasprintf(
        "SetPrecisionAndCudnnCallback: %s%s%s%s",
        cuda ? cuda : "",
        !cuda ? ""
        : n_cuda > 1 ? " have no effect: they set CUDA's TF32 and fp16 matmul modes and cuDNN, and "
                       "this libtorch is CPU-only (its float32 matmuls are always full precision)"
                     : " has no effect: it is a CUDA or cuDNN switch, and this libtorch is CPU-only "
                       "(its float32 matmuls are always full precision)",
        cuda && debug ? "; " : "",
        debug ? "deterministic_debug_mode has no effect: Lightning's Trainer sets "
                "use_deterministic_algorithms from trainer.deterministic after the callbacks are "
                "built; set trainer.deterministic instead"
              : "");
  free(cuda);
  *out = make(&precision_ops, a, keypath, why);
  return 0;
}

static const char *const precision_aliases[] = {
    "SetPrecisionAndCudnnCallback",
    "lightning_template.utils.callbacks.set_precision_and_cudnn_callback.SetPrecisionAndCudnnCallback",
    NULL};

const fg_class fg__set_precision_and_cudnn_class = {
    .name = "fulgur.callbacks.SetPrecisionAndCudnnCallback", .aliases = precision_aliases,
    .kind = FG_KIND_CALLBACK, .params = precision_params,
    .n_params = sizeof precision_params / sizeof precision_params[0], .create = precision_create,
    .destroy = fg__callback_free};

/* ---- SetWandbLoggerCallback ----------------------------------------------------- */

static const fg_param wandb_params[] = {
    {"log_code_cfg", FG_T_NULL | FG_T_BOOL | FG_T_MAP, "null", "code files a WandbLogger uploads", NULL, 0},
    {"watch_model_cfg", FG_T_NULL | FG_T_BOOL | FG_T_MAP, "null", "wandb.watch arguments", NULL, 0},
};

static int wandb_create(const fg_class *cls, const fg_node *a, const char *keypath, void **out,
                        char **err) {
  (void)cls, (void)err;
  /* Python acts only when trainer.logger is a WandbLogger; fulgur has none
   * (service loggers are config errors), so the callback never acts. */
  *out = make(&wandb_ops, a, keypath,
              fg__xstrdup("SetWandbLoggerCallback does nothing: it watches the model and logs the "
                          "code through a WandbLogger, and fulgur's loggers are TensorBoardLogger "
                          "and CSVLogger"));
  return 0;
}

static const char *const wandb_aliases[] = {
    "SetWandbLoggerCallback",
    "lightning_template.utils.callbacks.set_wandb_logger_callback.SetWandbLoggerCallback", NULL};

const fg_class fg__set_wandb_logger_class = {
    .name = "fulgur.callbacks.SetWandbLoggerCallback", .aliases = wandb_aliases,
    .kind = FG_KIND_CALLBACK, .params = wandb_params,
    .n_params = sizeof wandb_params / sizeof wandb_params[0], .create = wandb_create,
    .destroy = fg__callback_free};

/* ---- CustomReprCallback --------------------------------------------------------- */

static const fg_param repr_params[] = {
    {"classes", FG_T_NULL | FG_T_SEQ, "null", "Python classes whose repr shows their shape (null: torch.Tensor)", NULL, FG_T_STRING},
};

static int repr_create(const fg_class *cls, const fg_node *a, const char *keypath, void **out,
                       char **err) {
  (void)cls, (void)err;
  *out = make(&repr_ops, a, keypath,
              fg__xstrdup("CustomReprCallback does nothing: it puts the shape in front of Python's "
                          "repr of tensors, and a fulgur run prints no Python objects"));
  return 0;
}

static const char *const repr_aliases[] = {
    "CustomReprCallback", "lightning_template.utils.callbacks.custom_repr.CustomReprCallback", NULL};

const fg_class fg__custom_repr_class = {
    .name = "fulgur.callbacks.CustomReprCallback", .aliases = repr_aliases,
    .kind = FG_KIND_CALLBACK, .params = repr_params,
    .n_params = sizeof repr_params / sizeof repr_params[0], .create = repr_create,
    .destroy = fg__callback_free};

/* ---- SetSharingStrategyCallback -------------------------------------------------- */

static const fg_param sharing_params[] = {
    {"strategy", FG_T_NULL | FG_T_STRING, "file_descriptor", "torch.multiprocessing sharing strategy", NULL, 0},
};

static int sharing_create(const fg_class *cls, const fg_node *a, const char *keypath, void **out,
                          char **err) {
  (void)cls, (void)err;
  const char *s = fg_node_str(fg_node_get(a, "strategy"));
  /* Python warns about a strategy Linux does not have; say that too. */
  bool known = s && (strcmp(s, "file_descriptor") == 0 || strcmp(s, "file_system") == 0);
  *out = make(&sharing_ops, a, keypath,
              fg__xasprintf("SetSharingStrategyCallback does nothing: it chooses how DataLoader "
                            "worker processes share tensors, and fulgur's workers are threads of "
                            "one process%s%s%s",
                            known ? "" : " (and '", known ? "" : (s ? s : "null"),
                            known ? "" : "' is not one of Linux's strategies, file_descriptor and file_system)"));
  return 0;
}

static const char *const sharing_aliases[] = {
    "SetSharingStrategyCallback",
    "lightning_template.utils.callbacks.set_sharing_strategy_callback.SetSharingStrategyCallback",
    NULL};

const fg_class fg__set_sharing_strategy_class = {
    .name = "fulgur.callbacks.SetSharingStrategyCallback", .aliases = sharing_aliases,
    .kind = FG_KIND_CALLBACK, .params = sharing_params,
    .n_params = sizeof sharing_params / sizeof sharing_params[0], .create = sharing_create,
    .destroy = fg__callback_free};
