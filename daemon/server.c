/* See server.h. The shape follows gRPC C core's own end2end tests (v1.51):
 * registered methods with a few requests always posted, one generic
 * request posted to answer UNIMPLEMENTED at once, one batch per unary
 * answer, and streams with RECV_CLOSE_ON_SERVER armed first and one
 * SEND_MESSAGE in flight at a time. */
#include "server.h"

#include <grpc/byte_buffer_reader.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fg_rpc.h"
#include "health.h"
#include "reflection.h"
#include "util/xalloc.h"

#define POSTED_PER_METHOD 2

enum { T_NEW, T_UNARY, T_CLOSE, T_SEND, T_STATUS, T_RECV, T_SHUTDOWN };

typedef struct {
  fgd_call *c;
  int kind;
} tag;

struct fgd_call {
  fgd_server *srv;
  int method; /* fgd_method, or -1 for the generic (unknown method) request */
  grpc_call *call;
  gpr_timespec deadline;
  grpc_metadata_array md;
  grpc_call_details details; /* generic only */
  grpc_byte_buffer *req;
  int refs;
  tag t_new, t_unary, t_close, t_send, t_status, t_recv;
  grpc_byte_buffer *send_bb, *recv_bb;
  int cancelled; /* RECV_CLOSE_ON_SERVER's out-param */
  grpc_slice status_slice;
  bool has_status_slice;
  bool closed, finished, streaming;
  bool sending;       /* a SEND_MESSAGE is in flight */
  bool health_dirty;  /* Health.Watch: changed while sending */
  fgd_stream_cbs cbs;
  char *health_service; /* Health.Watch: the service watched */
  fgd_call *prev, *next; /* open streams, for shutdown and health pushes */
  fgd_local_cb local; /* set: a call from inside the daemon (no grpc_call) */
  void *local_ctx;
};

typedef struct completion {
  void *tag;
  bool ok;
} completion;

struct fgd_server {
  uv_loop_t *loop;
  grpc_server *server;
  grpc_completion_queue *cq;
  void *registered[FGD_M_COUNT];
  fgd_call_cb on_call;
  void *ctx;
  char *token_header; /* "Bearer <token>" */
  fgd_health *health;
  fgd_reflection *reflection;
  fgd_call *streams;
  bool shutting_down;
  tag t_shutdown;
  uv_timer_t grace;
  void (*done)(void *);
  void *done_ctx;
  /* Completions from the queue thread; mu guards pending. */
  pthread_t thread;
  bool thread_started;
  pthread_mutex_t mu;
  completion *pending;
  size_t n_pending, cap_pending;
  completion *draining;
  size_t cap_draining;
  uv_async_t async;
  char **unix_paths;
  size_t n_unix_paths;
};

static const struct {
  const char *path;
  grpc_server_register_method_payload_handling payload;
} methods[FGD_M_COUNT] = {
    [FGD_M_SUBMIT] = {FG_RPC_METHOD("SubmitJob"), GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER},
    [FGD_M_GET] = {FG_RPC_METHOD("GetJob"), GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER},
    [FGD_M_LIST] = {FG_RPC_METHOD("ListJobs"), GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER},
    [FGD_M_CANCEL] = {FG_RPC_METHOD("CancelJob"), GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER},
    [FGD_M_PAUSE] = {FG_RPC_METHOD("PauseJob"), GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER},
    [FGD_M_RESUME] = {FG_RPC_METHOD("ResumeJob"), GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER},
    [FGD_M_WATCH] = {FG_RPC_METHOD("WatchJob"), GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER},
    [FGD_M_EVENTS] = {FG_RPC_METHOD("ListJobEvents"), GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER},
    [FGD_M_CHECKPOINT] = {FG_RPC_METHOD("CheckpointJob"), GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER},
    [FGD_M_FORK] = {FG_RPC_METHOD("ForkJob"), GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER},
    [FGD_M_HEALTH_CHECK] = {"/grpc.health.v1.Health/Check", GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER},
    [FGD_M_HEALTH_WATCH] = {"/grpc.health.v1.Health/Watch", GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER},
    [FGD_M_REFLECTION_V1] = {"/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
                             GRPC_SRM_PAYLOAD_NONE},
    [FGD_M_REFLECTION_V1ALPHA] = {"/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
                                  GRPC_SRM_PAYLOAD_NONE},
};

