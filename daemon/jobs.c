/* The job table and the event pipeline.
 *
 * An event gets its seq the moment it is accepted (from a worker, or from
 * the daemon's own state changes) and waits in d->pending. A short timer
 * commits all pending events, plus the Job rows they changed, in one
 * transaction; only then are they given to watchers. So a watcher never
 * sees an event that a crash could take back, and seqs on disk have no
 * gaps: a failed commit is fatal to the batch's jobs' streams, never
 * papered over.
 *
 * The commit path runs in one direction, one pass at a time (fgd_flush):
 *
 *   1. store:    the pending events and dirty rows, one transaction;
 *   2. deliver:  the committed batch to its jobs' watchers;
 *   3. schedule: queued jobs started while there is room.
 *
 * Each step runs after the one before and never calls back into it:
 * queueing an event (fgd_job_add_event, fgd_job_set_state) only appends
 * to d->pending and arms the timer, it never commits; fgd_schedule only
 * asks the next pass to run step 3. So a state change made while
 * scheduling (RUNNING, or FAILED when a worker cannot start) lands in a
 * fresh pending list and is committed by the next pass, and a pass never
 * runs inside another (d->in_flush). Step 2 works on the batch it took
 * out of d->pending, so it does not matter what watchers queue. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>

#include "daemon.h"
#include "fg_rpc.h"
#include "util/assert.h"
#include "util/xalloc.h"

/* Commit at most this long after the first pending event: delivery to
 * watchers waits for the commit. */
#define FLUSH_DELAY_MS 5
#define FLUSH_BATCH_MAX 1024

bool fgd_state_terminal(Fulgur__V1__JobState s) {
  return s == FULGUR__V1__JOB_STATE__SUCCEEDED || s == FULGUR__V1__JOB_STATE__FAILED ||
         s == FULGUR__V1__JOB_STATE__CANCELLED;
}

fgd_job *fgd_job_find(fgd *d, const char *id) { return id ? fgd_map_get(d->by_id, id) : NULL; }

fgd_job *fgd_job_find_key(fgd *d, const char *key) {
  return key && key[0] ? fgd_map_get(d->by_key, key) : NULL;
}

/* ---- the Job message ---- */

/* The message and everything it points to, freed together. */
typedef struct {
  Fulgur__V1__Job m;
  Fulgur__V1__Progress p;
  Fulgur__V1__Job__MetricsEntry *entries;
  Fulgur__V1__AttemptFailure *failures, **failure_ptrs;
} job_msg;

