/* Sizes in bytes (bytes.h). */
#include "util/bytes.h"

#include <ctype.h>
#include <stdio.h>

static const char suffixes[] = "KMGT";

int fg__bytes_parse(const char *s, uint64_t *out) {
  if (s == NULL || !isdigit((unsigned char)*s)) return -1;
  uint64_t v = 0;
  for (; isdigit((unsigned char)*s); s++) {
    unsigned d = (unsigned)(*s - '0');
    if (v > (UINT64_MAX - d) / 10) return -1;
    v = v * 10 + d;
  }
  int shift = 0;
  for (int i = 0; suffixes[i]; i++)
    if (toupper((unsigned char)*s) == suffixes[i]) {
      shift = 10 * (i + 1);
      s++;
      if (*s == 'i') s++;
      break;
    }
  if (*s == 'B' || *s == 'b') s++;
  if (*s != '\0' || v == 0) return -1;
  if (shift && v > (UINT64_MAX >> shift)) return -1;
  *out = v << shift;
  return 0;
}

void fg__bytes_format(uint64_t n, char *buf, size_t len) {
  int i = 0;
  while (n && i < 4 && (n & 1023) == 0) {
    n >>= 10;
    i++;
  }
  if (i) snprintf(buf, len, "%llu%c", (unsigned long long)n, suffixes[i - 1]);
  else snprintf(buf, len, "%llu", (unsigned long long)n);
}
