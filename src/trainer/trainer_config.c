/* The `trainer` section: Lightning's option names and defaults, the
 * callback list and the CSVLogger (TensorBoardLogger: loggers.c). The
 * callbacks are in callbacks/. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fulgur/error.h"
#include "fulgur/registry.h"
#include "trainer/callbacks/callback.h"
#include "registry/builtins.h"
#include "trainer/trainer.h"
#include "util/xalloc.h"

static int check_int_min(const fg_node *v, const char *keypath, int64_t min, char **err) {
  if (fg_node_kind_of(v) == FG_NODE_INT && fg_node_int(v) < min)
    return fg_config_error(err, v, keypath, "expected an integer >= %lld, got %lld",
                           (long long)min, (long long)fg_node_int(v));
  return 0;
}
int fg__check_count(const fg_node *v, const char *k, char **err) {
  return check_int_min(v, k, -1, err);
}
#define check_epochs fg__check_count
static int check_positive(const fg_node *v, const char *k, char **err) {
  return check_int_min(v, k, 1, err);
}
static int check_limit(const fg_node *v, const char *k, char **err) {
  if (fg_node_kind_of(v) == FG_NODE_FLOAT && !(fg_node_float(v) >= 0 && fg_node_float(v) <= 1))
    return fg_config_error(err, v, k, "expected a fraction in [0.0, 1.0] or a batch count, got %g",
                           fg_node_float(v));
  return check_int_min(v, k, 0, err);
}
/* Lightning's precision values and what this build does with each: the
 * one table (a value is either run as is, or an error naming why and
 * what to use instead). */
static const struct {
  const char *name;
  const char *why; /* NULL: supported */
  fg_precision runs_as;
} precisions[] = {
    {"32", NULL, FG_PRECISION_32},
    {"32-true", NULL, FG_PRECISION_32},
    {"16-mixed", "CPU has no fp16 autocast in this build"},
    {"16", "CPU has no fp16 autocast in this build"},
    {"16-true", "this build has no fp16 CPU kernels for training"},
    /* Lightning 2.x reads "bf16" as "bf16-mixed". */
    {"bf16-mixed", NULL, FG_PRECISION_BF16_MIXED},
    {"bf16", NULL, FG_PRECISION_BF16_MIXED},
    {"bf16-true", NULL, FG_PRECISION_BF16_TRUE},
    {"64", "float64 training is not in this build"},
    {"64-true", "float64 training is not in this build"},
    {"transformer-engine", "Transformer Engine needs CUDA"},
    {"transformer-engine-float16", "Transformer Engine needs CUDA"},
};
static int check_precision(const fg_node *v, const char *k, char **err) {
  if (fg_node_kind_of(v) == FG_NODE_NULL) return 0; /* Lightning 2.1+: null is 32-true */
  char num[32];
  const char *s = num;
  if (fg_node_kind_of(v) == FG_NODE_INT)
    snprintf(num, sizeof num, "%lld", (long long)fg_node_int(v));
  else
    s = fg_node_str(v);
  for (size_t i = 0; i < sizeof precisions / sizeof precisions[0]; i++) {
    if (strcmp(precisions[i].name, s) != 0) continue;
    if (precisions[i].why == NULL) return 0;
    return fg_config_error(err, v, k, "'%s': %s; use precision: 32-true", s, precisions[i].why);
  }
  return fg_config_error(err, v, k, "'%s' is not one of Lightning's precision values; use 32-true", s);
}
/* A checked precision value (NULL: 32-true) as the loops run it. */
static fg_precision precision_of(const fg_node *v) {
  if (v == NULL || fg_node_kind_of(v) != FG_NODE_STRING) return FG_PRECISION_32;
  for (size_t i = 0; i < sizeof precisions / sizeof precisions[0]; i++)
    if (strcmp(precisions[i].name, fg_node_str(v)) == 0) return precisions[i].runs_as;
  return FG_PRECISION_32;
}
static int check_accelerator(const fg_node *v, const char *k, char **err) {
  const char *s = fg_node_str(v);
  if (strcmp(s, "cpu") == 0 || strcmp(s, "auto") == 0) return 0;
  static const char *const devices[] = {"gpu", "cuda", "mps", "tpu", "hpu", "ipu", "xla"};
  for (size_t i = 0; i < sizeof devices / sizeof devices[0]; i++)
    if (strcmp(s, devices[i]) == 0)
      return fg_config_error(err, v, k,
                             "'%s' is not available: this build's libtorch is CPU-only; use accelerator: cpu",
                             s);
  return fg_config_error(err, v, k, "expected 'cpu' or 'auto' (this libtorch is CPU-only), got '%s'", s);
}
static int check_null(const fg_node *v, const char *k, char **err) {
  if (fg_node_kind_of(v) == FG_NODE_NULL) return 0;
  return fg_config_error(err, v, k, "accepts only null here (precision plugins, cluster environments and "
                                    "checkpoint IO plugins are Python objects); remove it");
}
static int check_fast_dev_run(const fg_node *v, const char *k, char **err) {
  if (fg_node_kind_of(v) == FG_NODE_INT && fg_node_int(v) < 0)
    return fg_config_error(err, v, k, "fast_dev_run=%lld is not a valid configuration. It should be >= 0",
                           (long long)fg_node_int(v));
  return 0;
}
/* profiler: Lightning's string names; the profiler classes are not
 * objects here (their string is the way to ask for them). */
