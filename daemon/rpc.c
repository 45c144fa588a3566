/* fulgur.v1.JobService: request checks and answers. Config checking needs
 * the engine, which the daemon does not load: SubmitJob asks the warm
 * `fulgur-worker check --serve` child (checker.c) and answers when it has
 * answered; the loop never waits on it. */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "checker.h"
#include "daemon.h"
#include "fg_rpc.h"
#include "requests.h"
#include "util/xalloc.h"

#define LIST_JOBS_DEFAULT 100
#define LIST_JOBS_MAX 1000
#define LIST_EVENTS_DEFAULT 500
#define LIST_EVENTS_MAX 5000

static void reply_job(fgd_call *c, const fgd_job *j) {
  Fulgur__V1__Job *m = fgd_job_message(j);
  fgd_call_reply(c, &m->base);
  fgd_job_message_free(m);
}

/* A change the store refused: the job stays as it was. */
static void not_stored(fgd_call *c, const fgd_job *j) {
  fgd_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                "the state store is full: job %s stays %s (free space under --state-dir or raise "
                "--state-max-bytes)",
                j->id, fg_rpc_state_name(j->state));
}

/* Unpacks the call's request with its method's message (requests.h, the
 * one table the fuzzer decodes with too) and checks it, or answers
 * INVALID_ARGUMENT (NULL). */
static ProtobufCMessage *request(fgd_call *c) {
  const ProtobufCMessageDescriptor *desc = fgd_request_descriptor(fgd_call_method(c));
  ProtobufCMessage *m = fgd_call_unpack(c, desc);
  if (!m) {
    fgd_call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed %s", desc->name);
    return NULL;
  }
  char *bad = fgd_request_check(fgd_call_method(c), m);
  if (bad) {
    fgd_call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "%s", bad);
    free(bad);
    protobuf_c_message_free_unpacked(m, NULL);
    return NULL;
  }
  return m;
}

static fgd_job *job_or_not_found(fgd *d, fgd_call *c, const char *id) {
  fgd_job *j = fgd_job_find(d, id);
  if (!j) fgd_call_fail(c, GRPC_STATUS_NOT_FOUND, "no job with id '%s'", id ? id : "");
  return j;
}

/* ---- SubmitJob and ForkJob ---- */

/* A new job waiting for its config check: what SubmitJob or ForkJob asked
 * for, owned here. */
typedef struct {
  fgd *d;
  fgd_call *call;
  Fulgur__V1__Stage stage;
  char *name, *key, *ckpt;
  uint32_t max_restarts;     /* the request's; 0 = the config's */
  char *parent_id; /* a fork's source (its checkpoint is ckpt) */
  char *id;  /* given before the check: relative paths resolve in its folder */
  char *cwd; /* that folder, where the worker will run */
} submit_check;

static void submit_check_free(submit_check *sc) {
  free(sc->name);
  free(sc->key);
  free(sc->ckpt);
  free(sc->parent_id);
  free(sc->id);
  free(sc->cwd);
  free(sc);
}

/* The check's outcome (checker.h): exit 0 the checked config, 2 a config
 * error, 3 a path outside the roots, anything else the checker failing. */