Fulgur__V1__Job *fgd_job_message(const fgd_job *j) {
  job_msg *jm = fg__xcalloc(1, sizeof *jm);
  Fulgur__V1__Job *m = &jm->m;
  fulgur__v1__job__init(m);
  m->id = j->id;
  m->name = j->name ? j->name : "";
  m->stage = j->stage;
  m->state = j->state;
  m->error = j->error ? j->error : "";
  m->n_metrics = j->n_metrics;
  m->metrics = fg__xcalloc(j->n_metrics + 1, sizeof *m->metrics);
  jm->entries = fg__xcalloc(j->n_metrics + 1, sizeof *jm->entries);
  for (size_t i = 0; i < j->n_metrics; i++) {
    fulgur__v1__job__metrics_entry__init(&jm->entries[i]);
    jm->entries[i].key = j->metrics[i].key;
    jm->entries[i].value = j->metrics[i].value;
    m->metrics[i] = &jm->entries[i];
  }
  Fulgur__V1__Progress *p = &jm->p;
  fulgur__v1__progress__init(p);
  p->epoch = j->epoch;
  p->global_step = j->global_step;
  p->total_steps = j->total_steps;
  p->split = j->split ? j->split : "";
  p->batch_idx = j->batch_idx;
  p->num_batches = j->num_batches;
  p->max_epochs = j->max_epochs;
  /* As the worker forwarded them from the engine (fulgur/events.h); an
   * ETA only while it runs. */
  p->percent = j->state == FULGUR__V1__JOB_STATE__SUCCEEDED ? 100.0 : j->percent;
  p->eta_seconds = j->state == FULGUR__V1__JOB_STATE__RUNNING ? j->eta_seconds : -1;
  m->progress = p;
  m->create_time_ns = j->create_ns;
  m->start_time_ns = j->start_ns;
  m->end_time_ns = j->end_ns;
  m->idempotency_key = j->idempotency_key ? j->idempotency_key : "";
  m->last_seq = j->stored_seq;
  m->run_dir = j->run_dir ? j->run_dir : "";
  m->last_checkpoint = j->last_ckpt ? j->last_ckpt : "";
  m->exit_signal = j->exit_signal ? j->exit_signal : "";
  m->exit_code = j->exit_code;
  m->attempts = j->attempts;
  m->max_restarts = j->max_restarts;
  m->memory_limit = j->memory_limit;
  m->parent_id = j->parent_id ? j->parent_id : "";
  m->parent_checkpoint = j->parent_ckpt ? j->parent_ckpt : "";
  jm->failures = fg__xcalloc(j->n_failures + 1, sizeof *jm->failures);
  jm->failure_ptrs = fg__xcalloc(j->n_failures + 1, sizeof *jm->failure_ptrs);
  for (size_t i = 0; i < j->n_failures; i++) {
    Fulgur__V1__AttemptFailure *f = &jm->failures[i];
    fulgur__v1__attempt_failure__init(f);
    f->attempt = j->failures[i].attempt;
    f->reason = j->failures[i].reason;
    f->exit_signal = j->failures[i].exit_signal ? j->failures[i].exit_signal : "";
    f->exit_code = j->failures[i].exit_code;
    f->time_ns = j->failures[i].time_ns;
    jm->failure_ptrs[i] = f;
  }
  m->n_failures = j->n_failures;
  m->failures = jm->failure_ptrs;
  return m;
}

void fgd_job_message_free(Fulgur__V1__Job *m) {
  if (!m) return;
  job_msg *jm = (job_msg *)m; /* m is the first member */
  free(jm->entries);
  free(jm->failures);
  free(jm->failure_ptrs);
  free(m->metrics);
  free(jm);
}

/* Restores a job's fields from its stored Job message. */
static void job_from_message(fgd_job *j, const Fulgur__V1__Job *m) {
  fgd_set_str(&j->name, m->name);
  j->stage = m->stage;
  j->state = m->state;
  fgd_set_str(&j->error, m->error[0] ? m->error : NULL);
  j->metrics = fg__xcalloc(m->n_metrics + 1, sizeof *j->metrics);
  for (size_t i = 0; i < m->n_metrics; i++)
    j->metrics[i] = (fgd_metric){fg__xstrdup(m->metrics[i]->key), m->metrics[i]->value};
  j->n_metrics = m->n_metrics;
  if (m->progress) {
    j->epoch = m->progress->epoch;
    j->global_step = m->progress->global_step;
    j->total_steps = m->progress->total_steps;
    fgd_set_str(&j->split, m->progress->split);
    j->batch_idx = m->progress->batch_idx;
    j->num_batches = m->progress->num_batches;
    j->max_epochs = m->progress->max_epochs;
    j->percent = m->progress->percent;
  }
  j->create_ns = m->create_time_ns;
  j->start_ns = m->start_time_ns;
  j->end_ns = m->end_time_ns;
  fgd_set_str(&j->run_dir, m->run_dir[0] ? m->run_dir : NULL);
  fgd_set_str(&j->last_ckpt, m->last_checkpoint[0] ? m->last_checkpoint : NULL);
  fgd_set_str(&j->exit_signal, m->exit_signal[0] ? m->exit_signal : NULL);
  j->exit_code = m->exit_code;
  j->attempts = m->attempts;
  j->max_restarts = m->max_restarts;
  j->memory_limit = m->memory_limit;
  fgd_set_str(&j->parent_id, m->parent_id[0] ? m->parent_id : NULL);
  fgd_set_str(&j->parent_ckpt, m->parent_checkpoint[0] ? m->parent_checkpoint : NULL);
  j->failures = fg__xcalloc(m->n_failures + 1, sizeof *j->failures);
  for (size_t i = 0; i < m->n_failures; i++) {
    const Fulgur__V1__AttemptFailure *f = m->failures[i];
    j->failures[i] = (fgd_failure){f->attempt, fg__xstrdup(f->reason),
                                   f->exit_signal[0] ? fg__xstrdup(f->exit_signal) : NULL,
                                   f->exit_code, f->time_ns};
  }
  j->n_failures = m->n_failures;
}

