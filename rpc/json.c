/* The --json writer (json.h). */
#include "json.h"

#include <inttypes.h>
#include <math.h>
#include <string.h>

#include "util/assert.h"
#include "util/numfmt.h"

void fg__json_init(fg_json_writer *w, FILE *out) {
  memset(w, 0, sizeof *w);
  w->out = out;
}

/* Before any value or key: the comma that separates it from the previous
 * item of the same container. A value right after its key needs none. */
static void before_item(fg_json_writer *w) {
  if (w->after_key) {
    w->after_key = false;
    return;
  }
  if (w->depth > 0) {
    if (w->need_comma[w->depth - 1]) fputs(w->spaced ? ", " : ",", w->out);
    w->need_comma[w->depth - 1] = true;
  }
}

static void open_container(fg_json_writer *w, char c) {
  before_item(w);
  FG_ASSERT(w->depth < FG_JSON_MAX_DEPTH);
  fputc(c, w->out);
  w->need_comma[w->depth++] = false;
}

static void close_container(fg_json_writer *w, char c) {
  FG_ASSERT(w->depth > 0 && !w->after_key);
  w->depth--;
  fputc(c, w->out);
}

void fg__json_begin_object(fg_json_writer *w) { open_container(w, '{'); }
void fg__json_end_object(fg_json_writer *w) { close_container(w, '}'); }
void fg__json_begin_array(fg_json_writer *w) { open_container(w, '['); }
void fg__json_end_array(fg_json_writer *w) { close_container(w, ']'); }

/* The length of the valid UTF-8 sequence at s (1..4), or 0 when the bytes
 * there are not one (RFC 3629: no overlongs, no surrogates, <= U+10FFFF). */
static int utf8_len(const unsigned char *s) {
  unsigned char c = s[0];
  if (c < 0x80) return 1;
  int n;
  unsigned char lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) n = 2;
  else if (c >= 0xE0 && c <= 0xEF) {
    n = 3;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    n = 4;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else
    return 0;
  if (s[1] < lo || s[1] > hi) return 0;
  for (int i = 2; i < n; i++)
    if (s[i] < 0x80 || s[i] > 0xBF) return 0;
  return n;
}

static void write_string(FILE *f, const char *str) {
  const unsigned char *s = (const unsigned char *)(str ? str : "");
  fputc('"', f);
  while (*s) {
    unsigned char c = *s;
    if (c == '"' || c == '\\') {
      fputc('\\', f);
      fputc(c, f);
      s++;
    } else if (c < 0x20) {
      switch (c) {
      case '\n': fputs("\\n", f); break;
      case '\r': fputs("\\r", f); break;
      case '\t': fputs("\\t", f); break;
      case '\b': fputs("\\b", f); break;
      case '\f': fputs("\\f", f); break;
      default: fprintf(f, "\\u%04x", c);
      }
      s++;
    } else {
      int n = utf8_len(s);
      if (n == 0) {
        fputs("\\ufffd", f);
        s++;
      } else {
        fwrite(s, 1, (size_t)n, f);
        s += n;
      }
    }
  }
  fputc('"', f);
}

void fg__json_key(fg_json_writer *w, const char *key) {
  FG_ASSERT(!w->after_key);
  before_item(w);
  write_string(w->out, key);
  fputs(w->spaced ? ": " : ":", w->out);
  w->after_key = true;
}

void fg__json_string(fg_json_writer *w, const char *s) {
  before_item(w);
  write_string(w->out, s);
}

void fg__json_double(fg_json_writer *w, double v) {
  before_item(w);
  if (isnan(v)) {
    fputs("\"NaN\"", w->out);
  } else if (isinf(v)) {
    fputs(v > 0 ? "\"Infinity\"" : "\"-Infinity\"", w->out);
  } else {
    char buf[40];
    fg__shortest_double(v, buf, sizeof buf);
    /* %g writes 100 as "1e+02"; integral values below 1e16 read better,
     * as Python's repr writes them, in full. */
    if (strchr(buf, 'e') && fabs(v) < 1e16 && v == floor(v)) snprintf(buf, sizeof buf, "%.0f", v);
    fputs(buf, w->out);
  }
}

void fg__json_int(fg_json_writer *w, int64_t v) {
  before_item(w);
  fprintf(w->out, "%" PRId64, v);
}

void fg__json_uint(fg_json_writer *w, uint64_t v) {
  before_item(w);
  fprintf(w->out, "%" PRIu64, v);
}

void fg__json_int64(fg_json_writer *w, int64_t v) {
  before_item(w);
  fprintf(w->out, w->int64_strings ? "\"%" PRId64 "\"" : "%" PRId64, v);
}

void fg__json_uint64(fg_json_writer *w, uint64_t v) {
  before_item(w);
  fprintf(w->out, w->int64_strings ? "\"%" PRIu64 "\"" : "%" PRIu64, v);
}

void fg__json_bool(fg_json_writer *w, bool v) {
  before_item(w);
  fputs(v ? "true" : "false", w->out);
}

void fg__json_null(fg_json_writer *w) {
  before_item(w);
  fputs("null", w->out);
}

void fg__json_raw(fg_json_writer *w, const char *text) {
  before_item(w);
  fputs(text, w->out);
}
