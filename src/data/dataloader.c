/* The DataLoader: batches of a dataset in (optionally shuffled) order,
 * built ahead of the training loop by worker threads.
 *
 * Workers live as long as the loader (PyTorch's persistent_workers). Each
 * epoch has a generation number; a worker claims the next batch index,
 * builds it outside the lock and files it in a ring of prefetch_factor *
 * num_workers slots (PyTorch's prefetch_factor, 2 by default). The consumer takes batches
 * strictly in order, so results, and errors, arrive in the order a
 * single-threaded loader would give them. Starting a new epoch (also in the
 * middle of one, when limit_train_batches stops early) bumps the
 * generation and waits for in-flight builds, whose results are dropped. */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <time.h>
#include <string.h>

#include "fulgur/data.h"
#include "fulgur/error.h"
#include "util/splitmix.h"
#include "util/xalloc.h"

typedef struct {
  int64_t batch; /* which batch the slot holds, -1 = empty */
  fg_value *value;
  int rc;
  char *err;
} slot;

struct fg_dataloader {
  fg_dataset *ds;
  fg_dataloader_opts opts;
  int64_t n, num_batches; /* n: samples this loader reads per epoch (its shard) */
  int64_t n_total;         /* the dataset's length */
  int64_t *order; /* sample order of the current epoch */

  pthread_mutex_t mu;
  pthread_cond_t work_cv;  /* workers wait for something to claim */
  pthread_cond_t ready_cv; /* the consumer waits for its batch; start_epoch for idle */
  pthread_t *threads;
  int n_threads;
  slot *ring;
  int64_t ring_cap;
  bool active, stop;
  uint64_t gen;
  int64_t next_claim, next_out;
  int inflight;
};

static void batch_range(const fg_dataloader *dl, int64_t b, int64_t *start, size_t *count) {
  *start = b * dl->opts.batch_size;
  int64_t end = *start + dl->opts.batch_size;
  if (end > dl->n) end = dl->n;
  *count = (size_t)(end - *start);
}

static int build(fg_dataloader *dl, int64_t b, fg_value **out, char **err) {
  int64_t start;
  size_t count;
  batch_range(dl, b, &start, &count);
  return fg_dataset_get_batch(dl->ds, dl->order + start, count, out, err);
}

static void *worker_main(void *arg) {
  fg_dataloader *dl = arg;
  pthread_mutex_lock(&dl->mu);
  for (;;) {
    while (!dl->stop && !(dl->active && dl->next_claim < dl->num_batches &&
                          dl->next_claim - dl->next_out < dl->ring_cap))
      pthread_cond_wait(&dl->work_cv, &dl->mu);
    if (dl->stop) break;
    int64_t b = dl->next_claim++;
    uint64_t gen = dl->gen;
    dl->inflight++;
    pthread_mutex_unlock(&dl->mu);

    fg_value *v = NULL;
    char *e = NULL;
    int rc = build(dl, b, &v, &e);

    pthread_mutex_lock(&dl->mu);
    dl->inflight--;
    if (gen == dl->gen) {
      slot *s = &dl->ring[b % dl->ring_cap];
      s->batch = b;
      s->value = v;
      s->rc = rc;
      s->err = e;
    } else {
      fg_value_free(v);
      free(e);
    }
    pthread_cond_broadcast(&dl->ready_cv);
  }
  pthread_mutex_unlock(&dl->mu);
  return NULL;
}

