/* The predict loop (ARCHITECTURE.md 3.6, the seed's "Predict loop"):
 * named tasks with their own output folder and state, sharing
 * dependencies that are computed once per batch.
 *
 * Before the first batch: every task's hook must exist, its folder is
 * emptied and created, its start hook gives its dependencies and initial
 * state, and the dependency graph (dependencies may name their own through
 * predict_<dep>_dependency_start) is ordered, a cycle being an error that
 * spells it out. Per batch, dependencies run in that order, then each task
 * in the order given; a non-None result is appended to the task's state.
 * At the end the results are saved as <task>/predictions.pt (a list of
 * tensors in batch order, written atomically) and the task's end hook, if
 * any, writes what else it wants.
 *
 * Tasks of a batch run on a pool of predict_threads workers: independent
 * tasks overlap, and each task sees its batches in order because a batch
 * is handed over only when the previous one is done. Meanwhile the
 * caller's thread loads the next batch and computes its dependencies, so
 * batches are pipelined.
 *
 * Under ddp every rank predicts its shard (the unpadded DistributedSampler
 * split: rank r has samples r, r + W, r + 2W, ...). Rank 0 alone empties
 * the folders, before a barrier, so that no rank clears what another
 * already wrote. Without predict_gather each rank saves its own results
 * (rank 0 predictions.pt, rank r predictions_<r>.pt, as Lightning's
 * BasePredictionWriter names per-rank files) and runs the end hooks with
 * its rank and the world size. With it, each task's state is all-gathered
 * (pickled) and rank 0 puts the rows back in dataset order, re-split into
 * the batches one process would have made, before its end hook; the
 * other ranks end there. */
#include <dirent.h>
#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fulgur/error.h"
#include "trainer/trainer.h"
#include "util/xalloc.h"

typedef struct {
  char *name;
  char *hook;        /* "predict_<name>", formatted once, not per batch */
  char *path;        /* <predict_path>/<name> */
  char **deps;       /* declared dependency names */
  size_t n_deps;
  fg_value *state;   /* a list, or the start hook's initial state */
} task;

typedef struct {
  char **names; /* dependencies in the order they run */
  char **hooks; /* their "predict_<name>_dependency" */
  size_t n;
} dep_order;

static void free_names(char **v, size_t n) {
  for (size_t i = 0; i < n; i++) free(v[i]);
  free(v);
}

/* A hook's list of names (a list value of strings) into *names. */
static int names_of(const fg_value *v, const char *hook, char ***names, size_t *n, char **err) {
  *names = NULL;
  *n = 0;
  if (v == NULL || fg_value_kind_of(v) == FG_VALUE_NONE) return 0;
  if (fg_value_kind_of(v) != FG_VALUE_LIST)
    return fg_err_set(err, FG_EINVAL, "%s: expected a list of dependency names, got %s", hook,
                      fg_value_kind_name(fg_value_kind_of(v)));
  *names = fg__xcalloc(fg_value_len(v) + 1, sizeof **names);
  for (size_t i = 0; i < fg_value_len(v); i++) {
    const char *s = fg_value_as_string(fg_value_list_at(v, i));
    if (s == NULL) {
      free_names(*names, *n);
      *names = NULL;
      *n = 0;
      return fg_err_set(err, FG_EINVAL, "%s: dependency names must be strings", hook);
    }
    (*names)[(*n)++] = fg__xstrdup(s);
  }
  return 0;
}

/* Depth-first ordering of a dependency and what it depends on. `path`
 * holds the chain being visited, to spell out a cycle. */