static int check_profiler(const fg_node *v, const char *k, char **err) {
  if (fg_node_kind_of(v) == FG_NODE_NULL || fg_node_kind_of(v) == FG_NODE_MAP)
    return 0; /* an object: fg__profiler_config_check */
  if (fg_node_kind_of(v) != FG_NODE_STRING)
    return fg_config_error(err, v, k, "expected null, 'simple', 'pytorch' or a profiler object");
  const char *s = fg_node_str(v);
  if (strcmp(s, "simple") == 0 || strcmp(s, "pytorch") == 0) return 0;
  if (strcmp(s, "advanced") == 0 || strcmp(s, "xla") == 0)
    return fg_config_error(err, v, k, "'%s' profiles Python (cProfile) or XLA, neither of which runs here; "
                                      "use 'simple' or 'pytorch'", s);
  return fg_config_error(err, v, k, "expected 'simple' or 'pytorch', got '%s'", s);
}
static int check_null_or_count(const fg_node *v, const char *k, char **err) {
  return fg_node_kind_of(v) == FG_NODE_NULL ? 0 : check_int_min(v, k, 0, err);
}
static int check_null_or_positive_count(const fg_node *v, const char *k, char **err) {
  return fg_node_kind_of(v) == FG_NODE_NULL ? 0 : check_int_min(v, k, 1, err);
}
static int check_null_or_epochs(const fg_node *v, const char *k, char **err) {
  return fg_node_kind_of(v) == FG_NODE_NULL ? 0 : check_int_min(v, k, -1, err);
}

/* max_time as Lightning's Timer reads it: "DD:HH:MM:SS", or a dict of
 * timedelta's fields. *secs: the duration in seconds. */
static int max_time_seconds(const fg_node *v, const char *k, double *secs, char **err) {
  *secs = NAN;
  if (fg_node_kind_of(v) == FG_NODE_NULL) return 0;
  if (fg_node_kind_of(v) == FG_NODE_STRING) {
    const char *s = fg_node_str(v);
    long long f[4];
    int used = 0;
    if (sscanf(s, " %lld:%lld:%lld:%lld %n", &f[0], &f[1], &f[2], &f[3], &used) != 4 ||
        s[used] != '\0' || f[0] < 0 || f[1] < 0 || f[2] < 0 || f[3] < 0)
      return fg_config_error(err, v, k, "expected \"DD:HH:MM:SS\" (e.g. \"00:12:00:00\"), got '%s'", s);
    *secs = (double)f[0] * 86400 + (double)f[1] * 3600 + (double)f[2] * 60 + (double)f[3];
    return 0;
  }
  static const struct {
    const char *name;
    double secs;
  } units[] = {{"weeks", 604800}, {"days", 86400}, {"hours", 3600}, {"minutes", 60},
               {"seconds", 1},    {"milliseconds", 1e-3}, {"microseconds", 1e-6}};
  double total = 0;
  for (size_t i = 0; i < fg_node_len(v); i++) {
    const char *key = fg_node_key_at(v, i);
    const fg_node *x = fg_node_value_at(v, i);
    size_t u = 0;
    while (u < sizeof units / sizeof units[0] && strcmp(units[u].name, key) != 0) u++;
    if (u == sizeof units / sizeof units[0])
      return fg_config_error(err, x, k, "unknown key '%s' (expected days, hours, minutes, seconds)", key);
    if (fg_node_kind_of(x) != FG_NODE_INT && fg_node_kind_of(x) != FG_NODE_FLOAT)
      return fg_config_error(err, x, k, "%s: expected a number", key);
    if (fg_node_float(x) < 0) return fg_config_error(err, x, k, "%s: expected a number >= 0", key);
    total += fg_node_float(x) * units[u].secs;
  }
  *secs = total;
  return 0;
}
static int check_max_time(const fg_node *v, const char *k, char **err) {
  double s;
  return max_time_seconds(v, k, &s, err);
}
/* The most ranks one machine may run: one per core (a rank is a process
 * with at least one libtorch thread; more would only time-slice). */