/* ---- calls --------------------------------------------------------------- */

static fgd_call *call_new(fgd_server *s, int method) {
  fgd_call *c = fg__xcalloc(1, sizeof *c);
  c->srv = s;
  c->method = method;
  c->refs = 1; /* the posted request */
  grpc_metadata_array_init(&c->md);
  if (method < 0) grpc_call_details_init(&c->details);
  tag *tags[] = {&c->t_new, &c->t_unary, &c->t_close, &c->t_send, &c->t_status, &c->t_recv};
  int kinds[] = {T_NEW, T_UNARY, T_CLOSE, T_SEND, T_STATUS, T_RECV};
  for (int i = 0; i < 6; i++) *tags[i] = (tag){c, kinds[i]};
  return c;
}

static void stream_unlink(fgd_call *c) {
  if (!c->streaming) return;
  if (c->prev) c->prev->next = c->next;
  else if (c->srv->streams == c) c->srv->streams = c->next;
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
  c->streaming = false;
}

static void call_unref(fgd_call *c) {
  if (--c->refs > 0) return;
  stream_unlink(c);
  if (c->call) grpc_call_unref(c->call);
  grpc_metadata_array_destroy(&c->md);
  if (c->method < 0) grpc_call_details_destroy(&c->details);
  if (c->req) grpc_byte_buffer_destroy(c->req);
  if (c->send_bb) grpc_byte_buffer_destroy(c->send_bb);
  if (c->recv_bb) grpc_byte_buffer_destroy(c->recv_bb);
  if (c->has_status_slice) grpc_slice_unref(c->status_slice);
  free(c->health_service);
  free(c);
}

static void post_request(fgd_server *s, int method) {
  fgd_call *c = call_new(s, method);
  grpc_call_error e;
  if (method < 0) {
    e = grpc_server_request_call(s->server, &c->call, &c->details, &c->md, s->cq, s->cq, &c->t_new);
  } else {
    e = grpc_server_request_registered_call(s->server, s->registered[method], &c->call, &c->deadline,
                                            &c->md, methods[method].payload == GRPC_SRM_PAYLOAD_NONE
                                                        ? NULL
                                                        : &c->req,
                                            s->cq, s->cq, &c->t_new);
  }
  if (e != GRPC_CALL_OK) {
    c->refs = 0;
    c->refs = 1;
    call_unref(c);
  }
}

fgd_method fgd_call_method(const fgd_call *c) { return (fgd_method)c->method; }

/* A grpc_byte_buffer holding a copy of data. */
static grpc_byte_buffer *copied_bb(const void *data, size_t len);

fgd_call *fgd_call_local(fgd_method m, const void *req, size_t len, fgd_local_cb done, void *ctx) {
  fgd_call *c = call_new(NULL, (int)m);
  c->req = copied_bb(req, len);
  c->local = done;
  c->local_ctx = ctx;
  return c;
}

/* A local call's answer: handed to its callback, then the answering
 * reference (the only one) goes. */
static void local_answer(fgd_call *c, grpc_status_code code, const char *msg, const uint8_t *data,
                         size_t len) {
  c->local(c->local_ctx, code, msg ? msg : "", data, len);
  call_unref(c);
}

ProtobufCMessage *fgd_call_unpack(fgd_call *c, const ProtobufCMessageDescriptor *d) {
  return fg_rpc_unpack(d, c->req);
}

static void start_batch(fgd_call *c, const grpc_op *ops, size_t n, tag *t) {
  c->refs++;
  grpc_call_error e = grpc_call_start_batch(c->call, ops, n, t, NULL);
  if (e != GRPC_CALL_OK) {
    /* Only a bug gets here (ops in the wrong state); never leak the ref. */
    fprintf(stderr, "fulgurd: grpc_call_start_batch: %d\n", (int)e);
    c->refs--;
  }
}

