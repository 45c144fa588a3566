/* trainer.num_threads: auto. The thread count is chosen by timing real
 * training steps, because the right one depends on the machine and not on
 * its core count: on small virtual machines two intra-op threads make an
 * MLP step several times slower than one, on big ones more threads win.
 *
 * The trial trains a copy of the model (built again from its config, with
 * the run's current weights) and a fresh optimizer over it, on batches of
 * the run's own fit loader, so its loader workers compete for the cores
 * as they will in the fit. The global generator is put back afterwards:
 * the run's weights, optimizer state and data order are exactly those of
 * a run started with the chosen number given explicitly. libtorch's
 * intra-op threads and OpenBLAS's pool are set together (the same count,
 * as an explicit num_threads sets them), so every choice can be written
 * back as an explicit setting.
 *
 * validate and test time forward steps of the run's module itself in eval
 * mode without gradients, which changes nothing the run keeps.
 *
 * Candidates are 1, 2, 4, ... and the core count. After one warm-up step,
 * every candidate runs one step per round, interleaved so that the
 * machine's drift hits them alike; a candidate more than twice as slow as
 * the best after the first round drops out, so slow settings cost one
 * step each. A candidate's time is its fastest step (the least disturbed
 * by other work); the fewest threads within 5% of the fastest win, as
 * they leave the other cores free. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fulgur/autograd.h"
#include "fulgur/error.h"
#include "fulgur/registry.h"
#include "trainer/trainer.h"
#include "util/xalloc.h"

#define MAX_CANDIDATES 16
#define ROUNDS 3
#define DROP_RATIO 2.0
#define TIE_RATIO 1.05

static double monotonic_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int fg__threads_cores(void) {
  long n = sysconf(_SC_NPROCESSORS_ONLN);
  return n > 0 ? (int)n : 1;
}

/* 1, 2, 4, ... below cores, then cores itself. */
static int candidates(int cores, int *out) {
  int n = 0;
  for (int t = 1; t < cores && n < MAX_CANDIDATES - 1; t *= 2) out[n++] = t;
  out[n++] = cores;
  return n;
}

typedef struct {
  fg_loop copy;          /* fit: the run's loop with the copied module and optimizers;
                          * validate and test: the run's loop itself */
  fg_dataloader *dl;     /* the stage's first loader (borrowed) */
  int64_t epoch;
  fg_split split;
} trial;

/* The next fit batch, starting the loader's epoch again when it ends. */
static int next_batch(trial *t, fg_value **out, char **err) {
  int rc = fg_dataloader_next(t->dl, out, err);
  if (rc == 0 && *out == NULL && (rc = fg_dataloader_start_epoch(t->dl, t->epoch, err)) == 0)
    rc = fg_dataloader_next(t->dl, out, err);
  if (rc == 0 && *out == NULL) rc = fg_err_set(err, FG_EDATA, "the fit loader gave no batch");
  return rc;
}

/* One training step of the copy, as the fit loop's (zero_grad, forward
 * in the precision's context, backward, every optimizer's step, the loss
 * read back); *secs is its wall time, the batch's loading included. */
static int train_step(trial *t, double *secs, char **err) {
  if (t->split != FG_SPLIT_FIT) {
    /* validate and test: the forward step alone (eval mode, no grad). */
    double t0 = monotonic_now();
    fg_value *batch = NULL;
    int rc = next_batch(t, &batch, err);
    fg_step_result r;
    if (rc == 0 && (rc = fg__loop_forward_step(&t->copy, t->split, 0, batch, &r, err)) == 0)
      fg_step_result_clear(&r);
    fg_value_free(batch);
    *secs = monotonic_now() - t0;
    return rc;
  }
  double t0 = monotonic_now();
  fg_value *batch = NULL;
  int rc = next_batch(t, &batch, err);
  const fg_optim_set *os = t->copy.optim;
  for (size_t i = 0; i < os->n && rc == 0; i++) rc = fg_optimizer_zero_grad(os->opts[i], err);
  fg_step_result r;
  memset(&r, 0, sizeof r);
  bool have = false;
  if (rc == 0) have = (rc = fg__loop_forward_step(&t->copy, FG_SPLIT_FIT, 0, batch, &r, err)) == 0;
  fg_value_free(batch);
  if (rc == 0) rc = fg_tensor_backward(r.loss, err);
  for (size_t i = 0; i < os->n && rc == 0; i++) rc = fg_optimizer_step(os->opts[i], err);
  double loss;
  if (rc == 0) rc = fg_tensor_item(r.loss, &loss, err);
  if (have) fg_step_result_clear(&r);
  *secs = monotonic_now() - t0;
  return rc;
}

/* The copy: the model built again from its config (its initialization
 * draws from the generator, which the caller restores), with the run's
 * state and its trainable parameters, and optimizers built over it. */
