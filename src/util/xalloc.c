#include "util/xalloc.h"
#include "util/oom.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define OOM_PREFIX "fulgur: out of memory allocating"

bool fg__oom_text(const char *s) {
  static const char *const marks[] = {OOM_PREFIX, "can't allocate memory", "bad_alloc",
                                      "Cannot allocate memory", "out of memory"};
  for (size_t i = 0; s && i < sizeof marks / sizeof marks[0]; i++)
    if (strstr(s, marks[i])) return true;
  return false;
}

static void oom(size_t n) {
  fprintf(stderr, OOM_PREFIX " %zu bytes\n", n);
  abort();
}

void *fg__xmalloc(size_t n) {
  void *p = malloc(n ? n : 1);
  if (p == NULL) oom(n);
  return p;
}

void *fg__xcalloc(size_t n, size_t size) {
  void *p = calloc(n ? n : 1, size ? size : 1);
  if (p == NULL) oom(n * size);
  return p;
}

void *fg__xrealloc(void *p, size_t n) {
  void *q = realloc(p, n ? n : 1);
  if (q == NULL) oom(n);
  return q;
}

char *fg__xstrdup(const char *s) {
  char *p = strdup(s);
  if (p == NULL) oom(strlen(s) + 1);
  return p;
}

char *fg__xstrndup(const char *s, size_t n) {
  char *p = strndup(s, n);
  if (p == NULL) oom(n + 1);
  return p;
}

char *fg__xasprintf(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *s = NULL;
  int r = vasprintf(&s, fmt, ap);
  va_end(ap);
  if (r < 0) oom(0);
  return s;
}
