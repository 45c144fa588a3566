/* Trainer internals: options parsed from the `trainer` config, callbacks
 * and loggers, checkpoint files, the loops. */
#ifndef FG_TRAINER_TRAINER_H
#define FG_TRAINER_TRAINER_H

#include <stdbool.h>
#include <stdint.h>

#include "fulgur/config.h"
#include "fulgur/data.h"
#include "fulgur/events.h"
#include "fulgur/module.h"
#include "fulgur/optim.h"
#include "fulgur/run.h"
#include "fulgur/torch.h"
#include "util/atomic_file.h"

/* A callback object: its interface is callbacks/callback.h. */
typedef struct fg_callback fg_callback;

/* A logger's options (Lightning's names), from trainer.logger. */
typedef enum { FG_LOGGER_CSV = 0, FG_LOGGER_TENSORBOARD } fg_logger_type;
typedef struct {
  fg_logger_type type;
  char *save_dir; /* CSV: NULL = the run dir; TensorBoard: required */
  char *name;     /* NULL = none */
  int64_t flush_every; /* CSV: flush_logs_every_n_steps */
  /* TensorBoardLogger */
  char *version;  /* the folder name ("version_3", "run_a"); NULL = the next version_N */
  bool default_hp_metric;
  char *prefix;   /* NULL = none */
  char *sub_dir;  /* NULL = none */
  int64_t max_queue;
  double flush_secs;
  char *filename_suffix;
} fg_logger_cfg;
void fg__logger_cfg_free(void *cfg);
/* The TensorBoardLogger class (loggers.c), registered with the built-ins. */
struct fg_class;
extern const struct fg_class fg__tb_logger_class;

typedef enum { FG_PROFILER_NONE = 0, FG_PROFILER_SIMPLE, FG_PROFILER_PYTORCH } fg_profiler_kind;
/* trainer.precision as the loops run it (trainer_config.c's table). */
typedef enum {
  FG_PRECISION_32 = 0,
  FG_PRECISION_BF16_MIXED, /* CPU autocast to bf16 around each step (precision.c) */
  FG_PRECISION_BF16_TRUE,  /* bf16 weights, inputs and default dtype (precision.c) */
} fg_precision;

typedef struct {
  int64_t max_epochs; /* -1 = no limit */
  int64_t max_steps;  /* -1 = no limit */
  double limit[FG_SPLIT_COUNT];
  bool limit_is_count[FG_SPLIT_COUNT];
  int64_t check_val_every_n_epoch;
  int64_t num_sanity_val_steps;
  int64_t log_every_n_steps;
  char *default_root_dir;
  bool enable_checkpointing;
  bool enable_progress_bar;
  bool enable_model_summary; /* adds ModelSummary(max_depth=1) when none is configured */
  int num_threads;
  int predict_threads; /* worker threads running predict tasks */
  bool deterministic;
  fg_precision precision;
  /* Owned; the config's order with the checkpoint savers last
   * (fg__callbacks_add). */
  fg_callback **callbacks;
  size_t n_callbacks;
  fg_logger_cfg **loggers; /* owned; the first decides the run directory */
  size_t n_loggers;
  double gradient_clip_val;  /* NAN = no clipping */
  bool clip_by_value;        /* gradient_clip_algorithm "value" (else "norm") */
  int64_t accumulate_grad_batches;
  double val_check_interval; /* fraction of an epoch, or a batch count */
  bool val_check_is_count;
  bool num_threads_set;      /* num_threads was given (else: the cores, shared by local ranks) */
  bool num_threads_auto;     /* num_threads: auto, chosen by a trial (threads.c) */
  int devices;               /* processes per machine */
  int num_nodes;
  double ddp_timeout;        /* seconds */
  int64_t min_epochs;        /* a stop (should_stop) waits for these epochs and steps */
  int64_t min_steps;
  double max_time;           /* seconds of fit before a stop at a step boundary; NAN = none */
  bool use_distributed_sampler; /* false: under ddp every rank reads the whole dataset */
  bool continue_run;         /* a fit from a run's checkpoint continues that run directory */
  int64_t num_folds;         /* lightning_template's k-fold fit (kfold.c); 1 = none */
  char **warnings;           /* the no-op arguments' warnings, each once per run */
  size_t n_warnings;
  /* Lightning's debugging flags (their limits are already in the fields
   * above): fast_dev_run's N batches (0: off; no loggers, savers and
   * EarlyStopping idle), overfit_batches (0: off). */
  int64_t fast_dev_run;
  double overfit_batches;
  bool overfit_is_count;
  bool overfit_unshuffled;   /* overfit_batches turned the fit loader's shuffle off (warned) */
  bool barebones;
  bool detect_anomaly;       /* autograd anomaly mode around forward and backward */
  bool inference_mode;       /* evaluation under InferenceMode (false: NoGradGuard) */
  bool sync_batchnorm;
  int64_t reload_every;      /* reload_dataloaders_every_n_epochs; 0 = never */
  fg_profiler_kind profiler;
  char *profiler_dirpath;    /* a profiler object's dirpath (NULL: the run directory) */
  char *profiler_filename;   /* its filename (NULL: the name's default) */
} fg_trainer_opts;