static long max_devices(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? n : 1;
}
static int check_devices(const fg_node *v, const char *k, char **err) {
  if (fg_node_kind_of(v) == FG_NODE_STRING) {
    if (strcmp(fg_node_str(v), "auto") == 0) return 0;
    return fg_config_error(err, v, k, "expected a number of processes or 'auto', got '%s'",
                           fg_node_str(v));
  }
  int rc = check_int_min(v, k, 1, err);
  if (rc == 0 && fg_node_int(v) > max_devices())
    rc = fg_config_error(err, v, k,
                         "%lld processes on a machine with %ld CPU cores; at most %ld (one per core)",
                         (long long)fg_node_int(v), max_devices(), max_devices());
  return rc;
}
static int check_num_nodes(const fg_node *v, const char *k, char **err) {
  return check_int_min(v, k, 1, err);
}
static int check_strategy(const fg_node *v, const char *k, char **err) {
  const char *s = fg_node_str(v);
  if (strcmp(s, "auto") == 0 || strcmp(s, "single_device") == 0 || strcmp(s, "ddp") == 0) return 0;
  return fg_config_error(err, v, k, "expected 'auto', 'ddp' or 'single_device', got '%s'", s);
}
static int check_timeout(const fg_node *v, const char *k, char **err) {
  if (fg_node_float(v) > 0) return 0;
  return fg_config_error(err, v, k, "expected a number of seconds > 0, got %g", fg_node_float(v));
}
int fg__check_null_or_positive(const fg_node *v, const char *k, char **err) {
  return fg_node_kind_of(v) == FG_NODE_NULL ? 0 : check_int_min(v, k, 1, err);
}
#define check_threads fg__check_null_or_positive
/* num_threads: a count, null (all cores, as before auto) or auto. */
static int check_num_threads(const fg_node *v, const char *k, char **err) {
  if (fg_node_kind_of(v) != FG_NODE_STRING) return fg__check_null_or_positive(v, k, err);
  if (strcmp(fg_node_str(v), "auto") == 0) return 0;
  return fg_config_error(err, v, k, "expected a positive count, null or 'auto', got '%s'",
                         fg_node_str(v));
}
int fg__check_mode(const fg_node *v, const char *k, char **err) {
  const char *s = fg_node_str(v);
  if (strcmp(s, "min") == 0 || strcmp(s, "max") == 0) return 0;
  return fg_config_error(err, v, k, "expected 'min' or 'max', got '%s'", s);
}

static int check_clip(const fg_node *v, const char *k, char **err) {
  if (fg_node_kind_of(v) == FG_NODE_NULL || fg_node_float(v) >= 0) return 0;
  return fg_config_error(err, v, k, "expected a value >= 0, got %g", fg_node_float(v));
}
static int check_clip_algorithm(const fg_node *v, const char *k, char **err) {
  const char *s = fg_node_str(v);
  if (s == NULL || strcmp(s, "norm") == 0 || strcmp(s, "value") == 0) return 0;
  return fg_config_error(err, v, k, "expected 'norm' or 'value', got '%s'", s);
}

