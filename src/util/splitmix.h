/* splitmix64: a small, fast, seedable generator whose stream is the same
 * on every machine (synthetic data, loader shuffling). */
#ifndef FG_UTIL_SPLITMIX_H
#define FG_UTIL_SPLITMIX_H

#include <stdint.h>

static inline uint64_t fg__splitmix64(uint64_t *s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

#endif
