/* Job watchers, for WatchJob streams and the HTTP API's Server-Sent
 * Events alike. A watcher is a cursor (next_seq) over the job's committed
 * events: it sends one event at a time, from the cache of recent events
 * or, when it has fallen behind, from the store, so a slow watcher costs
 * the job nothing but its own reads. It ends with OK right after the
 * job's final state event (terminal, or paused), and with a non-OK status
 * whenever it cannot go on. */
#include <stdio.h>
#include <stdlib.h>

#include "daemon.h"
#include "util/xalloc.h"

struct fgd_watch {
  fgd *d;
  fgd_job *job;
  fgd_watch_sink sink;
  uint64_t next_seq;
  bool sending;
  fgd_watch *next;
};

static void unlink_watch(fgd_watch *w) {
  for (fgd_watch **p = &w->job->watchers; *p; p = &(*p)->next)
    if (*p == w) {
      *p = w->next;
      break;
    }
}

static void finish(fgd_watch *w, grpc_status_code code, const char *msg) {
  unlink_watch(w);
  w->d->n_watchers--;
  fgd_watch_sink sink = w->sink;
  free(w);
  sink.finish(sink.ctx, code, msg);
}

static void pump(fgd_watch *w) {
  if (w->sending) return;
  fgd_job *j = w->job;
  if (w->next_seq <= j->stored_seq) {
    uint8_t *owned = NULL;
    size_t len = 0;
    uint64_t seq = w->next_seq;
    const uint8_t *data = fgd_job_event_bytes(w->d, j, seq, &len, &owned);
    if (data == NULL) {
      char msg[128];
      snprintf(msg, sizeof msg, "event %llu of job %s cannot be read from the store",
               (unsigned long long)seq, j->id);
      finish(w, GRPC_STATUS_INTERNAL, msg);
      return;
    }
    w->sending = true;
    w->next_seq++;
    w->sink.send(w->sink.ctx, seq, data, len); /* copies */
    free(owned);
    return;
  }
  if (j->final_seq && w->next_seq > j->final_seq && j->final_seq <= j->stored_seq)
    finish(w, GRPC_STATUS_OK, "");
}

void fgd_watch_sent(fgd_watch *w, bool ok) {
  w->sending = false;
  if (!ok) {
    finish(w, GRPC_STATUS_CANCELLED, "the stream broke");
    return;
  }
  pump(w);
}

void fgd_watch_close(fgd_watch *w) {
  if (w->d->shutting_down) {
    char msg[160];
    snprintf(msg, sizeof msg, "fulgurd is shutting down; watch again with after_seq=%llu",
             (unsigned long long)(w->next_seq - 1 - (w->sending ? 1 : 0)));
    finish(w, GRPC_STATUS_UNAVAILABLE, msg);
  } else {
    finish(w, GRPC_STATUS_CANCELLED, "the client went away");
  }
}

fgd_watch *fgd_watch_open(fgd *d, fgd_job *j, uint64_t after_seq, fgd_watch_sink sink) {
  fgd_watch *w = fg__xcalloc(1, sizeof *w);
  w->d = d;
  w->job = j;
  w->sink = sink;
  w->next_seq = after_seq + 1;
  w->next = j->watchers;
  j->watchers = w;
  d->n_watchers++;
  return w;
}

void fgd_watch_pump(fgd_watch *w) { pump(w); }

/* ---- WatchJob: a watcher whose sink is a gRPC stream ---- */

static void grpc_send(void *ctx, uint64_t seq, const uint8_t *data, size_t len) {
  (void)seq;
  fgd_stream_send_bytes(ctx, data, len);
}

static void grpc_finish(void *ctx, grpc_status_code code, const char *msg) {
  fgd_stream_finish(ctx, code, msg);
}

static void on_sent(void *ctx, bool ok) { fgd_watch_sent(ctx, ok); }
static void on_close(void *ctx) { fgd_watch_close(ctx); }

void fgd_watch_start(fgd *d, fgd_job *j, fgd_call *c, uint64_t after_seq) {
  fgd_watch *w = fgd_watch_open(d, j, after_seq, (fgd_watch_sink){grpc_send, grpc_finish, c});
  fgd_stream_start(c, (fgd_stream_cbs){on_sent, on_close, w});
  pump(w);
}

void fgd_watch_pump_job(fgd *d, fgd_job *j) {
  (void)d;
  fgd_watch *next;
  for (fgd_watch *w = j->watchers; w; w = next) {
    next = w->next;
    pump(w);
  }
}

void fgd_watch_end_all(fgd *d) {
  for (size_t i = 0; i < d->n_jobs; i++)
    while (d->jobs[i]->watchers) fgd_watch_close(d->jobs[i]->watchers);
}
