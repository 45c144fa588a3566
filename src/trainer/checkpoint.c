/* Checkpoints in Lightning's layout, as PyTorch files that Python's
 * torch.load reads: epoch, global_step, state_dict, optimizer_states,
 * lr_schedulers, callbacks, fulgur_version, plus fulgur's own keys for an
 * exact resume, which Lightning does not keep:
 *
 *   fulgur_warmup_schedulers  the manual schedulers' states, per optimizer
 *   fulgur_loop
 *     epoch_done     taken at the end of `epoch` (else inside it)
 *     batches_done   fit batches of `epoch` consumed: a resume starts there
 *     seed           the run's seed, which orders the fit data
 *     rng_state      torch.get_rng_state() (dropout draws from it)
 *     last_metrics   the latest value of every logged key (monitors)
 *     time_elapsed   seconds the fit has trained so far, over every run it
 *                    resumes (max_time counts on from it)
 *     threads        the num_threads the run trained with (a resume with
 *                    num_threads auto reuses it instead of a new trial)
 *   and in a pause checkpoint (pause.ckpt) also
 *     paused             true
 *     grads              {param name: gradient} accumulated so far
 *     fit_evaluators     each fit evaluator's state (None: it has none)
 *     model_checkpoints  each ModelCheckpoint's state, in config order
 *
 * Lightning keeps the loop position under "loops" in a layout of its own
 * loop classes; fulgur does not write that key, so a Lightning that loads
 * the file restarts its loops from epoch and global_step as for an old
 * checkpoint instead of misreading a partial copy. */
#include <stdlib.h>
#include <string.h>

#include "fulgur/error.h"
#include "trainer/trainer.h"
#include "util/file.h"
#include "util/xalloc.h"

#ifndef FG_VERSION
#define FG_VERSION "0.0.0"
#endif

/* Lightning keeps the schedulers it steps in lr_schedulers; the manual
 * warmup schedulers are unknown to it (and so restart on a Lightning
 * resume). fulgur keeps theirs under its own key, one entry per optimizer,
 * so a resume is exact. */
static int sched_states(const fg_optim_set *optim, fg_value *ck, char **err) {
  fg_value *list = fg_value_list();
  fg_value_dict_set(ck, "lr_schedulers", list);
  if (optim == NULL) return 0;
  fg_value *warm = fg_value_list();
  fg_value_dict_set(ck, "fulgur_warmup_schedulers", warm);
  int rc = 0;
  for (size_t o = 0; o < optim->n && rc == 0; o++) {
    const fg_sched_set *sc = optim->scheds[o];
    fg_value *st = NULL;
    if (sc && sc->scheduler && (rc = fg_lr_scheduler_state_dict(sc->scheduler, &st, err)) == 0)
      fg_value_list_append(list, st);
    st = NULL;
    if (rc == 0 && sc && sc->warmup) rc = fg_lr_scheduler_state_dict(sc->warmup, &st, err);
    if (rc == 0) fg_value_list_append(warm, st ? st : fg_value_none());
  }
  return rc;
}