int fg_dataloader_create(fg_dataset *ds, const fg_dataloader_opts *opts, fg_dataloader **out,
                         char **err) {
  if (opts->batch_size < 1)
    return fg_err_set(err, FG_EINVAL, "batch_size must be at least 1, got %lld",
                      (long long)opts->batch_size);
  if (opts->num_workers < 0 || opts->num_workers > 64)
    return fg_err_set(err, FG_EINVAL, "num_workers must be 0 to 64, got %d", opts->num_workers);
  if (opts->prefetch_factor < 0)
    return fg_err_set(err, FG_EINVAL, "prefetch_factor must be at least 1, got %d", opts->prefetch_factor);
  if (!(opts->timeout >= 0))
    return fg_err_set(err, FG_EINVAL, "timeout must be >= 0 seconds, got %g", opts->timeout);
  if (opts->world_size > 1 && (opts->rank < 0 || opts->rank >= opts->world_size))
    return fg_err_set(err, FG_EINVAL, "rank %d is outside 0..%d", opts->rank, opts->world_size - 1);
  int64_t n_total = fg_dataset_len(ds), n = n_total;
  if (opts->world_size > 1) {
    int64_t w = opts->world_size, r = opts->rank;
    n = opts->pad ? (n_total + w - 1) / w : (n_total > r ? (n_total - r + w - 1) / w : 0);
  }
  fg_dataloader *dl = fg__xcalloc(1, sizeof *dl);
  dl->n_total = n_total;
  dl->ds = fg_dataset_ref(ds);
  dl->opts = *opts;
  dl->n = n;
  dl->num_batches = opts->drop_last ? n / opts->batch_size
                                    : (n + opts->batch_size - 1) / opts->batch_size;
  dl->order = malloc((size_t)(n ? n : 1) * sizeof *dl->order);
  if (dl->order == NULL) {
    fg_dataset_unref(dl->ds);
    free(dl);
    return fg_err_set(err, FG_ENOMEM, "dataloader: out of memory for %lld indices", (long long)n);
  }
  for (int64_t i = 0; i < n; i++) dl->order[i] = i;
  pthread_mutex_init(&dl->mu, NULL);
  pthread_cond_init(&dl->work_cv, NULL);
  /* The timeout is measured on the monotonic clock: a clock change must
   * not fire it. */
  pthread_condattr_t ca;
  pthread_condattr_init(&ca);
  pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
  pthread_cond_init(&dl->ready_cv, &ca);
  pthread_condattr_destroy(&ca);
  if (opts->num_workers > 0) {
    dl->ring_cap = (int64_t)(opts->prefetch_factor > 0 ? opts->prefetch_factor : 2) * opts->num_workers;
    dl->ring = fg__xcalloc((size_t)dl->ring_cap, sizeof *dl->ring);
    for (int64_t i = 0; i < dl->ring_cap; i++) dl->ring[i].batch = -1;
    dl->threads = fg__xcalloc((size_t)opts->num_workers, sizeof *dl->threads);
    for (int i = 0; i < opts->num_workers; i++) {
      if (pthread_create(&dl->threads[i], NULL, worker_main, dl) != 0) {
        fg_dataloader_free(dl);
        return fg_err_set(err, FG_ENOMEM, "dataloader: cannot start worker thread %d", i);
      }
      dl->n_threads++;
    }
  }
  *out = dl;
  return 0;
}

static void clear_ring_locked(fg_dataloader *dl) {
  for (int64_t i = 0; i < dl->ring_cap; i++) {
    fg_value_free(dl->ring[i].value);
    free(dl->ring[i].err);
    memset(&dl->ring[i], 0, sizeof dl->ring[i]);
    dl->ring[i].batch = -1;
  }
}

/* Ends the current epoch: nothing new is claimed, builds in flight finish
 * and are dropped. */
static void end_epoch_locked(fg_dataloader *dl) {
  dl->active = false;
  dl->gen++;
  while (dl->inflight > 0) pthread_cond_wait(&dl->ready_cv, &dl->mu);
  clear_ring_locked(dl);
}

void fg_dataloader_free(fg_dataloader *dl) {
  if (dl == NULL) return;
  pthread_mutex_lock(&dl->mu);
  dl->stop = true;
  dl->active = false;
  pthread_cond_broadcast(&dl->work_cv);
  pthread_mutex_unlock(&dl->mu);
  for (int i = 0; i < dl->n_threads; i++) pthread_join(dl->threads[i], NULL);
  clear_ring_locked(dl);
  pthread_mutex_destroy(&dl->mu);
  pthread_cond_destroy(&dl->work_cv);
  pthread_cond_destroy(&dl->ready_cv);
  free(dl->threads);
  free(dl->ring);
  free(dl->order);
  fg_dataset_unref(dl->ds);
  free(dl);
}

int64_t fg_dataloader_num_batches(const fg_dataloader *dl) { return dl->num_batches; }
int64_t fg_dataloader_batch_size(const fg_dataloader *dl) { return dl->opts.batch_size; }

int64_t fg_dataloader_len(const fg_dataloader *dl) { return dl->n; }

fg_dataset *fg_dataloader_dataset(const fg_dataloader *dl) { return dl->ds; }

/* Uniform in [0, bound) without modulo bias (Lemire's method). */
static uint64_t below(uint64_t *s, uint64_t bound) {
  unsigned __int128 m = (unsigned __int128)fg__splitmix64(s) * bound;
  uint64_t low = (uint64_t)m;
  if (low < bound) {
    uint64_t threshold = -bound % bound;
    while (low < threshold) {
      m = (unsigned __int128)fg__splitmix64(s) * bound;
      low = (uint64_t)m;
    }
  }
  return (uint64_t)(m >> 64);
}

/* The epoch's indices of this rank, as torch.utils.data.DistributedSampler
 * gives them (drop_last false): randperm(n) from a generator seeded with
 * seed + epoch, or 0..n-1; padded to a multiple of the world size by
 * repeating from the start (pad); then every world_size-th from rank. The
 * permutation comes from libtorch's own generator so it is Python's. */