static const fg_param trainer_params[] = {
    {"max_epochs", FG_T_NULL | FG_T_INT, "null", "epochs (null: 1000 unless max_steps is set; -1: no limit)", check_epochs, 0},
    {"max_steps", FG_T_INT, "-1", "optimizer steps (-1: no limit)", check_epochs, 0},
    {"limit_train_batches", FG_T_NULL | FG_T_INT | FG_T_FLOAT, "1.0", "fraction or count of training batches", check_limit, 0},
    {"limit_val_batches", FG_T_NULL | FG_T_INT | FG_T_FLOAT, "1.0", "fraction or count of validation batches", check_limit, 0},
    {"limit_test_batches", FG_T_NULL | FG_T_INT | FG_T_FLOAT, "1.0", "fraction or count of test batches", check_limit, 0},
    {"limit_predict_batches", FG_T_NULL | FG_T_INT | FG_T_FLOAT, "1.0", "fraction or count of predict batches", check_limit, 0},
    {"check_val_every_n_epoch", FG_T_INT, "1", "validate every N epochs", check_positive, 0},
    {"num_sanity_val_steps", FG_T_NULL | FG_T_INT, "2", "validation batches run before training (null: 2; -1: all)", check_null_or_epochs, 0},
    {"log_every_n_steps", FG_T_NULL | FG_T_INT, "50", "log training scalars every N steps (null: 50; 0: never)", check_null_or_count, 0},
    {"min_epochs", FG_T_NULL | FG_T_INT, "null", "epochs before a stop (EarlyStopping, max_time) may end the fit", check_null_or_count, 0},
    {"min_steps", FG_T_NULL | FG_T_INT, "null", "optimizer steps before a stop may end the fit", check_null_or_count, 0},
    {"max_time", FG_T_NULL | FG_T_STRING | FG_T_MAP, "null", "stop at a step boundary after this long: \"DD:HH:MM:SS\" or {days, hours, minutes, seconds}", check_max_time, 0},
    {"inference_mode", FG_T_BOOL, "true", "evaluation under torch.inference_mode (false: torch.no_grad)", NULL, 0},
    {"use_distributed_sampler", FG_T_BOOL, "true", "under ddp, each rank reads its DistributedSampler shard", NULL, 0},
    {"benchmark", FG_T_NULL | FG_T_BOOL, "null", "cuDNN autotuning (no effect on CPU)", NULL, 0},
    {"plugins", FG_T_ANY, "null", "null only", check_null, 0},
    {"fast_dev_run", FG_T_BOOL | FG_T_INT, "false", "run N batches (true: 1) of each stage's loop once, without loggers, checkpoints or early stopping", check_fast_dev_run, 0},
    {"overfit_batches", FG_T_INT | FG_T_FLOAT, "0.0", "train on this fraction or count of training batches, unshuffled, and validate on the same", check_limit, 0},
    {"detect_anomaly", FG_T_BOOL, "false", "autograd anomaly detection around the training step (names the op whose backward gives NaN)", NULL, 0},
    {"barebones", FG_T_BOOL, "false", "no logging, checkpointing, progress bar, model summary or sanity check (an error when one is asked for)", NULL, 0},
    {"sync_batchnorm", FG_T_BOOL, "false", "under ddp, BatchNorm statistics over every rank's batch", NULL, 0},
    {"profiler", FG_T_ANY, "null", "null, 'simple' (time per hook), 'pytorch' (a Chrome trace) or a SimpleProfiler/PyTorchProfiler object", check_profiler, 0},
    {"reload_dataloaders_every_n_epochs", FG_T_INT, "0", "build the fit and val dataloaders again every N epochs (0: never)", check_limit, 0},
    {"default_root_dir", FG_T_NULL | FG_T_STRING, "null", "where run directories go (null: the working directory)", NULL, 0},
    {"enable_checkpointing", FG_T_NULL | FG_T_BOOL, "true", "add a ModelCheckpoint when none is configured", NULL, 0},
    {"continue_run", FG_T_BOOL, "false", "fit with a ckpt_path inside a run's checkpoints/ continues that run directory (metrics.csv, TensorBoard, checkpoints) instead of a new version", NULL, 0},
    {"enable_progress_bar", FG_T_NULL | FG_T_BOOL, "true", "progress bar on a terminal", NULL, 0},
    {"enable_model_summary", FG_T_NULL | FG_T_BOOL, "true", "print the model summary at fit start (adds ModelSummary when none is configured)", NULL, 0},
    {"logger", FG_T_BOOL | FG_T_MAP | FG_T_SEQ | FG_T_NULL, "true", "true (CSVLogger), false, or logger objects", NULL, 0},
    {"callbacks", FG_T_NULL | FG_T_SEQ | FG_T_MAP, "null", "callback objects", NULL, 0},
    {"deterministic", FG_T_NULL | FG_T_BOOL, "null", "deterministic algorithms", NULL, 0},
    {"precision", FG_T_NULL | FG_T_INT | FG_T_STRING, "32-true", "numeric precision", check_precision, 0},
    {"accelerator", FG_T_STRING, "auto", "cpu", check_accelerator, 0},
    {"devices", FG_T_INT | FG_T_STRING, "auto", "processes per machine (auto: 1 on CPU)", check_devices, 0},
    {"num_nodes", FG_T_INT, "1", "machines (torchrun's environment names this one)", check_num_nodes, 0},
    {"strategy", FG_T_STRING, "auto", "auto (ddp when devices x num_nodes > 1), ddp, single_device", check_strategy, 0},
    {"ddp_timeout", FG_T_INT | FG_T_FLOAT, "1800", "seconds any rank waits for the others (rendezvous, collectives) before failing", check_timeout, 0},
    {"num_threads", FG_T_NULL | FG_T_INT | FG_T_STRING, "auto", "libtorch and OpenBLAS threads (auto: the fastest count in a trial of the first steps; null: all cores)", check_num_threads, 0},
    {"predict_threads", FG_T_NULL | FG_T_INT, "null", "worker threads running predict tasks (null: all cores)", check_threads, 0},
    {"gradient_clip_val", FG_T_NULL | FG_T_FLOAT, "null", "clip gradients at this norm or value (null: no clipping)", check_clip, 0},
    {"gradient_clip_algorithm", FG_T_NULL | FG_T_STRING, "null", "norm (default) or value", check_clip_algorithm, 0},
    {"accumulate_grad_batches", FG_T_INT, "1", "batches whose gradients add up before an optimizer step", check_positive, 0},
    {"num_folds", FG_T_NULL | FG_T_INT, "null", "lightning_template: k-fold cross-validation over the fit dataset, one fit per fold (null or 1: none)", check_null_or_positive_count, 0},
    {"val_check_interval", FG_T_NULL | FG_T_INT | FG_T_FLOAT, "null", "validate every fraction of an epoch (float) or every N batches (int); null: 1.0", check_limit, 0},
};

/* A value the config wrote itself: a default the schema filled in carries
 * its parent's mark (schema.c). */
static bool written(const fg_node *cfg, const fg_node *v) {
  fg_mark a = fg_node_mark(cfg), b = fg_node_mark(v);
  return b.file && (a.file == NULL || a.line != b.line || a.col != b.col || strcmp(a.file, b.file) != 0);
}

/* Lightning's barebones rule: it turns off what may slow a step, and a
 * config that also asks for one of those things is an error (its
 * defaults, not written, are what barebones turns off). */