/* Adds the one warning of a trainer argument that has no effect here:
 * "<file:line:col of v>: trainer.<key>: <why>". */
void fg__trainer_opts_add_warning(fg_trainer_opts *o, const fg_node *v, const char *key, const char *why);
/* trainer.profiler (profiler_config.c): checks a profiler object in place
 * (names and null were checked by the trainer's schema), and reads the
 * checked value into o (its no-op arguments as warnings). */
int fg__profiler_config_check(fg_node *profiler, bool fill, char **err);
void fg__profiler_opts_parse(const fg_node *profiler, fg_trainer_opts *o);
int fg__trainer_opts_parse(const fg_node *trainer_cfg, fg_trainer_opts *out,
                           char **err);
void fg__trainer_opts_close(fg_trainer_opts *o);
/* Logs the warnings of the arguments that are no-ops here, once. */
void fg__trainer_opts_warn(const fg_trainer_opts *o, fg_events *bus);
int fg__trainer_config_check(fg_node *trainer_cfg, bool fill, char **err);

/* ---- checkpoints ------------------------------------------------------------ */

int fg__mkdirs(const char *path, char **err);

typedef struct {
  int64_t epoch;       /* the epoch the checkpoint was taken in */
  int64_t global_step;
  bool epoch_done;     /* taken at the end of `epoch` */
  /* Fit batches of `epoch` already consumed (a pause inside the epoch),
   * where a resume starts; 0 otherwise. */
  int64_t batches_done;
} fg_ckpt_pos;

/* Builds and writes a Lightning-layout checkpoint. loop_state (may be
 * NULL) is a dict whose entries join the position under "fulgur_loop". */
int fg__checkpoint_save(const char *path, fg_module *m, const fg_optim_set *optim,
                        const fg_ckpt_pos *pos, const fg_value *callbacks,
                        const fg_value *loop_state, char **err);
/* Loads weights (strict: every module parameter must be present with the
 * same shape), and when opt/pos are non-NULL the optimizer state and loop
 * position. *callbacks and *loop_state (each may be NULL) receive the
 * checkpoint's "callbacks" and "fulgur_loop" entries, or NULL; the caller
 * frees them. */
int fg__checkpoint_load(const char *path, fg_module *m, fg_optim_set *optim,
                        fg_ckpt_pos *pos, fg_value **callbacks, fg_value **loop_state,
                        char **err);
/* As fg__checkpoint_load, for a fork (fg_run_opts.fork): the optimizer
 * and scheduler arguments are the ones optim was built with (the config's)
 * instead of the checkpoint's; the optimizer state (momentum buffers,
 * Adam's moments) and the schedulers' step counts are the checkpoint's. */
