/* Whole-file reads. */
#ifndef FG_UTIL_FILE_H
#define FG_UTIL_FILE_H

#include <stddef.h>

/* Reads the regular file at path into *data (malloc'd, NUL-terminated; the
 * caller frees it) and its length into *len. A missing file is FG_ENOENT,
 * anything else that stops the read FG_EIO; both name the path. */
int fg__read_file(const char *path, char **data, size_t *len, char **err);

#endif