static void send_status_ops(fgd_call *c, grpc_op *op, grpc_status_code code, const char *msg) {
  if (c->has_status_slice) grpc_slice_unref(c->status_slice);
  c->status_slice = grpc_slice_from_copied_string(msg ? msg : "");
  c->has_status_slice = true;
  op->op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  op->data.send_status_from_server.trailing_metadata_count = 0;
  op->data.send_status_from_server.status = code;
  op->data.send_status_from_server.status_details = &c->status_slice;
}

static void unary_answer(fgd_call *c, grpc_byte_buffer *bb, grpc_status_code code, const char *msg) {
  grpc_op ops[4];
  memset(ops, 0, sizeof ops);
  size_t n = 0;
  ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
  if (bb) {
    c->send_bb = bb;
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = bb;
  }
  send_status_ops(c, &ops[n++], code, msg);
  ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
  start_batch(c, ops, n, &c->t_unary);
  call_unref(c); /* the answering reference */
}

void fgd_call_reply(fgd_call *c, const ProtobufCMessage *m) {
  if (c->local) {
    size_t n = protobuf_c_message_get_packed_size(m);
    uint8_t *buf = fg__xmalloc(n ? n : 1);
    protobuf_c_message_pack(m, buf);
    local_answer(c, GRPC_STATUS_OK, "", buf, n);
    free(buf);
    return;
  }
  unary_answer(c, fg_rpc_pack(m), GRPC_STATUS_OK, "");
}

static grpc_byte_buffer *copied_bb(const void *data, size_t len) {
  grpc_slice sl = grpc_slice_from_copied_buffer(data, len);
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&sl, 1);
  grpc_slice_unref(sl);
  return bb;
}

void fgd_call_reply_bytes(fgd_call *c, const void *data, size_t len) {
  if (c->local) {
    local_answer(c, GRPC_STATUS_OK, "", data, len);
    return;
  }
  unary_answer(c, copied_bb(data, len), GRPC_STATUS_OK, "");
}

void fgd_call_fail(fgd_call *c, grpc_status_code code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *msg = NULL;
  if (vasprintf(&msg, fmt, ap) < 0) msg = NULL;
  va_end(ap);
  if (c->local) {
    local_answer(c, code, msg, NULL, 0);
  } else if (c->streaming && !c->finished) {
    fgd_stream_finish(c, code, msg);
  } else {
    unary_answer(c, NULL, code, msg);
  }
  free(msg);
}

/* ---- streams ------------------------------------------------------------- */

void fgd_stream_start(fgd_call *c, fgd_stream_cbs cbs) {
  fgd_server *s = c->srv;
  c->cbs = cbs;
  c->streaming = true;
  c->next = s->streams;
  if (s->streams) s->streams->prev = c;
  s->streams = c;
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  op.data.recv_close_on_server.cancelled = &c->cancelled;
  start_batch(c, &op, 1, &c->t_close);
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_SEND_INITIAL_METADATA;
  start_batch(c, &op, 1, &c->t_status); /* completion only drops the ref */
}

static void stream_send_bb(fgd_call *c, grpc_byte_buffer *bb) {
  c->sending = true;
  if (c->send_bb) grpc_byte_buffer_destroy(c->send_bb);
  c->send_bb = bb;
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_SEND_MESSAGE;
  op.data.send_message.send_message = bb;
  start_batch(c, &op, 1, &c->t_send);
}

void fgd_stream_send(fgd_call *c, const ProtobufCMessage *m) { stream_send_bb(c, fg_rpc_pack(m)); }

void fgd_stream_send_bytes(fgd_call *c, const void *data, size_t len) {
  stream_send_bb(c, copied_bb(data, len));
}

