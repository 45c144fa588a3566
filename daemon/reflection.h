/* gRPC server reflection (grpc.reflection.v1 and v1alpha) for fulgurd.
 *
 * gRPC C core has no reflection service, so fulgurd answers it from the
 * descriptor set the build embeds (fg_descriptor_set: every served proto
 * and its imports, made by protoc-c --include_imports). This module is a
 * pure message handler: one ServerReflectionRequest in, one
 * ServerReflectionResponse out. The server core drives the bidi stream
 * (ServerReflectionInfo) and calls fgd_reflection_answer once per request
 * it reads. v1 and v1alpha are identical on the wire, so the same call
 * serves both method paths.
 *
 * Answers, as grpc's C++ reflection server gives them:
 * - list_services: the fully-qualified name of every service in the set.
 * - file_by_filename, file_containing_symbol, file_containing_extension:
 *   the file's serialized FileDescriptorProto first (grpcurl takes the
 *   first one as the answer), then all its transitive dependencies, each
 *   once. The bytes are those of the embedded set, byte for byte.
 *   Symbols are fully-qualified, without a leading dot (one is tolerated):
 *   services, methods, messages (nested too), fields, oneofs, enums, enum
 *   values (scoped like protobuf does: "pkg.VALUE"), extensions.
 * - all_extension_numbers_of_type: the numbers of the extensions of a
 *   known message type (none, unless a served file defines extensions).
 * - unknown file, symbol, type or extension: error_response NOT_FOUND (5).
 * - a request that does not parse, or sets none of message_request:
 *   error_response INVALID_ARGUMENT (3).
 * Every response echoes the request as original_request (when it parsed)
 * and its host as valid_host. Errors travel in error_response; the stream
 * itself stays OK, as the protocol wants. */
#ifndef FGD_REFLECTION_H
#define FGD_REFLECTION_H

#include <grpc/byte_buffer.h>
#include <stddef.h>

/* Method paths to register (both bidi streaming: GRPC_SRM_PAYLOAD_NONE). */
#define FGD_REFLECTION_V1_METHOD "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo"
#define FGD_REFLECTION_V1ALPHA_METHOD \
  "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo"

typedef struct fgd_reflection fgd_reflection;

/* Parses and indexes the embedded descriptor set. Returns 0 and sets *out
 * (free with fgd_reflection_free), or a negative FG_E* code (FG_EDATA: the
 * set is malformed, has a file twice or lacks an imported file) with *err
 * set to a message the caller frees (when err is not NULL). */
int fgd_reflection_create(fgd_reflection **out, char **err);

/* The same from any serialized google.protobuf.FileDescriptorSet (the
 * bytes are copied; tests use it for sets with imports). */
int fgd_reflection_create_from(const void *set, size_t size, fgd_reflection **out, char **err);

/* Answers one request. request stays the caller's (it may be NULL, which
 * is answered as malformed); the result is a new byte buffer the caller
 * destroys with grpc_byte_buffer_destroy. Never NULL: every failure is an
 * error_response inside it. r is only read, so any thread may call this
 * concurrently with others on the same r. */
grpc_byte_buffer *fgd_reflection_answer(const fgd_reflection *r, grpc_byte_buffer *request);

/* Frees r; NULL is a no-op. */
void fgd_reflection_free(fgd_reflection *r);

#endif
