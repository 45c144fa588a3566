/* YAML text -> fg_node tree, with libyaml's event parser.
 *
 * Scalars resolve as PyYAML's safe loader resolves YAML 1.1 plain scalars,
 * with lightning_template's two changes: `1e-3`, `5E4` are floats, and
 * dates stay strings. The resolver patterns are PyYAML's own regular
 * expressions (POSIX ERE here), so the edge cases match by construction
 * rather than by a hand-written scanner. Anchors, aliases and `<<` merge
 * keys work as in PyYAML; duplicate keys are errors (PyYAML silently keeps
 * the last one, which hides typos in long configs). */
#include <errno.h>
#include <math.h>
#include <pthread.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "config/node_internal.h"
#include "util/assert.h"
#include "util/limits.h"
#include "util/xalloc.h"

enum { RE_BOOL_TRUE, RE_BOOL_FALSE, RE_NULL, RE_INT, RE_FLOAT, RE__COUNT };

static const char *const patterns[RE__COUNT] = {
    "^(yes|Yes|YES|true|True|TRUE|on|On|ON)$",
    "^(no|No|NO|false|False|FALSE|off|Off|OFF)$",
    "^(~|null|Null|NULL|)$",
    "^([-+]?0b[0-1_]+|[-+]?0[0-7_]+|[-+]?(0|[1-9][0-9_]*)|[-+]?0x[0-9a-fA-F_]+"
    "|[-+]?[1-9][0-9_]*(:[0-5]?[0-9])+)$",
    "^([-+]?[0-9][0-9_]*\\.[0-9_]*([eE][-+]?[0-9]+)?|[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+"
    "|\\.[0-9_]+([eE][-+]?[0-9]+)?|[-+]?[0-9][0-9_]*(:[0-5]?[0-9])+\\.[0-9_]*"
    "|[-+]?\\.(inf|Inf|INF)|\\.(nan|NaN|NAN))$",
};

static regex_t regexes[RE__COUNT];
static pthread_once_t regex_once = PTHREAD_ONCE_INIT;

static void compile_regexes(void) {
  for (int i = 0; i < RE__COUNT; i++) {
    /* The patterns are constants: one that does not compile is a bug. */
    int rc = regcomp(&regexes[i], patterns[i], REG_EXTENDED | REG_NOSUB);
    FG_ASSERT(rc == 0);
  }
}

__attribute__((destructor)) static void free_regexes(void) {
  /* Only when they were compiled: pthread_once cannot be queried, but a
   * compiled regex_t has a non-zero re_nsub or buffer; regfree on a zeroed
   * regex_t is safe with glibc. */
  for (int i = 0; i < RE__COUNT; i++) regfree(&regexes[i]);
}

static bool matches(int re, const char *s) {
  return regexec(&regexes[re], s, 0, NULL, 0) == 0;
}

/* Copy of s without '_' (YAML 1.1 digit separators). */
static char *strip_underscores(const char *s) {
  char *out = fg__xmalloc(strlen(s) + 1), *o = out;
  for (; *s; s++)
    if (*s != '_') *o++ = *s;
  *o = '\0';
  return out;
}

/* Base-60 "1:30" or "1:30.5" (YAML 1.1), as PyYAML computes it. */
static double sexagesimal(const char *s, bool *neg) {
  *neg = *s == '-';
  if (*s == '-' || *s == '+') s++;
  double v = 0;
  char *end;
  for (;;) {
    double part = strtod(s, &end);
    v = v * 60 + part;
    if (*end != ':') break;
    s = end + 1;
  }
  return v;
}