void fgd_job_add_failure(fgd_job *j, const char *reason) {
  j->failures = fg__xrealloc(j->failures, (j->n_failures + 1) * sizeof *j->failures);
  j->failures[j->n_failures++] =
      (fgd_failure){j->attempts, fg__xstrdup(reason ? reason : ""),
                    j->exit_signal ? fg__xstrdup(j->exit_signal) : NULL, j->exit_code,
                    fg_rpc_now_ns()};
}

bool fgd_job_fork_start(const fgd_job *j) {
  return j->parent_ckpt && j->resume_ckpt && strcmp(j->parent_ckpt, j->resume_ckpt) == 0;
}

static uint8_t *pack_job(const fgd_job *j, size_t *len) {
  Fulgur__V1__Job *m = fgd_job_message(j);
  *len = fulgur__v1__job__get_packed_size(m);
  uint8_t *buf = fg__xmalloc(*len + 1);
  fulgur__v1__job__pack(m, buf);
  fgd_job_message_free(m);
  return buf;
}

/* ---- the table ---- */

static fgd_job *job_new(void) {
  fgd_job *j = fg__xcalloc(1, sizeof *j);
  j->percent = 0;
  j->eta_seconds = -1;
  j->max_epochs = -1;
  return j;
}

static void job_free(fgd_job *j) {
  free(j->id);
  free(j->name);
  free(j->idempotency_key);
  free(j->config);
  free(j->resume_ckpt);
  free(j->error);
  free(j->run_dir);
  free(j->last_ckpt);
  free(j->exit_signal);
  free(j->split);
  free(j->parent_id);
  free(j->parent_ckpt);
  for (size_t i = 0; i < j->n_failures; i++) {
    free(j->failures[i].reason);
    free(j->failures[i].exit_signal);
  }
  free(j->failures);
  for (size_t i = 0; i < j->n_metrics; i++) free(j->metrics[i].key);
  free(j->metrics);
  for (int i = 0; i < FGD_EVENT_CACHE; i++) free(j->cache[i].data);
  free(j);
}

static void table_add(fgd *d, fgd_job *j) {
  if (d->n_jobs == d->cap_jobs) {
    d->cap_jobs = d->cap_jobs ? 2 * d->cap_jobs : 64;
    d->jobs = fg__xrealloc(d->jobs, d->cap_jobs * sizeof *d->jobs);
  }
  d->jobs[d->n_jobs++] = j;
  fgd_map_put(d->by_id, j->id, j);
  if (j->idempotency_key) fgd_map_put(d->by_key, j->idempotency_key, j);
  if (j->state == FULGUR__V1__JOB_STATE__QUEUED) d->queued++;
}

/* Restarts (restart_policy: resume) keep the job id; a fresh id is 16
 * random hex digits: unguessable, and never reused across restarts. */
char *fgd_job_new_id(fgd *d) {
  for (;;) {
    unsigned char b[8];
    if (getrandom(b, sizeof b, 0) != (ssize_t)sizeof b)
      for (size_t i = 0; i < sizeof b; i++) b[i] = (unsigned char)rand();
    char *id = fg__xasprintf("%02x%02x%02x%02x%02x%02x%02x%02x", b[0], b[1], b[2], b[3], b[4], b[5],
                             b[6], b[7]);
    if (!fgd_job_find(d, id)) return id;
    free(id);
  }
}

static void cache_put(fgd_job *j, uint64_t seq, const uint8_t *data, size_t len) {
  fgd_cached_event *c = &j->cache[seq % FGD_EVENT_CACHE];
  free(c->data);
  c->seq = seq;
  c->data = fg__xmalloc(len + 1);
  memcpy(c->data, data, len);
  c->len = len;
}

/* ev may be an unpacked message its owner frees: its own job_id string
 * is put back after packing. */