void fgd_stream_finish(fgd_call *c, grpc_status_code code, const char *msg) {
  if (c->finished) return;
  c->finished = true;
  c->cbs = (fgd_stream_cbs){0};
  stream_unlink(c);
  grpc_op op;
  memset(&op, 0, sizeof op);
  send_status_ops(c, &op, code, msg);
  start_batch(c, &op, 1, &c->t_status);
  call_unref(c);
}

bool fgd_stream_closed(const fgd_call *c) { return c->closed; }

/* ---- health and reflection, served here ------------------------------------ */

static void health_watch_push(fgd_call *c) {
  c->health_dirty = false;
  stream_send_bb(c, fgd_health_watch_response(c->srv->health, c->health_service));
}

/* A status changed: push it to every Health.Watch stream on that service
 * that has no send in flight (one that has gets the newest on completion). */
static void on_health_change(void *ctx, const char *service) {
  fgd_server *s = ctx;
  for (fgd_call *c = s->streams; c; c = c->next)
    if (c->method == FGD_M_HEALTH_WATCH && !c->closed && !c->finished &&
        strcmp(c->health_service, service) == 0) {
      if (c->sending) c->health_dirty = true;
      else health_watch_push(c);
    }
}

static void reflection_recv(fgd_call *c) {
  if (c->recv_bb) grpc_byte_buffer_destroy(c->recv_bb);
  c->recv_bb = NULL;
  grpc_op op;
  memset(&op, 0, sizeof op);
  op.op = GRPC_OP_RECV_MESSAGE;
  op.data.recv_message.recv_message = &c->recv_bb;
  start_batch(c, &op, 1, &c->t_recv);
}

static void serve_builtin(fgd_server *s, fgd_call *c) {
  switch (c->method) {
    case FGD_M_HEALTH_CHECK: {
      grpc_status_code code = GRPC_STATUS_OK;
      char *msg = NULL;
      grpc_byte_buffer *bb = fgd_health_check(s->health, c->req, &code, &msg);
      unary_answer(c, code == GRPC_STATUS_OK ? bb : NULL, code, msg);
      if (code != GRPC_STATUS_OK && bb) grpc_byte_buffer_destroy(bb);
      free(msg);
      return;
    }
    case FGD_M_HEALTH_WATCH: {
      c->health_service = fgd_health_watch_service(c->req);
      if (c->health_service == NULL) {
        fgd_call_fail(c, GRPC_STATUS_INVALID_ARGUMENT, "malformed HealthCheckRequest");
        return;
      }
      fgd_stream_start(c, (fgd_stream_cbs){0});
      health_watch_push(c);
      return;
    }
    default: /* reflection: bidi, one answer per request */
      fgd_stream_start(c, (fgd_stream_cbs){0});
      reflection_recv(c);
      return;
  }
}

/* ---- dispatch -------------------------------------------------------------- */

static bool authorized(fgd_server *s, fgd_call *c) {
  if (s->token_header == NULL) return true;
  if (c->method == FGD_M_HEALTH_CHECK || c->method == FGD_M_HEALTH_WATCH) return true;
  for (size_t i = 0; i < c->md.count; i++) {
    if (!grpc_slice_str_cmp(c->md.metadata[i].key, "authorization")) {
      grpc_slice v = c->md.metadata[i].value;
      size_t n = GRPC_SLICE_LENGTH(v), m = strlen(s->token_header);
      if (n != m) return false;
      /* Constant time: the comparison must not tell how much matched. */
      unsigned char diff = 0;
      const unsigned char *p = GRPC_SLICE_START_PTR(v);
      for (size_t k = 0; k < n; k++) diff |= (unsigned char)(p[k] ^ (unsigned char)s->token_header[k]);
      return diff == 0;
    }
  }
  return false;
}