static int check_barebones(const fg_node *cfg, char **err) {
  const fg_node *bb = fg_node_get(cfg, "barebones");
  if (bb == NULL || !fg_node_bool(bb)) return 0;
  static const struct {
    const char *key, *what;
    bool zero_ok; /* an int: 0 is allowed (and null); a bool: false */
  } outs[] = {
      {"enable_checkpointing", "checkpointing", false}, {"logger", "logging", false},
      {"enable_progress_bar", "the progress bar", false}, {"log_every_n_steps", "logging", true},
      {"enable_model_summary", "the model summary", false}, {"num_sanity_val_steps", "sanity checking", true},
      {"fast_dev_run", "a development run", true},        {"detect_anomaly", "anomaly detection", false},
      {"profiler", "profiling", false},
  };
  for (size_t i = 0; i < sizeof outs / sizeof outs[0]; i++) {
    const fg_node *v = fg_node_get(cfg, outs[i].key);
    if (v == NULL || !written(cfg, v)) continue;
    fg_node_kind k = fg_node_kind_of(v);
    bool on = k == FG_NODE_BOOL ? fg_node_bool(v)
              : k == FG_NODE_INT ? fg_node_int(v) != 0
                                 : k != FG_NODE_NULL;
    if (!on) continue;
    char *p = fg__xasprintf("trainer.%s", outs[i].key);
    int rc = fg_config_error(err, v, p, "%s can't be enabled when barebones is true (remove it%s)",
                             outs[i].what, outs[i].zero_ok ? ", or write 0" : ", or write false");
    free(p);
    return rc;
  }
  return 0;
}

int fg__trainer_config_check(fg_node *cfg, bool fill, char **err) {
  int rc = fg_schema_check(trainer_params, sizeof trainer_params / sizeof trainer_params[0], cfg,
                           "trainer", fill, err);
  if (rc) return rc;
  const fg_node *st = fg_node_get(cfg, "strategy"), *dv = fg_node_get(cfg, "devices");
  const fg_node *nn = fg_node_get(cfg, "num_nodes");
  if (st && strcmp(fg_node_str(st), "single_device") == 0 &&
      ((dv && fg_node_kind_of(dv) == FG_NODE_INT && fg_node_int(dv) > 1) ||
       (nn && fg_node_int(nn) > 1)))
    return fg_config_error(err, st, "trainer.strategy",
                           "single_device runs one process; devices x num_nodes > 1 needs 'ddp'");
  if ((rc = check_barebones(cfg, err))) return rc;
  if ((rc = fg__profiler_config_check(fg_node_get(cfg, "profiler"), fill, err))) return rc;
  fg_node *cbs = fg_node_get(cfg, "callbacks");
  if (cbs && fg_node_kind_of(cbs) == FG_NODE_MAP) {
    /* One callback object written without a list. */
    fg_node *one = fg_node_map_take(cfg, "callbacks");
    fg_node *seq = fg_node_new_seq();
    fg_mark m = fg_node_mark(one);
    if (m.file) fg_node_set_mark(seq, m.file, m.line, m.col);
    fg_node_seq_append(seq, one);
    fg_node_map_set(cfg, "callbacks", seq);
    cbs = seq;
  }
  for (size_t i = 0; cbs && i < fg_node_len(cbs); i++) {
    char *p = fg__xasprintf("trainer.callbacks.%zu", i);
    rc = fg_registry_check(fg_node_at(cbs, i), p, FG_KIND_CALLBACK, fill, err);
    free(p);
    if (rc) return rc;
  }
  if ((rc = fg__progress_bar_check(cfg, err))) return rc;
  fg_node *lg = fg_node_get(cfg, "logger");
  if (lg) rc = fg__loggers_check(lg, fill, err);
  return rc;
}

static double limit_of(const fg_node *v, bool *is_count) {
  *is_count = v && fg_node_kind_of(v) == FG_NODE_INT;
  if (v == NULL || fg_node_kind_of(v) == FG_NODE_NULL) return 1.0;
  return fg_node_float(v);
}


static char *opt_str(const fg_node *args, const char *k) {
  const fg_node *v = fg_node_get(args, k);
  return v && fg_node_kind_of(v) == FG_NODE_STRING ? fg__xstrdup(fg_node_str(v)) : NULL;
}

static bool set(const fg_node *v) { return v && fg_node_kind_of(v) != FG_NODE_NULL; }
static int64_t int_or(const fg_node *cfg, const char *k, int64_t dflt) {
  const fg_node *v = fg_node_get(cfg, k);
  return set(v) ? fg_node_int(v) : dflt;
}
static bool bool_or(const fg_node *cfg, const char *k, bool dflt) {
  const fg_node *v = fg_node_get(cfg, k);
  return set(v) ? fg_node_bool(v) : dflt;
}

void fg__trainer_opts_add_warning(fg_trainer_opts *o, const fg_node *v, const char *key, const char *why) {
  char *kp = fg__xasprintf("trainer.%s", key);
  o->warnings = fg__xrealloc(o->warnings, (o->n_warnings + 1) * sizeof *o->warnings);
  o->warnings[o->n_warnings++] = fg_config_warning(v, kp, "%s", why);
  free(kp);
}
/* The arguments that mean nothing on this backend: accepted, and said so
 * once per run (fg__trainer_opts_warn). */