int fg__checkpoint_load_fork(const char *path, fg_module *m, fg_optim_set *optim,
                             fg_ckpt_pos *pos, fg_value **callbacks, fg_value **loop_state,
                             char **err);
/* The seed's ckpt_path loading: the file's state_dict (or the file itself
 * when it is a bare state dict) loads non-strictly. *report (malloc'd)
 * names missing and unexpected keys when there are any. */
int fg__state_dict_load_file(const char *path, fg_module *m, char **report, char **err);

/* ---- sinks ---------------------------------------------------------------- */

/* continuing: the rows an existing file holds are kept (see
 * FG_CONTINUED_STATE) and the run's rows go after them. The logger also
 * flushes at every checkpoint (an ARTIFACT "checkpoint" event), so a run
 * continued from that checkpoint finds every row the checkpoint counts. */
int fg__csv_logger_create(const char *path, int64_t flush_every, bool continuing, fg_sink *out,
                          char **err);
/* The step Lightning logs a STEP or EPOCH event's scalars at: the index of
 * the last optimizer step (test rows: the global step itself). One rule
 * for every logger. */
int64_t fg__logged_step(const fg_event *ev);

/* ---- loggers (loggers.c) ------------------------------------------------------ */

/* Checks trainer.logger's value in place: one object or a list of them,
 * each a logger class; a logger that needs a service (W&B, MLflow, Comet,
 * Neptune) is an error naming TensorBoardLogger and CSVLogger. */
int fg__loggers_check(fg_node *logger, bool fill, char **err);
/* Makes the run directory as Lightning's Trainer.log_dir: a first
 * TensorBoardLogger's <save_dir>/<name>/<version>; otherwise (CSVLogger
 * first, the default logger, or none) <default_root_dir>/version_<N>.
 * *out is malloc'd. */
int fg__run_dir_make(const fg_trainer_opts *o, char **out, char **err);
/* Adds a sink per logger to bus. config (the checked config) is what
 * TensorBoardLogger logs as hyperparameters. */
int fg__loggers_start(const fg_trainer_opts *o, const fg_node *config, const char *run_dir,
                      bool continuing, fg_events *bus, char **err);
/* A continued run (fg_run_opts.run_dir) tells its file loggers, once the
 * checkpoint is loaded, how many logged rows (STEP and EPOCH events with
 * scalars) the run had when the checkpoint was taken: a STATE event with
 * text FG_CONTINUED_STATE, global_step the checkpoint's, and one value,
 * FG_CONTINUED_ROWS (-1: unknown, keep every row). metrics.csv keeps that
 * many rows and drops the ones logged after the checkpoint, which the
 * continued run logs again. */
#define FG_CONTINUED_STATE "continued"
#define FG_CONTINUED_ROWS "log_rows"
/* The run directory a checkpoint belongs to: the folder above its
 * checkpoints/ folder (*out malloc'd), or FG_ECONFIG naming key when the
 * checkpoint is not in one. */
int fg__ckpt_run_dir(const char *ckpt, const char *key, char **out, char **err);
/* TensorBoardLogger's sink (tb_logger.c): events.out.tfevents.* in dir,
 * hparams.yaml, scalars of STEP and EPOCH events. */
int fg__tb_logger_create(const fg_logger_cfg *cfg, const char *dir, const fg_node *hparams,
                         fg_sink *out, char **err);
fg_sink fg__progress_sink_create(FILE *tty);

/* ---- strategy: ddp (ddp.c) --------------------------------------------------- */

/* A distributed run's membership and group; NULL everywhere means one
 * process. */
typedef struct fg__ddp fg__ddp;

/* Decides from the trainer options and torchrun's environment whether
 * the run is distributed (*out NULL when not). When it is: joins as RANK,
 * or, without the environment and with devices > 1, becomes rank 0 and
 * starts ranks 1..N-1 (fulgur-rank); checks at rendezvous that every rank
 * has the same WORLD_SIZE and config (its checked YAML's hash); *seed
 * becomes rank 0's seed on every rank. Errors start with "rank R: ". */