static int order_dep(fg_module *m, const char *dep, const char *user, dep_order *order,
                     char ***path, size_t *depth, char **err) {
  for (size_t i = 0; i < order->n; i++)
    if (strcmp(order->names[i], dep) == 0) return 0;
  for (size_t i = 0; i < *depth; i++)
    if (strcmp((*path)[i], dep) == 0) {
      size_t len = strlen(dep) + 1;
      for (size_t k = i; k < *depth; k++) len += strlen((*path)[k]) + 4;
      char *chain = fg__xcalloc(len, 1);
      for (size_t k = i; k < *depth; k++) {
        strcat(chain, (*path)[k]);
        strcat(chain, " -> ");
      }
      strcat(chain, dep);
      int rc = fg_err_set(err, FG_ECONFIG, "predict: dependency cycle %s", chain);
      free(chain);
      return rc;
    }
  char *hook = fg__xasprintf("predict_%s_dependency", dep);
  bool have = fg_module_has_hook(m, hook);
  free(hook);
  if (!have)
    return fg_err_set(err, FG_ECONFIG,
                      "predict: '%s' depends on '%s', but the module has no predict_%s_dependency",
                      user, dep, dep);
  *path = fg__xrealloc(*path, (*depth + 1) * sizeof **path);
  (*path)[(*depth)++] = fg__xstrdup(dep);
  int rc = 0;
  char *start = fg__xasprintf("predict_%s_dependency_start", dep);
  if (fg_module_has_hook(m, start)) {
    fg_value *v = NULL;
    char **sub = NULL;
    size_t n_sub = 0;
    rc = fg_module_call_hook(m, start, NULL, 0, &v, err);
    /* A list of names, or {dependency: [...]} as a task's start returns. */
    const fg_value *names = v && fg_value_kind_of(v) == FG_VALUE_DICT ? fg_value_dict_get(v, "dependency") : v;
    if (rc == 0) rc = names_of(names, start, &sub, &n_sub, err);
    for (size_t i = 0; i < n_sub && rc == 0; i++)
      rc = order_dep(m, sub[i], dep, order, path, depth, err);
    free_names(sub, n_sub);
    fg_value_free(v);
  }
  free(start);
  free((*path)[--*depth]);
  if (rc == 0) {
    order->names = fg__xrealloc(order->names, (order->n + 1) * sizeof *order->names);
    order->hooks = fg__xrealloc(order->hooks, (order->n + 1) * sizeof *order->hooks);
    order->names[order->n] = fg__xstrdup(dep);
    order->hooks[order->n++] = fg__xasprintf("predict_%s_dependency", dep);
  }
  return rc;
}

/* Empties and creates a task's folder. */
static int fresh_dir(const char *path, char **err) {
  int rc = 0;
  /* Remove the folder's contents (files only: tasks write flat folders). */
  DIR *d = opendir(path);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d)) && rc == 0) {
      if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0) continue;
      char *f = fg__xasprintf("%s/%s", path, e->d_name);
      if (remove(f) != 0)
        rc = fg_err_set(err, FG_EIO, "cannot empty %s: %s: %s", path, e->d_name, strerror(errno));
      free(f);
    }
    closedir(d);
  }
  if (rc == 0) rc = fg__mkdirs(path, err);
  return rc;
}

/* <run dir of the checkpoint>/<predict_path or "visualization">, as the
 * seed computes it; without a checkpoint from a run directory,
 * predict_path as given. */
static int resolve_root(const fg_module *m, const char *ckpt, char **out, char **err) {
  const char *pp = fg_module_predict_path(m);
  char *run = NULL;
  if (ckpt) {
    char *dir = fg__xstrdup(ckpt);
    char *slash = strrchr(dir, '/');
    if (slash) {
      *slash = '\0';
      char *parent = strrchr(dir, '/');
      const char *base = parent ? parent + 1 : dir;
      if (strcmp(base, "checkpoints") == 0) {
        if (parent) *parent = '\0';
        else strcpy(dir, ".");
        run = fg__xstrdup(dir);
      }
    }
    free(dir);
  }
  if (run) {
    *out = pp == NULL ? fg__xasprintf("%s/visualization", run)
           : pp[0] == '/' ? fg__xstrdup(pp)
                          : fg__xasprintf("%s/%s", run, pp);
    free(run);
    return 0;
  }
  if (pp == NULL)
    return fg_err_set(err, FG_ECONFIG,
                      "model.init_args.predict_path is null and --ckpt_path is not a checkpoint "
                      "of a run directory: set predict_path");
  *out = fg__xstrdup(pp);
  return 0;
}

