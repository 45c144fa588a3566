/* The worker pipe's frame decoder (frames.h). */
#include "frames.h"

fgd_frame_result fgd_frame_next(const uint8_t *buf, size_t len, size_t *used,
                                Fulgur__V1__WorkerMessage **msg, const char **why) {
  if (len < 4) return FGD_FRAME_MORE;
  uint32_t n = (uint32_t)buf[0] | (uint32_t)buf[1] << 8 | (uint32_t)buf[2] << 16 |
               (uint32_t)buf[3] << 24;
  /* Judged on the length alone: an oversized frame is never buffered. */
  if (n > FGD_FRAME_MAX_MESSAGE) {
    *why = "worker protocol error: oversized message";
    return FGD_FRAME_BAD;
  }
  if (len - 4 < n) return FGD_FRAME_MORE;
  Fulgur__V1__WorkerMessage *m = fulgur__v1__worker_message__unpack(NULL, n, buf + 4);
  if (m == NULL) {
    *why = "worker protocol error: malformed message";
    return FGD_FRAME_BAD;
  }
  *used = 4 + (size_t)n;
  *msg = m;
  return FGD_FRAME_MESSAGE;
}
