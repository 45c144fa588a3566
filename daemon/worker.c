/* Worker processes: one per running job (fulgur-worker run), spawned with
 * libuv. The worker writes length-prefixed WorkerMessages to fd 3; its
 * stdout and stderr go to worker.log in the job's folder. A job ends when
 * both the pipe has closed and the process has exited: the result message
 * says how it ended; without one, the exit status or signal does. Each
 * runs under the job's memory limit (rlimits.h): an allocation that fails
 * there fails the job with "out of memory (limit N)". */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "fg_rpc.h"
#include "frames.h"
#include "rlimits.h"
#include "fulgur/v1/worker.pb-c.h"
#include "util/atomic_file.h"
#include "util/bytes.h"
#include "util/oom.h"
#include "util/xalloc.h"

struct fgd_worker {
  fgd *d;
  fgd_job *job;
  uv_process_t proc;
  uv_pipe_t pipe;
  uv_timer_t kill_timer;
  uint8_t *buf;
  size_t len, cap;
  bool exited, pipe_closed, killed_after_grace;
  bool throttled; /* its pipe is not read: too many events pending */
  int open_handles; /* freed when the last one has closed */
  int64_t exit_status;
  int term_signal;
  Fulgur__V1__JobState result;
  char *result_message;
  bool config_error; /* the result's failure is the config's: no retry */
  char *log_path;
  uint64_t memory_limit; /* its address-space limit, 0 none */
  /* Its first message has come: it has set its signal handlers (they come
   * before anything it writes). Until then a SIGUSR1 or SIGUSR2 would
   * find the default action, which kills it (it is still loading
   * libtorch), so pause and checkpoint requests wait in held_usr1/2. */
  bool ready;
  bool held_usr1, held_usr2;
};

static void set_metric(fgd_job *j, const char *key, double v) {
  for (size_t i = 0; i < j->n_metrics; i++)
    if (strcmp(j->metrics[i].key, key) == 0) {
      j->metrics[i].value = v;
      return;
    }
  j->metrics = fg__xrealloc(j->metrics, (j->n_metrics + 1) * sizeof *j->metrics);
  j->metrics[j->n_metrics++] = (fgd_metric){fg__xstrdup(key), v};
}

static char *dir_of(const char *path) {
  const char *slash = strrchr(path, '/');
  return slash ? fg__xstrndup(path, (size_t)(slash - path)) : fg__xstrdup(".");
}

static void on_event(fgd_worker *w, Fulgur__V1__JobEvent *ev) {
  fgd_job *j = w->job;
  Fulgur__V1__Scalars *sc = ev->kind_case == FULGUR__V1__JOB_EVENT__KIND_STEP    ? ev->step
                            : ev->kind_case == FULGUR__V1__JOB_EVENT__KIND_EPOCH ? ev->epoch
                                                                                 : NULL;
  if (sc) {
    for (size_t i = 0; i < sc->n_values; i++) set_metric(j, sc->values[i]->key, sc->values[i]->value);
    if (sc->global_step > j->global_step) j->global_step = sc->global_step;
  }
  if (ev->kind_case == FULGUR__V1__JOB_EVENT__KIND_ARTIFACT && ev->artifact->path[0]) {
    if (strcmp(ev->artifact->kind, "checkpoint") == 0) {
      fgd_set_str(&j->last_ckpt, ev->artifact->path);
    } else if (strcmp(ev->artifact->kind, "config") == 0) {
      /* The run saves its config at the top of its run directory. */
      free(j->run_dir);
      j->run_dir = dir_of(ev->artifact->path);
    }
  }
  /* A state event from a worker would forge the daemon's own: drop it. */
  if (ev->kind_case == FULGUR__V1__JOB_EVENT__KIND_STATE) return;
  fgd_job_add_event(w->d, j, ev);
}

