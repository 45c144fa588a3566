/* torch.distributed's engine from C: a c10d TCPStore for rendezvous and a
 * c10d ProcessGroupGloo for collectives, behind one opaque handle.
 * Implemented in src/torch/dist.cpp (the bridge); every failure comes back
 * as FG_ETORCH with libtorch's (or Gloo's) message in *err, except where a
 * function says otherwise.
 *
 * Every blocking call is bounded by the group's timeout: a peer that dies
 * or never arrives gives an error, never a hang.
 *
 * Threads: one group is used by one thread at a time.
 */
#ifndef FULGUR_DIST_H
#define FULGUR_DIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fulgur/torch.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fg_dist fg_dist;

typedef struct {
  int rank;                /* 0 .. world_size-1; rank 0 hosts the store */
  int world_size;          /* >= 1 */
  const char *master_addr; /* where rank 0's store listens (MASTER_ADDR) */
  int master_port;         /* MASTER_PORT; rank 0 binds it (0: any free port, see
                              fg_dist_master_port) */
  double timeout_s;        /* bound of every wait: connect, rendezvous, collectives */
  /* Called before the process group is built, after every rank reached the
   * store (the store alone is enough for it). May be NULL. Returning
   * non-zero aborts fg_dist_create with that code and message. This is
   * where a caller checks its ranks agree (config hashes, world sizes)
   * before the Gloo group's own rendezvous could wait for a rank that will
   * never come. */
  int (*on_store)(void *ctx, fg_dist *d, char **err);
  void *ctx;
} fg_dist_opts;

/* Connects to (rank 0: starts) the store at master_addr:master_port, runs
 * on_store, then builds the Gloo group (every rank must call this). The
 * Gloo transport binds GLOO_SOCKET_IFNAME when set, the loopback address
 * when master_addr is a loopback one, else this host's name. The caller
 * frees *out with fg_dist_free. */
int fg_dist_create(const fg_dist_opts *opts, fg_dist **out, char **err);
/* Leaves the group; NULL is a no-op. Never blocks longer than the timeout. */
void fg_dist_free(fg_dist *d);
int fg_dist_rank(const fg_dist *d);
/* The port the store listens on (the one rank 0 picked when given 0);
 * valid from on_store on. */
int fg_dist_master_port(const fg_dist *d);
int fg_dist_world_size(const fg_dist *d);

typedef enum { FG_DIST_SUM = 0, FG_DIST_AVG } fg_dist_op;

/* All-reduces ts[0..n-1] in place. Tensors are packed in order into
 * contiguous buckets of one dtype and at most bucket_bytes (a tensor
 * larger than that is a bucket of its own), one allreduce per bucket, and
 * copied back: many small tensors cost few collectives, as DDP's buckets.
 * bucket_bytes 0 = 25 MiB, DDP's default. Every rank must pass tensors of
 * the same shapes and dtypes in the same order. AVG divides by the world
 * size after the sum (Gloo has no average). */
int fg_dist_allreduce(fg_dist *d, fg_tensor *const *ts, size_t n, fg_dist_op op,
                      size_t bucket_bytes, char **err);
/* Copies root's ts[0..n-1] into every other rank's (in place, same shapes). */
int fg_dist_broadcast(fg_dist *d, fg_tensor *const *ts, size_t n, int root, char **err);
/* Every rank's bytes, in rank order: (*bufs)[r] (malloc'd, (*lens)[r]
 * bytes) for r in 0..world_size-1; sizes may differ between ranks. The
 * caller frees each buffer and both arrays. */
int fg_dist_allgather_bytes(fg_dist *d, const void *data, size_t len, char ***bufs,
                            size_t **lens, char **err);
int fg_dist_barrier(fg_dist *d, char **err);

/* The store, for small agreements beside the collectives. Keys are plain
 * strings shared by all ranks. get waits up to the group's timeout for the
 * key to appear; *data is malloc'd (NUL-terminated beyond *len) and the
 * caller frees it. */
int fg_dist_store_set(fg_dist *d, const char *key, const void *data, size_t len, char **err);
int fg_dist_store_get(fg_dist *d, const char *key, char **data, size_t *len, char **err);
/* Like get, but waits at most timeout_s; *found false (and *data NULL)
 * when the key did not appear in time. */
int fg_dist_store_try_get(fg_dist *d, const char *key, double timeout_s, bool *found, char **data,
                          size_t *len, char **err);
/* Atomically adds delta to an integer key (absent = 0); *out (may be
 * NULL) gets the new value. */
int fg_dist_store_add(fg_dist *d, const char *key, int64_t delta, int64_t *out, char **err);

#ifdef __cplusplus
}
#endif
#endif
