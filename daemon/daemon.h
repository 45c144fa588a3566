/* fulgurd's shared state: the job table, the queue, the event pipeline.
 * Everything here is touched only on the loop thread. */
#ifndef FGD_DAEMON_H
#define FGD_DAEMON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <uv.h>

#include "util/job_opts.h"
#include "util/xalloc.h"

#include "fulgur/v1/jobs.pb-c.h"
#include "server.h"
#include "store.h"

typedef struct fgd fgd;
typedef struct fgd_job fgd_job;
typedef struct fgd_worker fgd_worker;
typedef struct fgd_watch fgd_watch;

/* The config checker's limits unless the command line sets others: the
 * address space a checker with libtorch loaded needs, with room for a
 * large config (README, "Limits on processes"), and CPU far above any
 * honest check's. */
#define FGD_CHECK_MEMORY_LIMIT (4ull << 30)
#define FGD_CHECK_CPU_SECONDS 30u

typedef struct {
  const char *state_dir;
  const char **listen;
  size_t n_listen;
  const char **roots; /* real paths */
  size_t n_roots;
  const char *token_file, *tls_cert, *tls_key;
  const char *worker_path;
  int max_jobs;
  int max_queue;
  unsigned kill_grace_ms;
  unsigned check_timeout_ms;
  /* Address-space limits in bytes (0: none): every job's worker, and the
   * config checker; and the CPU seconds one config check may use. */
  uint64_t job_memory_limit, check_memory_limit;
  unsigned check_cpu_seconds;
  size_t max_request_bytes;
  int64_t state_max_bytes;
  const char *http;          /* --http HOST:PORT, NULL: none */
  int64_t metrics_retain_ns; /* --metrics-retain */
} fgd_opts;

typedef struct {
  char *key;
  double value;
} fgd_metric;

/* Recently committed events, so live watchers need no database read. */
#define FGD_EVENT_CACHE 64
typedef struct {
  uint64_t seq;
  uint8_t *data;
  size_t len;
} fgd_cached_event;

/* A failed attempt, as Job.failures keeps it. */
typedef struct {
  uint32_t attempt;
  char *reason, *exit_signal;
  int32_t exit_code;
  int64_t time_ns;
} fgd_failure;

struct fgd_job {
  int64_t rowid; /* submission order */
  char *id, *name, *idempotency_key, *config;
  char *resume_ckpt; /* the checkpoint the next attempt starts from */
  bool restart_resume; /* restart_policy: resume, as the config check read it */
  Fulgur__V1__Stage stage;
  Fulgur__V1__JobState state;
  char *error, *run_dir, *last_ckpt, *exit_signal;
  int32_t exit_code;
  uint32_t attempts;
  uint32_t max_restarts; /* retries in place after a failed attempt */
  uint64_t memory_limit; /* the config's memory_limit (0: the daemon's) */
  fgd_failure *failures; /* every failed attempt, oldest first */
  size_t n_failures;
  char *parent_id, *parent_ckpt; /* a fork's source and its checkpoint */
  int64_t create_ns, start_ns, end_ns;
  fgd_metric *metrics;
  size_t n_metrics;
  /* Progress, as the worker last reported it. */
  int64_t epoch, global_step, total_steps, batch_idx, num_batches, max_epochs;
  char *split;
  double percent, eta_seconds; /* the engine's, of the stage's own loop */
  /* Events: seq given out so far, seq committed so far, and the seq of the
   * latest state event that ends a stream (terminal or paused; 0 none). */
  uint64_t last_seq, stored_seq, final_seq;
  fgd_cached_event cache[FGD_EVENT_CACHE];
  bool dirty; /* the stored Job blob is stale (and the job is in d->dirty) */
  fgd_worker *worker;
  bool cancel_requested, pause_requested;
  fgd_watch *watchers;
};

/* An event given a seq, waiting for the next commit. */
typedef struct {
  fgd_job *job;
  uint64_t seq;
  uint8_t *data;
  size_t len;
} fgd_pending_event;

struct fgd {
  uv_loop_t *loop;
  fgd_opts opts;
  char *token;
  fgd_store *store;
  fgd_server *server;
  /* Jobs in submission order, and indexes by id and idempotency key. */
  fgd_job **jobs;
  size_t n_jobs, cap_jobs;
  struct fgd_map *by_id, *by_key;
  int running;
  int queued;
  fgd_pending_event *pending;
  size_t n_pending, cap_pending;
  /* Jobs whose stored row is stale, so a commit touches only them. */
  fgd_job **dirty;
  size_t n_dirty, cap_dirty;
  uv_timer_t flush_timer;
  bool flush_armed;
  bool flush_due_now;   /* armed for the next turn of the loop */
  bool in_flush;        /* a commit pass is running (jobs.c: never nested) */
  bool schedule_wanted; /* the next pass starts queued jobs */
  bool store_failing; /* the last commit failed; retrying */
  int throttled; /* workers whose pipe is not read while events pile up */
  bool shutting_down;
  size_t n_watchers; /* open watchers over every job (fulgur_watchers) */
  char *jobs_dir;
  struct fgd_checker *checker; /* the warm config checker (checker.h) */
  struct fgd_http *http;       /* the HTTP API (http/http.h), NULL without --http */
};

/* Replaces an owned string with a copy of v (NULL clears it). */
static inline void fgd_set_str(char **slot, const char *v) {
  free(*slot);
  *slot = v ? fg__xstrdup(v) : NULL;
}

/* ---- jobs.c ---- */
fgd_job *fgd_job_find(fgd *d, const char *id);
fgd_job *fgd_job_find_key(fgd *d, const char *key);
/* A new job from a checked config and the top-level options the check
 * read from it (util/job_opts.h); stored (with its QUEUED event) before it
 * returns. NULL with *err on a store failure (*full: disk or size cap). */