static void on_progress(fgd_worker *w, const Fulgur__V1__Progress *p) {
  fgd_job *j = w->job;
  j->epoch = p->epoch;
  if (p->global_step > j->global_step) j->global_step = p->global_step;
  if (p->total_steps > 0) j->total_steps = p->total_steps;
  fgd_set_str(&j->split, p->split);
  j->batch_idx = p->batch_idx;
  j->num_batches = p->num_batches;
  j->max_epochs = p->max_epochs;
  /* The stage's own loop's numbers; another loop's (a validation inside
   * fit) leave the job's as they were. */
  if (p->percent >= 0) {
    j->percent = p->percent;
    j->eta_seconds = p->eta_seconds;
  }
  fgd_job_touch(w->d, j);
}

static void kill_worker(fgd_worker *w, int sig) {
  if (!w->exited) uv_process_kill(&w->proc, sig);
}

/* Parses every whole message in the buffer. */
static void parse(fgd_worker *w) {
  size_t off = 0;
  for (;;) {
    Fulgur__V1__WorkerMessage *m = NULL;
    const char *why = NULL;
    size_t used = 0;
    fgd_frame_result fr = fgd_frame_next(w->buf + off, w->len - off, &used, &m, &why);
    if (fr == FGD_FRAME_MORE) break;
    if (fr == FGD_FRAME_BAD) {
      fgd_set_str(&w->result_message, why);
      w->result = FULGUR__V1__JOB_STATE__FAILED;
      kill_worker(w, SIGKILL);
      w->len = 0;
      return;
    }
    off += used;
    if (!w->ready) {
      w->ready = true;
      if (w->held_usr1) kill_worker(w, SIGUSR1);
      if (w->held_usr2) kill_worker(w, SIGUSR2);
      w->held_usr1 = w->held_usr2 = false;
    }
    switch (m->kind_case) {
      case FULGUR__V1__WORKER_MESSAGE__KIND_EVENT:
        on_event(w, m->event);
        break;
      case FULGUR__V1__WORKER_MESSAGE__KIND_PROGRESS:
        on_progress(w, m->progress);
        break;
      case FULGUR__V1__WORKER_MESSAGE__KIND_RESULT:
        w->result = m->result->state;
        w->config_error = m->config_error;
        fgd_set_str(&w->result_message, m->result->message);
        break;
      default:
        break;
    }
    fulgur__v1__worker_message__free_unpacked(m, NULL);
  }
  memmove(w->buf, w->buf + off, w->len - off);
  w->len -= off;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  fgd_worker *w = h->data;
  if (w->cap - w->len < 65536) {
    w->cap = w->cap ? 2 * w->cap : 65536 * 2;
    w->buf = fg__xrealloc(w->buf, w->cap);
  }
  *buf = uv_buf_init((char *)w->buf + w->len, (unsigned)(w->cap - w->len));
}

static void maybe_finish(fgd_worker *w);

static void on_handle_closed(uv_handle_t *h);

static void on_pipe_closed(uv_handle_t *h) {
  fgd_worker *w = h->data;
  w->pipe_closed = true;
  maybe_finish(w);
  on_handle_closed(h);
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  fgd_worker *w = s->data;
  if (n > 0) {
    w->len += (size_t)n;
    parse(w);
    if (w->d->n_pending >= FGD_PENDING_MAX && !w->pipe_closed && !w->throttled) {
      uv_read_stop(s);
      w->throttled = true;
      w->d->throttled++;
    }
    return;
  }
  if (n < 0) uv_close((uv_handle_t *)&w->pipe, on_pipe_closed);
}

/* Reads a throttled worker's pipe again. */
static void unthrottle(fgd_worker *w) {
  if (!w->throttled) return;
  w->throttled = false;
  w->d->throttled--;
  uv_read_start((uv_stream_t *)&w->pipe, on_alloc, on_read);
}

static void on_exit_cb(uv_process_t *p, int64_t status, int sig) {
  fgd_worker *w = p->data;
  /* What is left in a dead worker's pipe is bounded: read it to its end,
   * so the job can finish. */
  unthrottle(w);
  w->exited = true;
  w->exit_status = status;
  w->term_signal = sig;
  uv_timer_stop(&w->kill_timer);
  maybe_finish(w);
}

