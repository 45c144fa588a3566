/* The blocking JobService client (fg_rpc_client.h) over gRPC C core.
 *
 * Every call gets its own pluck completion queue: the caller's thread
 * blocks in grpc_completion_queue_pluck for exactly the batch it started,
 * so calls from several threads on one client never see each other's
 * events (a shared pluck queue would also cap them at
 * GRPC_MAX_COMPLETION_QUEUE_PLUCKERS threads). Every batch that gRPC
 * accepted is plucked before its call is unreffed and its queue destroyed:
 * what its ops point to lives in the call's own struct until then. */
#include <errno.h>
#include <grpc/byte_buffer.h>
#include <grpc/grpc_security.h>
#include <grpc/slice.h>
#include <grpc/support/alloc.h>
#include <grpc/support/time.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fg_rpc.h"
#include "fg_rpc_client.h"

struct fg_rpc_client {
  grpc_channel *channel;
  char *target;
  grpc_metadata auth; /* authorization: Bearer ... */
  size_t n_md;        /* 0 or 1 */
  int default_timeout_ms;
};

enum { DEFAULT_TIMEOUT_MS = 30000, DEFAULT_MAX_RECV = 64 << 20 };

/* Tags: each call has its own queue, so small constants are unique. */
#define TAG_SEND ((void *)1)
#define TAG_RECV ((void *)2)
#define TAG_STATUS ((void *)3)
#define TAG_UNARY ((void *)4)

/* Sets *details (when wanted) to a formatted message and returns code.
 * Out of memory aborts: a client that cannot allocate a message cannot
 * report anything useful either. */
static grpc_status_code set_details(char **details, grpc_status_code code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static grpc_status_code set_details(char **details, grpc_status_code code, const char *fmt, ...) {
  if (details == NULL) return code;
  va_list ap;
  va_start(ap, fmt);
  char *s = NULL;
  int n = vasprintf(&s, fmt, ap);
  va_end(ap);
  if (n < 0) abort();
  *details = s;
  return code;
}

static char *slice_strdup(grpc_slice s) {
  size_t n = GRPC_SLICE_LENGTH(s);
  char *out = malloc(n + 1);
  if (out == NULL) abort();
  memcpy(out, GRPC_SLICE_START_PTR(s), n);
  out[n] = '\0';
  return out;
}

static gpr_timespec deadline_in(int ms) {
  if (ms < 0) return gpr_inf_future(GPR_CLOCK_MONOTONIC);
  return gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(ms, GPR_TIMESPAN));
}

/* Shuts a pluck queue down and destroys it; every accepted batch must have
 * been plucked already, so the queue is empty. */