static void emit_artifact(fg_loop *l, const char *what, const char *path) {
  fg_event ev = {.kind = FG_EVENT_ARTIFACT, .split = "predict", .text = what, .path = path,
                 .epoch = 0, .global_step = l->pos.global_step, .batch_idx = -1,
                 .num_batches = -1, .max_epochs = -1, .max_steps = -1};
  fg_events_emit(l->events, &ev);
}

/* One task on one batch: predict_<task>(batch, its deps, state, path),
 * inside trainer.precision's forward context (Lightning's predict_step);
 * a non-None result is appended to the state. Touches only the task. */
static int run_task(fg_module *m, fg_precision prec, task *k, const fg_value *batch, const fg_value *deps,
                    int64_t batch_no, char **err) {
  fg_value *mine = fg_value_dict();
  for (size_t d = 0; d < k->n_deps; d++)
    fg_value_dict_set(mine, k->deps[d], fg_value_copy(fg_value_dict_get(deps, k->deps[d])));
  fg_value *pathv = fg_value_string(k->path);
  const fg_value *args[4] = {batch, mine, k->state, pathv};
  const char *hook = k->hook;
  fg_value *r = NULL;
  fg_autocast_prev prev;
  int rc = fg__precision_begin(prec, &prev, err);
  if (rc == 0) {
    rc = fg_module_call_hook(m, hook, args, 4, &r, err);
    fg__precision_end(prec, &prev);
  }
  if (rc) {
    fg_err_prefix(err, rc, "predict task '%s', batch %lld", k->name, (long long)batch_no);
  } else if (r && fg_value_kind_of(r) != FG_VALUE_NONE) {
    if (fg_value_kind_of(k->state) != FG_VALUE_LIST) {
      rc = fg_err_set(err, FG_EINVAL,
                      "predict task '%s': %s returned a result but its state is %s, not a list",
                      k->name, hook, fg_value_kind_name(fg_value_kind_of(k->state)));
    } else {
      fg_value_list_append(k->state, r);
      r = NULL;
    }
  }
  fg_value_free(r);
  fg_value_free(pathv);
  fg_value_free(mine);
  return rc;
}

/* ---- the worker pool ----------------------------------------------------------
 * Per batch, the tasks are jobs: workers take the next one, run it, and the
 * caller waits for all before the next batch, so every task sees batches
 * in order and independent tasks overlap. Each worker runs without grad
 * (grad mode is per thread in libtorch). */

typedef struct {
  pthread_mutex_t mu;
  pthread_cond_t work, done;
  pthread_t *threads;
  int n_threads;
  bool stop;
  fg_precision prec;
  /* the current batch */
  fg_module *m;
  task *tasks;
  size_t nt, next, finished;
  const fg_value *batch, *deps;
  int64_t batch_no;
  int *rcs;
  char **errs;
  uint64_t gen;
} pool_t;

static void *worker(void *arg) {
  pool_t *p = arg;
  fg_torch_set_grad_enabled(false);
  pthread_mutex_lock(&p->mu);
  for (;;) {
    while (!p->stop && p->next >= p->nt) pthread_cond_wait(&p->work, &p->mu);
    if (p->stop) break;
    size_t t = p->next++;
    pthread_mutex_unlock(&p->mu);
    char *e = NULL;
    int rc = run_task(p->m, p->prec, &p->tasks[t], p->batch, p->deps, p->batch_no, &e);
    pthread_mutex_lock(&p->mu);
    p->rcs[t] = rc;
    p->errs[t] = e;
    if (++p->finished == p->nt) pthread_cond_signal(&p->done);
  }
  pthread_mutex_unlock(&p->mu);
  return NULL;
}