/* The last non-empty line of the worker's log: an abort's message. */
static char *last_log_line(const char *path) {
  FILE *f = fopen(path, "r");
  if (!f) return NULL;
  char line[512], *last = NULL;
  if (fseek(f, -4096, SEEK_END) != 0) rewind(f);
  while (fgets(line, sizeof line, f)) {
    line[strcspn(line, "\n")] = '\0';
    if (line[0]) fgd_set_str(&last, line);
  }
  fclose(f);
  return last;
}

/* Retry in place: a failed attempt (killed, exited without a result, out
 * of memory, a run error) is queued again under the same id, from the
 * newest checkpoint the job has written (a pause's, a manual one, a
 * saver's), while retries are left. A config error would fail again, and a
 * cancel or a pause is what was asked for: neither retries. Under ddp the
 * worker is rank 0, whose ranks end with it, so the next attempt starts
 * every rank afresh. Every failure is kept in Job.failures and in the
 * state event. Returns the QUEUED event's message (the caller frees) when
 * the job goes again, NULL when it does not. */
static char *retry(fgd_job *j, const fgd_worker *w, const char *msg) {
  fgd_job_add_failure(j, msg);
  if (w->config_error || j->cancel_requested || j->pause_requested) return NULL;
  uint32_t used = (uint32_t)j->n_failures; /* this one included */
  if (used > j->max_restarts) return NULL;
  if (j->last_ckpt) fgd_set_str(&j->resume_ckpt, j->last_ckpt);
  return fg__xasprintf("attempt %u failed: %s; retrying (restart %u of %u) from %s", j->attempts, msg,
                       used, j->max_restarts, j->resume_ckpt ? j->resume_ckpt : "the start");
}

static void finish_job(fgd_worker *w) {
  fgd *d = w->d;
  fgd_job *j = w->job;
  j->worker = NULL;
  d->running--;
  /* A daemon going down kills its workers; their jobs stay RUNNING on
   * disk and the restart rules decide what becomes of them. */
  if (d->shutting_down) return;
  j->exit_code = (int32_t)w->exit_status;
  fgd_set_str(&j->exit_signal, NULL);
  Fulgur__V1__JobState st = w->result;
  char *msg = NULL;
  if (w->term_signal && (st == FULGUR__V1__JOB_STATE__JOB_STATE_UNSPECIFIED || w->killed_after_grace)) {
    const char *abbrev = sigabbrev_np(w->term_signal);
    char *name = abbrev ? fg__xasprintf("SIG%s", abbrev) : fg__xasprintf("signal %d", w->term_signal);
    fgd_set_str(&j->exit_signal, name);
    if (j->cancel_requested) {
      st = FULGUR__V1__JOB_STATE__CANCELLED;
      msg = fg__xasprintf("cancelled; the worker did not stop within %u ms and was killed (%s)",
                          d->opts.kill_grace_ms, name);
    } else {
      st = FULGUR__V1__JOB_STATE__FAILED;
      char *tail = last_log_line(w->log_path);
      /* An allocation that failed outside any error path (an abort, an
       * uncaught bad_alloc) says so in its last words. */
      char lim[32] = "";
      if (w->memory_limit && fg__oom_text(tail)) fg__bytes_format(w->memory_limit, lim, sizeof lim);
      msg = fg__xasprintf("%s%s%sworker killed by %s%s%s%s", lim[0] ? "out of memory (limit " : "", lim,
                          lim[0] ? "): " : "", name,
                          w->term_signal == SIGKILL ? " (out of memory, or killed from outside)" : "",
                          tail ? ": " : "", tail ? tail : "");
      free(tail);
    }
    free(name);
  } else if (st == FULGUR__V1__JOB_STATE__JOB_STATE_UNSPECIFIED) {
    st = FULGUR__V1__JOB_STATE__FAILED;
    char *tail = last_log_line(w->log_path);
    msg = fg__xasprintf("worker exited with status %lld without a result%s%s",
                        (long long)w->exit_status, tail ? ": " : "", tail ? tail : "");
    free(tail);
  } else {
    msg = fg__xstrdup(w->result_message ? w->result_message : "");
  }
  char *again = st == FULGUR__V1__JOB_STATE__FAILED ? retry(j, w, msg) : NULL;
  if (again) {
    free(msg);
    msg = again;
    st = FULGUR__V1__JOB_STATE__QUEUED;
  }
  if (st == FULGUR__V1__JOB_STATE__FAILED) fgd_set_str(&j->error, msg);
  else if (st == FULGUR__V1__JOB_STATE__CANCELLED) fgd_set_str(&j->error, msg[0] ? msg : "cancelled");
  else fgd_set_str(&j->error, NULL);
  if (st == FULGUR__V1__JOB_STATE__PAUSED) fgd_set_str(&j->resume_ckpt, j->last_ckpt);
  j->cancel_requested = j->pause_requested = false;
  fgd_job_set_state(d, j, st, msg);
  free(msg);
  fgd_schedule(d);
}