static void on_new_call(fgd_server *s, fgd_call *c, bool ok) {
  if (!ok || s->shutting_down) {
    if (ok && c->call) {
      c->refs++;
      unary_answer(c, NULL, GRPC_STATUS_UNAVAILABLE, "fulgurd is shutting down");
    }
    call_unref(c);
    return;
  }
  post_request(s, c->method);
  /* The posted-request reference becomes the answering reference. The
   * token is checked first: without it, no one learns which methods exist. */
  if (!authorized(s, c)) {
    unary_answer(c, NULL, GRPC_STATUS_UNAUTHENTICATED,
                 "missing or wrong 'authorization: Bearer <token>' metadata");
    return;
  }
  if (c->method < 0) {
    unary_answer(c, NULL, GRPC_STATUS_UNIMPLEMENTED, "unknown method");
    return;
  }
  if (c->method >= FGD_M_HEALTH_CHECK) {
    serve_builtin(s, c);
    return;
  }
  s->on_call(s->ctx, c);
}

static void finish_shutdown(fgd_server *s);

static void on_completion(fgd_server *s, tag *t, bool ok) {
  if (t->kind == T_SHUTDOWN) {
    finish_shutdown(s);
    return;
  }
  fgd_call *c = t->c;
  switch (t->kind) {
    case T_NEW:
      on_new_call(s, c, ok);
      return;
    case T_CLOSE:
      c->closed = true;
      if (c->cbs.on_close) c->cbs.on_close(c->cbs.ctx);
      /* A builtin stream has no owner to finish it: end it here. */
      if (c->method >= FGD_M_HEALTH_CHECK && !c->finished) fgd_stream_finish(c, GRPC_STATUS_CANCELLED, "");
      break;
    case T_SEND:
      c->sending = false;
      if (c->method == FGD_M_HEALTH_WATCH) {
        /* Health streams stay open until the client leaves. */
        if (ok && c->health_dirty && !c->finished) health_watch_push(c);
      } else if (c->method >= FGD_M_REFLECTION_V1) {
        if (ok && !c->finished) reflection_recv(c);
      } else if (c->cbs.on_sent) {
        c->cbs.on_sent(c->cbs.ctx, ok);
      }
      break;
    case T_RECV:
      if (c->finished) break;
      if (!ok) {
        fgd_stream_finish(c, GRPC_STATUS_CANCELLED, "");
      } else if (c->recv_bb == NULL) {
        fgd_stream_finish(c, GRPC_STATUS_OK, ""); /* the client half-closed */
      } else {
        grpc_byte_buffer *bb = fgd_reflection_answer(s->reflection, c->recv_bb);
        stream_send_bb(c, bb);
      }
      break;
    default:
      break;
  }
  call_unref(c);
}

static void on_async(uv_async_t *a) {
  fgd_server *s = a->data;
  pthread_mutex_lock(&s->mu);
  /* Swap the lists: the queue thread keeps appending to an empty one. */
  completion *batch = s->pending;
  size_t n = s->n_pending;
  s->pending = s->draining;
  s->cap_pending ^= s->cap_draining;
  s->cap_draining ^= s->cap_pending;
  s->cap_pending ^= s->cap_draining;
  s->draining = batch;
  s->n_pending = 0;
  pthread_mutex_unlock(&s->mu);
  for (size_t i = 0; i < n; i++) on_completion(s, batch[i].tag, batch[i].ok);
}

static void *queue_thread(void *arg) {
  fgd_server *s = arg;
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type == GRPC_QUEUE_SHUTDOWN) break;
    if (ev.type != GRPC_OP_COMPLETE) continue;
    pthread_mutex_lock(&s->mu);
    if (s->n_pending == s->cap_pending) {
      s->cap_pending = s->cap_pending ? 2 * s->cap_pending : 64;
      s->pending = fg__xrealloc(s->pending, s->cap_pending * sizeof *s->pending);
    }
    s->pending[s->n_pending++] = (completion){ev.tag, ev.success != 0};
    pthread_mutex_unlock(&s->mu);
    uv_async_send(&s->async);
  }
  return NULL;
}

/* ---- start and stop ---------------------------------------------------------- */

