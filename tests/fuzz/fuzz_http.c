/* The HTTP API's request bodies (daemon/http/json_in.c): the first byte
 * picks the JobService method (fgd_method), the rest is the JSON body.
 * Properties: a body is either refused with a message or fills the
 * request; a filled request packs into bytes that unpack again as that
 * message, and passes through the method's checks (daemon/requests.c), as
 * the REST handler does before it calls the gRPC handler. */
#include <stdlib.h>

#include "fuzz_util.h"
#include "http/json_in.h"
#include "requests.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  fgd_method m = (fgd_method)(data[0] % FGD_M_HEALTH_CHECK);
  const ProtobufCMessageDescriptor *desc = fgd_request_descriptor(m);
  FUZZ_REQUIRE(desc != NULL);
  ProtobufCMessage *msg = calloc(1, desc->sizeof_message);
  protobuf_c_message_init(desc, msg);
  char *bad = fgd_http_json_to_msg((const char *)data + 1, size - 1, msg);
  if (bad) {
    FUZZ_REQUIRE(bad[0] != '\0');
    free(bad);
  } else {
    size_t n = protobuf_c_message_get_packed_size(msg);
    uint8_t *buf = malloc(n ? n : 1);
    FUZZ_REQUIRE(protobuf_c_message_pack(msg, buf) == n);
    ProtobufCMessage *again = protobuf_c_message_unpack(desc, NULL, n, buf);
    FUZZ_REQUIRE(again != NULL);
    free(fgd_request_check(m, again));
    protobuf_c_message_free_unpacked(again, NULL);
    free(buf);
  }
  protobuf_c_message_free_unpacked(msg, NULL);
  return 0;
}
