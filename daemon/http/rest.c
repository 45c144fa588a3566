/* REST under /v1/, as gRPC transcoding (google.api.http) maps JobService:
 *
 *   GET  /v1/jobs?state=&page_size=&page_token=   ListJobs
 *   POST /v1/jobs                                  SubmitJob (body: SubmitJobRequest)
 *   GET  /v1/jobs/{id}                             GetJob
 *   POST /v1/jobs/{id}:cancel|:pause|:resume|:checkpoint|:fork
 *   GET  /v1/jobs/{id}/events?after_seq=&page_size=  ListJobEvents, or with
 *        Accept: text/event-stream the events as Server-Sent Events (sse.c)
 *
 * Each request becomes the method's protobuf request and runs through the
 * gRPC handlers themselves (rpc.c, as a local call: server.h), so checks,
 * limits, roots and messages are one code; the reply is printed with the
 * CLI's --json renderers (rpc/json_msg.c) in the proto3 JSON mapping. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fg_rpc.h"
#include "internal.h"
#include "json.h"
#include "json_msg.h"
#include "../requests.h"
#include "util/xalloc.h"

/* The reply of method m (packed) as proto3 JSON; caller frees. */
static char *reply_json(fgd_method m, const uint8_t *data, size_t len, size_t *out_len) {
  const ProtobufCMessageDescriptor *desc = m == FGD_M_LIST     ? &fulgur__v1__list_jobs_response__descriptor
                                           : m == FGD_M_EVENTS ? &fulgur__v1__list_job_events_response__descriptor
                                                               : &fulgur__v1__job__descriptor;
  ProtobufCMessage *msg = protobuf_c_message_unpack(desc, NULL, len, data);
  if (!msg) return NULL;
  char *buf = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&buf, &n);
  fg_json_writer w;
  fg__json_init(&w, f);
  w.int64_strings = true;
  fg__json_message(&w, msg);
  fputc('\n', f);
  fclose(f);
  protobuf_c_message_free_unpacked(msg, NULL);
  *out_len = n;
  return buf;
}

/* A call's answer as status and body (caller frees). */
static char *answer_body(fgd_method m, grpc_status_code code, const char *msg, const uint8_t *reply,
                         size_t len, unsigned *status, size_t *out_len) {
  char *body = NULL;
  if (code == GRPC_STATUS_OK && !(body = reply_json(m, reply, len, out_len))) {
    code = GRPC_STATUS_INTERNAL;
    msg = "the reply could not be decoded";
  }
  if (code != GRPC_STATUS_OK) body = fgd_http_error_body(code, msg, out_len);
  *status = fgd_http_status_of(code);
  return body;
}

typedef struct {
  local_wait base;
  bool in_handler, done;
  unsigned status;
  char *body;
  size_t len;
} rest_wait;

static void on_answer(void *ctx, grpc_status_code code, const char *msg, const uint8_t *reply,
                      size_t len) {
  rest_wait *w = ctx;
  http_req *r = w->base.req;
  if (!r) { /* the client went away while the call ran */
    free(w);
    return;
  }
  w->body = answer_body(w->base.method, code, msg, reply, len, &w->status, &w->len);
  if (w->in_handler) {
    w->done = true; /* call() queues it */
    return;
  }
  r->wait = NULL;
  fgd_http_resume_with(r, w->status, "application/json", w->body, w->len);
  free(w->body);
  free(w);
}

/* Runs method m's handler on req (freed here) and answers with its reply,
 * now or, when it waits (a submit's config check), once it has answered. */
static enum MHD_Result call(http_req *r, fgd_method m, ProtobufCMessage *req) {
  size_t n = protobuf_c_message_get_packed_size(req);
  uint8_t *buf = fg__xmalloc(n ? n : 1);
  protobuf_c_message_pack(req, buf);
  protobuf_c_message_free_unpacked(req, NULL);
  rest_wait *w = fg__xcalloc(1, sizeof *w);
  w->base.req = r;
  w->base.method = m;
  w->in_handler = true;
  r->wait = &w->base;
  fgd_call *c = fgd_call_local(m, buf, n, on_answer, w);
  free(buf);
  fgd_rpc_on_call(r->h->d, c);
  w->in_handler = false;
  if (!w->done) {
    fgd_http_suspend(r);
    return MHD_YES;
  }
  r->wait = NULL;
  enum MHD_Result rc = fgd_http_send(r, w->status, "application/json", w->body, w->len);
  free(w->body);
  free(w);
  return rc;
}