static char *read_file(const char *path, char **err) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    *err = fg__xasprintf("cannot read '%s': %m", path);
    return NULL;
  }
  size_t cap = 4096, n = 0, r;
  char *buf = fg__xmalloc(cap);
  while ((r = fread(buf + n, 1, cap - n - 1, f)) > 0)
    if ((n += r) + 1 == cap) buf = fg__xrealloc(buf, cap *= 2);
  buf[n] = '\0';
  fclose(f);
  return buf;
}

int fgd_server_start(uv_loop_t *loop, const fgd_server_opts *o, fgd_call_cb on_call, void *ctx,
                     fgd_server **out, char **err) {
  fgd_server *s = fg__xcalloc(1, sizeof *s);
  s->loop = loop;
  s->on_call = on_call;
  s->ctx = ctx;
  s->t_shutdown.kind = T_SHUTDOWN;
  if (o->token) s->token_header = fg__xasprintf("Bearer %s", o->token);
  s->health = fgd_health_create();
  if (fgd_reflection_create(&s->reflection, err)) goto fail;
  grpc_init();
  grpc_arg args[2];
  args[0].type = GRPC_ARG_INTEGER;
  args[0].key = GRPC_ARG_MAX_RECEIVE_MESSAGE_LENGTH;
  args[0].value.integer = (int)o->max_request_bytes;
  args[1].type = GRPC_ARG_INTEGER;
  args[1].key = GRPC_ARG_MAX_CONCURRENT_STREAMS;
  args[1].value.integer = 1000;
  grpc_channel_args ca = {2, args};
  s->server = grpc_server_create(&ca, NULL);
  s->cq = grpc_completion_queue_create_for_next(NULL);
  grpc_server_register_completion_queue(s->server, s->cq, NULL);
  for (int m = 0; m < FGD_M_COUNT; m++)
    s->registered[m] = grpc_server_register_method(s->server, methods[m].path, NULL,
                                                   methods[m].payload, 0);
  grpc_server_credentials *creds;
  if (o->tls_cert_file) {
    char *cert = read_file(o->tls_cert_file, err), *key = cert ? read_file(o->tls_key_file, err) : NULL;
    if (!key) {
      free(cert);
      goto fail_grpc;
    }
    grpc_ssl_pem_key_cert_pair pair = {key, cert};
    creds = grpc_ssl_server_credentials_create(NULL, &pair, 1, 0, NULL);
    free(cert);
    free(key);
  } else {
    creds = grpc_insecure_server_credentials_create();
  }
  s->unix_paths = fg__xcalloc(o->n_listen + 1, sizeof *s->unix_paths);
  for (size_t i = 0; i < o->n_listen; i++) {
    const char *addr = o->listen[i];
    bool is_unix = strncmp(addr, "unix:", 5) == 0;
    /* A unix socket is created 0600: only its owner may talk to the
     * daemon (umask applies at bind; chmod after would leave a window). */
    mode_t old = is_unix ? umask(0177) : 0;
    /* TLS is for TCP: a unix socket is reached only by its owner, and
     * local clients (fulgur, probes) talk to it in plaintext. */
    grpc_server_credentials *lc = creds;
    if (is_unix && o->tls_cert_file) lc = grpc_insecure_server_credentials_create();
    int port = grpc_server_add_http2_port(s->server, addr, lc);
    if (lc != creds) grpc_server_credentials_release(lc);
    if (is_unix) umask(old);
    if (port == 0) {
      *err = fg__xasprintf("cannot listen on '%s'", addr);
      grpc_server_credentials_release(creds);
      goto fail_grpc;
    }
    if (is_unix) s->unix_paths[s->n_unix_paths++] = fg__xstrdup(addr + 5);
  }
  grpc_server_credentials_release(creds);
  grpc_server_start(s->server);
  for (int m = 0; m < FGD_M_COUNT; m++)
    for (int k = 0; k < POSTED_PER_METHOD; k++) post_request(s, m);
  post_request(s, -1);
  pthread_mutex_init(&s->mu, NULL);
  uv_async_init(loop, &s->async, on_async);
  s->async.data = s;
  pthread_create(&s->thread, NULL, queue_thread, s);
  s->thread_started = true;
  fgd_health_on_change(s->health, on_health_change, s);
  fgd_health_set(s->health, "", FGD_HEALTH_SERVING);
  fgd_health_set(s->health, FG_RPC_SERVICE, FGD_HEALTH_SERVING);
  *out = s;
  return 0;
fail_grpc:
  /* Nothing was started: the server and queue go without a shutdown dance. */
  grpc_server_shutdown_and_notify(s->server, s->cq, &s->t_shutdown);
  grpc_server_cancel_all_calls(s->server);
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL);
    if (ev.type == GRPC_OP_COMPLETE && ev.tag == &s->t_shutdown) break;
    if (ev.type == GRPC_OP_COMPLETE && ((tag *)ev.tag)->kind == T_NEW) call_unref(((tag *)ev.tag)->c);
  }
  grpc_server_destroy(s->server);
  grpc_completion_queue_shutdown(s->cq);
  while (grpc_completion_queue_next(s->cq, gpr_inf_future(GPR_CLOCK_REALTIME), NULL).type !=
         GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(s->cq);
  grpc_shutdown();
  for (size_t i = 0; i < s->n_unix_paths; i++) free(s->unix_paths[i]);
  free(s->unix_paths);
fail:
  fgd_reflection_free(s->reflection);
  fgd_health_free(s->health);
  free(s->token_header);
  free(s);
  return -1;
}