static int resolve_int(const char *text, fg_node **out) {
  char *s = strip_underscores(text);
  const char *p = s;
  bool neg = false;
  if (*p == '-' || *p == '+') neg = *p++ == '-';
  int rc = 0;
  errno = 0;
  if (strchr(p, ':')) {
    bool n2;
    double v = sexagesimal(s, &n2);
    if (v > 9.2e18) rc = -1;
    else *out = fg_node_new_int(n2 ? -(int64_t)v : (int64_t)v);
  } else {
    unsigned long long v;
    char *end;
    if (p[0] == '0' && p[1] == 'b') v = strtoull(p + 2, &end, 2);
    else if (p[0] == '0' && p[1] == 'x') v = strtoull(p + 2, &end, 16);
    else if (p[0] == '0' && p[1] != '\0') v = strtoull(p + 1, &end, 8);
    else v = strtoull(p, &end, 10);
    if (errno == ERANGE || v > (neg ? (unsigned long long)INT64_MAX + 1 : (unsigned long long)INT64_MAX))
      rc = -1;
    else
      *out = fg_node_new_int(neg ? (int64_t)(0 - v) : (int64_t)v);
  }
  free(s);
  return rc;
}

static fg_node *resolve_float(const char *text) {
  char *s = strip_underscores(text);
  double v;
  const char *p = s;
  bool neg = *p == '-';
  if (*p == '-' || *p == '+') p++;
  if (strcasecmp(p, ".inf") == 0) v = neg ? -INFINITY : INFINITY;
  else if (strcasecmp(p, ".nan") == 0) v = NAN;
  else if (strchr(s, ':')) {
    bool n2;
    v = sexagesimal(s, &n2);
    if (n2) v = -v;
  } else v = strtod(s, NULL);
  free(s);
  return fg_node_new_float(v);
}

/* A plain scalar's node. Fails only for integers beyond 64 bits. */
static int resolve_plain(const char *s, fg_node **out) {
  pthread_once(&regex_once, compile_regexes);
  if (matches(RE_NULL, s)) *out = fg_node_new_null();
  else if (matches(RE_BOOL_TRUE, s)) *out = fg_node_new_bool(true);
  else if (matches(RE_BOOL_FALSE, s)) *out = fg_node_new_bool(false);
  else if (matches(RE_INT, s)) return resolve_int(s, out);
  else if (matches(RE_FLOAT, s)) *out = resolve_float(s);
  else *out = fg_node_new_string(s);
  return 0;
}

bool fg__config_plain_is_string(const char *s) {
  fg_node *n = NULL;
  if (resolve_plain(s, &n) != 0) return false;
  bool str = n->kind == FG_NODE_STRING;
  fg_node_free(n);
  return str;
}

/* ---- the event loop ------------------------------------------------------------ */

typedef struct {
  fg_node *node;
  char *key;          /* MAP: the key waiting for its value */
  fg_mark key_mark;
  bool key_is_merge;  /* the pending key is a plain `<<` */
  fg_node *merges;    /* SEQ of maps to merge at the end */
  char *anchor;       /* recorded when the collection is complete */
  size_t nodes0, text0; /* the builder's counts when it started */
} frame;

typedef struct {
  char *name;
  fg_node *node; /* a clone, owned here */
  size_t nodes, text; /* what one alias to it adds to the counts */
} anchor;

/* Limits (util/limits.h): `nodes` and `text` count what the document
 * builds, every alias's copy included, and are checked before an alias is
 * copied, so an alias bomb stops at its first copy past the limit instead
 * of after it has been built. The anchors' own stored copies are counted
 * apart (anchored_*): counting them into the document would count an
 * anchor nested in an anchor twice at each level. */
typedef struct {
  const char *name; /* interned */
  frame *stack;
  size_t depth, cap;
  anchor *anchors;
  size_t n_anchors;
  size_t nodes, text, anchored_nodes, anchored_text;
  fg_node *root;
  char **err;
} builder;

static int error_at(builder *b, yaml_mark_t m, const char *fmt, const char *arg) {
  char *msg = fg__xasprintf(fmt, arg);
  int rc = fg_err_set(b->err, FG_ECONFIG, "%s:%zu:%zu: %s", b->name, m.line + 1,
                      m.column + 1, msg);
  free(msg);
  return rc;
}

/* The error for a limit: where it was crossed, what, and the limit. */
static int limit_at(builder *b, yaml_mark_t m, const char *what, size_t limit, const char *unit) {
  return fg_err_set(b->err, FG_ECONFIG, "%s:%zu:%zu: %s (the limit is %zu %s)", b->name,
                    m.line + 1, m.column + 1, what, limit, unit);
}