static void submit_finish(void *ctx, int64_t exit_status, int term_signal, const char *text,
                          size_t tl) {
  submit_check *sc = ctx;
  fgd *d = sc->d;
  fgd_call *c = sc->call;
  char *msg = fg__xstrndup(text, tl && text[tl - 1] == '\n' ? tl - 1 : tl);
  if (exit_status < 0) {
    fgd_call_fail(c, GRPC_STATUS_UNAVAILABLE, "fulgurd is shutting down");
  } else if (term_signal || (exit_status != 0 && exit_status != 2 && exit_status != 3)) {
    fgd_call_fail(c, GRPC_STATUS_INTERNAL, "the config check failed (%s %d)%s%s",
                  term_signal ? "signal" : "status",
                  term_signal ? term_signal : (int)exit_status, msg[0] ? ": " : "", msg);
  } else if (exit_status == 2) {
    fgd_call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "%s", msg);
  } else if (exit_status == 3) {
    fgd_call_fail(c, GRPC_STATUS_PERMISSION_DENIED, "%s", msg);
  } else if (d->shutting_down) {
    fgd_call_fail(c, GRPC_STATUS_UNAVAILABLE, "fulgurd is shutting down");
  } else {
    /* Another submit with the same key may have won while this one was
     * being checked: it is the job. */
    fgd_job *j = fgd_job_find_key(d, sc->key);
    if (j) {
      reply_job(c, j);
    } else if (d->queued >= d->opts.max_queue) {
      /* Checked again: other submits may have filled the queue while this
       * one was being checked. */
      fgd_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                    "the queue is full (%d jobs waiting; --max-queue)", d->queued);
    } else {
      int full = 0;
      char *err = NULL;
      fg_job_opts jo;
      const char *config = NULL;
      if (fg__job_opts_split(text, &jo, &config, &err)) {
        fgd_call_fail(c, GRPC_STATUS_INTERNAL, "%s", err);
      } else {
        /* The request's max_restarts wins over the config's. */
        if (sc->max_restarts) jo.max_restarts = sc->max_restarts;
        if (!(j = fgd_job_create(d, sc->id, sc->stage, sc->name, sc->key, config, &jo, sc->ckpt,
                                 sc->parent_id, sc->parent_id ? sc->ckpt : NULL, &full, &err))) {
          fgd_call_fail(c, full ? GRPC_STATUS_RESOURCE_EXHAUSTED : GRPC_STATUS_INTERNAL,
                        "the job could not be stored: %s", err);
        } else {
          reply_job(c, j);
          fgd_schedule(d);
        }
      }
      free(err);
    }
  }
  free(msg);
  submit_check_free(sc);
}

/* Refuses a new job while the store or the queue is full (answered; true). */
static bool no_room(fgd *d, fgd_call *c) {
  if (d->shutting_down || !d->checker) { /* the checker closes as shutdown starts */
    fgd_call_fail(c, GRPC_STATUS_UNAVAILABLE, "fulgurd is shutting down");
    return true;
  }
  if (d->store_failing || fgd_store_nearly_full(d->store)) {
    fgd_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED,
                  "the state store is full: no new jobs until space is freed under --state-dir "
                  "(or --state-max-bytes is raised); the jobs it has keep going");
    return true;
  }
  if (d->queued >= d->opts.max_queue) {
    fgd_call_fail(c, GRPC_STATUS_RESOURCE_EXHAUSTED, "the queue is full (%d jobs waiting; --max-queue)",
                  d->queued);
    return true;
  }
  return false;
}

/* Sends sc's config to the warm checker, which answers submit_finish. */
static void submit_check_start(fgd *d, submit_check *sc, const char *config_yaml,
                               char *const *overrides, size_t n_overrides) {
  sc->id = fgd_job_new_id(d);
  sc->cwd = fg__xasprintf("%s/%s", d->jobs_dir, sc->id);
  /* The one-shot `fulgur-worker check` arguments (worker/main.c): the
   * stage, where relative paths resolve, the roots, and the request's
   * overrides, each one whole "--k=v" argument. */
  size_t n = 0, cap = 8 + 2 * d->opts.n_roots + 2 * n_overrides + 4;
  const char **args = fg__xcalloc(cap, sizeof *args);
  args[n++] = "--stage";
  args[n++] = fg_rpc_stage_name(sc->stage);
  args[n++] = "--cwd";
  args[n++] = sc->cwd;
  for (size_t i = 0; i < d->opts.n_roots; i++) {
    args[n++] = "--root";
    args[n++] = d->opts.roots[i];
  }
  for (size_t i = 0; i < n_overrides; i++) {
    args[n++] = "--override";
    args[n++] = overrides[i];
  }
  /* The checkpoint is a file the job reads: like every path in the
   * config, it must lie under the roots (checked as the ckpt_path key). */
  char *ckpt_arg = sc->ckpt ? fg__xasprintf("--ckpt_path=%s", sc->ckpt) : NULL;
  if (ckpt_arg) {
    args[n++] = "--override";
    args[n++] = ckpt_arg;
  }
  fgd_checker_submit(d->checker, args, n, config_yaml, submit_finish, sc);
  free(args);
  free(ckpt_arg);
}

