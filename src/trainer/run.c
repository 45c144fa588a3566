/* fg_run: from a merged config to a finished stage. Checks the config,
 * builds module, data and trainer through the registry, makes the run
 * directory, wires the sinks, runs the loop. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fulgur/error.h"
#include "fulgur/optim.h"
#include "fulgur/registry.h"
#include "trainer/trainer.h"
#include "util/blas_kernel.h"
#include "util/xalloc.h"

static void warn_unmatched(void *ctx, const char *pattern) {
  fg_events_log(ctx, FG_LOG_WARNING,
                "model.init_args.finetune_cfg: '%s' matches no parameter name", pattern);
}

/* The seed's fit start: each existing ckpt_path file's state_dict, in
 * order (later files win), then finetune_cfg. */
static int module_fit_start(fg_module *m, fg_events *bus, char **err) {
  for (size_t i = 0; i < fg_module_num_init_ckpts(m); i++) {
    const char *path = fg_module_init_ckpt(m, i);
    if (access(path, F_OK) != 0) {
      fg_events_log(bus, FG_LOG_WARNING, "model.init_args.ckpt_path: '%s' does not exist; skipped",
                    path);
      continue;
    }
    char *report = NULL;
    int rc = fg__state_dict_load_file(path, m, &report, err);
    if (rc) return fg_err_prefix(err, rc, "model.init_args.ckpt_path");
    fg_events_log(bus, FG_LOG_INFO, "loaded weights from %s", path);
    if (report) fg_events_log(bus, FG_LOG_WARNING, "%s: %s", path, report);
    free(report);
  }
  size_t trainable = fg_module_apply_finetune(m, warn_unmatched, bus);
  if (trainable < fg_module_num_params(m))
    fg_events_log(bus, FG_LOG_INFO, "finetune_cfg: %zu of %zu parameters train, the rest are frozen",
                  trainable, fg_module_num_params(m));
  return 0;
}

/* Passes events on to the caller's bus (which the caller closes). */
static void forward_emit(void *self, const fg_event *ev) { fg_events_emit(self, ev); }

/* The predict engine's cancel check (fg__cancel_fn over the loop). */
static bool loop_cancelled(const void *loop) { return fg__loop_cancel_requested(loop); }

static uint64_t random_seed(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  uint64_t x = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 20) ^ (uint64_t)getpid();
  x ^= x >> 33;
  x *= 0xff51afd7ed558ccdULL;
  x ^= x >> 33;
  return x % 4294967296ULL; /* Lightning draws seeds in the uint32 range */
}

