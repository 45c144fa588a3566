/* The worker pipe's framing: each WorkerMessage a worker writes to fd 3 is
 * a little-endian u32 length and that many bytes of protobuf. The decoder
 * is apart from worker.c so it runs without a worker (tests/fuzz). */
#ifndef FGD_FRAMES_H
#define FGD_FRAMES_H

#include <stddef.h>
#include <stdint.h>

#include "fulgur/v1/worker.pb-c.h"

/* A message larger than this is a broken worker, not a big event. */
#define FGD_FRAME_MAX_MESSAGE (16u << 20)

typedef enum {
  FGD_FRAME_MORE,    /* buf holds no whole frame yet */
  FGD_FRAME_MESSAGE, /* *msg decoded; *used bytes consumed */
  FGD_FRAME_BAD      /* a protocol error, *why says which: stop reading */
} fgd_frame_result;

/* Decodes the first frame of buf[0, len). *msg is the caller's to free
 * with fulgur__v1__worker_message__free_unpacked. */
fgd_frame_result fgd_frame_next(const uint8_t *buf, size_t len, size_t *used,
                                Fulgur__V1__WorkerMessage **msg, const char **why);

#endif
