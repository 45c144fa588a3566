/* The stateless half of every JobService handler: which message a method
 * takes and the checks a request must pass before any job is looked up.
 * Apart from rpc.c so it runs without a server (tests/fuzz/fuzz_rpc.c). */
#ifndef FGD_REQUESTS_H
#define FGD_REQUESTS_H

#include <protobuf-c/protobuf-c.h>
#include <stdint.h>

#include "server.h"

/* The request message of a JobService method; NULL for the others. */
const ProtobufCMessageDescriptor *fgd_request_descriptor(fgd_method m);

/* Checks an unpacked request of method m: NULL when it may go on, or what
 * is wrong with it (the caller frees), to be answered INVALID_ARGUMENT. */
char *fgd_request_check(fgd_method m, const ProtobufCMessage *req);

/* ListJobs' page token: 0 and *after (the submission rank after which the
 * page starts; 0 for ""), or -1 when it is not one the server gave. */
int fgd_list_page_after(const char *token, long long *after);

#endif