/* A new, empty request message of method m. */
static ProtobufCMessage *new_request(fgd_method m) {
  const ProtobufCMessageDescriptor *d = fgd_request_descriptor(m);
  ProtobufCMessage *msg = fg__xcalloc(1, d->sizeof_message);
  protobuf_c_message_init(d, msg);
  return msg;
}

/* The request's body into msg; an empty body leaves it as it is. */
static bool body_into(http_req *r, ProtobufCMessage *msg) {
  if (r->len == 0) return true;
  char *bad = fgd_http_json_to_msg(r->body, r->len, msg);
  if (!bad) return true;
  fgd_http_fail(r, GRPC_STATUS_INVALID_ARGUMENT, "%s", bad);
  free(bad);
  return false;
}

/* A query parameter as an unsigned number (absent: *v unchanged). */
static bool query_uint(http_req *r, const char *name, uint64_t max, uint64_t *v) {
  const char *s = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, name);
  if (!s) return true;
  char *end = NULL;
  errno = 0;
  unsigned long long x = strtoull(s, &end, 10);
  if (s[0] < '0' || s[0] > '9' || *end || errno || x > max) {
    fgd_http_fail(r, GRPC_STATUS_INVALID_ARGUMENT, "query parameter %s: expected a number up to %llu, got '%s'",
                  name, (unsigned long long)max, s);
    return false;
  }
  *v = x;
  return true;
}

/* A string field of msg set to a copy of v. */
static void set_id(ProtobufCMessage *msg, const char *v) {
  /* Every request with an id has it as field 1, a string (jobs.proto). */
  const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(msg->descriptor, 1);
  char **slot = (char **)((char *)msg + f->offset);
  if (*slot && *slot != (char *)f->default_value && *slot != protobuf_c_empty_string) free(*slot);
  *slot = fg__xstrdup(v);
}

static enum MHD_Result list_jobs(http_req *r) {
  Fulgur__V1__ListJobsRequest *q = (Fulgur__V1__ListJobsRequest *)new_request(FGD_M_LIST);
  const char *state = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "state");
  uint64_t size = 0;
  if (state && state[0]) {
    q->state = fg_rpc_state_parse(state);
    if (q->state == 0) {
      protobuf_c_message_free_unpacked(&q->base, NULL);
      return fgd_http_fail(r, GRPC_STATUS_INVALID_ARGUMENT,
                           "query parameter state: no job state '%s' (QUEUED, RUNNING, PAUSED, "
                           "SUCCEEDED, FAILED, CANCELLED)", state);
    }
  }
  if (!query_uint(r, "page_size", UINT32_MAX, &size)) {
    protobuf_c_message_free_unpacked(&q->base, NULL);
    return MHD_YES;
  }
  q->page_size = (uint32_t)size;
  const char *token = MHD_lookup_connection_value(r->conn, MHD_GET_ARGUMENT_KIND, "page_token");
  if (token) q->page_token = fg__xstrdup(token);
  return call(r, FGD_M_LIST, &q->base);
}

static bool wants_sse(http_req *r) {
  const char *a = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_ACCEPT);
  return a && strstr(a, "text/event-stream");
}

static enum MHD_Result events(http_req *r, const char *id) {
  uint64_t after = 0, size = 0;
  if (!query_uint(r, "after_seq", UINT64_MAX, &after)) return MHD_YES;
  if (wants_sse(r)) {
    /* An EventSource that reconnects sends the last id it saw: it wins
     * over the after_seq of the URL it reconnects to. */
    const char *last = MHD_lookup_connection_value(r->conn, MHD_HEADER_KIND, "Last-Event-ID");
    if (last && last[0]) {
      char *end = NULL;
      errno = 0;
      unsigned long long x = strtoull(last, &end, 10);
      if (last[0] < '0' || last[0] > '9' || *end || errno)
        return fgd_http_fail(r, GRPC_STATUS_INVALID_ARGUMENT,
                             "Last-Event-ID: expected an event's seq, got '%s'", last);
      after = x;
    }
    grpc_status_code code;
    char *msg = NULL;
    fgd_job *j = fgd_rpc_watch_job(r->h->d, id, after, &code, &msg);
    if (!j) {
      enum MHD_Result rc = fgd_http_fail(r, code, "%s", msg);
      free(msg);
      return rc;
    }
    return fgd_http_sse(r, j, after);
  }
  if (!query_uint(r, "page_size", UINT32_MAX, &size)) return MHD_YES;
  Fulgur__V1__ListJobEventsRequest *q = (Fulgur__V1__ListJobEventsRequest *)new_request(FGD_M_EVENTS);
  set_id(&q->base, id);
  q->after_seq = after;
  q->page_size = (uint32_t)size;
  return call(r, FGD_M_EVENTS, &q->base);
}