int fg__ddp_start(const fg_node *config, fg_stage stage, const fg_trainer_opts *o,
                  uint64_t *seed, fg__ddp **out, char **err);
int fg__ddp_rank(const fg__ddp *d);        /* 0 for NULL */
int fg__ddp_world(const fg__ddp *d);       /* 1 for NULL */
int fg__ddp_local_world(const fg__ddp *d); /* ranks on this machine; 1 for NULL */
/* DDP's start: every rank gets rank 0's parameters and buffers. */
int fg__ddp_broadcast_params(fg__ddp *d, fg_module *m, char **err);
/* torch DDP's broadcast_buffers=True: rank 0's buffers (BatchNorm's
 * running statistics) to every rank, before each training forward, and
 * before evaluation and at fit's end so every rank ends with rank 0's. */
int fg__ddp_broadcast_buffers(fg__ddp *d, fg_module *m, char **err);
/* Averages the gradients of the trainable parameters (requires_grad)
 * across ranks, bucketed; a trainable parameter without a gradient gets
 * zeros first. */
int fg__ddp_sync_grads(fg__ddp *d, fg_module *m, char **err);
/* Replaces *dict (numbers or tensors) by the sum over ranks of every
 * rank's dict (keys any rank has). */
int fg__ddp_sum_dict(fg__ddp *d, fg_value **dict, char **err);
/* Sums every evaluator state of a split across ranks into every rank's
 * evaluators (TorchMetrics' dist_reduce_fx "sum"), before compute. */
int fg__ddp_reduce_evaluators(fg__ddp *d, fg_module *m, fg_split split, fg_events *bus,
                              char **err);
/* *flag becomes true on every rank when it is true on any. */
int fg__ddp_any(fg__ddp *d, bool *flag, char **err);
/* Every rank's value (pickled through the group), in rank order: (*out)[r]
 * for r in 0..world-1; the caller frees each and the array. */
int fg__ddp_gather_values(fg__ddp *d, const fg_value *mine, fg_value ***out, char **err);
int fg__ddp_barrier(fg__ddp *d, char **err);
/* trainer.sync_batchnorm under ddp (sync_batchnorm.c): a model without
 * BatchNorm layers runs as is; one with them is FG_ECONFIG naming the
 * first (they cannot be converted here). */
int fg__sync_batchnorm_start(fg__ddp *d, fg_module *m, fg_events *bus, char **err);
/* Called with a failed run's code and message: names the rank that
 * caused it ("rank R: ...") and posts this rank's error for the others.
 * Returns the code to report. NULL d: returns rc. */
int fg__ddp_fail(fg__ddp *d, int rc, char **err);
/* Leaves the group (after a barrier when ok) and, as the rank that
 * started the others, waits for them (ok) or stops them; a child that
 * failed fails an ok run. Frees d; NULL is a no-op. */
int fg__ddp_close(fg__ddp *d, bool ok, char **err);

/* ---- profiler (profiler.c) ----------------------------------------------------- */

/* trainer.profiler's recorder; NULL (profiler null) makes every call a
 * no-op. Its files go to the profiler's dirpath, else the run directory:
 * "simple" <stage>-<filename: profiler>.txt, "pytorch" (libtorch's
 * profiler, started at create) <stage>[-<filename>].pt.trace.json. */
typedef struct fg__profiler fg__profiler;
int fg__profiler_create(const fg_trainer_opts *o, const char *run_dir, const char *stage,
                        fg__profiler **out, char **err);
/* The start of an action (a timestamp for stop; 0 when not timing). */
double fg__profiler_start(const fg__profiler *p);
/* Adds the time since t0 to the action's total and counts a call. */
void fg__profiler_stop(fg__profiler *p, const char *action, double t0);
/* The same for a callback hook: "[Callback]<cls>.<hook>". */
void fg__profiler_stop_callback(fg__profiler *p, const char *cls, const char *hook, double t0);
/* "simple": logs Lightning's "<STAGE> Profiler Report" table and writes
 * its file; "pytorch": writes the trace. Each announced by an ARTIFACT
 * event. */