/* Counts n nodes and `text` bytes about to be built at m. */
static int count(builder *b, yaml_mark_t m, size_t nodes, size_t text) {
  if (nodes > FG_CONFIG_MAX_NODES - b->nodes)
    return limit_at(b, m, "the document expands to too many nodes (an alias repeated too often?)",
                    FG_CONFIG_MAX_NODES, "nodes");
  if (text > FG_CONFIG_MAX_TEXT_BYTES - b->text)
    return limit_at(b, m, "the document expands to too much text (an alias repeated too often?)",
                    FG_CONFIG_MAX_TEXT_BYTES, "bytes");
  b->nodes += nodes;
  b->text += text;
  return 0;
}

static void set_mark(builder *b, fg_node *n, yaml_mark_t m) {
  n->mark.file = b->name;
  n->mark.line = (int)m.line + 1;
  n->mark.col = (int)m.column + 1;
}

/* Keeps a copy of n under the anchor name; an alias adds `nodes` and
 * `text` (what building n counted). */
static int remember_anchor(builder *b, const yaml_char_t *name, const fg_node *n, size_t nodes,
                           size_t text, yaml_mark_t m) {
  if (name == NULL) return 0;
  if (nodes > FG_CONFIG_MAX_NODES - b->anchored_nodes)
    return limit_at(b, m, "the anchors hold too many nodes", FG_CONFIG_MAX_NODES, "nodes");
  if (text > FG_CONFIG_MAX_TEXT_BYTES - b->anchored_text)
    return limit_at(b, m, "the anchors hold too much text", FG_CONFIG_MAX_TEXT_BYTES, "bytes");
  b->anchored_nodes += nodes;
  b->anchored_text += text;
  b->anchors = fg__xrealloc(b->anchors, (b->n_anchors + 1) * sizeof *b->anchors);
  b->anchors[b->n_anchors].name = fg__xstrdup((const char *)name);
  b->anchors[b->n_anchors].node = fg_node_clone(n);
  b->anchors[b->n_anchors].nodes = nodes;
  b->anchors[b->n_anchors].text = text;
  b->n_anchors++;
  return 0;
}

static void apply_merges(frame *f) {
  if (f->merges == NULL) return;
  /* As PyYAML: merged keys come first, in merge order; explicit keys win
   * over merged ones, and among merged maps the earlier one wins. */
  fg_node *out = fg_node_new_map();
  out->mark = f->node->mark;
  for (size_t m = 0; m < f->merges->len; m++) {
    fg_node *src = f->merges->items[m];
    for (size_t i = 0; i < src->len; i++) {
      if (fg_node_get(out, src->keys[i])) continue;
      fg_node *own = fg_node_get(f->node, src->keys[i]);
      fg_node_map_set(out, src->keys[i], fg_node_clone(own ? own : src->items[i]));
    }
  }
  for (size_t i = 0; i < f->node->len; i++)
    if (fg_node_get(out, f->node->keys[i]) == NULL)
      fg_node_map_set(out, f->node->keys[i], fg_node_clone(f->node->items[i]));
  fg__node_replace(f->node, out);
  fg_node_free(f->merges);
  f->merges = NULL;
}

/* Places a finished node: as the root, a seq item or a map value. The node
 * is consumed even on error. */
