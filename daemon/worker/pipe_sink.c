/* See pipe_sink.h. Lock order: only q->mu exists. */
#include "pipe_sink.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fulgur/v1/worker.pb-c.h"
#include "util/xalloc.h"

typedef struct msg {
  struct msg *next;
  size_t len;
  uint8_t data[];
} msg;

struct fg_pipe_sink {
  int fd;
  pthread_t writer;
  pthread_mutex_t mu;
  pthread_cond_t cv_nonempty, cv_space;
  msg *head, *tail;
  size_t queued_bytes;
  bool closing, broken;
  const char *split; /* the stage's own loop: "fit", "val", "test", "predict" */
  char *cwd;         /* relative artifact paths are made absolute with it */
  /* Coalesced PROGRESS: the latest one not yet sent, as plain fields under
   * mu, packed only when it is sent. */
  Fulgur__V1__Progress progress;
  char progress_split[16];
  bool progress_pending;
  int64_t progress_sent_ns;
};

static int64_t now_ns(int clock) {
  struct timespec ts;
  clock_gettime(clock, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static msg *pack(const Fulgur__V1__WorkerMessage *wm) {
  size_t n = fulgur__v1__worker_message__get_packed_size(wm);
  msg *m = fg__xmalloc(sizeof *m + 4 + n);
  m->next = NULL;
  m->len = 4 + n;
  uint32_t le = (uint32_t)n;
  for (int i = 0; i < 4; i++) m->data[i] = (uint8_t)(le >> (8 * i));
  fulgur__v1__worker_message__pack(wm, m->data + 4);
  return m;
}

/* Appends m, waiting for room when the queue is full (m itself always
 * fits: a single message larger than the bound is let through). */
static void enqueue(fg_pipe_sink *s, msg *m) {
  pthread_mutex_lock(&s->mu);
  while (!s->broken && s->queued_bytes > 0 && s->queued_bytes + m->len > FG_PIPE_QUEUE_BYTES)
    pthread_cond_wait(&s->cv_space, &s->mu);
  if (s->broken) {
    pthread_mutex_unlock(&s->mu);
    free(m);
    return;
  }
  if (s->tail) s->tail->next = m;
  else s->head = m;
  s->tail = m;
  s->queued_bytes += m->len;
  pthread_cond_signal(&s->cv_nonempty);
  pthread_mutex_unlock(&s->mu);
}

static int write_all(int fd, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      return -1;
    }
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

static void *writer_main(void *arg) {
  fg_pipe_sink *s = arg;
  pthread_mutex_lock(&s->mu);
  for (;;) {
    while (s->head == NULL && !s->closing) pthread_cond_wait(&s->cv_nonempty, &s->mu);
    if (s->head == NULL && s->closing) break;
    msg *m = s->head;
    s->head = m->next;
    if (s->head == NULL) s->tail = NULL;
    pthread_mutex_unlock(&s->mu);
    int rc = s->broken ? -1 : write_all(s->fd, m->data, m->len);
    pthread_mutex_lock(&s->mu);
    s->queued_bytes -= m->len;
    free(m);
    if (rc) s->broken = true;
    pthread_cond_broadcast(&s->cv_space);
  }
  pthread_mutex_unlock(&s->mu);
  return NULL;
}

fg_pipe_sink *fg_pipe_sink_create(int fd, const char *split) {
  fg_pipe_sink *s = fg__xcalloc(1, sizeof *s);
  s->fd = fd;
  s->split = split;
  s->cwd = getcwd(NULL, 0);
  pthread_mutex_init(&s->mu, NULL);
  pthread_cond_init(&s->cv_nonempty, NULL);
  pthread_cond_init(&s->cv_space, NULL);
  int rc = pthread_create(&s->writer, NULL, writer_main, s);
  if (rc) {
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cv_nonempty);
    pthread_cond_destroy(&s->cv_space);
    free(s);
    errno = rc;
    return NULL;
  }
  return s;
}

static Fulgur__V1__Scalars *scalars_of(const fg_event *ev, Fulgur__V1__Scalars *sc,
                                       Fulgur__V1__Scalars__ValuesEntry *entries,
                                       Fulgur__V1__Scalars__ValuesEntry **ptrs) {
  fulgur__v1__scalars__init(sc);
  for (size_t i = 0; i < ev->n_values; i++) {
    fulgur__v1__scalars__values_entry__init(&entries[i]);
    entries[i].key = (char *)ev->keys[i];
    entries[i].value = ev->values[i];
    ptrs[i] = &entries[i];
  }
  sc->n_values = ev->n_values;
  sc->values = ptrs;
  sc->split = (char *)(ev->split ? ev->split : "");
  sc->epoch = ev->epoch;
  sc->global_step = ev->global_step;
  sc->batch_idx = ev->batch_idx;
  return sc;
}

/* The held-back progress packed (and no longer held), or NULL. Under mu:
 * events may come from more than one thread (predict's task workers). */
static msg *take_progress_locked(fg_pipe_sink *s) {
  if (!s->progress_pending) return NULL;
  s->progress_pending = false;
  s->progress.split = s->progress_split;
  Fulgur__V1__WorkerMessage wm = FULGUR__V1__WORKER_MESSAGE__INIT;
  wm.kind_case = FULGUR__V1__WORKER_MESSAGE__KIND_PROGRESS;
  wm.progress = &s->progress;
  return pack(&wm);
}

static void flush_progress(fg_pipe_sink *s) {
  pthread_mutex_lock(&s->mu);
  msg *m = take_progress_locked(s);
  pthread_mutex_unlock(&s->mu);
  if (m) enqueue(s, m);
}

/* Called for every batch: it only records the position, and packs and
 * sends it when 100 ms have passed since the last one went. */
static void progress_emit(fg_pipe_sink *s, const fg_event *ev) {
  int64_t now = now_ns(CLOCK_MONOTONIC);
  pthread_mutex_lock(&s->mu);
  Fulgur__V1__Progress *pr = &s->progress;
  fulgur__v1__progress__init(pr);
  pr->epoch = ev->epoch;
  pr->global_step = ev->global_step;
  snprintf(s->progress_split, sizeof s->progress_split, "%s", ev->split ? ev->split : "");
  pr->batch_idx = ev->batch_idx;
  pr->num_batches = ev->num_batches > 0 ? ev->num_batches : 0;
  pr->max_epochs = ev->max_epochs;
  /* The engine computed the progress (fulgur/events.h); only the stage's
   * own loop moves the job's: the validation loop inside fit has a
   * progress of its own that would make it jump. */
  bool own = ev->split && strcmp(ev->split, s->split) == 0;
  pr->total_steps = own && ev->total_steps > 0 ? ev->total_steps : 0;
  pr->percent = own ? ev->percent : -1;
  pr->eta_seconds = own ? ev->eta_seconds : -1;
  s->progress_pending = true;
  msg *m = NULL;
  if (now - s->progress_sent_ns >= 100000000) {
    s->progress_sent_ns = now;
    m = take_progress_locked(s);
  }
  pthread_mutex_unlock(&s->mu);
  if (m) enqueue(s, m);
}

static void sink_emit(void *self, const fg_event *ev) {
  fg_pipe_sink *s = self;
  if (ev->kind == FG_EVENT_PROGRESS) {
    progress_emit(s, ev);
    return;
  }
  /* The run's own state changes ("running", the outcome) are the daemon's
   * to announce: it also knows about queues, pauses and crashes the worker
   * cannot see. The outcome reaches it as the result message. */
  if (ev->kind == FG_EVENT_STATE) return;
  Fulgur__V1__JobEvent je = FULGUR__V1__JOB_EVENT__INIT;
  je.time_ns = now_ns(CLOCK_REALTIME);
  Fulgur__V1__LogLine lg = FULGUR__V1__LOG_LINE__INIT;
  char *abs_path = NULL, *summary_text = NULL;
  Fulgur__V1__Artifact ar = FULGUR__V1__ARTIFACT__INIT;
  Fulgur__V1__Scalars sc;
  /* Scalars point into these: on the stack for the usual few values. */
  Fulgur__V1__Scalars__ValuesEntry stack_entries[16], *entries = stack_entries;
  Fulgur__V1__Scalars__ValuesEntry *stack_ptrs[16], **ptrs = stack_ptrs;
  if (ev->n_values > 16) {
    entries = fg__xcalloc(ev->n_values, sizeof *entries);
    ptrs = fg__xcalloc(ev->n_values, sizeof *ptrs);
  }
  switch (ev->kind) {
    case FG_EVENT_STEP:
      je.kind_case = FULGUR__V1__JOB_EVENT__KIND_STEP;
      je.step = scalars_of(ev, &sc, entries, ptrs);
      break;
    case FG_EVENT_EPOCH:
      je.kind_case = FULGUR__V1__JOB_EVENT__KIND_EPOCH;
      je.epoch = scalars_of(ev, &sc, entries, ptrs);
      break;
    case FG_EVENT_LOG:
      je.kind_case = FULGUR__V1__JOB_EVENT__KIND_LOG;
      lg.level = (Fulgur__V1__LogLine__Level)ev->level;
      lg.text = (char *)(ev->text ? ev->text : "");
      je.log = &lg;
      break;
    case FG_EVENT_SUMMARY:
      /* Watchers show log lines: the summary travels as one, starting on
       * a line of its own as Lightning's log.info("\n" + table). */
      je.kind_case = FULGUR__V1__JOB_EVENT__KIND_LOG;
      lg.level = FULGUR__V1__LOG_LINE__LEVEL__INFO;
      {
        char *table = fg_model_summary_format(ev->summary);
        summary_text = fg__xasprintf("\n%s", table);
        free(table);
      }
      lg.text = summary_text;
      je.log = &lg;
      break;
    case FG_EVENT_ARTIFACT:
      je.kind_case = FULGUR__V1__JOB_EVENT__KIND_ARTIFACT;
      ar.kind = (char *)(ev->text ? ev->text : "");
      /* Remote readers cannot know the worker's folder: paths go absolute. */
      if (ev->path && ev->path[0] != '/' && s->cwd) {
        const char *rel = ev->path;
        while (strncmp(rel, "./", 2) == 0) rel += 2;
        abs_path = fg__xasprintf("%s/%s", s->cwd, rel);
      }
      ar.path = abs_path ? abs_path : (char *)(ev->path ? ev->path : "");
      je.artifact = &ar;
      break;
    default:
      if (entries != stack_entries) {
        free(entries);
        free(ptrs);
      }
      return;
  }
  Fulgur__V1__WorkerMessage wm = FULGUR__V1__WORKER_MESSAGE__INIT;
  wm.kind_case = FULGUR__V1__WORKER_MESSAGE__KIND_EVENT;
  wm.event = &je;
  msg *m = pack(&wm);
  if (entries != stack_entries) {
    free(entries);
    free(ptrs);
  }
  free(abs_path);
  free(summary_text);
  /* A progress update held back must not arrive after later events. */
  flush_progress(s);
  enqueue(s, m);
}

fg_sink fg_pipe_sink_as_sink(fg_pipe_sink *s) {
  return (fg_sink){sink_emit, NULL, s};
}

/* The wire's JobState of an outcome. */
static Fulgur__V1__JobState job_state_of(fg_outcome o) {
  switch (o) {
    case FG_OUTCOME_SUCCEEDED: return FULGUR__V1__JOB_STATE__SUCCEEDED;
    case FG_OUTCOME_CANCELLED: return FULGUR__V1__JOB_STATE__CANCELLED;
    case FG_OUTCOME_PAUSED: return FULGUR__V1__JOB_STATE__PAUSED;
    case FG_OUTCOME_FAILED: break;
  }
  return FULGUR__V1__JOB_STATE__FAILED;
}

int fg_pipe_sink_free(fg_pipe_sink *s, fg_outcome outcome, const char *message, bool config_error) {
  if (s == NULL) return 0;
  flush_progress(s);
  Fulgur__V1__StateChange st = FULGUR__V1__STATE_CHANGE__INIT;
  st.state = job_state_of(outcome);
  st.message = (char *)(message ? message : "");
  Fulgur__V1__WorkerMessage wm = FULGUR__V1__WORKER_MESSAGE__INIT;
  wm.kind_case = FULGUR__V1__WORKER_MESSAGE__KIND_RESULT;
  wm.result = &st;
  wm.config_error = config_error && outcome == FG_OUTCOME_FAILED;
  enqueue(s, pack(&wm));
  pthread_mutex_lock(&s->mu);
  s->closing = true;
  pthread_cond_signal(&s->cv_nonempty);
  pthread_mutex_unlock(&s->mu);
  pthread_join(s->writer, NULL);
  int rc = s->broken ? -1 : 0;
  close(s->fd);
  free(s->cwd);
  pthread_mutex_destroy(&s->mu);
  pthread_cond_destroy(&s->cv_nonempty);
  pthread_cond_destroy(&s->cv_space);
  free(s);
  return rc;
}
