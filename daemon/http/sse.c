/* Server-Sent Events of a job's events: a watcher (watch.c) whose sink is
 * an HTTP response read by libmicrohttpd through a content-reader
 * callback. So an SSE reader has WatchJob's guarantees: only committed
 * events are sent, one cursor per reader, a reader that falls behind is
 * served from the store. Each event is
 *
 *   id: <seq>
 *   event: state|step|epoch|log|artifact
 *   data: <JobEvent as proto3 JSON>
 *
 * A reader with no data waiting has its connection suspended (MHD polls it
 * no more) and resumed when an event or a heartbeat comes; the stream ends
 * after the job's final event. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "json.h"
#include "json_msg.h"
#include "util/xalloc.h"

#define SSE_BLOCK (32 * 1024)

struct sse_stream {
  fgd_http *h;
  struct MHD_Connection *conn;
  fgd_watch *w;         /* NULL once the watch has finished */
  char *buf;            /* bytes not yet handed to MHD, from off */
  size_t off, len, cap;
  bool in_flight;       /* the watch's last event is in buf */
  bool ended;           /* the watch has finished: end once buf drains */
  bool waiting;         /* suspended until there is something to send */
  bool gone;            /* the connection is closing */
  uint64_t last_seq;    /* of the last event put in buf */
  sse_stream *prev, *next;
};

static void append(sse_stream *s, const char *text, size_t n) {
  if (s->len + n > s->cap) {
    s->cap = (s->len + n) * 2;
    s->buf = fg__xrealloc(s->buf, s->cap);
  }
  memcpy(s->buf + s->len, text, n);
  s->len += n;
}

static void wake(sse_stream *s) {
  if (s->waiting && !s->gone) {
    s->waiting = false;
    MHD_resume_connection(s->conn);
    fgd_http_kick(s->h);
  }
}

static const char *kind_name(Fulgur__V1__JobEvent__KindCase k) {
  switch (k) {
    case FULGUR__V1__JOB_EVENT__KIND_STATE: return "state";
    case FULGUR__V1__JOB_EVENT__KIND_STEP: return "step";
    case FULGUR__V1__JOB_EVENT__KIND_EPOCH: return "epoch";
    case FULGUR__V1__JOB_EVENT__KIND_LOG: return "log";
    case FULGUR__V1__JOB_EVENT__KIND_ARTIFACT: return "artifact";
    default: return "message";
  }
}

static void sink_send(void *ctx, uint64_t seq, const uint8_t *data, size_t len) {
  sse_stream *s = ctx;
  s->in_flight = true;
  s->last_seq = seq;
  Fulgur__V1__JobEvent *e = fulgur__v1__job_event__unpack(NULL, len, data);
  char *out = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&out, &n);
  if (e) {
    fprintf(f, "id: %llu\nevent: %s\ndata: ", (unsigned long long)seq, kind_name(e->kind_case));
    fg_json_writer w;
    fg__json_init(&w, f);
    w.int64_strings = true;
    fg__json_message(&w, &e->base);
    fputs("\n\n", f);
    fulgur__v1__job_event__free_unpacked(e, NULL);
  } else {
    /* Cannot happen with the daemon's own store; said rather than skipped
     * silently, and the id keeps the reader's resume point right. */
    fprintf(f, ": event %llu cannot be decoded\nid: %llu\n\n", (unsigned long long)seq,
            (unsigned long long)seq);
  }
  fclose(f);
  append(s, out, n);
  free(out);
  wake(s);
}