int fg__checkpoint_save(const char *path, fg_module *m, const fg_optim_set *optim,
                        const fg_ckpt_pos *pos, const fg_value *callbacks,
                        const fg_value *loop_state, char **err) {
  fg_value *ck = fg_value_dict();
  fg_value_dict_set(ck, "epoch", fg_value_int(pos->epoch));
  fg_value_dict_set(ck, "global_step", fg_value_int(pos->global_step));
  fg_value_dict_set(ck, "pytorch-lightning_version", fg_value_string("2.0.0"));
  /* Parameters and persistent buffers, as Python's state_dict(). */
  fg_value *sd = fg_value_dict();
  int rc = fg_module_state_dict(m, sd, err);
  if (rc) {
    fg_value_free(sd);
    goto done;
  }
  fg_value_dict_set(ck, "state_dict", sd);
  fg_value *opts = fg_value_list();
  fg_value_dict_set(ck, "optimizer_states", opts);
  for (size_t o = 0; optim && o < optim->n; o++) {
    fg_value *os = NULL;
    if ((rc = fg_optimizer_state_dict(optim->opts[o], &os, err))) goto done;
    fg_value_list_append(opts, os);
  }
  if ((rc = sched_states(optim, ck, err))) goto done;
  fg_value_dict_set(ck, "callbacks", callbacks ? fg_value_copy(callbacks) : fg_value_dict());
  fg_value *loop = fg_value_dict();
  fg_value_dict_set(loop, "epoch_done", fg_value_bool(pos->epoch_done));
  fg_value_dict_set(loop, "batches_done", fg_value_int(pos->batches_done));
  for (size_t i = 0; loop_state && i < fg_value_len(loop_state); i++)
    fg_value_dict_set(loop, fg_value_dict_key_at(loop_state, i),
                      fg_value_copy(fg_value_dict_value_at(loop_state, i)));
  fg_value_dict_set(ck, "fulgur_loop", loop);
  fg_value_dict_set(ck, "fulgur_version", fg_value_string(FG_VERSION));
  char *buf = NULL;
  size_t len = 0;
  if ((rc = fg_value_pickle(ck, &buf, &len, err)) == 0) {
    rc = fg__write_file_atomic(path, buf, len, err);
    free(buf);
  }
done:
  fg_value_free(ck);
  return rc;
}

/* Reads a checkpoint file: the whole pickled value. */
static int read_checkpoint(const char *path, fg_value **out, char **err) {
  char *buf = NULL;
  size_t len = 0;
  int rc = fg__read_file(path, &buf, &len, err);
  if (rc) return rc;
  rc = fg_value_unpickle(buf, len, out, err);
  free(buf);
  if (rc) return fg_err_prefix(err, FG_EDATA, "%s: not a checkpoint", path);
  return 0;
}

int fg__state_dict_load_file(const char *path, fg_module *m, char **report, char **err) {
  fg_value *ck = NULL;
  int rc = read_checkpoint(path, &ck, err);
  if (rc) return rc;
  /* A Lightning checkpoint, or a bare torch.save(model.state_dict()). */
  const fg_value *sd = fg_value_kind_of(ck) == FG_VALUE_DICT ? fg_value_dict_get(ck, "state_dict") : NULL;
  if (sd == NULL && fg_value_kind_of(ck) == FG_VALUE_DICT) sd = ck;
  if (sd == NULL || fg_value_kind_of(sd) != FG_VALUE_DICT)
    rc = fg_err_set(err, FG_EDATA, "%s: not a checkpoint: no state_dict", path);
  else
    rc = fg_module_load_state_dict(m, sd, false, path, report, err);
  fg_value_free(ck);
  return rc;
}

/* A fork's optimizer state: the checkpoint's (buffers, step counts) with
 * every hyperparameter of each param group the config's (fresh, what the
 * optimizer was built with): lr, weight_decay, momentum, betas ... and
 * initial_lr, which schedulers start from. */
static int fork_optimizer_state(const fg_value *saved, const fg_value *fresh, fg_value **out,
                                char **err) {
  fg_value *merged = fg_value_copy(saved);
  fg_value *sg = fg_value_kind_of(merged) == FG_VALUE_DICT ? fg_value_dict_get(merged, "param_groups") : NULL;
  const fg_value *fg = fg_value_dict_get(fresh, "param_groups");
  if (sg == NULL || fg == NULL || fg_value_kind_of(sg) != FG_VALUE_LIST ||
      fg_value_kind_of(fg) != FG_VALUE_LIST || fg_value_len(sg) != fg_value_len(fg)) {
    fg_value_free(merged);
    return fg_err_set(err, FG_EDATA, "has %zu parameter groups, the config builds %zu",
                      sg && fg_value_kind_of(sg) == FG_VALUE_LIST ? fg_value_len(sg) : 0,
                      fg && fg_value_kind_of(fg) == FG_VALUE_LIST ? fg_value_len(fg) : 0);
  }
  for (size_t g = 0; g < fg_value_len(fg); g++) {
    fg_value *dst = fg_value_list_at(sg, g);
    const fg_value *src = fg_value_list_at(fg, g);
    for (size_t k = 0; k < fg_value_len(src); k++) {
      const char *key = fg_value_dict_key_at(src, k);
      if (strcmp(key, "params") == 0) continue;
      fg_value_dict_set(dst, key, fg_value_copy(fg_value_dict_value_at(src, k)));
    }
    const fg_value *lr = fg_value_dict_get(src, "lr");
    if (lr && fg_value_dict_get(dst, "initial_lr"))
      fg_value_dict_set(dst, "initial_lr", fg_value_copy(lr));
  }
  *out = merged;
  return 0;
}

