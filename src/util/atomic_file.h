/* Atomic file writes (atomic_file.c). */
#ifndef FG_UTIL_ATOMIC_FILE_H
#define FG_UTIL_ATOMIC_FILE_H

#include <stddef.h>

/* Writes data to path atomically: a temp file in the same folder, fsync,
 * rename, fsync of the folder. 0 or FG_EIO with "cannot write PATH: why". */
int fg__write_file_atomic(const char *path, const void *data, size_t len, char **err);

#endif