static uint8_t *pack_event(fgd_job *j, Fulgur__V1__JobEvent *ev, uint64_t seq, size_t *len) {
  char *own = ev->job_id;
  ev->seq = seq;
  ev->job_id = j->id;
  if (ev->time_ns == 0) ev->time_ns = fg_rpc_now_ns();
  *len = fulgur__v1__job_event__get_packed_size(ev);
  uint8_t *buf = fg__xmalloc(*len + 1);
  fulgur__v1__job_event__pack(ev, buf);
  ev->job_id = own;
  return buf;
}

fgd_job *fgd_job_create(fgd *d, const char *id, Fulgur__V1__Stage stage, const char *name,
                        const char *key, const char *config, const fg_job_opts *opts,
                        const char *ckpt, const char *parent_id, const char *parent_ckpt,
                        int *full, char **err) {
  fgd_job *j = job_new();
  j->id = fg__xstrdup(id);
  j->name = fg__xstrdup(name ? name : "");
  j->idempotency_key = key && key[0] ? fg__xstrdup(key) : NULL;
  j->config = fg__xstrdup(config);
  j->resume_ckpt = ckpt && ckpt[0] ? fg__xstrdup(ckpt) : NULL;
  j->restart_resume = opts->restart_policy == FG_RESTART_RESUME;
  j->max_restarts = opts->max_restarts;
  j->memory_limit = opts->memory_limit;
  j->parent_id = parent_id ? fg__xstrdup(parent_id) : NULL;
  j->parent_ckpt = parent_ckpt ? fg__xstrdup(parent_ckpt) : NULL;
  j->stage = stage;
  j->state = FULGUR__V1__JOB_STATE__QUEUED;
  j->create_ns = fg_rpc_now_ns();
  /* The first event is stored with the job, in the same transaction. */
  Fulgur__V1__StateChange sc = FULGUR__V1__STATE_CHANGE__INIT;
  sc.state = j->state;
  char *qmsg = parent_id ? fg__xasprintf("queued; a fork of job %s from %s", parent_id, parent_ckpt)
                         : fg__xstrdup("queued");
  sc.message = qmsg;
  Fulgur__V1__JobEvent ev = FULGUR__V1__JOB_EVENT__INIT;
  ev.kind_case = FULGUR__V1__JOB_EVENT__KIND_STATE;
  ev.state = &sc;
  size_t elen, jlen;
  uint8_t *edata = pack_event(j, &ev, 1, &elen);
  free(qmsg);
  j->last_seq = j->stored_seq = 1;
  uint8_t *jdata = pack_job(j, &jlen);
  fgd_store_job row = {.id = j->id,
                       .idempotency_key = j->idempotency_key,
                       .config = j->config,
                       .resume_ckpt = j->resume_ckpt,
                       .restart_resume = j->restart_resume,
                       .job = jdata,
                       .job_len = jlen};
  /* Its own transaction, beside the commit pass: events pending for other
   * jobs are in memory only and stay out of it. */
  int rc = fgd_store_begin(d->store, err);
  if (rc == 0) rc = fgd_store_insert_job(d->store, &row, full, err);
  if (rc == 0) rc = fgd_store_put_event(d->store, row.rowid, 1, edata, elen, full, err);
  if (rc == 0) rc = fgd_store_commit(d->store, full, err);
  if (rc) {
    fgd_store_rollback(d->store);
    free(edata);
    free(jdata);
    job_free(j);
    return NULL;
  }
  j->rowid = row.rowid;
  cache_put(j, 1, edata, elen);
  free(edata);
  free(jdata);
  table_add(d, j);
  return j;
}

/* ---- events ---- */

static void on_flush_timer(uv_timer_t *t) {
  fgd *d = t->data;
  d->flush_armed = false;
  fgd_flush(d);
}

/* The next pass in at most ms (a pending retry after a failed commit is
 * left alone: it comes when the store may take writes again). */
static void arm_pass(fgd *d, uint64_t ms) {
  if (d->store_failing) return;
  if (d->flush_armed && (ms > 0 || d->flush_due_now)) return;
  d->flush_armed = true;
  d->flush_due_now = ms == 0;
  uv_timer_start(&d->flush_timer, on_flush_timer, ms, 0);
}

