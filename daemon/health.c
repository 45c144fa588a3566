/* gRPC health checking: the status table and the Check/Watch messages
 * (see health.h). The table holds a few names (the server and its
 * services), so it is an array searched linearly. */
#include "health.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fg_rpc.h"
#include "grpc/health/v1/health.pb-c.h"
#include "util/assert.h"
#include "util/xalloc.h"

_Static_assert((int)FGD_HEALTH_UNKNOWN ==
                   (int)GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__UNKNOWN,
               "status values follow health.proto");
_Static_assert((int)FGD_HEALTH_SERVING ==
                   (int)GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVING,
               "status values follow health.proto");
_Static_assert((int)FGD_HEALTH_NOT_SERVING ==
                   (int)GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__NOT_SERVING,
               "status values follow health.proto");
_Static_assert((int)FGD_HEALTH_SERVICE_UNKNOWN ==
                   (int)GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__SERVING_STATUS__SERVICE_UNKNOWN,
               "status values follow health.proto");

typedef struct {
  char *service;
  int status;
} entry;

struct fgd_health {
  entry *v;
  size_t n, cap;
  fgd_health_change_cb cb;
  void *ctx;
};

fgd_health *fgd_health_create(void) { return fg__xcalloc(1, sizeof(fgd_health)); }

void fgd_health_free(fgd_health *h) {
  if (h == NULL) return;
  for (size_t i = 0; i < h->n; i++) free(h->v[i].service);
  free(h->v);
  free(h);
}

static entry *find(const fgd_health *h, const char *service) {
  for (size_t i = 0; i < h->n; i++)
    if (strcmp(h->v[i].service, service) == 0) return &h->v[i];
  return NULL;
}

void fgd_health_set(fgd_health *h, const char *service, int status) {
  FG_ASSERT(status == FGD_HEALTH_UNKNOWN || status == FGD_HEALTH_SERVING ||
         status == FGD_HEALTH_NOT_SERVING);
  if (service == NULL) service = "";
  entry *e = find(h, service);
  if (e != NULL && e->status == status) return;
  if (e == NULL) {
    if (h->n == h->cap) {
      h->cap = h->cap ? 2 * h->cap : 4;
      h->v = fg__xrealloc(h->v, h->cap * sizeof *h->v);
    }
    e = &h->v[h->n++];
    e->service = fg__xstrdup(service);
  }
  e->status = status;
  /* The callback gets the table's copy of the name: service may be one the
   * callback frees. The callback may add entries (moving h->v), so nothing
   * here touches e after it. */
  if (h->cb) h->cb(h->ctx, e->service);
}

int fgd_health_get(const fgd_health *h, const char *service) {
  const entry *e = find(h, service ? service : "");
  return e ? e->status : FGD_HEALTH_SERVICE_UNKNOWN;
}

void fgd_health_on_change(fgd_health *h, fgd_health_change_cb cb, void *ctx) {
  h->cb = cb;
  h->ctx = cb ? ctx : NULL;
}

static grpc_byte_buffer *pack_status(int status) {
  Grpc__Health__V1__HealthCheckResponse resp = GRPC__HEALTH__V1__HEALTH_CHECK_RESPONSE__INIT;
  resp.status = (Grpc__Health__V1__HealthCheckResponse__ServingStatus)status;
  return fg_rpc_pack(&resp.base);
}

static Grpc__Health__V1__HealthCheckRequest *unpack_request(grpc_byte_buffer *req) {
  return (Grpc__Health__V1__HealthCheckRequest *)fg_rpc_unpack(
      &grpc__health__v1__health_check_request__descriptor, req);
}

grpc_byte_buffer *fgd_health_check(fgd_health *h, grpc_byte_buffer *req, grpc_status_code *code,
                                   char **msg) {
  Grpc__Health__V1__HealthCheckRequest *q = unpack_request(req);
  *msg = NULL;
  if (q == NULL) {
    *code = GRPC_STATUS_INVALID_ARGUMENT;
    *msg = fg__xstrdup("malformed HealthCheckRequest");
    return NULL;
  }
  grpc_byte_buffer *bb = NULL;
  int status = fgd_health_get(h, q->service);
  if (status == FGD_HEALTH_SERVICE_UNKNOWN) {
    *code = GRPC_STATUS_NOT_FOUND;
    *msg = fg__xasprintf("unknown service \"%s\"", q->service);
  } else {
    *code = GRPC_STATUS_OK;
    bb = pack_status(status);
  }
  grpc__health__v1__health_check_request__free_unpacked(q, NULL);
  return bb;
}

char *fgd_health_watch_service(grpc_byte_buffer *req) {
  Grpc__Health__V1__HealthCheckRequest *q = unpack_request(req);
  if (q == NULL) return NULL;
  char *s = fg__xstrdup(q->service);
  grpc__health__v1__health_check_request__free_unpacked(q, NULL);
  return s;
}

grpc_byte_buffer *fgd_health_watch_response(fgd_health *h, const char *service) {
  return pack_status(fgd_health_get(h, service));
}