int fg__profiler_finish(fg__profiler *p, fg_events *bus, char **err);
void fg__profiler_free(fg__profiler *p); /* NULL is a no-op */

/* ---- loops --------------------------------------------------------------- */

typedef struct {
  fg_trainer_opts *opts;
  fg_stage stage;
  fg_module *module;
  fg_datamodule *dm;
  fg_optim_set *optim;   /* optimizers and their schedulers (fit only) */
  fg_events *events;
  volatile sig_atomic_t *cancel;
  volatile sig_atomic_t *pause;
  bool pause_cancels;     /* outside fit a pause is a cancel */
  uint64_t seed;          /* the run's seed (the fit data order) */
  const char *run_dir;
  const fg_node *config;  /* the checked, merged config (SaveAndLogConfigCallback) */
  /* Where the loop is; pos.batches_done > 0 only when a resume starts
   * inside an epoch (train_epoch consumes it). */
  fg_ckpt_pos pos;
  fg_value *last_metrics; /* latest of every logged key */
  bool should_stop;       /* set by EarlyStopping */
  bool sanity_checking;   /* the validation before fit (Lightning's trainer.sanity_checking) */
  bool val_this_epoch;    /* check_val_every_n_epoch selects this epoch */
  bool epoch_complete;    /* at on_train_epoch_end: the epoch ran to its last batch */
  fg__ddp *ddp;           /* NULL: one process */
  bool rank_zero;         /* writes checkpoints, artifacts, logs (true without ddp) */
  double fit_started;     /* monotonic seconds at fit's start (max_time) */
  bool min_told;          /* the stop-deferred-by-min_epochs/min_steps note was logged */
  /* max_time: fit seconds of the runs this one resumes (a checkpoint's
   * fulgur_loop.time_elapsed), counted with this run's. */
  double time_before;
  fg__profiler *profiler; /* NULL: not profiling */
  /* overfit_batches: validation reads the fit dataset, in order, from its
   * own loader (the fit loader may be inside an epoch). Owned. */
  fg_dataloader *overfit_val;
  int64_t fit_loaded_epoch; /* reload_dataloaders_every_n_epochs: when each */
  int64_t val_loaded_epoch; /* loader was last built (-1: not yet) */
  volatile sig_atomic_t *checkpoint; /* checkpoint now (fg_run_opts.checkpoint) */
  int64_t log_rows;       /* STEP and EPOCH events with scalars emitted by the run */
  bool fork;              /* fg_run_opts.fork: savers' states are not restored */
  /* The num_threads the run trains with (fulgur_loop.threads), or one a
   * checkpoint recorded before the run's own is set; 0: none. */
  int threads;
} fg_loop;

/* ---- num_threads: auto (threads.c) --------------------------------------- */

/* What the trial measured: candidate thread counts and each one's fastest
 * step in seconds; n_candidates 0 when there was nothing to choose. */
typedef struct {
  int threads;
  int cores;
  int n_candidates;
  int candidates[16];
  double step_secs[16];
  int steps;          /* steps the trial ran */
  bool training;      /* fit's training steps (else validate's or test's forward steps) */
  double trial_secs;  /* the trial's wall time, the copy's building included (not the
                       * loader's, which the stage builds anyway) */
} fg_threads_choice;
/* The cores online. */
int fg__threads_cores(void);
/* Times steps with each candidate thread count, sets the fastest and
 * fills *out: for fit, training steps of a copy of l's module and
 * optimizers; for validate and test, forward steps of l's module in eval
 * mode without gradients. The run's weights, buffers, optimizer state,
 * evaluators, generator and data order are left as they were. */
