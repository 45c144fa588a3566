/* bench_echo_server: the floor under fulgurd's GetJob, for bench_daemon_load.
 *
 *   bench_echo_server --listen unix:PATH
 *
 * A bare gRPC C-core server with one registered unary method,
 * /fulgur.bench.Echo/Echo, that answers each request with its own bytes:
 * no parsing, no job table, no event loop, one completion-queue thread.
 * The load client calls it exactly as it calls GetJob (a GetJobRequest's
 * bytes read back as a Job: both start with the string field 1), so the
 * ratio of the two rates is what fulgurd adds over gRPC itself. Runs
 * until SIGTERM or SIGINT. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <grpc/grpc.h>
#include <grpc/grpc_security.h>
#include <grpc/support/time.h>

#define IN_FLIGHT 16 /* calls requested ahead, so none waits for a request */

typedef struct {
  grpc_call *call;
  gpr_timespec deadline;
  grpc_metadata_array md;
  grpc_byte_buffer *payload;
  int cancelled;
  int stage; /* 0 waiting for a call, 1 answering */
} echo_call;

static grpc_server *server;
static grpc_completion_queue *cq;
static void *method;
static volatile sig_atomic_t stop;

static void on_signal(int sig) { stop = 1; }

static void request(echo_call *c) {
  memset(c, 0, sizeof *c);
  grpc_metadata_array_init(&c->md);
  grpc_call_error e = grpc_server_request_registered_call(server, method, &c->call, &c->deadline,
                                                          &c->md, &c->payload, cq, cq, c);
  if (e != GRPC_CALL_OK) {
    fprintf(stderr, "bench_echo_server: request_registered_call: %d\n", (int)e);
    exit(1);
  }
}

static void answer(echo_call *c) {
  grpc_op ops[4];
  memset(ops, 0, sizeof ops);
  size_t n = 0;
  ops[n++].op = GRPC_OP_SEND_INITIAL_METADATA;
  if (c->payload) { /* a request without a message is answered by its status alone */
    ops[n].op = GRPC_OP_SEND_MESSAGE;
    ops[n++].data.send_message.send_message = c->payload;
  }
  ops[n].op = GRPC_OP_SEND_STATUS_FROM_SERVER;
  ops[n++].data.send_status_from_server.status = GRPC_STATUS_OK;
  ops[n].op = GRPC_OP_RECV_CLOSE_ON_SERVER;
  ops[n++].data.recv_close_on_server.cancelled = &c->cancelled;
  c->stage = 1;
  grpc_call_error e = grpc_call_start_batch(c->call, ops, n, c, NULL);
  if (e != GRPC_CALL_OK) {
    fprintf(stderr, "bench_echo_server: start_batch: %d\n", (int)e);
    exit(1);
  }
}

int main(int argc, char **argv) {
  const char *listen = NULL;
  for (int i = 1; i + 1 < argc; i += 2)
    if (strcmp(argv[i], "--listen") == 0) listen = argv[i + 1];
  if (!listen) {
    fprintf(stderr, "usage: bench_echo_server --listen ADDR\n");
    return 2;
  }
  struct sigaction sa = {0};
  sa.sa_handler = on_signal;
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  grpc_init();
  server = grpc_server_create(NULL, NULL);
  cq = grpc_completion_queue_create_for_next(NULL);
  grpc_server_register_completion_queue(server, cq, NULL);
  method = grpc_server_register_method(server, "/fulgur.bench.Echo/Echo", NULL,
                                       GRPC_SRM_PAYLOAD_READ_INITIAL_BYTE_BUFFER, 0);
  grpc_server_credentials *creds = grpc_insecure_server_credentials_create();
  int port = grpc_server_add_http2_port(server, listen, creds);
  grpc_server_credentials_release(creds);
  if (port == 0) {
    fprintf(stderr, "bench_echo_server: cannot listen on %s\n", listen);
    return 1;
  }
  grpc_server_start(server);
  echo_call *calls = calloc(IN_FLIGHT, sizeof *calls);
  for (int i = 0; i < IN_FLIGHT; i++) request(&calls[i]);
  while (!stop) {
    grpc_event ev = grpc_completion_queue_next(
        cq, gpr_time_add(gpr_now(GPR_CLOCK_MONOTONIC), gpr_time_from_millis(200, GPR_TIMESPAN)), NULL);
    if (ev.type != GRPC_OP_COMPLETE) continue;
    echo_call *c = ev.tag;
    if (c->stage == 0) {
      if (!ev.success) continue; /* shutting down */
      answer(c);
    } else {
      grpc_call_unref(c->call);
      if (c->payload) grpc_byte_buffer_destroy(c->payload);
      grpc_metadata_array_destroy(&c->md);
      request(c);
    }
  }
  grpc_server_shutdown_and_notify(server, cq, NULL);
  grpc_server_cancel_all_calls(server);
  for (;;) {
    grpc_event ev = grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL);
    if (ev.type == GRPC_OP_COMPLETE && ev.tag == NULL) break;
    echo_call *c = ev.tag;
    if (ev.type == GRPC_OP_COMPLETE && c->stage == 1) {
      grpc_call_unref(c->call);
      if (c->payload) grpc_byte_buffer_destroy(c->payload);
      c->payload = NULL;
    }
  }
  grpc_server_destroy(server);
  grpc_completion_queue_shutdown(cq);
  while (grpc_completion_queue_next(cq, gpr_inf_future(GPR_CLOCK_MONOTONIC), NULL).type != GRPC_QUEUE_SHUTDOWN) {
  }
  grpc_completion_queue_destroy(cq);
  free(calls);
  grpc_shutdown();
  return 0;
}