static void handle_submit(fgd *d, fgd_call *c) {
  Fulgur__V1__SubmitJobRequest *r =
      (Fulgur__V1__SubmitJobRequest *)request(c);
  if (!r) return;
  fgd_job *j = fgd_job_find_key(d, r->idempotency_key);
  if (j) {
    reply_job(c, j);
  } else if (!no_room(d, c)) {
    submit_check *sc = fg__xcalloc(1, sizeof *sc);
    sc->d = d;
    sc->call = c;
    sc->stage = r->stage;
    sc->name = fg__xstrdup(r->name);
    sc->key = fg__xstrdup(r->idempotency_key);
    sc->ckpt = r->ckpt_path[0] ? fg__xstrdup(r->ckpt_path) : NULL;
    sc->max_restarts = r->max_restarts;
    submit_check_start(d, sc, r->config_yaml, r->overrides, r->n_overrides);
  }
  fulgur__v1__submit_job_request__free_unpacked(r, NULL);
}

/* The file a fork starts from: "last" (or "") is the source's newest
 * checkpoint; anything else a file inside its run directory (relative to
 * it, or absolute). NULL with *why (caller frees) when there is none. */
static char *fork_checkpoint(const fgd_job *src, const char *want, char **why) {
  if (want[0] == '\0' || strcmp(want, "last") == 0) {
    if (!src->last_ckpt) {
      *why = fg__xasprintf("job %s has written no checkpoint yet (it is %s)", src->id,
                           fg_rpc_state_name(src->state));
      return NULL;
    }
    want = src->last_ckpt;
  }
  if (!src->run_dir) {
    *why = fg__xasprintf("job %s has no run directory yet, so no checkpoint '%s'", src->id, want);
    return NULL;
  }
  char *abs = want[0] == '/' ? fg__xstrdup(want) : fg__xasprintf("%s/%s", src->run_dir, want);
  char *real = realpath(abs, NULL), *run = realpath(src->run_dir, NULL);
  size_t rl = run ? strlen(run) : 0;
  char *out = NULL;
  struct stat st;
  if (!real) {
    *why = fg__xasprintf("job %s has no checkpoint '%s' (%s: %s)", src->id, want, abs, strerror(errno));
  } else if (!run || strncmp(real, run, rl) != 0 || real[rl] != '/') {
    *why = fg__xasprintf("'%s' is not inside job %s's run directory %s", want, src->id, src->run_dir);
  } else if (stat(real, &st) != 0 || !S_ISREG(st.st_mode)) {
    *why = fg__xasprintf("job %s has no checkpoint '%s' (%s is not a file)", src->id, want, real);
  } else {
    out = fg__xstrdup(real);
  }
  free(abs);
  free(real);
  free(run);
  return out;
}

static void handle_fork(fgd *d, fgd_call *c) {
  Fulgur__V1__ForkJobRequest *r =
      (Fulgur__V1__ForkJobRequest *)request(c);
  if (!r) return;
  fgd_job *src = job_or_not_found(d, c, r->id);
  char *why = NULL, *ckpt = NULL;
  if (!src) {
    /* answered */
  } else if (src->stage != FULGUR__V1__STAGE__FIT) {
    fgd_call_fail(c, GRPC_STATUS_FAILED_PRECONDITION, "job %s is a %s job: only fit jobs can be forked",
                  src->id, fg_rpc_stage_name(src->stage));
  } else if (!(ckpt = fork_checkpoint(src, r->checkpoint, &why))) {
    fgd_call_fail(c, GRPC_STATUS_FAILED_PRECONDITION, "%s", why);
  } else if (!no_room(d, c)) {
    submit_check *sc = fg__xcalloc(1, sizeof *sc);
    sc->d = d;
    sc->call = c;
    sc->stage = FULGUR__V1__STAGE__FIT;
    sc->name = fg__xstrdup(r->name[0] ? r->name : src->name ? src->name : "");
    sc->key = fg__xstrdup("");
    sc->ckpt = fg__xstrdup(ckpt);
    sc->max_restarts = src->max_restarts;
    sc->parent_id = fg__xstrdup(src->id);
    /* The source's checked config, the overrides on top. */
    submit_check_start(d, sc, src->config, r->overrides, r->n_overrides);
  }
  free(why);
  free(ckpt);
  fulgur__v1__fork_job_request__free_unpacked(r, NULL);
}

