/* A small streaming JSON writer for every --json output of the CLI (the
 * remote commands and the local stages' final metrics) and fulgurd's HTTP
 * API. Written by hand (not a library) because output is all we need:
 * a few dozen lines that escape strings, print doubles in shortest form and
 * place the commas. */
#ifndef FG_CLIENT_JSON_H
#define FG_CLIENT_JSON_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define FG_JSON_MAX_DEPTH 32

/* Caller-owned writer state: fg__json_init, write, then nothing to close
 * (the writer holds no resources; the FILE stays the caller's). */
typedef struct {
  FILE *out;
  int depth;
  bool need_comma[FG_JSON_MAX_DEPTH]; /* per open container */
  bool after_key;
  /* Python json.dumps' default separators (", " and ": ") instead of the
   * compact "," and ":": what `fulgur fit|validate|test --json` has always
   * printed. Set after fg__json_init. */
  bool spaced;
  /* int64/uint64 fields as JSON strings, as the proto3 JSON mapping writes
   * them (JavaScript numbers lose integers past 2^53): the HTTP API sets
   * it; the CLI's --json keeps the numbers its scripts already read. */
  bool int64_strings;
} fg_json_writer;

void fg__json_init(fg_json_writer *w, FILE *out);
void fg__json_begin_object(fg_json_writer *w);
void fg__json_end_object(fg_json_writer *w);
void fg__json_begin_array(fg_json_writer *w);
void fg__json_end_array(fg_json_writer *w);
/* The key of the next value in the current object. */
void fg__json_key(fg_json_writer *w, const char *key);
/* Values. Strings are escaped; bytes that are not UTF-8 become U+FFFD so
 * the output always parses. Doubles print as the shortest text that reads
 * back exactly; NaN and infinities as the strings "NaN", "Infinity",
 * "-Infinity" (proto3 JSON mapping). NULL strings print as "". */
void fg__json_string(fg_json_writer *w, const char *s);
void fg__json_double(fg_json_writer *w, double v);
void fg__json_int(fg_json_writer *w, int64_t v);
void fg__json_uint(fg_json_writer *w, uint64_t v);
/* A proto int64/uint64 field: a number, or a string with int64_strings. */
void fg__json_int64(fg_json_writer *w, int64_t v);
void fg__json_uint64(fg_json_writer *w, uint64_t v);
void fg__json_bool(fg_json_writer *w, bool v);
void fg__json_null(fg_json_writer *w);
/* A preformatted value (a number): written as is. */
void fg__json_raw(fg_json_writer *w, const char *text);

#endif
