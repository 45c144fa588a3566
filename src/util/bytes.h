/* Sizes in bytes as people write them: "4096", "512M", "2G" (binary
 * multiples: K = 1024). Shared by fulgurd's --job-memory-limit and the
 * config's memory_limit key, so the two read a size the same way, and by
 * the messages that print one back. */
#ifndef FG_UTIL_BYTES_H
#define FG_UTIL_BYTES_H

#include <stddef.h>
#include <stdint.h>

/* Reads a positive size: digits, then optionally one of K, M, G, T
 * (either case, optionally followed by "i", then optionally "B"). 0 and
 * *out set, or -1 for anything else (zero, overflow, junk). */
int fg__bytes_parse(const char *s, uint64_t *out);

/* Writes n as fg__bytes_parse reads it, with the largest suffix that
 * divides it exactly ("2G", "1536M", "1000"). */
void fg__bytes_format(uint64_t n, char *buf, size_t len);

#endif