static int make_copy(fg_loop *l, trial *t, char **err) {
  t->copy = *l;
  t->copy.module = NULL;
  t->copy.optim = NULL;
  void *obj = NULL;
  int rc = fg_registry_create(fg_node_get(l->config, "model"), "model", FG_KIND_MODULE, &obj, NULL, err);
  if (rc) return rc;
  fg_module *m = obj;
  t->copy.module = m;
  fg_value *sd = fg_value_dict();
  if ((rc = fg_module_state_dict(l->module, sd, err)) == 0)
    rc = fg_module_load_state_dict(m, sd, true, "num_threads auto", NULL, err);
  fg_value_free(sd);
  for (size_t i = 0; i < fg_module_num_params(m) && rc == 0; i++)
    rc = fg_tensor_set_requires_grad(fg_module_param(m, i),
                                     fg_tensor_requires_grad(fg_module_param(l->module, i)), err);
  fg_module_train(m, true);
  const fg_node *oc = fg_node_get(l->config, "optimizer_config");
  if (rc == 0) rc = fg_optim_set_build(oc, "optimizer_config", m, &t->copy.optim, err);
  return rc;
}

static void free_copy(trial *t) {
  if (t->split != FG_SPLIT_FIT) return; /* the run's own module */
  fg_optim_set_free(t->copy.optim);
  fg_module_free(t->copy.module);
}

static int run_trial(fg_loop *l, fg_split split, fg_threads_choice *out, char **err) {
  trial t;
  memset(&t, 0, sizeof t);
  t.split = split;
  int cand[MAX_CANDIDATES];
  int n = candidates(out->cores, cand);
  double best[MAX_CANDIDATES];
  bool alive[MAX_CANDIDATES];
  for (int i = 0; i < n; i++) best[i] = INFINITY, alive[i] = true;
  if (fg_datamodule_num_loaders(l->dm, fg_split_names[split]) == 0) {
    out->threads = out->cores; /* the stage fails on its own, naming the split */
    return 0;
  }
  int rc = fg_datamodule_loader(l->dm, fg_split_names[split], 0, &t.dl, err);
  if (rc == 0 && fg_dataloader_num_batches(t.dl) == 0) {
    /* Nothing to time: all cores, as before auto. */
    out->threads = out->cores;
    return 0;
  }
  /* The trial's cost starts here: building the loader (reading the
   * dataset) is the stage's own, which it would pay without a trial. */
  double t0 = monotonic_now();
  if (rc == 0 && split == FG_SPLIT_FIT) rc = make_copy(l, &t, err);
  if (split != FG_SPLIT_FIT) t.copy = *l;
  t.epoch = l->pos.epoch;
  if (rc == 0) rc = fg_dataloader_start_epoch(t.dl, t.epoch, err);
  double secs = 0;
  /* The warm-up: the optimizer's state is allocated and the pages of
   * the weights and batches are touched once, outside the timings. */
  if (rc == 0 && (rc = fg_torch_set_num_threads(cand[0], err)) == 0) rc = train_step(&t, &secs, err);
  if (rc == 0) out->steps++;
  for (int r = 0; r < ROUNDS && rc == 0; r++) {
    for (int i = 0; i < n && rc == 0; i++) {
      if (!alive[i]) continue;
      if ((rc = fg_torch_set_num_threads(cand[i], err)) == 0) rc = train_step(&t, &secs, err);
      if (rc == 0 && secs < best[i]) best[i] = secs;
      out->steps++;
    }
    double fastest = INFINITY;
    for (int i = 0; i < n; i++)
      if (alive[i] && best[i] < fastest) fastest = best[i];
    for (int i = 0; i < n && r == 0; i++)
      if (best[i] > DROP_RATIO * fastest) alive[i] = false;
  }
  /* Back to an empty epoch: the fit starts its own. */
  if (t.dl && rc == 0) rc = fg_dataloader_start_epoch(t.dl, t.epoch, err);
  free_copy(&t);
  out->trial_secs = monotonic_now() - t0;
  if (rc) return rc;
  double fastest = INFINITY;
  for (int i = 0; i < n; i++)
    if (best[i] < fastest) fastest = best[i];
  int pick = 0;
  while (best[pick] > TIE_RATIO * fastest) pick++;
  out->threads = cand[pick];
  out->n_candidates = n;
  for (int i = 0; i < n; i++) {
    out->candidates[i] = cand[i];
    out->step_secs[i] = best[i];
  }
  return 0;
}

/* validate and test time the run's module itself in eval mode without
 * gradients, which changes no parameter or buffer; what its evaluators
 * gathered is dropped after. */
static int eval_trial(fg_loop *l, fg_split split, fg_threads_choice *out, char **err) {
  bool was_training = fg_module_is_training(l->module);
  fg_module_train(l->module, false);
  fg_grad_mode *g = fg_torch_no_grad_begin(false);
  int rc = run_trial(l, split, out, err);
  fg_torch_no_grad_end(g);
  fg_module_evaluators_reset(l->module, split);
  fg_module_train(l->module, was_training);
  return rc;
}