static void queue_pending(fgd *d, fgd_job *j, uint64_t seq, uint8_t *data, size_t len) {
  if (d->n_pending == d->cap_pending) {
    d->cap_pending = d->cap_pending ? 2 * d->cap_pending : 256;
    d->pending = fg__xrealloc(d->pending, d->cap_pending * sizeof *d->pending);
  }
  d->pending[d->n_pending++] = (fgd_pending_event){j, seq, data, len};
  /* A full batch goes at the next turn of the loop, not from here: the
   * caller may be in the middle of a pass (see the top of this file). */
  arm_pass(d, d->n_pending >= FLUSH_BATCH_MAX ? 0 : FLUSH_DELAY_MS);
}

void fgd_job_touch(fgd *d, fgd_job *j) {
  if (j->dirty) return;
  j->dirty = true;
  if (d->n_dirty == d->cap_dirty) {
    d->cap_dirty = d->cap_dirty ? 2 * d->cap_dirty : 16;
    d->dirty = fg__xrealloc(d->dirty, d->cap_dirty * sizeof *d->dirty);
  }
  d->dirty[d->n_dirty++] = j;
}

uint64_t fgd_job_add_event(fgd *d, fgd_job *j, Fulgur__V1__JobEvent *ev) {
  uint64_t seq = ++j->last_seq;
  size_t len;
  uint8_t *data = pack_event(j, ev, seq, &len);
  queue_pending(d, j, seq, data, len);
  fgd_job_touch(d, j);
  return seq;
}

void fgd_job_set_state(fgd *d, fgd_job *j, Fulgur__V1__JobState st, const char *message) {
  if (j->state == FULGUR__V1__JOB_STATE__QUEUED) d->queued--;
  if (st == FULGUR__V1__JOB_STATE__QUEUED) d->queued++;
  j->state = st;
  int64_t now = fg_rpc_now_ns();
  if (st == FULGUR__V1__JOB_STATE__RUNNING) {
    if (j->start_ns == 0) j->start_ns = now;
    j->eta_seconds = -1; /* until the new attempt's worker has a rate */
    j->end_ns = 0;
  }
  if (fgd_state_terminal(st)) j->end_ns = now;
  Fulgur__V1__StateChange sc = FULGUR__V1__STATE_CHANGE__INIT;
  sc.state = st;
  sc.message = (char *)(message ? message : "");
  Fulgur__V1__JobEvent ev = FULGUR__V1__JOB_EVENT__INIT;
  ev.kind_case = FULGUR__V1__JOB_EVENT__KIND_STATE;
  ev.state = &sc;
  uint64_t seq = fgd_job_add_event(d, j, &ev);
  /* Streams end after a terminal state, and after a pause: the job is
   * at rest until someone resumes it. */
  j->final_seq = fgd_state_terminal(st) || st == FULGUR__V1__JOB_STATE__PAUSED ? seq : 0;
}

static void start_queued(fgd *d);

/* Step 1. One transaction: the pending events, then every dirty job's row.
 * When it fails (a full disk, the --state-max-bytes cap), nothing of it is
 * stored and nothing is lost either: the events stay pending with their
 * seqs and are tried again every second, so the seqs on disk never have a
 * gap and watchers, who only ever see committed events, wait rather than
 * see something a crash could take back. On success the committed events
 * are moved to *batch (n of them, the caller frees it) and d->pending
 * starts empty. */