static void noop_warnings(const fg_node *cfg, fg_trainer_opts *o) {
  const fg_node *v = fg_node_get(cfg, "benchmark");
  if (set(v) && fg_node_bool(v))
    fg__trainer_opts_add_warning(o, v, "benchmark", "true has no effect: it selects cuDNN algorithms, and this run is on CPU");
  v = fg_node_get(cfg, "accelerator");
  if (v && written(cfg, v))
    fg__trainer_opts_add_warning(o, v, "accelerator",
                strcmp(fg_node_str(v), "auto") == 0
                    ? "'auto' has no effect: this build's libtorch is CPU-only, so it is always cpu"
                    : "'cpu' has no effect: this build's libtorch is CPU-only, so it is always cpu");
  v = fg_node_get(cfg, "sync_batchnorm");
  const fg_node *dv = fg_node_get(cfg, "devices"), *nn = fg_node_get(cfg, "num_nodes");
  bool one = (dv == NULL || fg_node_kind_of(dv) != FG_NODE_INT || fg_node_int(dv) <= 1) &&
             (nn == NULL || fg_node_int(nn) <= 1) && getenv("WORLD_SIZE") == NULL;
  if (v && fg_node_bool(v) && one)
    fg__trainer_opts_add_warning(o, v, "sync_batchnorm",
                "true has no effect in one process: its BatchNorm statistics already cover the whole batch "
                "(it applies under strategy ddp)");
  v = fg_node_get(cfg, "devices");
  if (v && written(cfg, v) && fg_node_kind_of(v) == FG_NODE_STRING)
    fg__trainer_opts_add_warning(o, v, "devices",
                "'auto' has no effect: on CPU it means 1 process; write devices: N (with strategy ddp) for N");
}

void fg__trainer_opts_warn(const fg_trainer_opts *o, fg_events *bus) {
  for (size_t i = 0; i < o->n_warnings; i++) fg_events_log(bus, FG_LOG_WARNING, "%s", o->warnings[i]);
  if (o->fast_dev_run > 0)
    fg_events_log(bus, FG_LOG_INFO,
                  "Running in `fast_dev_run` mode: will run the requested loop using %lld batch(es). "
                  "Logging and checkpointing is suppressed.", (long long)o->fast_dev_run);
  if (o->barebones)
    fg_events_log(bus, FG_LOG_INFO,
                  "You are running in `Trainer(barebones=True)` mode. All features that may impact raw "
                  "speed have been disabled: checkpointing, loggers, the progress bar, the model summary, "
                  "the sanity check, step logging");
  if (o->overfit_batches > 0 && o->overfit_unshuffled)
    fg_events_log(bus, FG_LOG_WARNING,
                  "You requested to overfit but enabled train dataloader shuffling. We are turning off "
                  "the train dataloader shuffling for you.");
}

/* Lightning's debugging flags (_init_debugging_flags): fast_dev_run and
 * overfit_batches override the loop limits they imply; barebones turns
 * off what check_barebones allowed it to. */
static void debugging_flags(const fg_node *cfg, fg_trainer_opts *o) {
  const fg_node *v = fg_node_get(cfg, "fast_dev_run");
  o->fast_dev_run = v == NULL ? 0 : fg_node_kind_of(v) == FG_NODE_BOOL ? (fg_node_bool(v) ? 1 : 0) : fg_node_int(v);
  v = fg_node_get(cfg, "overfit_batches");
  o->overfit_batches = v ? fg_node_float(v) : 0;
  o->overfit_is_count = v && fg_node_kind_of(v) == FG_NODE_INT;
  if (o->overfit_batches > 0) {
    o->limit[FG_SPLIT_FIT] = o->limit[FG_SPLIT_VAL] = o->overfit_batches;
    o->limit_is_count[FG_SPLIT_FIT] = o->limit_is_count[FG_SPLIT_VAL] = o->overfit_is_count;
  }
  if (o->fast_dev_run > 0) {
    for (int s = 0; s < FG_SPLIT_COUNT; s++) {
      o->limit[s] = (double)o->fast_dev_run;
      o->limit_is_count[s] = true;
    }
    o->max_steps = o->fast_dev_run;
    o->num_sanity_val_steps = 0;
    o->max_epochs = 1;
    o->val_check_interval = 1.0;
    o->val_check_is_count = false;
    o->check_val_every_n_epoch = 1;
  }
  o->barebones = bool_or(cfg, "barebones", false);
  if (o->barebones) {
    o->enable_checkpointing = false;
    o->enable_progress_bar = false;
    o->enable_model_summary = false;
    o->log_every_n_steps = 0;
    o->num_sanity_val_steps = 0;
  }
  o->detect_anomaly = bool_or(cfg, "detect_anomaly", false);
  o->inference_mode = bool_or(cfg, "inference_mode", true);
  o->sync_batchnorm = bool_or(cfg, "sync_batchnorm", false);
  o->reload_every = int_or(cfg, "reload_dataloaders_every_n_epochs", 0);
  fg__profiler_opts_parse(fg_node_get(cfg, "profiler"), o);
}

int fg__trainer_opts_parse(const fg_node *cfg, fg_trainer_opts *o, char **err) {
  memset(o, 0, sizeof *o);
  const fg_node *me = fg_node_get(cfg, "max_epochs");
  o->max_steps = fg_node_int(fg_node_get(cfg, "max_steps"));
  const fg_node *mt = fg_node_get(cfg, "max_time");
  int rc = mt ? max_time_seconds(mt, "trainer.max_time", &o->max_time, err) : 0;
  if (mt == NULL) o->max_time = NAN;
  if (rc) return rc;
  if (me && fg_node_kind_of(me) == FG_NODE_INT)
    o->max_epochs = fg_node_int(me);
  else /* Lightning's rule (_parse_loop_limits): max_time's Timer counts as a limit */
    o->max_epochs = o->max_steps == -1 && isnan(o->max_time) ? 1000 : -1;
  /* Lightning: min_steps alone makes min_epochs 1, else 0. */
  const fg_node *mn = fg_node_get(cfg, "min_steps");
  o->min_steps = set(mn) ? fg_node_int(mn) : 0;
  o->min_epochs = int_or(cfg, "min_epochs", set(mn) ? 1 : 0);
  o->use_distributed_sampler = bool_or(cfg, "use_distributed_sampler", true);
  noop_warnings(cfg, o);
  static const char *const lim[FG_SPLIT_COUNT] = {"limit_train_batches", "limit_val_batches",
                                                  "limit_test_batches", "limit_predict_batches"};
  for (int s = 0; s < FG_SPLIT_COUNT; s++)
    o->limit[s] = limit_of(fg_node_get(cfg, lim[s]), &o->limit_is_count[s]);
  o->check_val_every_n_epoch = fg_node_int(fg_node_get(cfg, "check_val_every_n_epoch"));
  o->num_sanity_val_steps = int_or(cfg, "num_sanity_val_steps", 2);
  o->log_every_n_steps = int_or(cfg, "log_every_n_steps", 50);
  o->default_root_dir = opt_str(cfg, "default_root_dir");
  if (o->default_root_dir == NULL) o->default_root_dir = fg__xstrdup(".");
  o->enable_checkpointing = bool_or(cfg, "enable_checkpointing", true);
  o->continue_run = bool_or(cfg, "continue_run", false);
  o->enable_progress_bar = bool_or(cfg, "enable_progress_bar", true);
  o->enable_model_summary = bool_or(cfg, "enable_model_summary", true);
  const fg_node *nt = fg_node_get(cfg, "num_threads");
  if (nt && fg_node_kind_of(nt) == FG_NODE_INT) {
    o->num_threads = (int)fg_node_int(nt);
  } else {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    o->num_threads = n > 0 ? (int)n : 1;
  }
  const fg_node *pt = fg_node_get(cfg, "predict_threads");
  if (pt && fg_node_kind_of(pt) == FG_NODE_INT) {
    o->predict_threads = (int)fg_node_int(pt);
  } else {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    o->predict_threads = n > 0 ? (int)n : 1;
  }
  o->precision = precision_of(fg_node_get(cfg, "precision"));
  const fg_node *det = fg_node_get(cfg, "deterministic");
  o->deterministic = det && fg_node_kind_of(det) == FG_NODE_BOOL && fg_node_bool(det);

  const fg_node *gc = fg_node_get(cfg, "gradient_clip_val");
  o->gradient_clip_val = gc && fg_node_kind_of(gc) != FG_NODE_NULL ? fg_node_float(gc) : NAN;
  const char *alg = fg_node_str(fg_node_get(cfg, "gradient_clip_algorithm"));
  o->clip_by_value = alg && strcmp(alg, "value") == 0;
  const fg_node *ag = fg_node_get(cfg, "accumulate_grad_batches");
  o->accumulate_grad_batches = ag ? fg_node_int(ag) : 1;
  o->val_check_interval = limit_of(fg_node_get(cfg, "val_check_interval"), &o->val_check_is_count);
  const fg_node *dv = fg_node_get(cfg, "devices");
  o->devices = dv && fg_node_kind_of(dv) == FG_NODE_INT ? (int)fg_node_int(dv) : 1;
  const fg_node *nn = fg_node_get(cfg, "num_nodes");
  o->num_nodes = nn ? (int)fg_node_int(nn) : 1;
  const fg_node *to = fg_node_get(cfg, "ddp_timeout");
  o->ddp_timeout = to ? fg_node_float(to) : 1800;
  o->num_threads_set = nt && fg_node_kind_of(nt) == FG_NODE_INT;
  o->num_threads_auto = nt && fg_node_kind_of(nt) == FG_NODE_STRING;
  debugging_flags(cfg, o);
  o->num_folds = int_or(cfg, "num_folds", 1);

  const fg_node *cbs = fg_node_get(cfg, "callbacks");
  for (size_t i = 0; cbs && i < fg_node_len(cbs); i++) {
    char *p = fg__xasprintf("trainer.callbacks.%zu", i);
    void *obj = NULL;
    rc = fg_registry_create(fg_node_at(cbs, i), p, FG_KIND_CALLBACK, &obj, NULL, err);
    free(p);
    if (rc) goto fail;
    fg__callbacks_add(o, obj);
  }
  if (o->barebones && fg__callbacks_have_saver(o)) {
    rc = fg_config_error(err, cbs, "trainer.callbacks",
                         "a checkpoint callback is configured, but barebones: true turns checkpointing off; "
                         "remove it or barebones");
    goto fail;
  }
  fg__progress_bar_configure(o);
  if (o->enable_model_summary && !fg__callbacks_have_summary(o))
    fg__callbacks_add(o, fg__model_summary_default());
  if (o->enable_checkpointing && !fg__callbacks_have_saver(o))
    fg__callbacks_add(o, fg__model_checkpoint_default());
  const fg_node *lg = fg_node_get(cfg, "logger");
  /* fast_dev_run: Lightning's DummyLogger (nothing is written);
   * barebones: logger false. */
  if (o->fast_dev_run > 0 || o->barebones) {
    o->loggers = fg__xcalloc(1, sizeof *o->loggers);
  } else if (lg == NULL || (fg_node_kind_of(lg) == FG_NODE_BOOL && fg_node_bool(lg))) {
    fg_logger_cfg *c = fg__xcalloc(1, sizeof *c);
    c->type = FG_LOGGER_CSV;
    c->flush_every = 100;
    o->loggers = fg__xcalloc(1, sizeof *o->loggers);
    o->loggers[o->n_loggers++] = c;
  } else if (fg_node_kind_of(lg) == FG_NODE_MAP || fg_node_kind_of(lg) == FG_NODE_SEQ) {
    /* One object, or a list of them as Lightning allows. */
    bool seq = fg_node_kind_of(lg) == FG_NODE_SEQ;
    size_t n = seq ? fg_node_len(lg) : 1;
    o->loggers = fg__xcalloc(n ? n : 1, sizeof *o->loggers);
    for (size_t i = 0; i < n; i++) {
      char *p = seq ? fg__xasprintf("trainer.logger.%zu", i) : fg__xstrdup("trainer.logger");
      void *obj = NULL;
      const fg_class *cls = NULL;
      const fg_node *one = seq ? fg_node_at(lg, i) : lg;
      rc = fg_registry_create(one, p, FG_KIND_LOGGER, &obj, &cls, err);
      if (rc == 0 && cls->destroy != fg__logger_cfg_free) {
        /* The loggers' sinks are built-in; a plugin's logger object is not
         * an fg_logger_cfg. */
        if (cls->destroy) cls->destroy(obj);
        rc = fg_config_error(err, one, p, "'%s' is not one of fulgur's loggers (CSVLogger, TensorBoardLogger)",
                             cls->name);
      }
      free(p);
      if (rc) goto fail;
      o->loggers[o->n_loggers++] = obj;
    }
  }
  return 0;
fail:
  fg__trainer_opts_close(o);
  return rc;
}

