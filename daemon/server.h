/* fulgurd's gRPC server: gRPC C core driven from the libuv loop.
 *
 * One thread blocks in grpc_completion_queue_next and hands every
 * completion to the loop through a uv_async; the loop thread is the only
 * one that calls gRPC otherwise, so handlers need no locks. Each call is a
 * refcounted fgd_call: one reference per batch in flight plus one held by
 * whoever will answer it. */
#ifndef FGD_SERVER_H
#define FGD_SERVER_H

#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>
#include <uv.h>

typedef enum {
  FGD_M_SUBMIT,
  FGD_M_GET,
  FGD_M_LIST,
  FGD_M_CANCEL,
  FGD_M_PAUSE,
  FGD_M_RESUME,
  FGD_M_WATCH,
  FGD_M_EVENTS,
  FGD_M_CHECKPOINT,
  FGD_M_FORK,
  FGD_M_HEALTH_CHECK, /* the JobService methods come before this one */
  FGD_M_HEALTH_WATCH,
  FGD_M_REFLECTION_V1,
  FGD_M_REFLECTION_V1ALPHA,
  FGD_M_COUNT
} fgd_method;

typedef struct fgd_server fgd_server;
typedef struct fgd_call fgd_call;

typedef struct {
  const char **listen; /* "unix:/path" or "host:port" */
  size_t n_listen;
  const char *tls_cert_file, *tls_key_file; /* both or neither */
  const char *token;                        /* NULL: no authentication */
  size_t max_request_bytes;
} fgd_server_opts;

/* Called on the loop thread for every JobService call that passed
 * authentication. The handler owns the call's answering reference: it must
 * eventually call fgd_call_reply / fgd_call_fail, or fgd_stream_finish for
 * a stream. */
typedef void (*fgd_call_cb)(void *ctx, fgd_call *call);

/* Binds, starts serving and starts the completion-queue thread. Returns 0,
 * or -1 with *err (caller frees). */
int fgd_server_start(uv_loop_t *loop, const fgd_server_opts *o, fgd_call_cb on_call, void *ctx,
                     fgd_server **out, char **err);
/* Starts a graceful shutdown: health turns NOT_SERVING, no new calls are
 * taken, open streams are ended with UNAVAILABLE, calls still running after
 * grace_ms are cancelled. done runs on the loop once the server is gone
 * and its thread joined; the server is freed after done returns. */
void fgd_server_shutdown(fgd_server *s, unsigned grace_ms, void (*done)(void *ctx), void *ctx);

fgd_method fgd_call_method(const fgd_call *c);
/* The request message, unpacked; NULL when malformed (the caller answers
 * INVALID_ARGUMENT). Free with protobuf_c_message_free_unpacked. */
ProtobufCMessage *fgd_call_unpack(fgd_call *c, const ProtobufCMessageDescriptor *d);

/* Unary answers. Each consumes the answering reference. */
void fgd_call_reply(fgd_call *c, const ProtobufCMessage *m);
/* An answer already packed (data copied). */
void fgd_call_reply_bytes(fgd_call *c, const void *data, size_t len);
void fgd_call_fail(fgd_call *c, grpc_status_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* A call made inside the daemon, for the HTTP API: the same handler
 * (fgd_call_cb) answers it with the same functions, and the answer goes to
 * done instead of the network: code, its message, and on OK the packed
 * reply (all valid during the call only). req is the packed request of
 * method m (copied). The caller hands the call to the handler, which then
 * owns it; done runs exactly once, maybe before the handler returns.
 * Unary methods only. */
typedef void (*fgd_local_cb)(void *ctx, grpc_status_code code, const char *msg, const uint8_t *reply,
                             size_t len);
fgd_call *fgd_call_local(fgd_method m, const void *req, size_t len, fgd_local_cb done, void *ctx);

/* Server streams. start sends the initial metadata and arms the close
 * notification: on_close runs once when the client goes away or the call is
 * cancelled (not on a normal finish). send queues one message; on_sent runs
 * when it has left (ok false: the stream is dead). Only one send may be in
 * flight. finish ends the stream with a status and consumes the answering
 * reference; no callback runs after it. */
typedef struct {
  void (*on_sent)(void *ctx, bool ok);
  void (*on_close)(void *ctx);
  void *ctx;
} fgd_stream_cbs;
void fgd_stream_start(fgd_call *c, fgd_stream_cbs cbs);
void fgd_stream_send(fgd_call *c, const ProtobufCMessage *m);
void fgd_stream_send_bytes(fgd_call *c, const void *data, size_t len);
void fgd_stream_finish(fgd_call *c, grpc_status_code code, const char *msg);
bool fgd_stream_closed(const fgd_call *c);

/* Health of a service ("" = the whole server): 1 SERVING, 2 NOT_SERVING. */
void fgd_server_set_health(fgd_server *s, const char *service, int status);

#endif
