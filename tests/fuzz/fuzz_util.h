/* Shared by the harnesses: readers that take a path get the input as a
 * file of this process's own. */
#ifndef FG_FUZZ_UTIL_H
#define FG_FUZZ_UTIL_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

/* Writes data to a file named after the process and suffix and returns its
 * path (static storage, the same for every call with the same suffix). */
static inline const char *fuzz_file(const uint8_t *data, size_t size, const char *suffix) {
  static char path[256];
  const char *dir = getenv("TMPDIR");
  snprintf(path, sizeof path, "%s/fuzz-%d%s", dir && *dir ? dir : "/tmp", (int)getpid(), suffix);
  FILE *f = fopen(path, "wb");
  if (f == NULL || fwrite(data, 1, size, f) != size || fclose(f) != 0) abort();
  return path;
}

/* A property every answer must have: the harness stops here (libFuzzer
 * reports it as a crash with the input) when it does not hold. */
#define FUZZ_REQUIRE(cond)                                                       \
  do {                                                                           \
    if (!(cond)) {                                                               \
      fprintf(stderr, "%s:%d: property failed: %s\n", __FILE__, __LINE__, #cond); \
      abort();                                                                   \
    }                                                                            \
  } while (0)

#endif