/* ---- the others ---- */

static void handle_get(fgd *d, fgd_call *c) {
  Fulgur__V1__GetJobRequest *r =
      (Fulgur__V1__GetJobRequest *)request(c);
  if (!r) return;
  fgd_job *j = job_or_not_found(d, c, r->id);
  if (j) reply_job(c, j);
  fulgur__v1__get_job_request__free_unpacked(r, NULL);
}

static void handle_list(fgd *d, fgd_call *c) {
  Fulgur__V1__ListJobsRequest *r =
      (Fulgur__V1__ListJobsRequest *)request(c);
  if (!r) return;
  /* The page token is the submission rank of the last job returned. */
  long long after = 0;
  fgd_list_page_after(r->page_token, &after); /* checked by request() */
  size_t size = r->page_size == 0 ? LIST_JOBS_DEFAULT : r->page_size;
  if (size > LIST_JOBS_MAX) size = LIST_JOBS_MAX;
  Fulgur__V1__ListJobsResponse resp = FULGUR__V1__LIST_JOBS_RESPONSE__INIT;
  resp.jobs = fg__xcalloc(size + 1, sizeof *resp.jobs);
  char token[32] = "";
  /* Jobs are in rank order: binary search for the first after the token. */
  size_t lo = 0, hi = d->n_jobs;
  while (lo < hi) {
    size_t mid = (lo + hi) / 2;
    if (d->jobs[mid]->rowid <= after) lo = mid + 1;
    else hi = mid;
  }
  bool more = false;
  long long last_rank = 0;
  for (size_t i = lo; i < d->n_jobs; i++) {
    fgd_job *j = d->jobs[i];
    if (r->state && j->state != r->state) continue;
    if (resp.n_jobs == size) {
      more = true;
      break;
    }
    resp.jobs[resp.n_jobs++] = fgd_job_message(j);
    last_rank = j->rowid;
  }
  if (more) snprintf(token, sizeof token, "%lld", last_rank);
  resp.next_page_token = token;
  fgd_call_reply(c, &resp.base);
  for (size_t i = 0; i < resp.n_jobs; i++) fgd_job_message_free(resp.jobs[i]);
  free(resp.jobs);
  fulgur__v1__list_jobs_request__free_unpacked(r, NULL);
}

static void handle_cancel(fgd *d, fgd_call *c) {
  Fulgur__V1__CancelJobRequest *r =
      (Fulgur__V1__CancelJobRequest *)request(c);
  if (!r) return;
  fgd_job *j = job_or_not_found(d, c, r->id);
  if (j) {
    if (fgd_state_terminal(j->state)) {
      fgd_call_fail(c, GRPC_STATUS_FAILED_PRECONDITION, "job %s already %s", j->id,
                    fg_rpc_state_name(j->state));
    } else {
      if (j->worker) {
        /* The worker stops at its next step boundary; the job turns
         * CANCELLED when it has exited (or been killed after the grace). */
        j->cancel_requested = true;
        fgd_worker_signal(d, j, SIGTERM);
        reply_job(c, j);
      } else {
        free(j->error);
        j->error = fg__xstrdup("cancelled");
        if (fgd_job_set_state_stored(d, j, FULGUR__V1__JOB_STATE__CANCELLED, "cancelled")) {
          free(j->error);
          j->error = NULL;
          not_stored(c, j);
        } else {
          reply_job(c, j);
        }
      }
    }
  }
  fulgur__v1__cancel_job_request__free_unpacked(r, NULL);
}