static pool_t *pool_create(int n_threads, fg_precision prec, size_t nt) {
  if (n_threads < 2 || nt < 2) return NULL; /* nothing to overlap */
  pool_t *p = fg__xcalloc(1, sizeof *p);
  p->prec = prec;
  pthread_mutex_init(&p->mu, NULL);
  pthread_cond_init(&p->work, NULL);
  pthread_cond_init(&p->done, NULL);
  p->rcs = fg__xcalloc(nt, sizeof *p->rcs);
  p->errs = fg__xcalloc(nt, sizeof *p->errs);
  p->threads = fg__xcalloc((size_t)n_threads, sizeof *p->threads);
  for (int i = 0; i < n_threads; i++) {
    if (pthread_create(&p->threads[i], NULL, worker, p) != 0) break;
    p->n_threads++;
  }
  if (p->n_threads == 0) {
    free(p->threads);
    free(p->rcs);
    free(p->errs);
    free(p);
    return NULL; /* no threads: the caller's thread does the work */
  }
  return p;
}

static void pool_free(pool_t *p) {
  if (p == NULL) return;
  pthread_mutex_lock(&p->mu);
  p->stop = true;
  pthread_cond_broadcast(&p->work);
  pthread_mutex_unlock(&p->mu);
  for (int i = 0; i < p->n_threads; i++) pthread_join(p->threads[i], NULL);
  pthread_mutex_destroy(&p->mu);
  pthread_cond_destroy(&p->work);
  pthread_cond_destroy(&p->done);
  free(p->threads);
  free(p->rcs);
  free(p->errs);
  free(p);
}

/* Hands a batch's tasks to the workers and returns at once. */
static void pool_submit(pool_t *p, fg_module *m, task *tasks, size_t nt, const fg_value *batch,
                        const fg_value *deps, int64_t batch_no) {
  pthread_mutex_lock(&p->mu);
  p->m = m;
  p->tasks = tasks;
  p->batch = batch;
  p->deps = deps;
  p->batch_no = batch_no;
  p->finished = 0;
  memset(p->rcs, 0, nt * sizeof *p->rcs);
  p->nt = nt;
  p->next = 0;
  pthread_cond_broadcast(&p->work);
  pthread_mutex_unlock(&p->mu);
}

/* Waits for the submitted batch; the first failing task in task order is
 * the one reported. */
static int pool_wait(pool_t *p, size_t nt, char **err) {
  pthread_mutex_lock(&p->mu);
  while (p->finished < nt) pthread_cond_wait(&p->done, &p->mu);
  p->nt = 0; /* nothing left to take until the next batch */
  pthread_mutex_unlock(&p->mu);
  int rc = 0;
  for (size_t t = 0; t < nt; t++) {
    if (p->rcs[t] && rc == 0) {
      rc = p->rcs[t];
      if (err && *err == NULL) {
        *err = p->errs[t];
        p->errs[t] = NULL;
      }
    }
    free(p->errs[t]);
    p->errs[t] = NULL;
  }
  return rc;
}

/* A batch whose tasks are running: kept alive until they finish. */
typedef struct {
  fg_value *batch, *deps;
  int64_t b, nb;
  bool live;
} inflight;

static int finish_inflight(fg_loop *l, pool_t *p, size_t nt, inflight *f, char **err) {
  if (!f->live) return 0;
  int rc = pool_wait(p, nt, err);
  if (rc == 0) {
    fg_event ev = {.kind = FG_EVENT_PROGRESS, .split = "predict", .batch_idx = f->b,
                   .num_batches = f->nb, .max_epochs = -1, .max_steps = -1};
    fg_events_emit(l->events, &ev);
  }
  fg_value_free(f->batch);
  fg_value_free(f->deps);
  memset(f, 0, sizeof *f);
  return rc;
}

/* predict_gather, on rank 0: every rank's {state, rows} (rows: the
 * samples in each of its batches) into one state in dataset order. When
 * every result is a tensor whose first dimension is its batch's samples,
 * rank r's row j is sample r + j*world: the rows are concatenated,
 * interleaved back into sample order and cut into batches of batch_size,
 * as one process would have produced them. Otherwise (a result per batch
 * that is not batch-shaped, or a skipped batch) the lists are
 * concatenated in rank order and *shaped is false. */
