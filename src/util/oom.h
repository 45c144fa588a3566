/* Running out of memory, as fulgur's processes meet it under fulgurd's
 * limits (implemented in xalloc.c, beside the abort message it knows). */
#ifndef FG_UTIL_OOM_H
#define FG_UTIL_OOM_H

#include <stdbool.h>
#include <stddef.h>

/* Whether an error text says an allocation failed: the xalloc helpers'
 * abort message, libtorch's allocator ("can't allocate memory"), an
 * uncaught or caught std::bad_alloc, strerror(ENOMEM), fg_strerror(FG_ENOMEM).
 * A worker under fulgurd's memory limit fails with one of them; the worker
 * and the daemon both ask here, so they agree on what "out of memory" is. */
bool fg__oom_text(const char *s);

#endif