fgd_job *fgd_job_create(fgd *d, const char *id, Fulgur__V1__Stage stage, const char *name,
                        const char *key, const char *config, const fg_job_opts *opts,
                        const char *ckpt, const char *parent_id, const char *parent_ckpt,
                        int *full, char **err);
/* Records a failed attempt (Job.failures). */
void fgd_job_add_failure(fgd_job *j, const char *reason);
/* Whether the job's next attempt starts a fork: from the checkpoint it
 * was forked from (the worker then takes the config's hyperparameters). */
bool fgd_job_fork_start(const fgd_job *j);
/* A fresh job id (16 random hex digits, not in use); caller frees. */
char *fgd_job_new_id(fgd *d);
/* Moves a job to a state and queues the state event; terminal states set
 * the end time. message may be NULL. */
void fgd_job_set_state(fgd *d, fgd_job *j, Fulgur__V1__JobState st, const char *message);
/* Marks a job's stored row stale: the next commit rewrites it. */
void fgd_job_touch(fgd *d, fgd_job *j);
/* Queues an event (data: a packed JobEvent without seq/job_id, or NULL
 * with ev set) and returns its seq. */
uint64_t fgd_job_add_event(fgd *d, fgd_job *j, Fulgur__V1__JobEvent *ev);
/* The Job message (free with fgd_job_message_free). */
Fulgur__V1__Job *fgd_job_message(const fgd_job *j);
void fgd_job_message_free(Fulgur__V1__Job *m);
bool fgd_state_terminal(Fulgur__V1__JobState s);
/* One commit pass now: store, deliver, schedule (see jobs.c). Returns 0,
 * or -1 when the store refused (everything stays pending and is retried
 * every second). Never called from inside a pass. */
int fgd_flush(fgd *d);
/* fgd_job_set_state, stored before it returns: for changes a client asked
 * for, which must not be answered as done and then lost. On a store
 * failure the job is left as it was and -1 is returned. */
int fgd_job_set_state_stored(fgd *d, fgd_job *j, Fulgur__V1__JobState st, const char *message);
/* Asks for queued jobs to be started while there is room: by the next
 * commit pass, at the next turn of the loop (never from here). */
void fgd_schedule(fgd *d);
/* Loads the store and applies the restart rules. */
int fgd_recover(fgd *d, char **err);
void fgd_jobs_free(fgd *d);
/* Watchers (watch.c): a cursor over a job's committed events that sends
 * them one at a time to a sink, WatchJob's gRPC stream or an SSE reader. */
typedef struct {
  /* One committed event (a packed JobEvent, borrowed: copy it). Only one is
   * in flight: the sink calls fgd_watch_sent once it has left. */
  void (*send)(void *ctx, uint64_t seq, const uint8_t *data, size_t len);
  /* The watch is over: OK after the job's final event, else why not. The
   * watch is already freed; no callback runs after this one. */
  void (*finish)(void *ctx, grpc_status_code code, const char *msg);
  void *ctx;
} fgd_watch_sink;
/* A watcher of j's events after after_seq; it starts sending at the first
 * fgd_watch_pump (so the caller can store the handle first). */
fgd_watch *fgd_watch_open(fgd *d, fgd_job *j, uint64_t after_seq, fgd_watch_sink sink);
void fgd_watch_pump(fgd_watch *w);
/* The sink's event has left (ok false: the reader is gone). */
void fgd_watch_sent(fgd_watch *w, bool ok);
/* The reader went away, or the daemon is shutting down: finishes it. */
void fgd_watch_close(fgd_watch *w);
/* WatchJob on a gRPC stream. */
void fgd_watch_start(fgd *d, fgd_job *j, fgd_call *c, uint64_t after_seq);
void fgd_watch_pump_job(fgd *d, fgd_job *j);
void fgd_watch_end_all(fgd *d);
/* One committed event's packed bytes: borrowed from the cache of recent
 * events (valid until the next commit), else read from the store into
 * *owned, which the caller frees. NULL when it cannot be read. */
const uint8_t *fgd_job_event_bytes(fgd *d, fgd_job *j, uint64_t seq, size_t *len, uint8_t **owned);

/* ---- worker.c ---- */
int fgd_worker_start(fgd *d, fgd_job *j, char **err);
/* Signals the job's worker; a pause (SIGUSR1) or checkpoint (SIGUSR2) sent
 * before the worker has set its handlers waits until it has (worker.c). */
void fgd_worker_signal(fgd *d, fgd_job *j, int sig);
void fgd_worker_kill_all(fgd *d);
/* Events waiting for a commit beyond which workers' pipes are no longer
 * read (a store that refuses writes must not make the daemon buffer a
 * worker's whole output): the workers wait in their writes instead. */
#define FGD_PENDING_MAX 4096
/* Reads the throttled workers' pipes again once the pending events are
 * below FGD_PENDING_MAX (called after each commit pass). */
void fgd_worker_unthrottle(fgd *d);

/* ---- rpc.c ---- */
void fgd_rpc_on_call(void *ctx, fgd_call *c);
/* WatchJob's checks, for every kind of watcher: the job, or NULL with the
 * status and message (caller frees) to answer. */
fgd_job *fgd_rpc_watch_job(fgd *d, const char *id, uint64_t after_seq, grpc_status_code *code,
                           char **msg);

/* ---- map.c: string -> pointer ---- */
typedef struct fgd_map fgd_map;
fgd_map *fgd_map_create(void);
void fgd_map_free(fgd_map *m);
void *fgd_map_get(const fgd_map *m, const char *key);
void fgd_map_put(fgd_map *m, const char *key, void *value); /* key borrowed */
void fgd_map_del(fgd_map *m, const char *key);

#endif