static int place(builder *b, fg_node *n, yaml_mark_t m) {
  if (b->depth == 0) {
    b->root = n;
    return 0;
  }
  frame *f = &b->stack[b->depth - 1];
  if (f->node->kind == FG_NODE_SEQ) {
    fg_node_seq_append(f->node, n);
    return 0;
  }
  if (f->key == NULL) {
    /* n is a key. Keys must be scalars; their text is the key. */
    if (n->kind == FG_NODE_SEQ || n->kind == FG_NODE_MAP) {
      fg_node_free(n);
      return error_at(b, m, "%s", "mapping keys must be scalars");
    }
    char buf[64];
    const char *text = buf;
    switch (n->kind) {
      case FG_NODE_NULL: text = "null"; break;
      case FG_NODE_BOOL: text = n->u.b ? "true" : "false"; break;
      case FG_NODE_INT: snprintf(buf, sizeof buf, "%lld", (long long)n->u.i); break;
      case FG_NODE_FLOAT: snprintf(buf, sizeof buf, "%.17g", n->u.d); break;
      default: text = n->u.s;
    }
    if (f->node->len >= FG_CONFIG_MAX_KEYS) {
      fg_node_free(n);
      return limit_at(b, m, "too many keys in one mapping", FG_CONFIG_MAX_KEYS, "keys");
    }
    f->key = fg__xstrdup(text);
    f->key_mark = n->mark;
    fg_node_free(n);
    return 0;
  }
  char *key = f->key;
  f->key = NULL;
  if (f->key_is_merge) {
    f->key_is_merge = false;
    free(key);
    if (f->merges == NULL) f->merges = fg_node_new_seq();
    if (n->kind == FG_NODE_MAP) {
      fg_node_seq_append(f->merges, n);
      return 0;
    }
    if (n->kind == FG_NODE_SEQ) {
      for (size_t i = 0; i < n->len; i++) {
        if (n->items[i]->kind != FG_NODE_MAP) {
          fg_node_free(n);
          return error_at(b, m, "%s", "a '<<' merge key needs a mapping or a list of mappings");
        }
        fg_node_seq_append(f->merges, fg_node_clone(n->items[i]));
      }
      fg_node_free(n);
      return 0;
    }
    fg_node_free(n);
    return error_at(b, m, "%s", "a '<<' merge key needs a mapping or a list of mappings");
  }
  fg_node *old = fg_node_get(f->node, key);
  if (old) {
    char *msg = fg__xasprintf("duplicate key '%s' (first written at line %d)", key,
                              old->mark.line);
    int rc = fg_err_set(b->err, FG_ECONFIG, "%s:%d:%d: %s", b->name, f->key_mark.line,
                        f->key_mark.col, msg);
    free(msg);
    free(key);
    fg_node_free(n);
    return rc;
  }
  fg_node_map_set(f->node, key, n);
  free(key);
  return 0;
}

/* Opens a collection; n is consumed even on error. */
static int push(builder *b, fg_node *n, yaml_mark_t m) {
  if (b->depth >= FG_CONFIG_MAX_DEPTH) {
    fg_node_free(n);
    return limit_at(b, m, "lists and mappings nested too deep", FG_CONFIG_MAX_DEPTH, "levels");
  }
  if (b->depth == b->cap) {
    b->cap = b->cap ? b->cap * 2 : 16;
    b->stack = fg__xrealloc(b->stack, b->cap * sizeof *b->stack);
  }
  frame *f = &b->stack[b->depth++];
  memset(f, 0, sizeof *f);
  f->node = n;
  f->nodes0 = b->nodes - 1; /* n itself, counted by the caller */
  f->text0 = b->text;
  return 0;
}

static int scalar_node(builder *b, const yaml_event_t *ev, fg_node **out) {
  const char *value = (const char *)ev->data.scalar.value;
  const char *tag = (const char *)ev->data.scalar.tag;
  bool plain = ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE;
  if (tag && strcmp(tag, "!") != 0) {
    if (strcmp(tag, YAML_STR_TAG) == 0) {
      *out = fg_node_new_string(value);
      return 0;
    }
    static const char *const typed[] = {YAML_NULL_TAG, YAML_BOOL_TAG, YAML_INT_TAG,
                                        YAML_FLOAT_TAG};
    static const fg_node_kind kinds[] = {FG_NODE_NULL, FG_NODE_BOOL, FG_NODE_INT,
                                         FG_NODE_FLOAT};
    for (int i = 0; i < 4; i++) {
      if (strcmp(tag, typed[i]) != 0) continue;
      if (resolve_plain(value, out) != 0)
        return error_at(b, ev->start_mark, "integer '%s' does not fit in 64 bits", value);
      if ((*out)->kind == FG_NODE_INT && kinds[i] == FG_NODE_FLOAT) {
        double d = (double)(*out)->u.i;
        fg_node_free(*out);
        *out = fg_node_new_float(d);
      }
      if ((*out)->kind != kinds[i]) {
        fg_node_free(*out);
        *out = NULL;
        return error_at(b, ev->start_mark, "'%s' does not match its tag", value);
      }
      return 0;
    }
    return error_at(b, ev->start_mark, "unsupported tag '%s'", tag);
  }
  if (!plain || tag) {
    *out = fg_node_new_string(value);
    return 0;
  }
  if (resolve_plain(value, out) != 0)
    return error_at(b, ev->start_mark, "integer '%s' does not fit in 64 bits", value);
  return 0;
}

