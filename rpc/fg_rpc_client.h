/* A small blocking client for fulgur.v1.JobService over gRPC C core: one
 * channel ("unix:/path.sock" or "host:port", plaintext or TLS), the bearer
 * token sent with every call, unary calls with a deadline and server-stream
 * readers. Used by the `fulgur` command and the benchmarks.
 *
 * Errors are gRPC status codes, not FG_E* codes: every failure a caller can
 * see is one of a call's outcomes (the daemon's answer, or gRPC's own
 * UNAVAILABLE / DEADLINE_EXCEEDED), and callers map those codes to what
 * they need (exit statuses, retries) in one place. Local failures use the
 * same codes: INVALID_ARGUMENT for bad options, INTERNAL for a response
 * that does not parse. GRPC_STATUS_OK is 0, so `if (st)` reads as usual.
 * A detail message, when a function offers one, comes back through
 * `char **details`: on failure it is set to a malloc'd string the caller
 * frees (never NULL, possibly ""); on success it is left alone; passing NULL
 * drops it.
 *
 * Threads: a client may be shared by threads once created (gRPC channels
 * are thread-safe, and every call has its own completion queue); a stream
 * is used by one thread at a time. fg_rpc_client_free must come after the
 * client's last call and stream have finished and been freed.
 */
#ifndef FG_RPC_CLIENT_H
#define FG_RPC_CLIENT_H

#include <grpc/grpc.h>
#include <grpc/status.h>
#include <protobuf-c/protobuf-c.h>
#include <stdbool.h>

typedef struct fg_rpc_client fg_rpc_client;
typedef struct fg_rpc_stream fg_rpc_stream;

typedef struct {
  /* "unix:/path.sock", "unix:///path.sock" or "host:port"; required. */
  const char *target;
  /* Sent as "authorization: Bearer <token>" on every call; NULL or "" for
   * none. Copied. */
  const char *token;
  /* PEM file of the roots that sign the server's certificate; NULL for a
   * plaintext channel. Read at create time. */
  const char *tls_ca_file;
  /* The name the server certificate must carry when it is not the host of
   * `target` (e.g. connecting by IP); NULL = the target's host. */
  const char *tls_server_name;
  /* Deadline of unary calls whose timeout_ms argument is 0; 0 = 30 s. */
  int default_timeout_ms;
  /* Largest message accepted from the server; 0 = 64 MiB (gRPC's own
   * default of 4 MiB is small for a page of 1000 jobs with metrics). */
  int max_recv_bytes;
} fg_rpc_client_opts;

/* Creates a client (calls grpc_init; fg_rpc_client_free calls
 * grpc_shutdown). Does not connect: the channel connects on the first call,
 * so an unreachable daemon shows up as that call's UNAVAILABLE. Returns
 * INVALID_ARGUMENT (no target, unreadable CA file) with *details set and
 * *out untouched. */
grpc_status_code fg_rpc_client_create(const fg_rpc_client_opts *opts, fg_rpc_client **out,
                                      char **details);
/* Destroys the channel. NULL is a no-op. */
void fg_rpc_client_free(fg_rpc_client *c);
/* The target as given; borrowed. */
const char *fg_rpc_client_target(const fg_rpc_client *c);

/* One unary call of `method` (a full path, FG_RPC_METHOD("GetJob")) with
 * `req`, waiting at most timeout_ms (0 = the client's default, < 0 = no
 * deadline). On OK, *resp is the answer unpacked as resp_type (free with
 * protobuf_c_message_free_unpacked(*resp, NULL)); otherwise *resp is NULL
 * and *details says why. A daemon that cannot be reached gives UNAVAILABLE
 * at once (calls do not wait for the channel to become ready). */
grpc_status_code fg_rpc_call(fg_rpc_client *c, const char *method, const ProtobufCMessage *req,
                             const ProtobufCMessageDescriptor *resp_type, int timeout_ms,
                             ProtobufCMessage **resp, char **details);

/* Starts a server-streaming call of `method` with `req`; each message is
 * unpacked as msg_type. timeout_ms bounds the whole stream (<= 0 = none).
 * Only local failures are returned here (*out untouched); a daemon that
 * cannot be reached ends the stream on the first read. Free with
 * fg_rpc_stream_free. */
grpc_status_code fg_rpc_stream_open(fg_rpc_client *c, const char *method,
                                    const ProtobufCMessage *req,
                                    const ProtobufCMessageDescriptor *msg_type, int timeout_ms,
                                    fg_rpc_stream **out, char **details);

typedef enum {
  FG_RPC_READ_MESSAGE = 0, /* *msg is the next message; the caller frees it */
  FG_RPC_READ_END,         /* the stream is over: see fg_rpc_stream_status */
  FG_RPC_READ_TIMEOUT,     /* wait_ms passed with nothing; read again later */
} fg_rpc_read_result;

/* Waits up to wait_ms (< 0 = as long as the stream lasts) for the next
 * message. A timed-out read loses nothing: the next read picks up the same
 * message. After END, further reads return END again. A message that does
 * not parse ends the stream with INTERNAL (the call is cancelled). */
fg_rpc_read_result fg_rpc_stream_read(fg_rpc_stream *s, int wait_ms, ProtobufCMessage **msg);

/* The final status once a read returned END (OK means the server finished
 * the stream normally); *details (may be NULL) is borrowed from the stream,
 * "" when the server sent none. Before END: GRPC_STATUS_UNKNOWN. */
grpc_status_code fg_rpc_stream_status(const fg_rpc_stream *s, const char **details);

/* Cancels the call if it is still going, waits for gRPC to let go of it and
 * frees everything. NULL is a no-op. */
void fg_rpc_stream_free(fg_rpc_stream *s);

/* "INVALID_ARGUMENT" for GRPC_STATUS_INVALID_ARGUMENT, as grpcurl and the
 * gRPC documentation spell them; "UNKNOWN_STATUS" for codes outside 0..16. */
const char *fg_rpc_status_name(grpc_status_code code);

#endif