static void maybe_finish(fgd_worker *w) {
  if (!w->exited || !w->pipe_closed) return;
  finish_job(w);
  uv_close((uv_handle_t *)&w->kill_timer, on_handle_closed);
  uv_close((uv_handle_t *)&w->proc, on_handle_closed);
}

static void on_handle_closed(uv_handle_t *h) {
  fgd_worker *w = h->data;
  if (--w->open_handles > 0) return;
  free(w->buf);
  free(w->result_message);
  free(w->log_path);
  free(w);
}

static void on_kill_timer(uv_timer_t *t) {
  fgd_worker *w = t->data;
  w->killed_after_grace = true;
  kill_worker(w, SIGKILL);
}

int fgd_worker_start(fgd *d, fgd_job *j, char **err) {
  char *dir = fg__xasprintf("%s/%s", d->jobs_dir, j->id);
  char *config = fg__xasprintf("%s/config.yaml", dir);
  char *log = fg__xasprintf("%s/worker.log", dir);
  int rc = 0;
  if (mkdir(dir, 0700) != 0 && errno != EEXIST) {
    *err = fg__xasprintf("cannot create the job folder '%s': %s", dir, strerror(errno));
    rc = -1;
  }
  if (rc == 0) rc = fg__write_file_atomic(config, j->config, strlen(j->config), err) ? -1 : 0;
  int log_fd = -1;
  if (rc == 0 && (log_fd = open(log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600)) < 0) {
    *err = fg__xasprintf("cannot open '%s': %s", log, strerror(errno));
    rc = -1;
  }
  if (rc) {
    free(dir);
    free(config);
    free(log);
    return -1;
  }
  fgd_worker *w = fg__xcalloc(1, sizeof *w);
  w->d = d;
  w->job = j;
  w->log_path = log;
  uv_pipe_init(d->loop, &w->pipe, 0);
  w->pipe.data = w;
  const char *args[20];
  int n = 0;
  args[n++] = d->opts.worker_path;
  args[n++] = "run";
  args[n++] = "--stage";
  args[n++] = fg_rpc_stage_name(j->stage);
  args[n++] = "--config";
  args[n++] = config;
  if (j->resume_ckpt) {
    args[n++] = "--ckpt-path";
    args[n++] = j->resume_ckpt;
  }
  /* One run per job: a resumed or retried fit goes on in its own run
   * directory; a fork's first start takes the config's hyperparameters. */
  if (j->run_dir && j->stage == FULGUR__V1__STAGE__FIT) {
    args[n++] = "--run-dir";
    args[n++] = j->run_dir;
  }
  if (fgd_job_fork_start(j)) {
    args[n++] = "--fork";
    args[n++] = "1";
  }
  args[n++] = "--events-fd";
  args[n++] = "3";
  /* Who its parent must be: a daemon that died before the worker reached
   * its parent-death setup would otherwise leave it training for no one. */
  char daemon_pid[24];
  snprintf(daemon_pid, sizeof daemon_pid, "%d", (int)getpid());
  args[n++] = "--daemon-pid";
  args[n++] = daemon_pid;
  args[n] = NULL;
  uv_stdio_container_t stdio[4];
  stdio[0].flags = UV_IGNORE;
  stdio[1].flags = UV_INHERIT_FD;
  stdio[1].data.fd = log_fd;
  stdio[2].flags = UV_INHERIT_FD;
  stdio[2].data.fd = log_fd;
  stdio[3].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[3].data.stream = (uv_stream_t *)&w->pipe;
  uv_process_options_t po = {0};
  po.exit_cb = on_exit_cb;
  po.file = d->opts.worker_path;
  po.args = (char **)args;
  po.cwd = dir;
  po.stdio = stdio;
  po.stdio_count = 4;
  w->proc.data = w;
  int e = uv_spawn(d->loop, &w->proc, &po);
  close(log_fd);
  free(dir);
  free(config);
  if (e) {
    *err = fg__xasprintf("cannot start the worker '%s': %s", d->opts.worker_path, uv_strerror(e));
    /* uv_spawn failed: the process handle still has to be closed. */
    w->open_handles = 2;
    uv_close((uv_handle_t *)&w->pipe, on_handle_closed);
    uv_close((uv_handle_t *)&w->proc, on_handle_closed);
    return -1;
  }
  uv_timer_init(d->loop, &w->kill_timer);
  w->kill_timer.data = w;
  w->open_handles = 3;
  uv_read_start((uv_stream_t *)&w->pipe, on_alloc, on_read);
  /* The lower of the daemon's limit and the job's own (checked at submit
   * to be no higher; held again here for a daemon restarted lower). */
  uint64_t lim = d->opts.job_memory_limit;
  if (j->memory_limit && (lim == 0 || j->memory_limit < lim)) lim = j->memory_limit;
  w->memory_limit = lim;
  char *why = NULL;
  if (fgd_limit_process(w->proc.pid, lim, &why)) {
    /* A job promised a limit never runs without it. */
    w->result = FULGUR__V1__JOB_STATE__FAILED;
    w->result_message = why;
    kill_worker(w, SIGKILL);
  }
  j->worker = w;
  j->attempts++;
  d->running++;
  char mem[48] = "";
  if (lim) {
    strcpy(mem, ", memory limit ");
    fg__bytes_format(lim, mem + strlen(mem), sizeof mem - strlen(mem));
  }
  char *msg = j->resume_ckpt
                  ? fg__xasprintf("running (pid %d%s), from %s", w->proc.pid, mem, j->resume_ckpt)
                  : fg__xasprintf("running (pid %d%s)", w->proc.pid, mem);
  fgd_job_set_state(d, j, FULGUR__V1__JOB_STATE__RUNNING, msg);
  free(msg);
  return 0;
}

void fgd_worker_signal(fgd *d, fgd_job *j, int sig) {
  fgd_worker *w = j->worker;
  if (!w || w->exited) return;
  if (!w->ready && (sig == SIGUSR1 || sig == SIGUSR2)) {
    if (sig == SIGUSR1) w->held_usr1 = true;
    else w->held_usr2 = true;
    return;
  }
  kill_worker(w, sig);
  if (sig == SIGTERM && !uv_is_active((uv_handle_t *)&w->kill_timer))
    uv_timer_start(&w->kill_timer, on_kill_timer, d->opts.kill_grace_ms, 0);
}

void fgd_worker_unthrottle(fgd *d) {
  if (d->n_pending >= FGD_PENDING_MAX) return;
  for (size_t i = 0; i < d->n_jobs && d->throttled; i++)
    if (d->jobs[i]->worker) unthrottle(d->jobs[i]->worker);
}

void fgd_worker_kill_all(fgd *d) {
  for (size_t i = 0; i < d->n_jobs; i++)
    if (d->jobs[i]->worker) {
      kill_worker(d->jobs[i]->worker, SIGKILL);
      unthrottle(d->jobs[i]->worker);
    }
}