int fg__threads_choose(fg_loop *l, fg_threads_choice *out, char **err) {
  memset(out, 0, sizeof *out);
  out->cores = fg__threads_cores();
  out->training = l->stage == FG_STAGE_FIT;
  if (out->cores == 1) {
    out->threads = 1;
    return fg_torch_set_num_threads(1, err);
  }
  /* The copy's initialization and the trial's dropout draw from the
   * global generator: the run must find it as it was. */
  fg_tensor *rng = NULL;
  int rc = fg_torch_get_rng_state(&rng, err);
  if (rc == 0)
    rc = l->stage == FG_STAGE_FIT ? run_trial(l, FG_SPLIT_FIT, out, err)
                                  : eval_trial(l, l->stage == FG_STAGE_TEST ? FG_SPLIT_TEST : FG_SPLIT_VAL,
                                               out, err);
  if (rng) {
    int rrc = fg_torch_set_rng_state(rng, rc ? NULL : err);
    if (rc == 0) rc = rrc;
  }
  fg_tensor_free(rng);
  if (rc == 0) rc = fg_torch_set_num_threads(out->threads, err);
  if (rc) return fg_err_prefix(err, rc, "trainer.num_threads auto");
  return 0;
}

char *fg__threads_describe(const fg_threads_choice *c) {
  if (c->n_candidates == 0)
    return fg__xasprintf("chose %d of %d cores without a trial (%s)", c->threads, c->cores,
                         c->cores == 1 ? "one core" : "no batch to time");
  char buf[MAX_CANDIDATES * 32] = "";
  size_t len = 0;
  for (int i = 0; i < c->n_candidates; i++) {
    if (isinf(c->step_secs[i]))
      len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%d: dropped", i ? ", " : "",
                              c->candidates[i]);
    else
      len += (size_t)snprintf(buf + len, sizeof buf - len, "%s%d: %.2f ms", i ? ", " : "",
                              c->candidates[i], c->step_secs[i] * 1e3);
  }
  return fg__xasprintf("chose %d of %d cores by timing %d %s steps in %.2f s "
                       "(fastest step per thread count: %s)",
                       c->threads, c->cores, c->steps, c->training ? "training" : "evaluation",
                       c->trial_secs, buf);
}

/* config.yaml says what auto chose, as the explicit setting that repeats
 * the run, with the reason beside it as a comment:
 *   num_threads: 1  # auto: chose 1 of 2 cores by timing ...
 * The emitted text is edited rather than the config, so the comment can
 * go in (the config tree has no comments). */
static int record_in_config(const fg_loop *l, const char *why, char **err) {
  fg_node *cfg = fg_node_clone(l->config);
  fg_node *tr = fg_node_get(cfg, "trainer");
  int rc = 0;
  char *yaml = NULL, *path = fg__xasprintf("%s/config.yaml", l->run_dir);
  if (tr && fg_node_kind_of(tr) == FG_NODE_MAP) fg_node_map_set(tr, "num_threads", fg_node_new_int(l->threads));
  rc = fg_node_emit(cfg, &yaml, err);
  fg_node_free(cfg);
  char *out = NULL;
  if (rc == 0) {
    char line[64];
    snprintf(line, sizeof line, "\n  num_threads: %d\n", l->threads);
    const char *tstart = strstr(yaml, "\ntrainer:\n");
    if (tstart == NULL && strncmp(yaml, "trainer:\n", 9) == 0) tstart = yaml - 1;
    const char *at = tstart ? strstr(tstart + 1, line) : NULL;
    if (at) {
      size_t head = (size_t)(at - yaml) + strlen(line) - 1;
      out = fg__xasprintf("%.*s  # auto: %s%s", (int)head, yaml, why, yaml + head);
    }
  }
  if (rc == 0) {
    const char *text = out ? out : yaml;
    rc = fg__write_file_atomic(path, text, strlen(text), err);
  }
  free(out);
  free(yaml);
  free(path);
  return rc;
}

int fg__threads_apply(fg_loop *l, char **err) {
  const fg_trainer_opts *o = l->opts;
  if (!o->num_threads_auto || l->ddp) {
    /* An explicit count, null, or ddp's share of the cores per rank:
     * already set by the run. */
    l->threads = o->num_threads;
    return 0;
  }
  char *why = NULL;
  int rc = 0;
  if (l->threads > 0) {
    /* A resume reuses the choice its checkpoint recorded: the same run
     * goes on with the same numbers, and pays for no second trial. */
    if ((rc = fg_torch_set_num_threads(l->threads, err))) return rc;
    why = fg__xasprintf("reused %d from the checkpoint's fulgur_loop.threads", l->threads);
  } else if (l->stage == FG_STAGE_FIT || l->stage == FG_STAGE_VALIDATE || l->stage == FG_STAGE_TEST) {
    fg_threads_choice c;
    if ((rc = fg__threads_choose(l, &c, err))) return rc;
    l->threads = c.threads;
    why = fg__threads_describe(&c);
  } else {
    l->threads = o->num_threads;
    return 0;
  }
  fg_events_log(l->events, FG_LOG_INFO, "trainer.num_threads auto: %s", why);
  if (l->rank_zero && l->run_dir) rc = record_in_config(l, why, err);
  free(why);
  return rc;
}
