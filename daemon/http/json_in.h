/* Request bodies of the HTTP API: a JSON object in the proto3 JSON mapping
 * into a protobuf-c message (json_in.c). Apart from the server so it runs
 * without one (tests/fuzz/fuzz_http.c). */
#ifndef FGD_HTTP_JSON_IN_H
#define FGD_HTTP_JSON_IN_H

#include <protobuf-c/protobuf-c.h>
#include <stddef.h>

/* Fills msg (initialised, of any descriptor) from the JSON object in
 * json[0..len): lowerCamelCase or the proto names; enums by name or
 * number; 64-bit integers as numbers or strings; null as the default.
 * Returns NULL, or what is wrong and where (caller frees), to be answered
 * 400. Fields it set are msg's: protobuf_c_message_free_unpacked frees
 * them (with msg). */
char *fgd_http_json_to_msg(const char *json, size_t len, ProtobufCMessage *msg);

#endif