static int handle_event(builder *b, yaml_event_t *ev) {
  fg_node *n = NULL;
  int rc;
  switch (ev->type) {
    case YAML_SCALAR_EVENT: {
      if (ev->data.scalar.length > FG_CONFIG_MAX_STRING_BYTES)
        return limit_at(b, ev->start_mark, "a scalar too long", FG_CONFIG_MAX_STRING_BYTES,
                        "bytes");
      if ((rc = count(b, ev->start_mark, 1, ev->data.scalar.length)) != 0) return rc;
      frame *f = b->depth ? &b->stack[b->depth - 1] : NULL;
      bool is_key = f && f->node->kind == FG_NODE_MAP && f->key == NULL;
      if (is_key && ev->data.scalar.style == YAML_PLAIN_SCALAR_STYLE &&
          strcmp((const char *)ev->data.scalar.value, "<<") == 0) {
        f->key = fg__xstrdup("<<");
        f->key_is_merge = true;
        return 0;
      }
      if (is_key) {
        /* Keys keep their text: `1e-3:` is the key "1e-3", as written. */
        n = fg_node_new_string((const char *)ev->data.scalar.value);
      } else if ((rc = scalar_node(b, ev, &n)) != 0) {
        return rc;
      }
      set_mark(b, n, ev->start_mark);
      if ((rc = remember_anchor(b, ev->data.scalar.anchor, n, 1, ev->data.scalar.length,
                                ev->start_mark)) != 0) {
        fg_node_free(n);
        return rc;
      }
      return place(b, n, ev->start_mark);
    }
    case YAML_SEQUENCE_START_EVENT:
    case YAML_MAPPING_START_EVENT:
      if ((rc = count(b, ev->start_mark, 1, 0)) != 0) return rc;
      n = ev->type == YAML_SEQUENCE_START_EVENT ? fg_node_new_seq() : fg_node_new_map();
      set_mark(b, n, ev->start_mark);
      if ((rc = push(b, n, ev->start_mark)) != 0) return rc;
      {
        /* The anchor is recorded at the end, when the node is complete. */
        const yaml_char_t *a = ev->type == YAML_MAPPING_START_EVENT
                                   ? ev->data.mapping_start.anchor
                                   : ev->data.sequence_start.anchor;
        if (a) b->stack[b->depth - 1].anchor = fg__xstrdup((const char *)a);
      }
      return 0;
    case YAML_SEQUENCE_END_EVENT:
    case YAML_MAPPING_END_EVENT: {
      frame *f = &b->stack[b->depth - 1];
      apply_merges(f);
      char *anchor_name = f->anchor;
      size_t nodes = b->nodes - f->nodes0, text = b->text - f->text0;
      n = f->node;
      b->depth--;
      rc = remember_anchor(b, (const yaml_char_t *)anchor_name, n, nodes, text, ev->start_mark);
      free(anchor_name);
      if (rc != 0) {
        fg_node_free(n);
        return rc;
      }
      return place(b, n, ev->start_mark);
    }
    case YAML_ALIAS_EVENT: {
      const char *name = (const char *)ev->data.alias.anchor;
      for (size_t i = b->n_anchors; i-- > 0;) {
        if (strcmp(b->anchors[i].name, name) != 0) continue;
        if ((rc = count(b, ev->start_mark, b->anchors[i].nodes, b->anchors[i].text)) != 0)
          return rc;
        return place(b, fg_node_clone(b->anchors[i].node), ev->start_mark);
      }
      return error_at(b, ev->start_mark, "unknown anchor '%s'", name);
    }
    default:
      return 0;
  }
}