static void handle_pause(fgd *d, fgd_call *c) {
  Fulgur__V1__PauseJobRequest *r =
      (Fulgur__V1__PauseJobRequest *)request(c);
  if (!r) return;
  fgd_job *j = job_or_not_found(d, c, r->id);
  if (j) {
    if (j->state == FULGUR__V1__JOB_STATE__QUEUED) {
      if (fgd_job_set_state_stored(d, j, FULGUR__V1__JOB_STATE__PAUSED, "paused before it started"))
        not_stored(c, j);
      else
        reply_job(c, j);
    } else if (j->state == FULGUR__V1__JOB_STATE__RUNNING && j->stage == FULGUR__V1__STAGE__FIT) {
      j->pause_requested = true;
      fgd_worker_signal(d, j, SIGUSR1);
      reply_job(c, j);
    } else if (j->state == FULGUR__V1__JOB_STATE__RUNNING) {
      fgd_call_fail(c, GRPC_STATUS_FAILED_PRECONDITION,
                    "job %s is a %s job: only fit jobs can pause (cancel it instead)", j->id,
                    fg_rpc_stage_name(j->stage));
    } else {
      fgd_call_fail(c, GRPC_STATUS_FAILED_PRECONDITION, "job %s is %s: only queued or running jobs can pause",
                    j->id, fg_rpc_state_name(j->state));
    }
  }
  fulgur__v1__pause_job_request__free_unpacked(r, NULL);
}

static void handle_resume(fgd *d, fgd_call *c) {
  Fulgur__V1__ResumeJobRequest *r =
      (Fulgur__V1__ResumeJobRequest *)request(c);
  if (!r) return;
  fgd_job *j = job_or_not_found(d, c, r->id);
  if (j) {
    if (j->state != FULGUR__V1__JOB_STATE__PAUSED) {
      fgd_call_fail(c, GRPC_STATUS_FAILED_PRECONDITION, "job %s is %s: only paused jobs can resume",
                    j->id, fg_rpc_state_name(j->state));
    } else {
      char *msg = j->resume_ckpt ? fg__xasprintf("resumed; will continue from %s", j->resume_ckpt)
                                 : fg__xstrdup("resumed");
      if (fgd_job_set_state_stored(d, j, FULGUR__V1__JOB_STATE__QUEUED, msg)) {
        not_stored(c, j);
      } else {
        reply_job(c, j);
        fgd_schedule(d);
      }
      free(msg);
    }
  }
  fulgur__v1__resume_job_request__free_unpacked(r, NULL);
}

static void handle_checkpoint(fgd *d, fgd_call *c) {
  Fulgur__V1__CheckpointJobRequest *r = (Fulgur__V1__CheckpointJobRequest *)request(c);
  if (!r) return;
  fgd_job *j = job_or_not_found(d, c, r->id);
  if (!j) {
    /* answered */
  } else if (j->state != FULGUR__V1__JOB_STATE__RUNNING || !j->worker) {
    fgd_call_fail(c, GRPC_STATUS_FAILED_PRECONDITION,
                  "job %s is %s: only a running job can checkpoint now", j->id,
                  fg_rpc_state_name(j->state));
  } else if (j->stage != FULGUR__V1__STAGE__FIT) {
    fgd_call_fail(c, GRPC_STATUS_FAILED_PRECONDITION,
                  "job %s is a %s job: only fit jobs have a state to checkpoint", j->id,
                  fg_rpc_stage_name(j->stage));
  } else {
    /* The worker writes it at its next step boundary and trains on; the
     * ARTIFACT event that follows names the file. */
    fgd_worker_signal(d, j, SIGUSR2);
    reply_job(c, j);
  }
  fulgur__v1__checkpoint_job_request__free_unpacked(r, NULL);
}

fgd_job *fgd_rpc_watch_job(fgd *d, const char *id, uint64_t after_seq, grpc_status_code *code,
                           char **msg) {
  fgd_job *j = fgd_job_find(d, id);
  if (!j) {
    *code = GRPC_STATUS_NOT_FOUND;
    *msg = fg__xasprintf("no job with id '%s'", id ? id : "");
  } else if (after_seq > j->last_seq) {
    *code = GRPC_STATUS_OUT_OF_RANGE;
    *msg = fg__xasprintf("after_seq %llu is past the job's last event (%llu)",
                         (unsigned long long)after_seq, (unsigned long long)j->last_seq);
    j = NULL;
  }
  return j;
}

