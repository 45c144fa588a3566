/* fg_node tree -> block YAML, through libyaml's emitter so quoting and
 * escaping follow the YAML spec. What libyaml cannot know is how *our*
 * parser resolves plain scalars: a string like "true", "1e-3" or "null"
 * must be quoted or it would read back as another type. Such strings are
 * emitted with plain_implicit off, which makes libyaml quote them — the
 * same mechanism PyYAML's dumper uses. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "config/node_internal.h"
#include "util/numfmt.h"
#include "util/xalloc.h"

typedef struct {
  char *buf;
  size_t len, cap;
} outbuf;

static int write_handler(void *data, unsigned char *buffer, size_t size) {
  outbuf *o = data;
  if (o->len + size + 1 > o->cap) {
    o->cap = (o->len + size + 1) * 2;
    o->buf = fg__xrealloc(o->buf, o->cap);
  }
  memcpy(o->buf + o->len, buffer, size);
  o->len += size;
  o->buf[o->len] = '\0';
  return 1;
}

/* Python's repr of a float: the shortest form that reads back exactly,
 * always with a '.' or an exponent so it stays a float. */
static void format_float(double d, char *buf, size_t n) {
  if (isnan(d)) {
    snprintf(buf, n, ".nan");
    return;
  }
  if (isinf(d)) {
    snprintf(buf, n, d > 0 ? ".inf" : "-.inf");
    return;
  }
  fg__shortest_double(d, buf, n);
  if (strpbrk(buf, ".en") == NULL) strncat(buf, ".0", n - strlen(buf) - 1);
}

static int emit_scalar(yaml_emitter_t *e, const char *text, bool plain_ok) {
  yaml_event_t ev;
  yaml_scalar_event_initialize(&ev, NULL, NULL, (yaml_char_t *)text, (int)strlen(text),
                               plain_ok, 1, YAML_ANY_SCALAR_STYLE);
  return yaml_emitter_emit(e, &ev);
}

static int emit_node(yaml_emitter_t *e, const fg_node *n) {
  yaml_event_t ev;
  char buf[64];
  switch (n->kind) {
    case FG_NODE_NULL: return emit_scalar(e, "null", true);
    case FG_NODE_BOOL: return emit_scalar(e, n->u.b ? "true" : "false", true);
    case FG_NODE_INT:
      snprintf(buf, sizeof buf, "%lld", (long long)n->u.i);
      return emit_scalar(e, buf, true);
    case FG_NODE_FLOAT:
      format_float(n->u.d, buf, sizeof buf);
      return emit_scalar(e, buf, true);
    case FG_NODE_STRING: return emit_scalar(e, n->u.s, fg__config_plain_is_string(n->u.s));
    case FG_NODE_SEQ:
      yaml_sequence_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_SEQUENCE_STYLE);
      if (!yaml_emitter_emit(e, &ev)) return 0;
      for (size_t i = 0; i < n->len; i++)
        if (!emit_node(e, n->items[i])) return 0;
      yaml_sequence_end_event_initialize(&ev);
      return yaml_emitter_emit(e, &ev);
    case FG_NODE_MAP:
      yaml_mapping_start_event_initialize(&ev, NULL, NULL, 1, YAML_BLOCK_MAPPING_STYLE);
      if (!yaml_emitter_emit(e, &ev)) return 0;
      for (size_t i = 0; i < n->len; i++) {
        /* Keys are strings in our tree; quote those that would not read
         * back as the same text is unnecessary (keys keep their text), but
         * `<<` must not turn into a merge key. */
        bool plain = strcmp(n->keys[i], "<<") != 0;
        if (!emit_scalar(e, n->keys[i], plain) || !emit_node(e, n->items[i])) return 0;
      }
      yaml_mapping_end_event_initialize(&ev);
      return yaml_emitter_emit(e, &ev);
  }
  return 0;
}

int fg_node_emit(const fg_node *n, char **out, char **err) {
  yaml_emitter_t e;
  outbuf o = {0};
  if (!yaml_emitter_initialize(&e)) return fg_err_set(err, FG_ENOMEM, "yaml emitter");
  yaml_emitter_set_output(&e, write_handler, &o);
  yaml_emitter_set_unicode(&e, 1);
  yaml_emitter_set_width(&e, -1);
  yaml_emitter_set_indent(&e, 2);
  yaml_event_t ev;
  int ok = 1;
  yaml_stream_start_event_initialize(&ev, YAML_UTF8_ENCODING);
  ok = ok && yaml_emitter_emit(&e, &ev);
  if (ok) {
    yaml_document_start_event_initialize(&ev, NULL, NULL, NULL, 1);
    ok = yaml_emitter_emit(&e, &ev);
  }
  if (ok) {
    fg_node *null_node = NULL;
    if (n == NULL) n = null_node = fg_node_new_null();
    ok = emit_node(&e, n);
    fg_node_free(null_node);
  }
  if (ok) {
    yaml_document_end_event_initialize(&ev, 1);
    ok = yaml_emitter_emit(&e, &ev);
  }
  if (ok) {
    yaml_stream_end_event_initialize(&ev);
    ok = yaml_emitter_emit(&e, &ev);
  }
  int rc = 0;
  if (!ok) {
    rc = fg_err_set(err, FG_EINVAL, "cannot write YAML: %s",
                    e.problem ? e.problem : "emitter error");
    free(o.buf);
  } else {
    *out = o.buf ? o.buf : fg__xstrdup("");
  }
  yaml_emitter_delete(&e);
  return rc;
}
