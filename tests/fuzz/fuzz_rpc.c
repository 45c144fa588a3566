/* Every RPC request handler's decode and checks, without a network: the
 * first byte picks the method (fgd_method), the rest is the request
 * message. JobService requests go through what rpc.c's request() does
 * (daemon/requests.c); Health and reflection through their pure message
 * handlers (daemon/health.c, daemon/reflection.c). Properties: a request
 * either decodes or is refused; the handlers always answer. */
#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <grpc/slice.h>
#include <stdlib.h>

#include "fuzz_util.h"
#include "health.h"
#include "reflection.h"
#include "requests.h"

static fgd_health *health;
static fgd_reflection *reflection;

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  (void)argc;
  (void)argv;
  health = fgd_health_create();
  fgd_health_set(health, "", FGD_HEALTH_SERVING);
  fgd_health_set(health, "fulgur.v1.JobService", FGD_HEALTH_SERVING);
  char *err = NULL;
  FUZZ_REQUIRE(fgd_reflection_create(&reflection, &err) == 0);
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  fgd_method m = (fgd_method)(data[0] % FGD_M_COUNT);
  const uint8_t *body = data + 1;
  size_t n = size - 1;
  const ProtobufCMessageDescriptor *desc = fgd_request_descriptor(m);
  if (desc) {
    ProtobufCMessage *req = protobuf_c_message_unpack(desc, NULL, n, body);
    if (req) {
      free(fgd_request_check(m, req));
      protobuf_c_message_free_unpacked(req, NULL);
    }
    return 0;
  }
  grpc_slice s = grpc_slice_from_copied_buffer((const char *)body, n);
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
  grpc_slice_unref(s);
  grpc_byte_buffer *out = NULL;
  if (m == FGD_M_HEALTH_CHECK) {
    grpc_status_code code;
    char *msg = NULL;
    out = fgd_health_check(health, bb, &code, &msg);
    FUZZ_REQUIRE((out != NULL) == (code == GRPC_STATUS_OK));
    free(msg);
  } else if (m == FGD_M_HEALTH_WATCH) {
    char *service = fgd_health_watch_service(bb);
    if (service) out = fgd_health_watch_response(health, service);
    free(service);
  } else {
    out = fgd_reflection_answer(reflection, bb);
    FUZZ_REQUIRE(out != NULL);
  }
  if (out) grpc_byte_buffer_destroy(out);
  grpc_byte_buffer_destroy(bb);
  return 0;
}
