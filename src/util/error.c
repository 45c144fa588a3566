#include "fulgur/error.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *fg_err_name(int code) {
  switch (code) {
    case FG_OK:
      return "FG_OK";
#define FG__ERR_NAME(name, value, msg) \
  case FG_##name:                      \
    return "FG_" #name;
      FG_ERRNO_MAP(FG__ERR_NAME)
#undef FG__ERR_NAME
  }
  return "FG_UNKNOWN";
}

const char *fg_strerror(int code) {
  switch (code) {
    case FG_OK:
      return "success";
#define FG__ERR_MSG(name, value, msg) \
  case FG_##name:                     \
    return msg;
      FG_ERRNO_MAP(FG__ERR_MSG)
#undef FG__ERR_MSG
  }
  return "unknown error";
}

static char *vformat(const char *fmt, va_list ap) {
  char *s = NULL;
  if (vasprintf(&s, fmt, ap) < 0) return NULL;
  return s;
}

int fg_err_set(char **err, int code, const char *fmt, ...) {
  if (err == NULL || *err != NULL) return code;
  va_list ap;
  va_start(ap, fmt);
  *err = vformat(fmt, ap);
  va_end(ap);
  return code;
}

int fg_err_prefix(char **err, int code, const char *fmt, ...) {
  if (err == NULL) return code;
  va_list ap;
  va_start(ap, fmt);
  char *prefix = vformat(fmt, ap);
  va_end(ap);
  if (prefix == NULL) return code;
  if (*err == NULL) {
    *err = prefix;
    return code;
  }
  char *joined = NULL;
  if (asprintf(&joined, "%s: %s", prefix, *err) >= 0) {
    free(*err);
    *err = joined;
  }
  free(prefix);
  return code;
}
