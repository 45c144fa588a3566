/* protobuf-c <-> grpc_byte_buffer. One slice, packed in place. */
#include <grpc/byte_buffer_reader.h>
#include <grpc/slice.h>
#include <ctype.h>
#include <strings.h>
#include <time.h>

#include "fg_rpc.h"
#include "fulgur/stage.h"

grpc_byte_buffer *fg_rpc_pack(const ProtobufCMessage *m) {
  size_t n = protobuf_c_message_get_packed_size(m);
  grpc_slice s = grpc_slice_malloc(n);
  protobuf_c_message_pack(m, GRPC_SLICE_START_PTR(s));
  grpc_byte_buffer *bb = grpc_raw_byte_buffer_create(&s, 1);
  grpc_slice_unref(s);
  return bb;
}

ProtobufCMessage *fg_rpc_unpack(const ProtobufCMessageDescriptor *d, grpc_byte_buffer *bb) {
  if (bb == NULL) return NULL;
  grpc_byte_buffer_reader r;
  if (!grpc_byte_buffer_reader_init(&r, bb)) return NULL;
  grpc_slice s = grpc_byte_buffer_reader_readall(&r);
  grpc_byte_buffer_reader_destroy(&r);
  /* unpack copies what it keeps, so the slice can go at once. */
  ProtobufCMessage *m =
      protobuf_c_message_unpack(d, NULL, GRPC_SLICE_LENGTH(s), GRPC_SLICE_START_PTR(s));
  grpc_slice_unref(s);
  return m;
}

int64_t fg_rpc_now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

/* The wire's stages are the engine's (fulgur/stage.h), number for number,
 * so their names come from the one table. */
_Static_assert((int)FULGUR__V1__STAGE__FIT == (int)FG_STAGE_FIT &&
                   (int)FULGUR__V1__STAGE__PREDICT == (int)FG_STAGE_PREDICT,
               "jobs.proto's Stage and fg_stage disagree");
static const char *const state_names[] = {"unspecified", "queued",    "running", "succeeded",
                                          "failed",      "cancelled", "paused"};
#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

const char *fg_rpc_stage_name(Fulgur__V1__Stage s) {
  return s == FULGUR__V1__STAGE__STAGE_UNSPECIFIED ? "unspecified" : fg_stage_name((fg_stage)s);
}

const char *fg_rpc_state_name(Fulgur__V1__JobState s) {
  return (unsigned)s < N_OF(state_names) ? state_names[s] : "unknown";
}

/* Case-insensitive, as the RPC's enum names are upper case ("FIT"). */
Fulgur__V1__Stage fg_rpc_stage_parse(const char *name) {
  char low[16];
  size_t n = 0;
  for (; name && name[n] && n + 1 < sizeof low; n++) low[n] = (char)tolower((unsigned char)name[n]);
  low[n] = '\0';
  if (name == NULL || name[n] != '\0') return FULGUR__V1__STAGE__STAGE_UNSPECIFIED;
  return (Fulgur__V1__Stage)fg_stage_parse(low);
}

Fulgur__V1__JobState fg_rpc_state_parse(const char *name) {
  for (unsigned i = 1; name && i < N_OF(state_names); i++)
    if (strcasecmp(name, state_names[i]) == 0) return (Fulgur__V1__JobState)i;
  return FULGUR__V1__JOB_STATE__JOB_STATE_UNSPECIFIED;
}