static const struct {
  const char *verb;
  fgd_method method;
} verbs[] = {
    {"cancel", FGD_M_CANCEL},         {"pause", FGD_M_PAUSE}, {"resume", FGD_M_RESUME},
    {"checkpoint", FGD_M_CHECKPOINT}, {"fork", FGD_M_FORK},
};

enum MHD_Result fgd_http_rest(http_req *r, const char *method, const char *url) {
  bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
  bool post = strcmp(method, "POST") == 0;
  const char *p = url + 4; /* after "/v1/" */
  if (strcmp(p, "jobs") == 0) {
    if (get) return list_jobs(r);
    if (!post) return fgd_http_fail(r, GRPC_STATUS_UNIMPLEMENTED, "%s %s: only GET or POST", method, url);
    if (r->len == 0)
      return fgd_http_fail(r, GRPC_STATUS_INVALID_ARGUMENT,
                           "the request body is empty: expected a SubmitJobRequest JSON object");
    ProtobufCMessage *q = new_request(FGD_M_SUBMIT);
    if (!body_into(r, q)) {
      protobuf_c_message_free_unpacked(q, NULL);
      return MHD_YES;
    }
    return call(r, FGD_M_SUBMIT, q);
  }
  if (strncmp(p, "jobs/", 5) != 0)
    return fgd_http_fail(r, GRPC_STATUS_NOT_FOUND, "no route for %s %s", method, url);
  p += 5;
  size_t idlen = strcspn(p, "/:");
  if (idlen == 0) return fgd_http_fail(r, GRPC_STATUS_NOT_FOUND, "no route for %s %s", method, url);
  char *id = fg__xstrndup(p, idlen);
  const char *rest = p + idlen;
  enum MHD_Result rc;
  if (rest[0] == '\0') {
    if (!get) {
      rc = fgd_http_fail(r, GRPC_STATUS_UNIMPLEMENTED, "%s %s: only GET", method, url);
    } else {
      ProtobufCMessage *q = new_request(FGD_M_GET);
      set_id(q, id);
      rc = call(r, FGD_M_GET, q);
    }
  } else if (strcmp(rest, "/events") == 0) {
    rc = get ? events(r, id) : fgd_http_fail(r, GRPC_STATUS_UNIMPLEMENTED, "%s %s: only GET", method, url);
  } else if (rest[0] == ':') {
    fgd_method m = FGD_M_COUNT;
    for (size_t i = 0; i < sizeof verbs / sizeof *verbs; i++)
      if (strcmp(rest + 1, verbs[i].verb) == 0) m = verbs[i].method;
    if (m == FGD_M_COUNT) {
      rc = fgd_http_fail(r, GRPC_STATUS_NOT_FOUND,
                         "no method '%s' (cancel, pause, resume, checkpoint, fork)", rest + 1);
    } else if (!post) {
      rc = fgd_http_fail(r, GRPC_STATUS_UNIMPLEMENTED, "%s %s: only POST", method, url);
    } else {
      ProtobufCMessage *q = new_request(m);
      if (!body_into(r, q)) {
        protobuf_c_message_free_unpacked(q, NULL);
        rc = MHD_YES;
      } else {
        set_id(q, id); /* the path's id wins over the body's */
        rc = call(r, m, q);
      }
    }
  } else {
    rc = fgd_http_fail(r, GRPC_STATUS_NOT_FOUND, "no route for %s %s", method, url);
  }
  free(id);
  return rc;
}