int fg__threads_choose(fg_loop *l, fg_threads_choice *out, char **err);
/* "chose N of C cores by timing ..." (malloc'd), for the run's log. */
char *fg__threads_describe(const fg_threads_choice *c);
/* After a checkpoint is loaded, before the stage's loop: with num_threads
 * auto, a fit reuses l->threads when its checkpoint recorded one, else
 * (and for validate and test) runs the trial; the choice is logged and
 * written into the run's config.yaml. predict keeps all cores (its tasks
 * run on a pool of their own). Otherwise l->threads becomes the count
 * already set. */
int fg__threads_apply(fg_loop *l, char **err);

/* Seconds of training so far: this run's since the fit loop started, and
 * the resumed runs' before it (max_time counts both, as Lightning's Timer
 * restored from a checkpoint). */
double fg__loop_fit_elapsed(const fg_loop *l);
/* trainer.precision (precision.c). begin/end bracket a step's forward
 * context (bf16-mixed: CPU autocast; bf16-true: bf16 as the default
 * dtype; 32: nothing); end is for a begin that returned 0. */
int fg__precision_begin(fg_precision p, fg_autocast_prev *prev, char **err);
void fg__precision_end(fg_precision p, const fg_autocast_prev *prev);
/* Lightning's convert_module: bf16-true turns the module's floating
 * parameters and buffers into bf16 in place; other precisions keep them. */
int fg__precision_convert_module(fg_precision p, fg_module *m, char **err);
/* Lightning's convert_input: under bf16-true *batch is replaced by a copy
 * whose floating tensors are bf16 (the old one freed); otherwise kept. */
int fg__precision_convert_input(fg_precision p, fg_value **batch, char **err);
/* fg_module_forward_step inside the precision's forward context. */
int fg__loop_forward_step(fg_loop *l, fg_split split, size_t dataloader_idx, const fg_value *batch,
                          fg_step_result *out, char **err);
/* Once per run: bf16 (mixed or true) on a CPU without bf16 instructions
 * will be slow. */
void fg__precision_warn(const fg_trainer_opts *o, fg_events *bus);

/* The fit loop (loop.c): sanity check, epochs, callbacks' hooks. */
int fg__loop_fit(fg_loop *l, char **err);
/* The fit's epochs from l->pos (loop.c), without the fit's start and end
 * hooks and the sanity check. */
int fg__loop_fit_epochs(fg_loop *l, char **err);
/* trainer.num_folds > 1 (kfold.c): lightning_template's KFoldLoop, the
 * epochs once per fold, each from the starting weights and fresh
 * optimizers. */
int fg__loop_fit_folds(fg_loop *l, char **err);
/* Validate or test over every dataloader of the split; logs epoch metrics. */
int fg__loop_eval(fg_loop *l, fg_split split, bool sanity, char **err);

/* Polled by a loop at its step boundaries: true when the run must stop
 * with FG_ECANCELED. */
typedef bool (*fg__cancel_fn)(const void *arg);
/* The predict loop (src/predict/engine.c); ckpt is the --ckpt_path (for
 * predict_path), or NULL. cancelled(cancel_arg) is polled before each
 * batch. */
int fg__predict_run(fg_loop *l, const char *ckpt, fg__cancel_fn cancelled, const void *cancel_arg,
                    char **err);

/* ---- what the loops report (loop_events.c) ------------------------------------ */

/* An event of the loop's position (batch_idx and num_batches -1). */
fg_event fg__loop_event(const fg_loop *l, fg_event_kind kind, fg_split split);
/* Emits the doubles of a dict as one STEP or EPOCH event and remembers
 * them as the latest values (monitors read them). */
void fg__loop_log_scalars(fg_loop *l, fg_event_kind kind, fg_split split, const fg_value *d);
/* Takes the tensor results out of metrics into files of <run dir>/artifacts
 * (rank 0), each announced by an ARTIFACT event. */
int fg__loop_keep_artifacts(fg_loop *l, fg_split split, fg_value *metrics, char **err);

/* ---- the loop's state in checkpoints, the pause (loop_state.c) --------------- */

/* Whether the run must stop now with FG_ECANCELED: cancel, or a pause
 * outside fit. */