static int merge_states(fg_value *const *vals, int world, int64_t batch_size, const char *task,
                        fg_value **out, bool *shaped, char **err) {
  *out = NULL;
  *shaped = true;
  size_t n_items = 0;
  for (int r = 0; r < world; r++) {
    const fg_value *st = fg_value_dict_get(vals[r], "state");
    const fg_value *rows = fg_value_dict_get(vals[r], "rows");
    if (st == NULL || fg_value_kind_of(st) != FG_VALUE_LIST)
      return fg_err_set(err, FG_EINVAL,
                        "predict task '%s': predict_gather needs the task's state to be a list "
                        "of results, got %s on rank %d",
                        task, st ? fg_value_kind_name(fg_value_kind_of(st)) : "nothing", r);
    n_items += fg_value_len(st);
    if (fg_value_len(st) != fg_value_len(rows)) *shaped = false;
    for (size_t i = 0; i < fg_value_len(st) && *shaped; i++) {
      const fg_value *v = fg_value_list_at(st, i);
      if (fg_value_kind_of(v) != FG_VALUE_TENSOR || fg_tensor_ndim(fg_value_as_tensor(v)) < 1 ||
          fg_tensor_size(fg_value_as_tensor(v), 0) != fg_value_as_int(fg_value_list_at(rows, i)))
        *shaped = false;
    }
  }
  fg_value *merged = fg_value_list();
  if (!*shaped || n_items == 0) {
    for (int r = 0; r < world; r++) {
      const fg_value *st = fg_value_dict_get(vals[r], "state");
      for (size_t i = 0; i < fg_value_len(st); i++)
        fg_value_list_append(merged, fg_value_copy(fg_value_list_at(st, i)));
    }
    *out = merged;
    return 0;
  }
  const fg_tensor **ts = fg__xcalloc(n_items, sizeof *ts);
  int64_t *count = fg__xcalloc((size_t)world, sizeof *count);
  int64_t *offset = fg__xcalloc((size_t)world, sizeof *offset);
  size_t k = 0;
  int64_t total = 0, most = 0;
  for (int r = 0; r < world; r++) {
    const fg_value *st = fg_value_dict_get(vals[r], "state");
    offset[r] = total;
    for (size_t i = 0; i < fg_value_len(st); i++) {
      ts[k] = fg_value_as_tensor(fg_value_list_at(st, i));
      count[r] += fg_tensor_size(ts[k++], 0);
    }
    total += count[r];
    if (count[r] > most) most = count[r];
  }
  /* perm[p]: the row of the concatenation that is sample p. */
  int64_t *perm = fg__xcalloc((size_t)(total ? total : 1), sizeof *perm);
  int64_t p = 0;
  for (int64_t j = 0; j < most; j++)
    for (int r = 0; r < world; r++)
      if (j < count[r]) perm[p++] = offset[r] + j;
  fg_tensor *all = NULL;
  int rc = fg_op_cat((const fg_tensor *const *)ts, n_items, 0, &all, err);
  for (int64_t s = 0; s < total && rc == 0; s += batch_size) {
    int64_t len = total - s < batch_size ? total - s : batch_size;
    fg_tensor *idx = NULL, *rows = NULL;
    rc = fg_tensor_from_data(perm + s, FG_INT64, &len, 1, &idx, err);
    if (rc == 0) rc = fg_op_index_select(all, 0, idx, &rows, err);
    if (rc == 0) fg_value_list_append(merged, fg_value_tensor(rows));
    fg_tensor_free(idx);
  }
  fg_tensor_free(all);
  free(perm);
  free(offset);
  free(count);
  free(ts);
  if (rc) {
    fg_value_free(merged);
    return fg_err_prefix(err, rc, "predict task '%s': gathering the ranks' results", task);
  }
  *out = merged;
  return 0;
}