void fg__trainer_opts_close(fg_trainer_opts *o) {
  for (size_t i = 0; i < o->n_callbacks; i++) fg__callback_free(o->callbacks[i]);
  free(o->callbacks);
  for (size_t i = 0; i < o->n_loggers; i++) fg__logger_cfg_free(o->loggers[i]);
  free(o->loggers);
  free(o->default_root_dir);
  for (size_t i = 0; i < o->n_warnings; i++) free(o->warnings[i]);
  free(o->warnings);
  free(o->profiler_dirpath);
  free(o->profiler_filename);
  memset(o, 0, sizeof *o);
}

/* ---- CSVLogger ---------------------------------------------------------------- */

static const fg_param csv_params[] = {
    {"save_dir", FG_T_NULL | FG_T_STRING, "null", "folder (null: the run directory)", NULL, 0},
    {"name", FG_T_NULL | FG_T_STRING, "null", "subfolder of save_dir", NULL, 0},
    {"flush_logs_every_n_steps", FG_T_INT, "100", "rows buffered before a write", check_positive, 0},
};

static int csv_create(const fg_class *cls, const fg_node *a, const char *keypath, void **out,
                      char **err) {
  fg_logger_cfg *c = fg__xcalloc(1, sizeof *c);
  c->type = FG_LOGGER_CSV;
  c->save_dir = opt_str(a, "save_dir");
  c->name = opt_str(a, "name");
  c->flush_every = fg_node_int(fg_node_get(a, "flush_logs_every_n_steps"));
  *out = c;
  return 0;
}

static const char *const csv_aliases[] = {"CSVLogger", "lightning.pytorch.loggers.CSVLogger",
                                          "pytorch_lightning.loggers.CSVLogger", NULL};

const fg_class fg__csv_logger_class = {
    .name = "fulgur.loggers.CSVLogger", .aliases = csv_aliases, .kind = FG_KIND_LOGGER,
    .params = csv_params, .n_params = sizeof csv_params / sizeof csv_params[0],
    .create = csv_create, .destroy = fg__logger_cfg_free};