static int store_pass(fgd *d, fgd_pending_event **batch, size_t *n) {
  *batch = NULL;
  *n = 0;
  if (d->n_pending == 0 && d->n_dirty == 0) return 0;
  char *err = NULL;
  int full = 0;
  int rc = fgd_store_begin(d->store, &err);
  for (size_t i = 0; i < d->n_pending && rc == 0; i++) {
    fgd_pending_event *p = &d->pending[i];
    rc = fgd_store_put_event(d->store, p->job->rowid, p->seq, p->data, p->len, &full, &err);
  }
  for (size_t i = 0; i < d->n_dirty && rc == 0; i++) {
    fgd_job *j = d->dirty[i];
    /* The row records what will be committed. */
    uint64_t saved = j->stored_seq;
    j->stored_seq = j->last_seq;
    size_t len;
    uint8_t *data = pack_job(j, &len);
    j->stored_seq = saved;
    rc = fgd_store_update_job(d->store, j->rowid, data, len, j->resume_ckpt, &full, &err);
    free(data);
  }
  if (rc == 0) rc = fgd_store_commit(d->store, &full, &err);
  if (rc) {
    fgd_store_rollback(d->store);
    if (!d->store_failing) fprintf(stderr, "fulgurd: %s; retrying every second\n", err);
    d->store_failing = true;
    free(err);
    d->flush_armed = true;
    d->flush_due_now = false;
    uv_timer_start(&d->flush_timer, on_flush_timer, 1000, 0);
    return -1;
  }
  if (d->store_failing) {
    fprintf(stderr, "fulgurd: the state store accepts writes again\n");
    d->store_failing = false;
    d->schedule_wanted = true; /* fgd_schedule refused while it failed */
  }
  for (size_t i = 0; i < d->n_dirty; i++) d->dirty[i]->dirty = false;
  d->n_dirty = 0;
  for (size_t i = 0; i < d->n_pending; i++) {
    fgd_pending_event *p = &d->pending[i];
    cache_put(p->job, p->seq, p->data, p->len);
    p->job->stored_seq = p->seq;
    free(p->data);
    p->data = NULL;
  }
  *batch = d->pending;
  *n = d->n_pending;
  d->pending = NULL;
  d->n_pending = d->cap_pending = 0;
  return 0;
}

int fgd_flush(fgd *d) {
  /* The invariant at the top of this file: a commit pass never runs inside
   * another (FG_ASSERT stays on in every build). */
  FG_ASSERT(!d->in_flush);
  d->in_flush = true;
  if (d->flush_armed) {
    uv_timer_stop(&d->flush_timer);
    d->flush_armed = false;
  }
  fgd_pending_event *batch;
  size_t n;
  int rc = store_pass(d, &batch, &n);
  if (rc == 0) {
    /* Step 2: a job with several events in the batch is pumped once per
     * event; pump sends one at a time and returns at once when busy. */
    for (size_t i = 0; i < n; i++) fgd_watch_pump_job(d, batch[i].job);
    free(batch);
    if (d->throttled) fgd_worker_unthrottle(d);
    /* Step 3. */
    if (d->schedule_wanted) {
      d->schedule_wanted = false;
      start_queued(d);
    }
  }
  d->in_flush = false;
  return rc;
}

int fgd_job_set_state_stored(fgd *d, fgd_job *j, Fulgur__V1__JobState st, const char *message) {
  Fulgur__V1__JobState old = j->state;
  int64_t old_end = j->end_ns;
  uint64_t old_final = j->final_seq;
  fgd_job_set_state(d, j, st, message);
  if (fgd_flush(d) == 0) return 0;
  /* Take the change back: its event is the last one pending. */
  FG_ASSERT(d->n_pending > 0 && d->pending[d->n_pending - 1].job == j);
  free(d->pending[--d->n_pending].data);
  j->last_seq--;
  if (st == FULGUR__V1__JOB_STATE__QUEUED) d->queued--;
  if (old == FULGUR__V1__JOB_STATE__QUEUED) d->queued++;
  j->state = old;
  j->end_ns = old_end;
  j->final_seq = old_final;
  return -1;
}

/* ---- the queue ---- */

void fgd_schedule(fgd *d) {
  d->schedule_wanted = true;
  arm_pass(d, 0);
}

/* Step 3 of a pass. The states it sets are queued for the next one. */
static void start_queued(fgd *d) {
  /* A job started now could not record that it runs. */
  if (d->shutting_down || d->store_failing) return;
  for (size_t i = 0; i < d->n_jobs && d->running < d->opts.max_jobs && d->queued > 0; i++) {
    fgd_job *j = d->jobs[i];
    if (j->state != FULGUR__V1__JOB_STATE__QUEUED || j->worker) continue;
    char *err = NULL;
    if (fgd_worker_start(d, j, &err)) {
      fgd_job_set_state(d, j, FULGUR__V1__JOB_STATE__FAILED, err);
      fgd_set_str(&j->error, err);
      free(err);
    }
  }
}

