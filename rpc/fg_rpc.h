/* Shared by fulgurd and the fulgur client: protobuf-c messages to and from
 * gRPC byte buffers, and the method paths of fulgur.v1.JobService. */
#ifndef FG_RPC_H
#define FG_RPC_H

#include <grpc/byte_buffer.h>
#include <grpc/grpc.h>
#include <protobuf-c/protobuf-c.h>
#include <stdint.h>

#include "fulgur/v1/jobs.pb-c.h"

#define FG_RPC_SERVICE "fulgur.v1.JobService"
#define FG_RPC_METHOD(name) "/" FG_RPC_SERVICE "/" name

/* A byte buffer holding m packed (the caller destroys it). */
grpc_byte_buffer *fg_rpc_pack(const ProtobufCMessage *m);
/* The message in bb, or NULL when bb is NULL or not a valid message of
 * that type (free with protobuf_c_message_free_unpacked). */
ProtobufCMessage *fg_rpc_unpack(const ProtobufCMessageDescriptor *d, grpc_byte_buffer *bb);
/* Unix time in nanoseconds. */
int64_t fg_rpc_now_ns(void);
/* Names of the enums as users type and read them: "fit", "running". */
const char *fg_rpc_stage_name(Fulgur__V1__Stage s);
const char *fg_rpc_state_name(Fulgur__V1__JobState s);
/* The enum for a name (case-insensitive), or 0 (UNSPECIFIED) when none. */
Fulgur__V1__Stage fg_rpc_stage_parse(const char *name);
Fulgur__V1__JobState fg_rpc_state_parse(const char *name);

#endif
