/* The worker's event sink: events become length-prefixed WorkerMessages on
 * a pipe to fulgurd.
 *
 * The training thread never writes to the pipe itself: emit packs the
 * message into a bounded queue and a writer thread drains it, so a daemon
 * that is momentarily slow to read costs training nothing until the queue
 * (FG_PIPE_QUEUE_BYTES) is full; only then does emit wait, so no event is
 * ever dropped. PROGRESS events are coalesced: at most one every 100 ms
 * reaches the pipe, and the latest one is always sent before the result. */
#ifndef FG_WORKER_PIPE_SINK_H
#define FG_WORKER_PIPE_SINK_H

#include <stdbool.h>

#include "fulgur/events.h"
#include "fulgur/outcome.h"

#define FG_PIPE_QUEUE_BYTES (4u << 20)

typedef struct fg_pipe_sink fg_pipe_sink;

/* Takes ownership of fd (closed by fg_pipe_sink_free). split names the
 * loop whose position is the job's percentage ("fit" for fit, "val" for
 * validate, ...; a static string). Starts the writer thread; returns NULL
 * (with errno) when it cannot. */
fg_pipe_sink *fg_pipe_sink_create(int fd, const char *split);
/* The sink to add to an event bus. Its close does nothing: the owner
 * finishes with fg_pipe_sink_free. */
fg_sink fg_pipe_sink_as_sink(fg_pipe_sink *s);
/* Queues the final message (the run's outcome; message: why;
 * config_error: a failure a retry would repeat), flushes everything, stops
 * the writer and closes the pipe. Returns 0, or -1 when the pipe broke
 * (the daemon is gone). */
int fg_pipe_sink_free(fg_pipe_sink *s, fg_outcome outcome, const char *message, bool config_error);

#endif