/* ---- recovery ---- */

static void load_one(void *ctx, const fgd_store_job *row) {
  fgd *d = ctx;
  fgd_job *j = job_new();
  j->rowid = row->rowid;
  j->id = fg__xstrdup(row->id);
  j->idempotency_key = row->idempotency_key ? fg__xstrdup(row->idempotency_key) : NULL;
  j->config = fg__xstrdup(row->config);
  j->resume_ckpt = row->resume_ckpt ? fg__xstrdup(row->resume_ckpt) : NULL;
  j->restart_resume = row->restart_resume != 0;
  Fulgur__V1__Job *m = fulgur__v1__job__unpack(NULL, row->job_len, row->job);
  if (m) {
    job_from_message(j, m);
    fulgur__v1__job__free_unpacked(m, NULL);
  } else {
    j->state = FULGUR__V1__JOB_STATE__FAILED;
    j->error = fg__xstrdup("stored job record is unreadable");
  }
  table_add(d, j);
}

int fgd_recover(fgd *d, char **err) {
  if (fgd_store_load_jobs(d->store, load_one, d, err)) return -1;
  for (size_t i = 0; i < d->n_jobs; i++) {
    fgd_job *j = d->jobs[i];
    j->last_seq = j->stored_seq = fgd_store_max_seq(d->store, j->rowid);
    if (j->state != FULGUR__V1__JOB_STATE__RUNNING) {
      if (fgd_state_terminal(j->state) || j->state == FULGUR__V1__JOB_STATE__PAUSED)
        j->final_seq = j->stored_seq; /* its last event is that state's */
      continue;
    }
    /* Its worker died with the old daemon (parent-death signal). */
    /* restart_policy: resume goes on from the last checkpoint, or from
     * the start when the daemon died before the first one was written
     * (nothing of the run is lost then but its time). */
    if (j->restart_resume) {
      if (j->last_ckpt) fgd_set_str(&j->resume_ckpt, j->last_ckpt);
      char *msg = j->resume_ckpt ? fg__xasprintf("daemon restarted; resuming from %s", j->resume_ckpt)
                                 : fg__xstrdup("daemon restarted; starting again (no checkpoint yet)");
      fgd_job_set_state(d, j, FULGUR__V1__JOB_STATE__QUEUED, msg);
      free(msg);
    } else {
      fgd_set_str(&j->error, "daemon restarted");
      fgd_job_set_state(d, j, FULGUR__V1__JOB_STATE__FAILED, "daemon restarted");
    }
  }
  fgd_flush(d);
  return 0;
}

void fgd_jobs_free(fgd *d) {
  for (size_t i = 0; i < d->n_pending; i++) free(d->pending[i].data);
  free(d->pending);
  free(d->dirty);
  for (size_t i = 0; i < d->n_jobs; i++) job_free(d->jobs[i]);
  free(d->jobs);
  fgd_map_free(d->by_id);
  fgd_map_free(d->by_key);
}

static void copy_row(void *ctx, uint64_t seq, const void *data, size_t len) {
  struct {
    uint8_t *data;
    size_t len;
  } *out = ctx;
  out->data = fg__xmalloc(len + 1);
  memcpy(out->data, data, len);
  out->len = len;
}

const uint8_t *fgd_job_event_bytes(fgd *d, fgd_job *j, uint64_t seq, size_t *len, uint8_t **owned) {
  *owned = NULL;
  fgd_cached_event *c = &j->cache[seq % FGD_EVENT_CACHE];
  if (c->data && c->seq == seq) {
    *len = c->len;
    return c->data;
  }
  /* Behind the cache: one row from the store, copied out of SQLite's
   * buffer (valid only during its step). */
  struct {
    uint8_t *data;
    size_t len;
  } out = {0};
  char *err = NULL;
  int n = fgd_store_events(d->store, j->rowid, seq - 1, 1, copy_row, &out, &err);
  free(err);
  if (n != 1) {
    free(out.data);
    return NULL;
  }
  *owned = out.data;
  *len = out.len;
  return out.data;
}