/* A fork's scheduler state: the config's arguments (step_size, gamma,
 * base_lrs from the new lr ...) with the checkpoint's counters, so the
 * schedule goes on from the step it had reached. */
static int fork_scheduler_load(fg_lr_scheduler *s, const fg_value *saved, char **err) {
  fg_value *merged = NULL;
  int rc = fg_lr_scheduler_state_dict(s, &merged, err);
  if (rc) return rc;
  static const char *const counters[] = {"last_epoch", "_step_count", "best", "num_bad_epochs",
                                         "cooldown_counter"};
  for (size_t i = 0; i < sizeof counters / sizeof counters[0]; i++) {
    const fg_value *v = fg_value_dict_get(saved, counters[i]);
    if (v && fg_value_dict_get(merged, counters[i]))
      fg_value_dict_set(merged, counters[i], fg_value_copy(v));
  }
  rc = fg_lr_scheduler_load_state_dict(s, merged, err);
  fg_value_free(merged);
  return rc;
}

static int load_optimizer(fg_optimizer *opt, const fg_value *saved, bool fork, char **err) {
  if (!fork) return fg_optimizer_load_state_dict(opt, saved, err);
  fg_value *fresh = NULL, *merged = NULL;
  int rc = fg_optimizer_state_dict(opt, &fresh, err);
  if (rc == 0) rc = fork_optimizer_state(saved, fresh, &merged, err);
  if (rc == 0) rc = fg_optimizer_load_state_dict(opt, merged, err);
  fg_value_free(fresh);
  fg_value_free(merged);
  return rc;
}

static int load_scheduler(fg_lr_scheduler *s, const fg_value *saved, bool fork, char **err) {
  return fork ? fork_scheduler_load(s, saved, err) : fg_lr_scheduler_load_state_dict(s, saved, err);
}

