/* gRPC health checking (grpc.health.v1.Health) for fulgurd: the table of
 * serving statuses and the messages of Check and Watch.
 *
 * A pure message handler like reflection.h: the server core receives the
 * calls and sends what these functions return. The core sets "" (the whole
 * server) and each served service to SERVING when it starts serving and to
 * NOT_SERVING when shutdown starts; the kubelet's gRPC probe asks for "".
 *
 * Not thread-safe: use a table from one thread (the loop thread). */
#ifndef FGD_HEALTH_H
#define FGD_HEALTH_H

#include <grpc/byte_buffer.h>
#include <grpc/status.h>

/* Method paths to register: Check is unary, Watch server-streaming. */
#define FGD_HEALTH_CHECK_METHOD "/grpc.health.v1.Health/Check"
#define FGD_HEALTH_WATCH_METHOD "/grpc.health.v1.Health/Watch"

/* HealthCheckResponse.ServingStatus, same values. */
enum {
  FGD_HEALTH_UNKNOWN = 0,
  FGD_HEALTH_SERVING = 1,
  FGD_HEALTH_NOT_SERVING = 2,
  FGD_HEALTH_SERVICE_UNKNOWN = 3 /* only in Watch answers; never stored */
};

typedef struct fgd_health fgd_health;

/* Runs after a service's status changed (or a service got its first
 * status), with the service's name; "" is the whole server. The name is
 * only valid during the call. The callback may call fgd_health_set. */
typedef void (*fgd_health_change_cb)(void *ctx, const char *service);

/* An empty table: every service is unknown. Cannot fail (aborts on out of
 * memory). Free with fgd_health_free. */
fgd_health *fgd_health_create(void);

/* Frees h; NULL is a no-op. The change callback does not run. */
void fgd_health_free(fgd_health *h);

/* Sets service's status to FGD_HEALTH_UNKNOWN, _SERVING or _NOT_SERVING
 * (anything else is a bug and asserts). service NULL means "". The change
 * callback runs, before this returns, only when the status differs from
 * what the table held. */
void fgd_health_set(fgd_health *h, const char *service, int status);

/* service's status, or FGD_HEALTH_SERVICE_UNKNOWN for a name never set.
 * service NULL means "". */
int fgd_health_get(const fgd_health *h, const char *service);

/* Sets (replacing any earlier one) or, with cb NULL, removes the change
 * callback. ctx is the caller's and must stay valid while set: the table
 * never frees it. */
void fgd_health_on_change(fgd_health *h, fgd_health_change_cb cb, void *ctx);

/* Answers Check. req (a HealthCheckRequest) stays the caller's. Returns a
 * HealthCheckResponse the caller destroys, with *code GRPC_STATUS_OK and
 * *msg NULL; or NULL with *code GRPC_STATUS_NOT_FOUND (a service never
 * set, as the health protocol wants) or GRPC_STATUS_INVALID_ARGUMENT
 * (req NULL or malformed) and *msg a message the caller frees. */
grpc_byte_buffer *fgd_health_check(fgd_health *h, grpc_byte_buffer *req, grpc_status_code *code,
                                   char **msg);

/* The service a Watch request names, as a string the caller frees; NULL
 * when req is NULL or malformed (answer INVALID_ARGUMENT). */
char *fgd_health_watch_service(grpc_byte_buffer *req);

/* One Watch message: service's current status, SERVICE_UNKNOWN for a name
 * never set (Watch does not fail on those; it reports the status once the
 * service gets one). The caller destroys the buffer. Cannot fail. */
grpc_byte_buffer *fgd_health_watch_response(fgd_health *h, const char *service);

#endif
