/* Shared by the files of the HTTP layer (http.h); nothing outside
 * daemon/http/ includes it. */
#ifndef FGD_HTTP_INTERNAL_H
#define FGD_HTTP_INTERNAL_H

#include <microhttpd.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../daemon.h"
#include "http.h"
#include "json_in.h"

typedef struct http_req http_req;
typedef struct sse_stream sse_stream;

struct fgd_http {
  fgd *d;
  fgd_http_opts o;
  char *token_header; /* "Bearer <token>", NULL without a token */
  struct MHD_Daemon *mhd;
  uv_poll_t poll;
  uv_timer_t timer;
  uv_timer_t heartbeat;
  int port;
  bool draining;
  bool kicked; /* a connection was resumed: MHD runs again next turn */
  char *chartjs; /* Debian's Chart.js, read at start (NULL: not installed) */
  size_t chartjs_len;
  char *cert_pem, *key_pem;
  http_req *suspended; /* connections waiting on a call, resumed at stop */
  sse_stream *streams; /* open event streams */
  int open_handles;    /* uv handles still closing at stop */
};

/* One request, from its first header to its completion (MHD's con_cls). */
struct http_req {
  fgd_http *h;
  struct MHD_Connection *conn;
  char *body;
  size_t len, cap;
  bool too_big;     /* the body passed --max-request-bytes: 413 */
  bool routed;      /* handled once; a resumed request only answers */
  /* The answer of a call that had to wait, queued when MHD calls back. */
  struct MHD_Response *answer;
  unsigned answer_status;
  bool suspended;
  struct local_wait *wait; /* the call in flight, NULL when none */
  http_req *prev, *next;   /* in h->suspended */
};

/* A call in flight for a suspended request; its first member is cleared
 * when the request goes first (the answer then finds no one). */
typedef struct local_wait {
  http_req *req;
  fgd_method method;
} local_wait;

/* ---- server.c: answers ---- */
/* Queues a response of status with body (copied) and content type. */
enum MHD_Result fgd_http_send(http_req *r, unsigned status, const char *ctype, const char *body,
                              size_t len);
/* The error body {"code": <gRPC code>, "message": ...} with the HTTP status
 * gRPC transcoding gives that code. */
enum MHD_Result fgd_http_fail(http_req *r, grpc_status_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* A response built now, to be queued when the suspended request resumes. */
void fgd_http_resume_with(http_req *r, unsigned status, const char *ctype, const char *body,
                          size_t len);
void fgd_http_suspend(http_req *r);
/* Runs MHD at the next turn of the loop (after a resume). */
void fgd_http_kick(fgd_http *h);
unsigned fgd_http_status_of(grpc_status_code code);
/* {"code":..,"message":..} for code and msg; caller frees. */
char *fgd_http_error_body(grpc_status_code code, const char *msg, size_t *len);

/* ---- rest.c: /v1/ ---- */
enum MHD_Result fgd_http_rest(http_req *r, const char *method, const char *url);


/* ---- sse.c: event streams ---- */
/* Starts an SSE stream of j's events after after_seq on r's connection. */
enum MHD_Result fgd_http_sse(http_req *r, fgd_job *j, uint64_t after_seq);
void fgd_http_sse_heartbeat(fgd_http *h);
void fgd_http_sse_end_all(fgd_http *h);

/* ---- metrics.c: /metrics ---- */
/* The exposition text (caller frees). */
char *fgd_http_metrics(fgd_http *h, size_t *len);

#endif