static int load(const char *path, fg_module *m, fg_optim_set *optim, fg_ckpt_pos *pos,
                fg_value **callbacks, fg_value **loop_state, bool fork, char **err) {
  fg_value *ck = NULL;
  int rc = read_checkpoint(path, &ck, err);
  if (rc) return rc;
  const fg_value *sd = fg_value_kind_of(ck) == FG_VALUE_DICT ? fg_value_dict_get(ck, "state_dict") : NULL;
  if (sd == NULL || fg_value_kind_of(sd) != FG_VALUE_DICT) {
    rc = fg_err_set(err, FG_EDATA, "%s: not a checkpoint: no state_dict", path);
    goto done;
  }
  if ((rc = fg_module_load_state_dict(m, sd, true, path, NULL, err))) goto done;
  if (optim) {
    const fg_value *os = fg_value_dict_get(ck, "optimizer_states");
    const fg_value *ls = fg_value_dict_get(ck, "lr_schedulers");
    const fg_value *ws = fg_value_dict_get(ck, "fulgur_warmup_schedulers");
    if (os == NULL || fg_value_kind_of(os) != FG_VALUE_LIST || fg_value_len(os) != optim->n) {
      rc = fg_err_set(err, FG_EDATA, "%s: has %zu optimizer states, the config has %zu optimizers",
                      path, os && fg_value_kind_of(os) == FG_VALUE_LIST ? fg_value_len(os) : 0,
                      optim->n);
      goto done;
    }
    size_t li = 0;
    for (size_t o = 0; o < optim->n; o++) {
      if ((rc = load_optimizer(optim->opts[o], fg_value_list_at(os, o), fork, err))) {
        fg_err_prefix(err, rc, "%s: optimizer state %zu", path, o);
        goto done;
      }
      fg_sched_set *sc = optim->scheds[o];
      if (sc && sc->scheduler && ls && fg_value_kind_of(ls) == FG_VALUE_LIST &&
          li < fg_value_len(ls) &&
          (rc = load_scheduler(sc->scheduler, fg_value_list_at(ls, li++), fork, err))) {
        fg_err_prefix(err, rc, "%s: lr_schedulers", path);
        goto done;
      }
      const fg_value *w = ws && fg_value_kind_of(ws) == FG_VALUE_LIST && o < fg_value_len(ws)
                              ? fg_value_list_at(ws, o) : NULL;
      if (sc && sc->warmup && w && fg_value_kind_of(w) == FG_VALUE_DICT &&
          (rc = load_scheduler(sc->warmup, w, fork, err))) {
        fg_err_prefix(err, rc, "%s: warmup scheduler", path);
        goto done;
      }
    }
  }
  if (pos) {
    const fg_value *e = fg_value_dict_get(ck, "epoch");
    const fg_value *s = fg_value_dict_get(ck, "global_step");
    pos->epoch = e && fg_value_kind_of(e) == FG_VALUE_INT ? fg_value_as_int(e) : 0;
    pos->global_step = s && fg_value_kind_of(s) == FG_VALUE_INT ? fg_value_as_int(s) : 0;
    const fg_value *loop = fg_value_dict_get(ck, "fulgur_loop");
    const fg_value *done_v = loop && fg_value_kind_of(loop) == FG_VALUE_DICT
                                 ? fg_value_dict_get(loop, "epoch_done") : NULL;
    /* Lightning's own checkpoints are taken at epoch ends. */
    pos->epoch_done = done_v == NULL || fg_value_kind_of(done_v) != FG_VALUE_BOOL ||
                      fg_value_as_bool(done_v);
    const fg_value *bd = loop && fg_value_kind_of(loop) == FG_VALUE_DICT
                             ? fg_value_dict_get(loop, "batches_done") : NULL;
    pos->batches_done = bd && fg_value_kind_of(bd) == FG_VALUE_INT && !pos->epoch_done
                            ? fg_value_as_int(bd) : 0;
    if (pos->batches_done < 0) {
      rc = fg_err_set(err, FG_EDATA, "%s: fulgur_loop.batches_done is negative", path);
      goto done;
    }
  }
  /* Handed over so the caller restores callback states without reading
   * the file a second time. */
  if (callbacks) *callbacks = fg_value_dict_take(ck, "callbacks");
  if (loop_state) {
    fg_value *ls = fg_value_dict_take(ck, "fulgur_loop");
    if (ls && fg_value_kind_of(ls) != FG_VALUE_DICT) {
      fg_value_free(ls);
      ls = NULL;
    }
    *loop_state = ls;
  }
done:
  fg_value_free(ck);
  return rc;
}

int fg__checkpoint_load(const char *path, fg_module *m, fg_optim_set *optim,
                        fg_ckpt_pos *pos, fg_value **callbacks, fg_value **loop_state,
                        char **err) {
  return load(path, m, optim, pos, callbacks, loop_state, false, err);
}

int fg__checkpoint_load_fork(const char *path, fg_module *m, fg_optim_set *optim,
                             fg_ckpt_pos *pos, fg_value **callbacks, fg_value **loop_state,
                             char **err) {
  return load(path, m, optim, pos, callbacks, loop_state, true, err);
}