static void cq_destroy(grpc_completion_queue *cq) {
  grpc_completion_queue_shutdown(cq);
  grpc_event ev = grpc_completion_queue_pluck(cq, NULL, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
  (void)ev; /* GRPC_QUEUE_SHUTDOWN */
  grpc_completion_queue_destroy(cq);
}

static char *read_file(const char *path, char **details) {
  FILE *f = fopen(path, "rb");
  if (f == NULL) {
    set_details(details, GRPC_STATUS_INVALID_ARGUMENT, "cannot open %s: %s", path, strerror(errno));
    return NULL;
  }
  size_t cap = 4096, n = 0;
  char *buf = malloc(cap);
  for (;;) {
    if (buf == NULL) abort();
    n += fread(buf + n, 1, cap - n - 1, f);
    if (n < cap - 1) break;
    cap *= 2;
    buf = realloc(buf, cap);
  }
  int bad = ferror(f);
  fclose(f);
  buf[n] = '\0';
  if (bad || n == 0) {
    set_details(details, GRPC_STATUS_INVALID_ARGUMENT, "cannot read %s: %s", path,
                bad ? "read error" : "the file is empty");
    free(buf);
    return NULL;
  }
  return buf;
}

grpc_status_code fg_rpc_client_create(const fg_rpc_client_opts *opts, fg_rpc_client **out,
                                      char **details) {
  if (opts == NULL || opts->target == NULL || opts->target[0] == '\0')
    return set_details(details, GRPC_STATUS_INVALID_ARGUMENT, "no server address given");
  char *ca_pem = NULL;
  if (opts->tls_ca_file && (ca_pem = read_file(opts->tls_ca_file, details)) == NULL)
    return GRPC_STATUS_INVALID_ARGUMENT;
  /* gRPC would only fail later, at connect time, with an "empty address
   * list" that names neither the file nor the problem. */
  if (ca_pem && strstr(ca_pem, "-----BEGIN CERTIFICATE-----") == NULL) {
    free(ca_pem);
    return set_details(details, GRPC_STATUS_INVALID_ARGUMENT, "%s: no PEM certificate in the file",
                       opts->tls_ca_file);
  }

  fg_rpc_client *c = calloc(1, sizeof *c);
  if (c == NULL || (c->target = strdup(opts->target)) == NULL) abort();
  c->default_timeout_ms = opts->default_timeout_ms > 0 ? opts->default_timeout_ms : DEFAULT_TIMEOUT_MS;
  if (opts->token && opts->token[0]) {
    char *v = NULL;
    if (asprintf(&v, "Bearer %s", opts->token) < 0) abort();
    c->auth.key = grpc_slice_from_static_string("authorization");
    c->auth.value = grpc_slice_from_copied_string(v);
    free(v);
    c->n_md = 1;
  }

  grpc_init();
  /* Reconnect quickly: a restarted daemon is usually back within a second,
   * and gRPC's default backoff (1 s growing to 120 s) would leave a watcher
   * failing fast with UNAVAILABLE long after the daemon is up again. */
  grpc_arg args[4];
  size_t n_args = 0;
  args[n_args].type = GRPC_ARG_INTEGER;
  args[n_args].key = (char *)GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
  args[n_args++].value.integer = opts->max_recv_bytes > 0 ? opts->max_recv_bytes : DEFAULT_MAX_RECV;
  args[n_args].type = GRPC_ARG_INTEGER;
  args[n_args].key = (char *)GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS;
  args[n_args++].value.integer = 200;
  args[n_args].type = GRPC_ARG_INTEGER;
  args[n_args].key = (char *)GRPC_ARG_MAX_RECONNECT_BACKOFF_MS;
  args[n_args++].value.integer = 2000;
  if (ca_pem && opts->tls_server_name && opts->tls_server_name[0]) {
    args[n_args].type = GRPC_ARG_STRING;
    args[n_args].key = (char *)GRPC_SSL_TARGET_NAME_OVERRIDE_ARG;
    args[n_args++].value.string = (char *)opts->tls_server_name;
  }
  grpc_channel_args chargs = {n_args, args};
  /* The credentials copy the PEM text; the channel keeps its own ref. */
  grpc_channel_credentials *creds =
      ca_pem ? grpc_ssl_credentials_create(ca_pem, NULL, NULL, NULL) : grpc_insecure_credentials_create();
  /* Never NULL: a bad target gives a "lame" channel whose calls fail. */
  c->channel = grpc_channel_create(c->target, creds, &chargs);
  grpc_channel_credentials_release(creds);
  free(ca_pem);
  *out = c;
  return GRPC_STATUS_OK;
}

void fg_rpc_client_free(fg_rpc_client *c) {
  if (c == NULL) return;
  grpc_channel_destroy(c->channel);
  if (c->n_md) grpc_slice_unref(c->auth.value);
  free(c->target);
  free(c);
  grpc_shutdown();
}

const char *fg_rpc_client_target(const fg_rpc_client *c) { return c->target; }

static grpc_call *new_call(fg_rpc_client *c, grpc_completion_queue *cq, const char *method,
                           gpr_timespec deadline) {
  grpc_slice m = grpc_slice_from_copied_string(method);
  grpc_call *call =
      grpc_channel_create_call(c->channel, NULL, GRPC_PROPAGATE_DEFAULTS, cq, m, NULL, deadline, NULL);
  grpc_slice_unref(m);
  return call;
}

grpc_status_code fg_rpc_call(fg_rpc_client *c, const char *method, const ProtobufCMessage *req,
                             const ProtobufCMessageDescriptor *resp_type, int timeout_ms,
                             ProtobufCMessage **resp, char **details) {
  *resp = NULL;
  grpc_completion_queue *cq = grpc_completion_queue_create_for_pluck(NULL);
  grpc_call *call =
      new_call(c, cq, method, deadline_in(timeout_ms == 0 ? c->default_timeout_ms : timeout_ms));
  grpc_byte_buffer *send = fg_rpc_pack(req), *recv = NULL;
  grpc_metadata_array initial, trailing;
  grpc_metadata_array_init(&initial);
  grpc_metadata_array_init(&trailing);
  grpc_status_code status = GRPC_STATUS_UNKNOWN;
  grpc_slice status_details = grpc_empty_slice();

  grpc_op ops[6];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[0].data.send_initial_metadata.count = c->n_md;
  ops[0].data.send_initial_metadata.metadata = c->n_md ? &c->auth : NULL;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = send;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &initial;
  ops[4].op = GRPC_OP_RECV_MESSAGE;
  ops[4].data.recv_message.recv_message = &recv;
  ops[5].op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  ops[5].data.recv_status_on_client.trailing_metadata = &trailing;
  ops[5].data.recv_status_on_client.status = &status;
  ops[5].data.recv_status_on_client.status_details = &status_details;

  grpc_call_error ce = grpc_call_start_batch(call, ops, 6, TAG_UNARY, NULL);
  if (ce != GRPC_CALL_OK) {
    set_details(details, GRPC_STATUS_INTERNAL, "grpc_call_start_batch: error %d", (int)ce);
    status = GRPC_STATUS_INTERNAL;
  } else {
    /* The call's deadline bounds the wait: the batch always completes. */
    grpc_completion_queue_pluck(cq, TAG_UNARY, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    if (status != GRPC_STATUS_OK) {
      if (details) *details = slice_strdup(status_details);
    } else if ((*resp = fg_rpc_unpack(resp_type, recv)) == NULL) {
      status = set_details(details, GRPC_STATUS_INTERNAL, "%s: the server's answer is not a valid %s",
                           method, resp_type->name);
    }
  }
  grpc_byte_buffer_destroy(send);
  if (recv) grpc_byte_buffer_destroy(recv);
  grpc_slice_unref(status_details);
  grpc_metadata_array_destroy(&initial);
  grpc_metadata_array_destroy(&trailing);
  grpc_call_unref(call);
  cq_destroy(cq);
  return status;
}

/* ---- server streams ------------------------------------------------------ */

struct fg_rpc_stream {
  grpc_completion_queue *cq;
  grpc_call *call;
  const ProtobufCMessageDescriptor *type;
  grpc_byte_buffer *send;
  grpc_byte_buffer *recv;
  grpc_metadata_array initial, trailing;
  grpc_slice status_details;
  grpc_status_code status;
  char *details;
  bool send_pending; /* the first batch (send + initial metadata) not yet plucked */
  bool recv_pending; /* a RECV_MESSAGE batch not yet plucked */
  bool ended;        /* the status has been received */
};

grpc_status_code fg_rpc_stream_open(fg_rpc_client *c, const char *method,
                                    const ProtobufCMessage *req,
                                    const ProtobufCMessageDescriptor *msg_type, int timeout_ms,
                                    fg_rpc_stream **out, char **details) {
  fg_rpc_stream *s = calloc(1, sizeof *s);
  if (s == NULL) abort();
  s->type = msg_type;
  s->status = GRPC_STATUS_UNKNOWN;
  s->status_details = grpc_empty_slice();
  grpc_metadata_array_init(&s->initial);
  grpc_metadata_array_init(&s->trailing);
  s->cq = grpc_completion_queue_create_for_pluck(NULL);
  s->call = new_call(c, s->cq, method, deadline_in(timeout_ms > 0 ? timeout_ms : -1));
  s->send = fg_rpc_pack(req);

  grpc_op ops[4];
  memset(ops, 0, sizeof ops);
  ops[0].op = GRPC_OP_SEND_INITIAL_METADATA;
  ops[0].data.send_initial_metadata.count = c->n_md;
  ops[0].data.send_initial_metadata.metadata = c->n_md ? &c->auth : NULL;
  ops[1].op = GRPC_OP_SEND_MESSAGE;
  ops[1].data.send_message.send_message = s->send;
  ops[2].op = GRPC_OP_SEND_CLOSE_FROM_CLIENT;
  ops[3].op = GRPC_OP_RECV_INITIAL_METADATA;
  ops[3].data.recv_initial_metadata.recv_initial_metadata = &s->initial;
  grpc_call_error ce = grpc_call_start_batch(s->call, ops, 4, TAG_SEND, NULL);
  if (ce != GRPC_CALL_OK) {
    s->ended = true; /* nothing is outstanding: free needs no status */
    fg_rpc_stream_free(s);
    return set_details(details, GRPC_STATUS_INTERNAL, "grpc_call_start_batch: error %d", (int)ce);
  }
  s->send_pending = true;
  *out = s;
  return GRPC_STATUS_OK;
}

/* Receives the status (the call is over or cancelled, so this does not
 * block for long) and plucks the first batch if it is still out. */
static void stream_finish(fg_rpc_stream *s) {
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_STATUS_ON_CLIENT;
  op.data.recv_status_on_client.trailing_metadata = &s->trailing;
  op.data.recv_status_on_client.status = &s->status;
  op.data.recv_status_on_client.status_details = &s->status_details;
  grpc_call_error ce = grpc_call_start_batch(s->call, &op, 1, TAG_STATUS, NULL);
  if (ce == GRPC_CALL_OK) {
    grpc_completion_queue_pluck(s->cq, TAG_STATUS, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    s->details = slice_strdup(s->status_details);
  } else {
    s->status = GRPC_STATUS_INTERNAL;
    if (asprintf(&s->details, "grpc_call_start_batch: error %d", (int)ce) < 0) abort();
  }
  if (s->send_pending) {
    grpc_completion_queue_pluck(s->cq, TAG_SEND, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    s->send_pending = false;
  }
  s->ended = true;
}

fg_rpc_read_result fg_rpc_stream_read(fg_rpc_stream *s, int wait_ms, ProtobufCMessage **msg) {
  *msg = NULL;
  if (s->ended) return FG_RPC_READ_END;
  if (!s->recv_pending) {
    grpc_op op;
    memset(&op, 0, sizeof op);
    op.op = GRPC_OP_RECV_MESSAGE;
    op.data.recv_message.recv_message = &s->recv;
    if (grpc_call_start_batch(s->call, &op, 1, TAG_RECV, NULL) != GRPC_CALL_OK) {
      stream_finish(s);
      return FG_RPC_READ_END;
    }
    s->recv_pending = true;
  }
  grpc_event ev = grpc_completion_queue_pluck(s->cq, TAG_RECV, deadline_in(wait_ms), NULL);
  if (ev.type == GRPC_QUEUE_TIMEOUT) return FG_RPC_READ_TIMEOUT;
  s->recv_pending = false;
  if (s->recv == NULL) { /* end of stream, or the call failed */
    stream_finish(s);
    return FG_RPC_READ_END;
  }
  ProtobufCMessage *m = fg_rpc_unpack(s->type, s->recv);
  grpc_byte_buffer_destroy(s->recv);
  s->recv = NULL;
  if (m == NULL) {
    char *why = NULL;
    if (asprintf(&why, "the server sent a message that is not a valid %s", s->type->name) < 0) abort();
    grpc_call_cancel_with_status(s->call, GRPC_STATUS_INTERNAL, why, NULL);
    free(why);
    stream_finish(s);
    return FG_RPC_READ_END;
  }
  *msg = m;
  return FG_RPC_READ_MESSAGE;
}

grpc_status_code fg_rpc_stream_status(const fg_rpc_stream *s, const char **details) {
  if (details) *details = s->ended && s->details ? s->details : "";
  return s->ended ? s->status : GRPC_STATUS_UNKNOWN;
}

void fg_rpc_stream_free(fg_rpc_stream *s) {
  if (s == NULL) return;
  if (!s->ended) {
    grpc_call_cancel(s->call, NULL);
    if (s->recv_pending) {
      grpc_completion_queue_pluck(s->cq, TAG_RECV, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
      s->recv_pending = false;
    }
    stream_finish(s);
  }
  if (s->recv) grpc_byte_buffer_destroy(s->recv);
  grpc_byte_buffer_destroy(s->send);
  grpc_slice_unref(s->status_details);
  grpc_metadata_array_destroy(&s->initial);
  grpc_metadata_array_destroy(&s->trailing);
  grpc_call_unref(s->call);
  cq_destroy(s->cq);
  free(s->details);
  free(s);
}

const char *fg_rpc_status_name(grpc_status_code code) {
  static const char *const names[] = {
      "OK",        "CANCELLED",           "UNKNOWN",           "INVALID_ARGUMENT",
      "DEADLINE_EXCEEDED", "NOT_FOUND",   "ALREADY_EXISTS",    "PERMISSION_DENIED",
      "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED",  "OUT_OF_RANGE",
      "UNIMPLEMENTED", "INTERNAL",         "UNAVAILABLE",       "DATA_LOSS",
      "UNAUTHENTICATED"};
  return (unsigned)code < sizeof names / sizeof names[0] ? names[code] : "UNKNOWN_STATUS";
}
