#include "util/xalloc.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static void oom(size_t n) {
  fprintf(stderr, "fulgur: out of memory allocating %zu bytes\n", n);
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