int fg_run(const fg_node *config_in, const fg_run_opts *ro, fg_value **final_metrics, char **err) {
  fg_node *config = fg_node_clone(config_in);
  fg_trainer_opts topts;
  memset(&topts, 0, sizeof topts);
  fg_module *module = NULL;
  fg_datamodule *dm = NULL;
  fg_optim_set *optim = NULL;
  char *run_dir = NULL;
  fg_events *bus = NULL;
  fg__ddp *ddp = NULL;
  fg_loop loop;
  memset(&loop, 0, sizeof loop);
  int rc = fg_config_load_plugins(config, err);
  if (rc == 0) rc = fg_config_check_stage(config, ro->stage, true, err);
  if (rc) goto done;
  fg_node *oc = fg_node_get(config, "optimizer_config");
  if ((rc = fg__trainer_opts_parse(fg_node_get(config, "trainer"), &topts, err))) goto done;

  /* Seed first: parameter initialization draws from the global generator. */
  fg_node *se = fg_node_get(config, "seed_everything");
  uint64_t seed = 0;
  bool seeded = true, drawn = false;
  if (fg_node_kind_of(se) == FG_NODE_BOOL) {
    seeded = fg_node_bool(se);
    drawn = seeded;
    if (seeded) seed = random_seed();
  } else {
    seed = (uint64_t)fg_node_int(se);
  }
  /* strategy: ddp joins (or starts) the other ranks here, with the config
   * as checked (its hash must match theirs) and rank 0's seed for all. */
  if ((rc = fg__ddp_start(config, ro->stage, &topts, &seed, &ddp, err))) goto done;
  bool rank_zero = fg__ddp_rank(ddp) == 0;
  if (drawn) fg_node_map_set(config, "seed_everything", fg_node_new_int((int64_t)seed));
  if (seeded) fg_torch_manual_seed(seed);
  if (ddp && !topts.num_threads_set) {
    /* The cores are shared by the ranks on this machine. */
    int per = topts.num_threads / fg__ddp_local_world(ddp);
    topts.num_threads = per > 0 ? per : 1;
  }
  if ((rc = fg_torch_set_num_threads(topts.num_threads, err))) goto done;
  if ((rc = fg_torch_set_deterministic(topts.deterministic, err))) goto done;

  void *obj = NULL;
  if ((rc = fg_registry_create(fg_node_get(config, "model"), "model", FG_KIND_MODULE, &obj, NULL, err)))
    goto done;
  module = obj;
  if ((rc = fg_registry_create(fg_node_get(config, "data"), "data", FG_KIND_DATAMODULE, &obj, NULL, err)))
    goto done;
  dm = obj;
  fg_datamodule_set_seed(dm, seed);
  /* use_distributed_sampler: false leaves every rank the whole dataset,
   * as Lightning does without its DistributedSampler. */
  if (ddp && topts.use_distributed_sampler)
    fg_datamodule_set_distributed(dm, fg__ddp_rank(ddp), fg__ddp_world(ddp));
  /* overfit_batches: the same first batches every epoch (warned). */
  if (topts.overfit_batches > 0 && ro->stage == FG_STAGE_FIT)
    topts.overfit_unshuffled = fg_datamodule_unshuffle(dm, "fit");

  /* Rank 0 alone writes the run directory, logs and events; the other
   * ranks run with a bus that has no sinks. */
  bus = fg_events_create();
  /* The first logger decides the run directory, as Trainer.log_dir. */
  fg_node *ck = fg_node_get(config, "ckpt_path");
  const char *ckpt = ck && fg_node_kind_of(ck) == FG_NODE_STRING ? fg_node_str(ck) : NULL;
  bool fit = ro->stage == FG_STAGE_FIT;
  /* One run per job: a resumed or retried job continues its folder (the
   * daemon names it), and so does a local fit from a run's checkpoint
   * with trainer.continue_run; otherwise a new version, as Lightning. */
  bool continuing = fit && (ro->run_dir || (topts.continue_run && ckpt));
  if (rank_zero && continuing) {
    if (ro->run_dir) run_dir = fg__xstrdup(ro->run_dir);
    else if ((rc = fg__ckpt_run_dir(ckpt, "ckpt_path", &run_dir, err))) goto done;
    if ((rc = fg__mkdirs(run_dir, err))) goto done;
  } else if (rank_zero && (rc = fg__run_dir_make(&topts, &run_dir, err))) {
    goto done;
  }
  if (rank_zero && ro->events) fg_events_add_sink(bus, (fg_sink){forward_emit, NULL, ro->events});
  if (rank_zero && ro->progress && topts.enable_progress_bar)
    fg_events_add_sink(bus, fg__progress_sink_create(ro->progress));
  if (rank_zero && (rc = fg__loggers_start(&topts, config, run_dir, continuing, bus, err))) goto done;
  if (rank_zero) {
    char *yaml = NULL, *path = fg__xasprintf("%s/config.yaml", run_dir);
    rc = fg_node_emit(config, &yaml, err);
    if (rc == 0) rc = fg__write_file_atomic(path, yaml, strlen(yaml), err);
    if (rc == 0) {
      fg_event ev = {.kind = FG_EVENT_ARTIFACT, .text = "config", .path = path, .batch_idx = -1,
                     .num_batches = -1, .max_epochs = -1, .max_steps = -1};
      fg_events_emit(bus, &ev);
    }
    free(yaml);
    free(path);
    if (rc) goto done;
  }
  if (run_dir) fg_events_log(bus, FG_LOG_INFO, "run directory: %s%s", run_dir,
                             continuing ? " (continued)" : "");
  {
    bool slow = false;
    char *blas = fg__blas_kernel_describe(&slow);
    fg_events_log(bus, slow ? FG_LOG_WARNING : FG_LOG_INFO, "%s", blas);
    free(blas);
  }
  fg__precision_warn(&topts, bus);
  if (ddp)
    fg_events_log(bus, FG_LOG_INFO, "strategy ddp: %d ranks (%d on this machine), rank 0 logs",
                  fg__ddp_world(ddp), fg__ddp_local_world(ddp));
  if (seeded) fg_events_log(bus, FG_LOG_INFO, "seed set to %llu", (unsigned long long)seed);
  fg__trainer_opts_warn(&topts, bus);
  for (size_t i = 0; i < fg_datamodule_num_warnings(dm); i++)
    fg_events_log(bus, FG_LOG_WARNING, "%s", fg_datamodule_warning(dm, i));
  /* The module's ckpt_path and finetune_cfg come first: the optimizer must
   * only see the parameters that train, and a resumed run's checkpoint
   * (below) must win over the starting weights. */
  if (ro->stage == FG_STAGE_FIT && (rc = module_fit_start(module, bus, err))) goto done;
  /* bf16-true's convert_module, after the starting weights are in and
   * before the optimizer sees the parameters; a checkpoint loaded later
   * is copied into the converted tensors. */
  if ((rc = fg__precision_convert_module(topts.precision, module, err))) goto done;
  if (oc && fg_node_kind_of(oc) != FG_NODE_NULL &&
      (rc = fg_optim_set_build(oc, "optimizer_config", module, &optim, err)))
    goto done;

  loop.opts = &topts;
  loop.stage = ro->stage;
  loop.module = module;
  loop.dm = dm;
  loop.optim = optim;
  loop.events = bus;
  loop.cancel = ro->cancel;
  loop.pause = ro->pause;
  loop.pause_cancels = ro->stage != FG_STAGE_FIT;
  loop.seed = seed;
  loop.run_dir = run_dir;
  loop.config = config;
  loop.last_metrics = fg_value_dict();
  loop.ddp = ddp;
  loop.rank_zero = rank_zero;
  loop.checkpoint = ro->checkpoint;
  loop.fork = ro->fork && fit;

  /* Lightning's setup(stage): every callback, before a checkpoint restores
   * their states and before the stage's loop. */
  if ((rc = fg__callbacks_setup(&loop, err))) goto done;

  if (ckpt) {
    fg_value *cbs = NULL, *ls = NULL;
    loop.log_rows = -1; /* unknown unless the checkpoint's fulgur_loop says */
    rc = (loop.fork ? fg__checkpoint_load_fork : fg__checkpoint_load)(
        ckpt, module, fit ? optim : NULL, fit ? &loop.pos : NULL, fit ? &cbs : NULL,
        fit ? &ls : NULL, err);
    if (rc == 0 && fit) rc = fg__callbacks_load_state_dict(&topts, cbs, err);
    if (rc == 0 && fit && continuing && !loop.fork)
      rc = fg__callbacks_load_first_saver_state(&topts, cbs, err);
    /* Last: the generator state must be the checkpoint's when the loop
     * starts, whatever building the run drew from it. */
    if (rc == 0 && fit) rc = fg__loop_restore(&loop, ls, err);
    fg_value_free(cbs);
    fg_value_free(ls);
    if (rc) goto done;
    if (fit && loop.pos.batches_done > 0)
      fg_events_log(bus, FG_LOG_INFO, "loaded checkpoint %s: resuming epoch %lld at batch %lld (global step %lld)",
                    ckpt, (long long)loop.pos.epoch, (long long)loop.pos.batches_done,
                    (long long)loop.pos.global_step);
    else
      fg_events_log(bus, FG_LOG_INFO, "loaded checkpoint %s", ckpt);
    if (fit && loop.fork)
      fg_events_log(bus, FG_LOG_INFO, "forked from %s at global step %lld: the config's optimizer "
                    "and scheduler arguments replace the checkpoint's", ckpt,
                    (long long)loop.pos.global_step);
  } else if (ro->stage != FG_STAGE_FIT) {
    fg_events_log(bus, FG_LOG_WARNING,
                  "no ckpt_path given: %s runs with the model's initial weights",
                  fg_stage_name(ro->stage));
  }

  /* The rows counted so far are this folder's only when it continues
   * from a checkpoint of its own run; a new version, a start over and a
   * fork start with nothing kept. */
  if (!continuing || !ckpt || loop.fork) loop.log_rows = 0; /* a fork's folder starts empty */
  if (continuing) {
    const char *key = FG_CONTINUED_ROWS;
    double rows = (double)loop.log_rows;
    fg_event cev = {.kind = FG_EVENT_STATE, .text = FG_CONTINUED_STATE, .split = "fit",
                    .global_step = loop.pos.global_step, .epoch = loop.pos.epoch,
                    .batch_idx = -1, .num_batches = -1, .max_epochs = -1, .max_steps = -1,
                    .n_values = 1, .keys = &key, .values = &rows};
    fg_events_emit(bus, &cev);
    if (loop.log_rows < 0)
      fg_events_log(bus, FG_LOG_WARNING, "%s does not say how many rows its run had logged; "
                    "metrics.csv keeps every row it has", ckpt);
  }

  /* num_threads auto: the trial starts from the weights the fit starts
   * from (a checkpoint's included), or the checkpoint's recorded choice. */
  if ((rc = fg__threads_apply(&loop, err))) goto done;

  /* DDP's start: every rank from rank 0's weights (a resume loaded the
   * same checkpoint everywhere; this also covers unseeded runs). */
  if (ddp && (rc = fg__ddp_broadcast_params(ddp, module, err))) goto done;

  if (ddp && topts.sync_batchnorm && (rc = fg__sync_batchnorm_start(ddp, module, bus, err))) goto done;
  /* The profiler covers the stage's loop, on rank 0 (the run directory's
   * rank), as Lightning's profilers write from rank 0. */
  if (rank_zero &&
      (rc = fg__profiler_create(&topts, run_dir, fg_stage_name(ro->stage), &loop.profiler, err)))
    goto done;

  fg_event st = {.kind = FG_EVENT_STATE, .text = "running", .batch_idx = -1, .num_batches = -1,
                 .max_epochs = -1, .max_steps = -1};
  fg_events_emit(bus, &st);
  switch (ro->stage) {
    case FG_STAGE_FIT:
      rc = fg__loop_fit(&loop, err);
      optim = loop.optim; /* a k-fold fit rebuilds them per fold (kfold.c) */
      break;
    case FG_STAGE_VALIDATE: rc = fg__loop_eval(&loop, FG_SPLIT_VAL, false, err); break;
    case FG_STAGE_TEST: rc = fg__loop_eval(&loop, FG_SPLIT_TEST, false, err); break;
    case FG_STAGE_PREDICT: rc = fg__predict_run(&loop, ckpt, loop_cancelled, &loop, err); break;
    default: rc = fg_err_set(err, FG_EUNSUPPORTED, "stage not supported"); break;
  }
  /* The report of a stage that ended normally (a failure's is partial). */
  if (rc == 0) rc = fg__profiler_finish(loop.profiler, bus, err);
  if (ddp) {
    /* The job's outcome is every rank's: a failure names its rank, and
     * success waits for the others. */
    rc = fg__ddp_fail(ddp, rc, err);
    int crc = fg__ddp_close(ddp, rc == 0, rc == 0 ? err : NULL);
    ddp = NULL;
    if (rc == 0) rc = crc;
  }
  st.text = rc == 0 ? "succeeded" : rc == FG_ECANCELED ? "cancelled" : rc == FG_EPAUSED ? "paused" : "failed";
  fg_events_emit(bus, &st);

done:
  if (ddp) {
    rc = fg__ddp_fail(ddp, rc, err);
    fg__ddp_close(ddp, false, NULL);
  }
  if (bus) {
    /* Closing flushes the CSV logger: a failure there fails the run. */
    int crc = fg_events_free(bus, rc == 0 ? err : NULL);
    if (rc == 0) rc = crc;
  }
  if (rc == 0 && final_metrics) {
    *final_metrics = loop.last_metrics;
    loop.last_metrics = NULL;
  }
  fg_value_free(loop.last_metrics);
  fg__profiler_free(loop.profiler);
  fg_optim_set_free(optim);
  fg_datamodule_free(dm);
  fg_module_free(module);
  fg__trainer_opts_close(&topts);
  free(run_dir);
  fg_node_free(config);
  return rc;
}