static void sink_finish(void *ctx, grpc_status_code code, const char *msg) {
  sse_stream *s = ctx;
  s->w = NULL;
  s->ended = true;
  s->in_flight = false;
  if (s->gone) return;
  if (code != GRPC_STATUS_OK) {
    /* A comment: EventSource ignores it, curl shows why the stream ended.
     * The event in buf still goes out, so the resume point is the last
     * one put there (the watch's own message counts it as unsent). */
    char *line = code == GRPC_STATUS_UNAVAILABLE && s->h->d->shutting_down
                     ? fg__xasprintf(": fulgurd is shutting down; resume with Last-Event-ID: %llu\n\n",
                                     (unsigned long long)s->last_seq)
                     : fg__xasprintf(": %s\n\n", msg);
    append(s, line, strlen(line));
    free(line);
  }
  wake(s);
}

static ssize_t reader(void *cls, uint64_t pos, char *out, size_t max) {
  (void)pos;
  sse_stream *s = cls;
  size_t given = 0;
  for (;;) {
    if (s->off < s->len) {
      size_t n = s->len - s->off;
      if (n > max - given) n = max - given;
      memcpy(out + given, s->buf + s->off, n);
      given += n;
      s->off += n;
      if (s->off == s->len) s->off = s->len = 0;
      if (given == max) return (ssize_t)given;
      continue;
    }
    if (s->in_flight && s->w) {
      /* The event is with MHD now: the watch may send the next one, which
       * sink_send appends at once when it is committed. */
      s->in_flight = false;
      fgd_watch_sent(s->w, true);
      continue;
    }
    break;
  }
  if (given) return (ssize_t)given;
  if (s->ended) return MHD_CONTENT_READER_END_OF_STREAM;
  s->waiting = true;
  MHD_suspend_connection(s->conn);
  return 0;
}

static void unlink_stream(sse_stream *s) {
  if (s->prev) s->prev->next = s->next;
  else if (s->h->streams == s) s->h->streams = s->next;
  if (s->next) s->next->prev = s->prev;
  s->prev = s->next = NULL;
}

/* MHD is done with the response: the client went away or the stream
 * ended. */
static void on_free(void *cls) {
  sse_stream *s = cls;
  s->gone = true;
  if (s->w) fgd_watch_close(s->w); /* runs sink_finish */
  unlink_stream(s);
  free(s->buf);
  free(s);
}

enum MHD_Result fgd_http_sse(http_req *r, fgd_job *j, uint64_t after_seq) {
  fgd_http *h = r->h;
  sse_stream *s = fg__xcalloc(1, sizeof *s);
  s->h = h;
  s->conn = r->conn;
  s->last_seq = after_seq;
  s->w = fgd_watch_open(h->d, j, after_seq, (fgd_watch_sink){sink_send, sink_finish, s});
  /* The reconnection delay EventSource should use, and a first line so
   * the headers go out at once. */
  char *head = fg__xasprintf("retry: 1000\n: job %s, events after %llu\n\n", j->id,
                             (unsigned long long)after_seq);
  append(s, head, strlen(head));
  free(head);
  s->next = h->streams;
  if (h->streams) h->streams->prev = s;
  h->streams = s;
  struct MHD_Response *resp = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, SSE_BLOCK, reader, s, on_free);
  if (!resp) {
    on_free(s);
    return MHD_NO;
  }
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream; charset=utf-8");
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
  /* Proxies that buffer (nginx) would hold events back. */
  MHD_add_response_header(resp, "X-Accel-Buffering", "no");
  enum MHD_Result rc = MHD_queue_response(r->conn, 200, resp);
  if (rc == MHD_YES && s->w) fgd_watch_pump(s->w);
  MHD_destroy_response(resp); /* on_free runs when MHD lets it go */
  return rc;
}

void fgd_http_sse_heartbeat(fgd_http *h) {
  static const char beat[] = ": heartbeat\n\n";
  for (sse_stream *s = h->streams; s; s = s->next)
    if (s->waiting) {
      append(s, beat, sizeof beat - 1);
      wake(s);
    }
}

void fgd_http_sse_end_all(fgd_http *h) {
  for (sse_stream *s = h->streams; s; s = s->next)
    if (s->w) fgd_watch_close(s->w);
}
