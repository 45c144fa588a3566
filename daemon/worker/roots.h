/* Which files a job may name: every path-valued key of a checked config
 * must resolve, after symlinks, under one of the allowed root folders. */
#ifndef FG_WORKER_ROOTS_H
#define FG_WORKER_ROOTS_H

#include <stddef.h>

#include "fulgur/config.h"

/* Checks config (a checked config: split configs expanded, defaults filled).
 * Relative paths resolve against cwd. Returns 0, or FG_EPERM with *err =
 * "key.path: 'value' resolves to '/real' outside the allowed roots (...)"
 * (caller frees). roots must be absolute, real paths. */
int fg_roots_check(const fg_node *config, const char *cwd, const char *const *roots,
                   size_t n_roots, char **err);

#endif