static void handle_watch(fgd *d, fgd_call *c) {
  Fulgur__V1__WatchJobRequest *r =
      (Fulgur__V1__WatchJobRequest *)request(c);
  if (!r) return;
  grpc_status_code code;
  char *msg = NULL;
  fgd_job *j = fgd_rpc_watch_job(d, r->id, r->after_seq, &code, &msg);
  if (j) fgd_watch_start(d, j, c, r->after_seq);
  else fgd_call_fail(c, code, "%s", msg);
  free(msg);
  fulgur__v1__watch_job_request__free_unpacked(r, NULL);
}

/* ListJobEventsResponse written directly on the wire: the stored events
 * are already packed JobEvents, and field 1 (repeated JobEvent) is just
 * each one length-delimited, so nothing is unpacked to be packed again. */
typedef struct {
  uint8_t *buf;
  size_t len, cap;
  uint64_t last;
} wire;

static void wire_room(wire *w, size_t n) {
  if (w->len + n > w->cap) {
    w->cap = (w->len + n) * 2;
    w->buf = fg__xrealloc(w->buf, w->cap);
  }
}

static void wire_varint(wire *w, uint64_t v) {
  wire_room(w, 10);
  do {
    uint8_t b = v & 0x7f;
    v >>= 7;
    w->buf[w->len++] = b | (v ? 0x80 : 0);
  } while (v);
}

static void wire_event(void *ctx, uint64_t seq, const void *data, size_t len) {
  wire *w = ctx;
  wire_varint(w, (1 << 3) | 2);
  wire_varint(w, len);
  wire_room(w, len);
  memcpy(w->buf + w->len, data, len);
  w->len += len;
  w->last = seq;
}

static void handle_events(fgd *d, fgd_call *c) {
  Fulgur__V1__ListJobEventsRequest *r = (Fulgur__V1__ListJobEventsRequest *)request(c);
  if (!r) return;
  fgd_job *j = job_or_not_found(d, c, r->id);
  if (j) {
    int size = r->page_size == 0 ? LIST_EVENTS_DEFAULT : (int)r->page_size;
    if (size > LIST_EVENTS_MAX) size = LIST_EVENTS_MAX;
    wire w = {.last = r->after_seq};
    char *err = NULL;
    int n = fgd_store_events(d->store, j->rowid, r->after_seq, size, wire_event, &w, &err);
    if (n < 0) {
      fgd_call_fail(c, GRPC_STATUS_INTERNAL, "%s", err);
    } else {
      if (w.last) {
        wire_varint(&w, (2 << 3) | 0);
        wire_varint(&w, w.last);
      }
      if (w.last < j->stored_seq) {
        wire_varint(&w, (3 << 3) | 0);
        wire_varint(&w, 1);
      }
      fgd_call_reply_bytes(c, w.buf, w.len);
    }
    free(err);
    free(w.buf);
  }
  fulgur__v1__list_job_events_request__free_unpacked(r, NULL);
}

void fgd_rpc_on_call(void *ctx, fgd_call *c) {
  fgd *d = ctx;
  switch (fgd_call_method(c)) {
    case FGD_M_SUBMIT: handle_submit(d, c); break;
    case FGD_M_GET: handle_get(d, c); break;
    case FGD_M_LIST: handle_list(d, c); break;
    case FGD_M_CANCEL: handle_cancel(d, c); break;
    case FGD_M_PAUSE: handle_pause(d, c); break;
    case FGD_M_RESUME: handle_resume(d, c); break;
    case FGD_M_WATCH: handle_watch(d, c); break;
    case FGD_M_EVENTS: handle_events(d, c); break;
    case FGD_M_CHECKPOINT: handle_checkpoint(d, c); break;
    case FGD_M_FORK: handle_fork(d, c); break;
    default: fgd_call_fail(c, GRPC_STATUS_UNIMPLEMENTED, "unknown method"); break;
  }
}
