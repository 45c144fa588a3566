/* The proto3 JSON mapping of any protobuf-c message, as the CLI's --json
 * and fulgurd's HTTP API both print fulgur.v1 messages: lowerCamelCase
 * names, enums by name, every scalar and repeated field present (as
 * python3-protobuf's MessageToDict with including_default_value_fields),
 * message fields only when set, map fields as objects, only the set member
 * of a oneof, bytes in base64, int64 as the writer's int64_strings says.
 * Driven by the message's protobuf-c descriptor, so a field added to the
 * .proto appears in both outputs without a line here (a hand-listed
 * renderer had already missed Job.memory_limit). */
#ifndef FG_JSON_MSG_H
#define FG_JSON_MSG_H

#include <protobuf-c/protobuf-c.h>

#include "json.h"

void fg__json_message(fg_json_writer *w, const ProtobufCMessage *m);

#endif