static void builder_free(builder *b) {
  for (size_t i = b->depth; i-- > 0;) {
    frame *f = &b->stack[i];
    free(f->key);
    free(f->anchor);
    fg_node_free(f->merges);
    fg_node_free(f->node);
  }
  free(b->stack);
  for (size_t i = 0; i < b->n_anchors; i++) {
    free(b->anchors[i].name);
    fg_node_free(b->anchors[i].node);
  }
  free(b->anchors);
}

int fg_node_parse(const char *text, size_t len, const char *name, fg_node **out,
                  char **err) {
  builder b = {0};
  b.name = fg__config_intern(name ? name : "<string>");
  b.err = err;
  if (len > FG_CONFIG_MAX_FILE_BYTES)
    return fg_err_set(err, FG_ECONFIG, "%s:1:1: the document is %zu bytes (the limit is %u bytes)",
                      b.name, len, FG_CONFIG_MAX_FILE_BYTES);
  yaml_parser_t parser;
  if (!yaml_parser_initialize(&parser)) return fg_err_set(err, FG_ENOMEM, "yaml parser");
  yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
  int rc = 0;
  int docs = 0;
  for (;;) {
    yaml_event_t ev;
    if (!yaml_parser_parse(&parser, &ev)) {
      yaml_mark_t m = parser.problem_mark;
      /* libyaml's own allocation failed: not a syntax error of the text. */
      if (parser.error == YAML_MEMORY_ERROR) {
        rc = fg_err_set(err, FG_ENOMEM, "%s: out of memory parsing YAML", b.name);
        break;
      }
      rc = fg_err_set(err, FG_ECONFIG, "%s:%zu:%zu: invalid YAML: %s%s%s", b.name, m.line + 1,
                      m.column + 1, parser.problem ? parser.problem : "syntax error",
                      parser.context ? " " : "", parser.context ? parser.context : "");
      break;
    }
    yaml_event_type_t type = ev.type;
    if (type == YAML_DOCUMENT_START_EVENT && ++docs > 1) {
      rc = fg_err_set(err, FG_ECONFIG, "%s:%zu:%zu: expected one YAML document, found more",
                      b.name, ev.start_mark.line + 1, ev.start_mark.column + 1);
      yaml_event_delete(&ev);
      break;
    }
    rc = handle_event(&b, &ev);
    yaml_event_delete(&ev);
    if (rc != 0 || type == YAML_STREAM_END_EVENT) break;
  }
  yaml_parser_delete(&parser);
  if (rc == 0 && b.root == NULL) {
    b.root = fg_node_new_null(); /* an empty document */
    b.root->mark.file = b.name;
    b.root->mark.line = 1;
    b.root->mark.col = 1;
  }
  if (rc != 0) {
    fg_node_free(b.root);
    b.root = NULL;
  }
  builder_free(&b);
  if (rc == 0) *out = b.root;
  return rc;
}

int fg_node_parse_file(const char *path, fg_node **out, char **err) {
  char *text = NULL;
  size_t len = 0;
  FILE *f = fopen(path, "rb");
  if (f == NULL)
    return fg_err_set(err, errno == ENOENT ? FG_ENOENT : FG_EIO, "cannot read '%s': %s",
                      path, strerror(errno));
  int rc = 0;
  size_t cap = 0;
  for (;;) {
    if (len + 4096 > cap) {
      cap = cap ? cap * 2 : 8192;
      char *t = realloc(text, cap);
      if (t == NULL) {
        rc = fg_err_set(err, FG_ENOMEM, "cannot read '%s': out of memory", path);
        break;
      }
      text = t;
    }
    size_t got = fread(text + len, 1, cap - len, f);
    len += got;
    if (len > FG_CONFIG_MAX_FILE_BYTES) {
      /* Stops reading there: the size alone is the error. */
      rc = fg_err_set(err, FG_ECONFIG, "%s:1:1: the file is more than %u bytes (the limit)", path,
                      FG_CONFIG_MAX_FILE_BYTES);
      break;
    }
    if (got == 0) {
      if (ferror(f)) rc = fg_err_set(err, FG_EIO, "cannot read '%s': %s", path, strerror(errno));
      break;
    }
  }
  fclose(f);
  if (rc == 0) rc = fg_node_parse(text ? text : "", len, path, out, err);
  free(text);
  return rc;
}
