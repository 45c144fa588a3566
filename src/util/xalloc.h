/* Allocation helpers that abort on out-of-memory.
 *
 * Small, bounded allocations (nodes, values, names) use these: a process
 * that cannot get a few bytes cannot report anything useful either, and
 * checking every one would bury the real error paths. Large, input-sized
 * buffers (a dataset, a file) use plain malloc and return FG_ENOMEM. */
#ifndef FG_UTIL_XALLOC_H
#define FG_UTIL_XALLOC_H

#include <stddef.h>

void *fg__xmalloc(size_t n);
void *fg__xcalloc(size_t n, size_t size);
void *fg__xrealloc(void *p, size_t n);
char *fg__xstrdup(const char *s);
char *fg__xstrndup(const char *s, size_t n);
/* asprintf that aborts on failure. */
char *fg__xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif
