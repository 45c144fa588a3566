/* Error codes of libfulgur.
 *
 * Every function that can fail returns an int: 0 on success or a negative
 * FG_E* code. A human-readable detail, when the function offers one, is
 * returned through a `char **err` out-parameter: on failure *err is set to a
 * malloc'd message the caller frees with free(); on success it is left alone.
 * Passing err == NULL is allowed and drops the detail.
 *
 * Messages follow one style: lowercase, what failed first, no full stop.
 * Config errors start with "file:line:col: key.path: ".
 */
#ifndef FULGUR_ERROR_H
#define FULGUR_ERROR_H

#include <stdarg.h>

#ifdef __cplusplus
extern "C" {
#endif

/* X(name, value, message). One table gives the enum, fg_err_name() and
 * fg_strerror(), so they can never disagree. */
#define FG_ERRNO_MAP(X)                                   \
  X(EINVAL, -1, "invalid argument")                       \
  X(ENOMEM, -2, "out of memory")                          \
  X(EIO, -3, "input/output error")                        \
  X(ENOENT, -4, "no such file or directory")              \
  X(ECONFIG, -5, "invalid configuration")                 \
  X(ETORCH, -6, "libtorch error")                         \
  X(EDATA, -7, "malformed data")                          \
  X(ECANCELED, -8, "operation cancelled")                 \
  X(ERUN, -9, "run failed")                               \
  X(ENOTFOUND, -10, "not found")                          \
  X(EPERM, -11, "permission denied")                      \
  X(EUNSUPPORTED, -12, "not supported")                  \
  X(EPAUSED, -13, "run paused")

typedef enum {
  FG_OK = 0,
#define FG__ERR_ENUM(name, value, msg) FG_##name = value,
  FG_ERRNO_MAP(FG__ERR_ENUM)
#undef FG__ERR_ENUM
} fg_errcode;

/* The symbolic name ("FG_EINVAL") of a code; "FG_UNKNOWN" for others. */
const char *fg_err_name(int code);

/* A short description of a code; never NULL. */
const char *fg_strerror(int code);

/* Sets *err (when err is not NULL and *err is NULL) to a formatted message
 * and returns code, so a failure path reads `return fg_err_set(err, FG_EIO,
 * "open %s: %s", path, strerror(errno));`. An existing *err is kept: the
 * first, innermost message is the most precise one. */
int fg_err_set(char **err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Replaces *err with "prefix: *err" (prefix formatted), for adding context
 * as an error travels up. Returns code. */
int fg_err_prefix(char **err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#ifdef __cplusplus
}
#endif
#endif
