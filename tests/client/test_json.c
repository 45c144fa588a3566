/* The CLI's one JSON writer (rpc/json.c), as both --json outputs use
 * it: numbers in shortest form with integral values in full (100, not
 * 1e+02), strings always valid UTF-8 (a stray byte becomes U+FFFD), and
 * the spaced separators of the local stages' output. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "json.h"

/* What the writer printed for one object {key: v}, spaced or not. */
static char *object_of(const char *key, double v, bool spaced) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  fg_json_writer w;
  fg__json_init(&w, f);
  w.spaced = spaced;
  fg__json_begin_object(&w);
  fg__json_key(&w, key);
  fg__json_double(&w, v);
  fg__json_key(&w, "b");
  fg__json_double(&w, 0.1);
  fg__json_end_object(&w);
  fclose(f);
  return buf;
}

Test(json, integral_doubles_in_full) {
  char *s = object_of("a", 100, true);
  cr_assert_str_eq(s, "{\"a\": 100, \"b\": 0.1}");
  free(s);
  s = object_of("a", 1e15, false);
  cr_assert_str_eq(s, "{\"a\":1000000000000000,\"b\":0.1}");
  free(s);
  s = object_of("a", 1.5e-7, false);
  cr_assert_str_eq(s, "{\"a\":1.5e-07,\"b\":0.1}");
  free(s);
}

Test(json, invalid_utf8_becomes_replacement_character) {
  /* A lone continuation byte, a truncated sequence, an overlong '/', a
   * surrogate; valid multi-byte text passes through unchanged. */
  char *s = object_of("x\x80y\xc3" "z\xc0\xaf\xed\xa0\x80 \xc3\xa9", 1, true);
  cr_assert_str_eq(s, "{\"x\\ufffdy\\ufffdz\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd \xc3\xa9\": 1, \"b\": 0.1}");
  free(s);
  s = object_of("q\"\\\n\x01", 2, true);
  cr_assert_str_eq(s, "{\"q\\\"\\\\\\n\\u0001\": 2, \"b\": 0.1}");
  free(s);
}

/* The HTTP API's proto3 mapping: int64 and uint64 as strings, the rest as
 * numbers; the CLI's default keeps them numbers. */
Test(json, int64_strings) {
  for (int strings = 0; strings < 2; strings++) {
    char *buf = NULL;
    size_t len = 0;
    FILE *f = open_memstream(&buf, &len);
    fg_json_writer w;
    fg__json_init(&w, f);
    w.int64_strings = strings;
    fg__json_begin_array(&w);
    fg__json_int64(&w, -9007199254740993LL);
    fg__json_uint64(&w, 18446744073709551615ULL);
    fg__json_int(&w, 3);
    fg__json_end_array(&w);
    fclose(f);
    cr_assert_str_eq(buf, strings ? "[\"-9007199254740993\",\"18446744073709551615\",3]"
                                  : "[-9007199254740993,18446744073709551615,3]");
    free(buf);
  }
}