int fg__predict_run(fg_loop *l, const char *ckpt, fg__cancel_fn cancelled, const void *cancel_arg,
                    char **err) {
  fg_module *m = l->module;
  size_t nt = fg_module_num_predict_tasks(m);
  if (nt == 0)
    return fg_err_set(err, FG_ECONFIG, "model.init_args.predict_tasks: no prediction tasks given");
  if (fg_datamodule_num_loaders(l->dm, "predict") == 0)
    return fg_err_set(err, FG_ECONFIG, "data: no predict dataset is configured");
  int rank = fg__ddp_rank(l->ddp), world = fg__ddp_world(l->ddp);
  bool gather = l->ddp && fg_module_predict_gather(m);
  if (gather && fg_datamodule_num_loaders(l->dm, "predict") > 1)
    return fg_err_set(err, FG_ECONFIG,
                      "model.init_args.predict_gather: gathering supports one predict dataset, "
                      "got %zu",
                      fg_datamodule_num_loaders(l->dm, "predict"));
  char *root = NULL;
  int rc = resolve_root(m, ckpt, &root, err);
  if (rc) return rc;
  if (l->ddp) {
    /* Rank 0 empties every task's folder before any rank writes there. */
    for (size_t t = 0; t < nt && rc == 0 && rank == 0; t++) {
      char *dir = fg__xasprintf("%s/%s", root, fg_module_predict_task(m, t));
      rc = fresh_dir(dir, err);
      free(dir);
    }
    if (rc == 0) rc = fg__ddp_barrier(l->ddp, err);
    if (rc) {
      free(root);
      return rc;
    }
  }
  /* predict_gather: the samples in each batch this rank ran. */
  fg_value *rows = fg_value_list();
  int64_t batch_size = 1;
  task *tasks = fg__xcalloc(nt, sizeof *tasks);
  dep_order order = {0};
  char **path = NULL;
  size_t depth = 0;
  /* Everything is checked before the first batch. */
  for (size_t t = 0; t < nt && rc == 0; t++) {
    task *k = &tasks[t];
    k->name = fg__xstrdup(fg_module_predict_task(m, t));
    k->hook = fg__xasprintf("predict_%s", k->name);
    if (!fg_module_has_hook(m, k->hook))
      rc = fg_err_set(err, FG_ECONFIG,
                      "model.init_args.predict_tasks: task '%s' is not supported: the module has "
                      "no %s",
                      k->name, k->hook);
    if (rc) break;
    k->path = fg__xasprintf("%s/%s", root, k->name);
    if ((rc = l->ddp ? fg__mkdirs(k->path, err) : fresh_dir(k->path, err))) break;
    char *start = fg__xasprintf("predict_%s_start", k->name);
    fg_value *sv = NULL;
    if (fg_module_has_hook(m, start)) {
      fg_value *arg = fg_value_string(k->path);
      const fg_value *args[1] = {arg};
      rc = fg_module_call_hook(m, start, args, 1, &sv, err);
      fg_value_free(arg);
    }
    if (rc == 0) {
      /* {dependency: [...], result: state}; a list of names (TorchScript's
       * List[str]); or a bare initial state. */
      if (sv == NULL) {
        k->state = fg_value_list(); /* no start hook: no dependency, an empty list */
      } else if (fg_value_kind_of(sv) == FG_VALUE_DICT &&
          (fg_value_dict_get(sv, "dependency") || fg_value_dict_get(sv, "result"))) {
        rc = names_of(fg_value_dict_get(sv, "dependency"), start, &k->deps, &k->n_deps, err);
        fg_value *res = fg_value_dict_take(sv, "result");
        k->state = res ? res : fg_value_list();
      } else if (fg_value_kind_of(sv) == FG_VALUE_LIST && fg_value_len(sv) > 0 &&
                 fg_value_kind_of(fg_value_list_at(sv, 0)) == FG_VALUE_STRING) {
        rc = names_of(sv, start, &k->deps, &k->n_deps, err);
        k->state = fg_value_list();
      } else {
        k->state = fg_value_kind_of(sv) != FG_VALUE_NONE ? fg_value_copy(sv) : fg_value_list();
      }
    }
    fg_value_free(sv);
    free(start);
    for (size_t d = 0; d < k->n_deps && rc == 0; d++)
      rc = order_dep(m, k->deps[d], k->name, &order, &path, &depth, err);
  }
  free(path);

  /* Lightning's predict: eval() and no gradients (the end hooks run in
   * eval() too). */
  fg_module_train(m, false);
  bool was = fg_torch_set_grad_enabled(false);
  pool_t *pool = rc == 0 ? pool_create(l->opts->predict_threads, l->opts->precision, nt) : NULL;
  inflight prev = {0};
  size_t n_loaders = fg_datamodule_num_loaders(l->dm, "predict");
  int64_t batch_no = 0;
  for (size_t li = 0; li < n_loaders && rc == 0; li++) {
    fg_dataloader *dl = NULL;
    if ((rc = fg_datamodule_loader(l->dm, "predict", li, &dl, err))) break;
    if ((rc = fg_dataloader_start_epoch(dl, 0, err))) break;
    int64_t nb = fg_dataloader_num_batches(dl);
    if (l->opts->limit[FG_SPLIT_PREDICT] < 1.0 || l->opts->limit_is_count[FG_SPLIT_PREDICT]) {
      int64_t cap = l->opts->limit_is_count[FG_SPLIT_PREDICT]
                        ? (int64_t)l->opts->limit[FG_SPLIT_PREDICT]
                        : (int64_t)((double)nb * l->opts->limit[FG_SPLIT_PREDICT]);
      if (cap < nb) nb = cap;
    }
    /* This rank's samples, as the loader's sampler shards them. */
    int64_t n_mine = fg_dataloader_len(dl);
    batch_size = fg_dataloader_batch_size(dl);
    for (int64_t b = 0; b < nb && gather; b++) {
      int64_t left = n_mine - b * batch_size;
      fg_value_list_append(rows, fg_value_int(left < batch_size ? left : batch_size));
    }
    for (int64_t b = 0; b < nb && rc == 0; b++, batch_no++) {
      if (cancelled(cancel_arg)) {
        rc = fg_err_set(err, FG_ECANCELED, "run cancelled");
        break;
      }
      fg_value *batch = NULL;
      /* This batch's data and dependencies are prepared on this thread
       * while the workers finish the previous batch's tasks (pipelining);
       * its own error waits until the earlier batch is accounted for. */
      char *derr = NULL;
      int drc = fg_dataloader_next(dl, &batch, &derr);
      if (drc == 0) drc = fg__precision_convert_input(l->opts->precision, &batch, &derr);
      /* Each dependency once, in order; later ones see earlier ones; in
       * trainer.precision's forward context, as the tasks. */
      fg_value *deps = fg_value_dict();
      fg_autocast_prev ac;
      bool in_context = false;
      if (drc == 0 && batch) in_context = (drc = fg__precision_begin(l->opts->precision, &ac, &derr)) == 0;
      for (size_t d = 0; d < order.n && drc == 0 && batch; d++) {
        const fg_value *args[2] = {batch, deps};
        fg_value *v = NULL;
        drc = fg_module_call_hook(m, order.hooks[d], args, 2, &v, &derr);
        if (drc) fg_err_prefix(&derr, drc, "predict batch %lld", (long long)batch_no);
        else fg_value_dict_set(deps, order.names[d], v ? v : fg_value_none());
      }
      if (in_context) fg__precision_end(l->opts->precision, &ac);
      if (pool) rc = finish_inflight(l, pool, nt, &prev, err);
      if (rc == 0 && drc) {
        rc = drc;
        if (err && *err == NULL) {
          *err = derr;
          derr = NULL;
        }
      }
      free(derr);
      if (rc || batch == NULL) {
        fg_value_free(deps);
        fg_value_free(batch);
        break;
      }
      if (pool) {
        pool_submit(pool, m, tasks, nt, batch, deps, batch_no);
        prev = (inflight){batch, deps, b, nb, true};
        continue;
      }
      for (size_t t = 0; t < nt && rc == 0; t++) rc = run_task(m, l->opts->precision, &tasks[t], batch, deps, batch_no, err);
      fg_value_free(deps);
      fg_value_free(batch);
      if (rc == 0) {
        fg_event ev = {.kind = FG_EVENT_PROGRESS, .split = "predict", .batch_idx = b,
                       .num_batches = nb, .max_epochs = -1, .max_steps = -1};
        fg_events_emit(l->events, &ev);
      }
    }
  }
  if (pool) {
    int frc = finish_inflight(l, pool, nt, &prev, err);
    if (rc == 0) rc = frc;
  }
  pool_free(pool);
  fg_torch_set_grad_enabled(was);

  for (size_t t = 0; t < nt && rc == 0; t++) {
    task *k = &tasks[t];
    /* The rank and world size the end hook sees: a gathered state is the
     * whole dataset's, as in one process. */
    int end_rank = rank, end_world = world;
    if (gather) {
      fg_value *mine = fg_value_dict(), **vals = NULL;
      fg_value_dict_set(mine, "state", fg_value_copy(k->state));
      fg_value_dict_set(mine, "rows", fg_value_copy(rows));
      rc = fg__ddp_gather_values(l->ddp, mine, &vals, err);
      fg_value_free(mine);
      if (rc) {
        fg_err_prefix(err, rc, "predict task '%s': gathering the ranks' results", k->name);
        break;
      }
      fg_value *merged = NULL;
      bool shaped = true;
      if (rank == 0)
        rc = merge_states(vals, world, batch_size, k->name, &merged, &shaped, err);
      for (int r = 0; r < world; r++) fg_value_free(vals[r]);
      free(vals);
      if (rc) break;
      if (rank != 0) continue; /* rank 0 saves and ends the task */
      if (!shaped)
        fg_events_log(l->events, FG_LOG_WARNING,
                      "predict task '%s': its results are not one tensor row per sample, so "
                      "predict_gather keeps them per batch in rank order, not in dataset order",
                      k->name);
      fg_value_free(k->state);
      k->state = merged;
      end_rank = 0;
      end_world = 1;
    }
    if (fg_value_kind_of(k->state) == FG_VALUE_LIST) {
      /* predictions.pt: the results in batch order, for torch.load;
       * rank r > 0 of an ungathered ddp run writes predictions_<r>.pt. */
      char *file = end_rank == 0 ? fg__xasprintf("%s/predictions.pt", k->path)
                                 : fg__xasprintf("%s/predictions_%d.pt", k->path, end_rank);
      char *buf = NULL;
      size_t len = 0;
      rc = fg_value_pickle(k->state, &buf, &len, err);
      if (rc == 0) rc = fg__write_file_atomic(file, buf, len, err);
      if (rc == 0) emit_artifact(l, k->name, file);
      else fg_err_prefix(err, rc, "predict task '%s'", k->name);
      free(buf);
      free(file);
    }
    char *end = fg__xasprintf("predict_%s_end", k->name);
    if (rc == 0 && fg_module_has_hook(m, end)) {
      fg_value *pathv = fg_value_string(k->path);
      fg_value *rankv = fg_value_int(end_rank), *worldv = fg_value_int(end_world);
      const fg_value *args[4] = {k->state, pathv, rankv, worldv};
      fg_value *r = NULL;
      rc = fg_module_call_hook(m, end, args, 4, &r, err);
      if (rc) fg_err_prefix(err, rc, "predict task '%s'", k->name);
      else emit_artifact(l, k->name, k->path);
      fg_value_free(r);
      fg_value_free(pathv);
      fg_value_free(rankv);
      fg_value_free(worldv);
    }
    free(end);
  }
  if (rc == 0) fg_events_log(l->events, FG_LOG_INFO, "predictions written to %s", root);
  for (size_t t = 0; t < nt; t++) {
    free(tasks[t].name);
    free(tasks[t].hook);
    free(tasks[t].path);
    free_names(tasks[t].deps, tasks[t].n_deps);
    fg_value_free(tasks[t].state);
  }
  free(tasks);
  fg_value_free(rows);
  free_names(order.names, order.n);
  free_names(order.hooks, order.n);
  free(root);
  return rc;
}