bool fg__loop_cancel_requested(const fg_loop *l);
bool fg__loop_pause_requested(const fg_loop *l);
/* The "fulgur_loop" extras of a checkpoint (checkpoint.c lists them); with
 * pause, also what the interrupted epoch gathered. *out is the caller's. */
int fg__loop_state(fg_loop *l, bool pause, fg_value **out, char **err);
/* Restores what a checkpoint's "fulgur_loop" entry keeps beside the
 * position (seed, generator state, latest metrics and, after a pause,
 * gradients, fit evaluator and checkpoint saver states) before a resumed
 * fit starts. NULL restores nothing. */
int fg__loop_restore(fg_loop *l, const fg_value *loop_state, char **err);
/* The one way a checkpoint of the run is written: the module, optimizers,
 * position, every callback's state (saver's first, see callback.h) and
 * loop_state, then an ARTIFACT "checkpoint" event (batch_idx: -1 at an
 * epoch's end, else the batch a resume starts at). */
int fg__loop_save_checkpoint(fg_loop *l, const char *path, const fg_callback *saver,
                             const fg_value *loop_state, int64_t batch_idx, char **err);
/* The pause at a step boundary (batch b of the current epoch runs next):
 * <run dir>/checkpoints/pause.ckpt, then FG_EPAUSED naming it. */
int fg__loop_pause(fg_loop *l, int64_t b, char **err);
/* Checkpoint now, at a step boundary (batch b runs next): the state a
 * pause writes, as <run dir>/checkpoints/manual-step=S.ckpt; the run goes
 * on. */
int fg__loop_manual_checkpoint(fg_loop *l, int64_t b, char **err);

/* ---- the callback list (callbacks/callbacks.c) ------------------------------- */

/* Appends cb to the list (savers last), which owns it from then on. */
void fg__callbacks_add(fg_trainer_opts *o, fg_callback *cb);
bool fg__callbacks_have_saver(const fg_trainer_opts *o);
const fg_callback *fg__callbacks_first_saver(const fg_trainer_opts *o);
/* The registry's destroy of callback objects. */
void fg__callback_free(void *cb);
/* Each hook of callback.h over the list, in order, up to the first error. */
int fg__callbacks_setup(fg_loop *l, char **err);
int fg__callbacks_on_fit_start(fg_loop *l, char **err);
int fg__callbacks_on_train_epoch_start(fg_loop *l, char **err);
int fg__callbacks_on_train_batch_start(fg_loop *l, int64_t batch_idx, fg_value *step_log,
                                       char **err);
int fg__callbacks_on_train_batch_end(fg_loop *l, int64_t batch_idx, char **err);
int fg__callbacks_on_validation_end(fg_loop *l, char **err);
int fg__callbacks_on_train_epoch_end(fg_loop *l, char **err);
int fg__callbacks_on_fit_end(fg_loop *l, char **err);
/* A checkpoint's "callbacks" entry: the saver's state first (NULL: none),
 * then every other stateful callback's except the other savers'. */
fg_value *fg__callbacks_state_dict(const fg_loop *l, const fg_callback *saver);
/* Restores every callback but the savers from a checkpoint's "callbacks"
 * entry (NULL: nothing to restore). */
int fg__callbacks_load_state_dict(fg_trainer_opts *o, const fg_value *callbacks, char **err);
/* The first saver's state from a checkpoint's "callbacks" entry (the one
 * it holds): a run that continues its own folder goes on with that top-k,
 * as Lightning's ModelCheckpoint does when the dirpath is the same. */
int fg__callbacks_load_first_saver_state(fg_trainer_opts *o, const fg_value *callbacks, char **err);
/* Every saver's state in list order, and back (the pause's
 * fulgur_loop.model_checkpoints). */
fg_value *fg__callbacks_saver_states(const fg_loop *l);
int fg__callbacks_load_saver_states(fg_trainer_opts *o, const fg_value *states, char **err);

#endif