static int shard_order(const fg_dataloader *dl, int64_t epoch, int64_t **out, char **err) {
  int64_t n = dl->n_total, w = dl->opts.world_size, r = dl->opts.rank;
  int64_t *all = malloc((size_t)(n ? n : 1) * sizeof *all);
  int64_t *mine = malloc((size_t)(dl->n ? dl->n : 1) * sizeof *mine);
  if (all == NULL || mine == NULL) {
    free(all);
    free(mine);
    return fg_err_set(err, FG_ENOMEM, "dataloader: out of memory for %lld indices", (long long)n);
  }
  int rc = 0;
  if (dl->opts.shuffle && n > 0) {
    fg_tensor *perm = NULL;
    rc = fg_tensor_randperm(n, dl->opts.seed + (uint64_t)epoch, &perm, err);
    if (rc == 0) rc = fg_tensor_copy_out(perm, FG_INT64, all, (size_t)n * sizeof *all, err);
    fg_tensor_free(perm);
  } else {
    for (int64_t i = 0; i < n; i++) all[i] = i;
  }
  /* Position k of the padded list is all[k % n]. */
  for (int64_t i = 0; rc == 0 && i < dl->n; i++) mine[i] = all[(r + i * w) % n];
  free(all);
  if (rc) {
    free(mine);
    return rc;
  }
  *out = mine;
  return 0;
}

int fg_dataloader_start_epoch(fg_dataloader *dl, int64_t epoch, char **err) {
  return fg_dataloader_start_epoch_at(dl, epoch, 0, err);
}

int fg_dataloader_start_epoch_at(fg_dataloader *dl, int64_t epoch, int64_t first_batch,
                                 char **err) {
  if (first_batch < 0 || first_batch > dl->num_batches)
    return fg_err_set(err, FG_EINVAL, "dataloader: cannot start at batch %lld of %lld",
                      (long long)first_batch, (long long)dl->num_batches);
  int64_t *shard = NULL;
  if (dl->opts.world_size > 1) {
    int rc = shard_order(dl, epoch, &shard, err);
    if (rc) return rc;
  }
  pthread_mutex_lock(&dl->mu);
  end_epoch_locked(dl);
  for (int64_t i = 0; i < dl->n; i++) dl->order[i] = shard ? shard[i] : i;
  free(shard);
  if (dl->opts.shuffle && dl->opts.world_size <= 1) {
    /* Fisher-Yates from (seed, epoch): every epoch a new order, the same
     * one on every run with the same seed, so resumed runs see the batches
     * an uninterrupted run would have. */
    uint64_t s = dl->opts.seed ^ ((uint64_t)epoch * 0xd1b54a32d192ed03ULL);
    fg__splitmix64(&s);
    for (int64_t i = dl->n - 1; i > 0; i--) {
      int64_t j = (int64_t)below(&s, (uint64_t)i + 1);
      int64_t t = dl->order[i];
      dl->order[i] = dl->order[j];
      dl->order[j] = t;
    }
  }
  /* Batches are cut from the order by index, so skipping the first ones
   * costs nothing: they are never built. */
  dl->next_claim = dl->next_out = first_batch;
  dl->active = true;
  pthread_cond_broadcast(&dl->work_cv);
  pthread_mutex_unlock(&dl->mu);
  return 0;
}

int fg_dataloader_next(fg_dataloader *dl, fg_value **out, char **err) {
  *out = NULL;
  if (dl->n_threads == 0) {
    if (!dl->active || dl->next_out >= dl->num_batches) return 0;
    int rc = build(dl, dl->next_out, out, err);
    if (rc) {
      dl->active = false; /* an error ends the epoch */
      return rc;
    }
    dl->next_out++;
    return 0;
  }
  pthread_mutex_lock(&dl->mu);
  if (!dl->active || dl->next_out >= dl->num_batches) {
    pthread_mutex_unlock(&dl->mu);
    return 0;
  }
  slot *s = &dl->ring[dl->next_out % dl->ring_cap];
  struct timespec deadline;
  clock_gettime(CLOCK_MONOTONIC, &deadline);
  double whole = (double)(time_t)dl->opts.timeout;
  deadline.tv_sec += (time_t)dl->opts.timeout;
  deadline.tv_nsec += (long)((dl->opts.timeout - whole) * 1e9);
  if (deadline.tv_nsec >= 1000000000L) {
    deadline.tv_sec++;
    deadline.tv_nsec -= 1000000000L;
  }
  while (s->batch != dl->next_out) {
    if (dl->opts.timeout <= 0) {
      pthread_cond_wait(&dl->ready_cv, &dl->mu);
    } else if (pthread_cond_timedwait(&dl->ready_cv, &dl->mu, &deadline) == ETIMEDOUT &&
               s->batch != dl->next_out) {
      /* PyTorch's words. The epoch ends at once: the late build, still in
       * flight, is dropped when it lands (its generation is over). */
      int64_t b = dl->next_out;
      dl->active = false;
      dl->gen++;
      clear_ring_locked(dl);
      pthread_mutex_unlock(&dl->mu);
      return fg_err_set(err, FG_ERUN, "DataLoader timed out after %g seconds waiting for batch %lld",
                        dl->opts.timeout, (long long)b);
    }
  }
  int rc = s->rc;
  if (rc) {
    if (err && *err == NULL) {
      *err = s->err;
      s->err = NULL;
    }
    end_epoch_locked(dl);
  } else {
    *out = s->value;
    s->value = NULL;
    s->batch = -1;
    dl->next_out++;
    pthread_cond_broadcast(&dl->work_cv);
  }
  pthread_mutex_unlock(&dl->mu);
  return rc;
}