void fgd_server_set_health(fgd_server *s, const char *service, int status) {
  fgd_health_set(s->health, service, status);
}

static void on_grace(uv_timer_t *t) {
  fgd_server *s = t->data;
  grpc_server_cancel_all_calls(s->server);
}

void fgd_server_shutdown(fgd_server *s, unsigned grace_ms, void (*done)(void *), void *ctx) {
  if (s->shutting_down) return;
  s->shutting_down = true;
  s->done = done;
  s->done_ctx = ctx;
  fgd_health_set(s->health, "", FGD_HEALTH_NOT_SERVING);
  fgd_health_set(s->health, FG_RPC_SERVICE, FGD_HEALTH_NOT_SERVING);
  /* Streams the daemon owns end with UNAVAILABLE: a watcher reconnects
   * with its last seq to the next daemon and misses nothing. */
  fgd_call *next;
  for (fgd_call *c = s->streams; c; c = next) {
    next = c->next;
    if (c->method < FGD_M_HEALTH_CHECK && c->cbs.on_close) c->cbs.on_close(c->cbs.ctx);
  }
  grpc_server_shutdown_and_notify(s->server, s->cq, &s->t_shutdown);
  uv_timer_init(s->loop, &s->grace);
  s->grace.data = s;
  uv_timer_start(&s->grace, on_grace, grace_ms, 0);
}

static void on_closed_async(uv_handle_t *h) {
  fgd_server *s = h->data;
  free(s->pending);
  free(s->draining);
  pthread_mutex_destroy(&s->mu);
  void (*done)(void *) = s->done;
  void *ctx = s->done_ctx;
  free(s);
  grpc_shutdown();
  if (done) done(ctx);
}

static void on_closed_timer(uv_handle_t *h) {
  fgd_server *s = h->data;
  uv_close((uv_handle_t *)&s->async, on_closed_async);
}

static void finish_shutdown(fgd_server *s) {
  grpc_server_destroy(s->server);
  grpc_completion_queue_shutdown(s->cq);
  pthread_join(s->thread, NULL);
  /* Completions that arrived after the last drain (failed requests). */
  on_async(&s->async);
  grpc_completion_queue_destroy(s->cq);
  for (size_t i = 0; i < s->n_unix_paths; i++) {
    unlink(s->unix_paths[i]);
    free(s->unix_paths[i]);
  }
  free(s->unix_paths);
  fgd_reflection_free(s->reflection);
  fgd_health_free(s->health);
  free(s->token_header);
  uv_timer_stop(&s->grace);
  uv_close((uv_handle_t *)&s->grace, on_closed_timer);
}
