/* The worker pipe's frame decoder (daemon/frames.c) on an arbitrary byte
 * stream, read as fulgurd reads it: frames are taken off the front while
 * whole ones are there, and a protocol error ends the stream. Each message
 * is then read the way daemon/worker.c reads it. Properties: the decoder
 * never consumes more than it was given, and a frame past the size limit
 * is refused from its length alone. */
#include <string.h>

#include "frames.h"
#include "fuzz_util.h"

/* What worker.c's on_event and on_progress read of a message. */
static size_t touch(const Fulgur__V1__WorkerMessage *m) {
  size_t n = 0;
  switch (m->kind_case) {
    case FULGUR__V1__WORKER_MESSAGE__KIND_EVENT: {
      const Fulgur__V1__JobEvent *ev = m->event;
      const Fulgur__V1__Scalars *sc = ev->kind_case == FULGUR__V1__JOB_EVENT__KIND_STEP    ? ev->step
                                      : ev->kind_case == FULGUR__V1__JOB_EVENT__KIND_EPOCH ? ev->epoch
                                                                                           : NULL;
      if (sc)
        for (size_t i = 0; i < sc->n_values; i++) n += strlen(sc->values[i]->key);
      if (ev->kind_case == FULGUR__V1__JOB_EVENT__KIND_ARTIFACT)
        n += strlen(ev->artifact->path) + strlen(ev->artifact->kind);
      n += protobuf_c_message_get_packed_size(&ev->base);
      break;
    }
    case FULGUR__V1__WORKER_MESSAGE__KIND_PROGRESS:
      n += strlen(m->progress->split);
      break;
    case FULGUR__V1__WORKER_MESSAGE__KIND_RESULT:
      n += strlen(m->result->message);
      break;
    default: break;
  }
  return n;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  size_t off = 0;
  for (;;) {
    Fulgur__V1__WorkerMessage *m = NULL;
    const char *why = NULL;
    size_t used = 0;
    fgd_frame_result r = fgd_frame_next(data + off, size - off, &used, &m, &why);
    if (r == FGD_FRAME_MORE) break;
    if (r == FGD_FRAME_BAD) {
      FUZZ_REQUIRE(why != NULL);
      break;
    }
    FUZZ_REQUIRE(used >= 4 && used <= size - off);
    (void)touch(m);
    fulgur__v1__worker_message__free_unpacked(m, NULL);
    off += used;
  }
  return 0;
}
