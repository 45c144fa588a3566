/* The config tree: a small DOM for YAML documents that remembers where
 * every node was written. Maps keep insertion order (print-config shows
 * keys in the order the user wrote them) and are searched linearly:
 * configs have tens of keys, not thousands. */
#include <math.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "config/node_internal.h"
#include "util/assert.h"
#include "util/xalloc.h"

/* ---- interned file names ------------------------------------------------
 * Marks point at file names that must outlive every node made from the
 * file, including clones handed to other threads; one process-wide table
 * owns them and frees them at exit. */

typedef struct interned {
  struct interned *next;
  char name[];
} interned;

static pthread_mutex_t intern_lock = PTHREAD_MUTEX_INITIALIZER;
static interned *intern_head;

const char *fg__config_intern(const char *name) {
  if (name == NULL) return NULL;
  pthread_mutex_lock(&intern_lock);
  interned *it;
  for (it = intern_head; it; it = it->next)
    if (strcmp(it->name, name) == 0) break;
  if (it == NULL) {
    size_t len = strlen(name);
    it = fg__xmalloc(sizeof *it + len + 1);
    memcpy(it->name, name, len + 1);
    it->next = intern_head;
    intern_head = it;
  }
  pthread_mutex_unlock(&intern_lock);
  return it->name;
}

__attribute__((destructor)) static void free_interned(void) {
  while (intern_head) {
    interned *next = intern_head->next;
    free(intern_head);
    intern_head = next;
  }
}

/* ---- constructors -------------------------------------------------------- */

static fg_node *node_new(fg_node_kind kind) {
  fg_node *n = fg__xcalloc(1, sizeof *n);
  n->kind = kind;
  return n;
}

fg_node *fg_node_new_null(void) { return node_new(FG_NODE_NULL); }

fg_node *fg_node_new_bool(bool b) {
  fg_node *n = node_new(FG_NODE_BOOL);
  n->u.b = b;
  return n;
}

fg_node *fg_node_new_int(int64_t i) {
  fg_node *n = node_new(FG_NODE_INT);
  n->u.i = i;
  return n;
}

fg_node *fg_node_new_float(double d) {
  fg_node *n = node_new(FG_NODE_FLOAT);
  n->u.d = d;
  return n;
}

fg_node *fg_node_new_string(const char *s) {
  fg_node *n = node_new(FG_NODE_STRING);
  n->u.s = fg__xstrdup(s ? s : "");
  return n;
}

fg_node *fg_node_new_seq(void) { return node_new(FG_NODE_SEQ); }
fg_node *fg_node_new_map(void) { return node_new(FG_NODE_MAP); }

/* Frees what n owns, leaving the struct itself. */
static void node_clear(fg_node *n) {
  if (n->kind == FG_NODE_STRING) free(n->u.s);
  for (size_t i = 0; i < n->len; i++) {
    fg_node_free(n->items[i]);
    if (n->keys) free(n->keys[i]);
  }
  free(n->items);
  free(n->keys);
  n->items = NULL;
  n->keys = NULL;
  n->len = n->cap = 0;
}

void fg_node_free(fg_node *n) {
  if (n == NULL) return;
  node_clear(n);
  free(n);
}

fg_node *fg_node_clone(const fg_node *n) {
  if (n == NULL) return NULL;
  fg_node *c = node_new(n->kind);
  c->mark = n->mark;
  c->u = n->u;
  c->checked = n->checked;
  if (n->kind == FG_NODE_STRING) c->u.s = fg__xstrdup(n->u.s);
  if (n->len) {
    c->cap = n->len;
    c->items = fg__xmalloc(c->cap * sizeof *c->items);
    if (n->kind == FG_NODE_MAP) c->keys = fg__xmalloc(c->cap * sizeof *c->keys);
    for (size_t i = 0; i < n->len; i++) {
      c->items[i] = fg_node_clone(n->items[i]);
      if (c->keys) c->keys[i] = fg__xstrdup(n->keys[i]);
    }
    c->len = n->len;
  }
  return c;
}

void fg__node_replace(fg_node *dst, fg_node *src) {
  node_clear(dst);
  *dst = *src;
  free(src);
}

void fg_node_set_mark(fg_node *n, const char *file, int line, int col) {
  if (n == NULL) return;
  n->mark.file = fg__config_intern(file);
  n->mark.line = line;
  n->mark.col = col;
}

/* ---- getters --------------------------------------------------------------- */

fg_node_kind fg_node_kind_of(const fg_node *n) {
  return n ? n->kind : FG_NODE_NULL;
}

const char *fg_node_kind_name(fg_node_kind k) {
  switch (k) {
    case FG_NODE_NULL: return "null";
    case FG_NODE_BOOL: return "a boolean";
    case FG_NODE_INT: return "an integer";
    case FG_NODE_FLOAT: return "a float";
    case FG_NODE_STRING: return "a string";
    case FG_NODE_SEQ: return "a list";
    case FG_NODE_MAP: return "a mapping";
  }
  return "a value";
}

fg_mark fg_node_mark(const fg_node *n) {
  fg_mark none = {NULL, 0, 0};
  return n ? n->mark : none;
}

bool fg_node_bool(const fg_node *n) {
  return n && n->kind == FG_NODE_BOOL && n->u.b;
}

int64_t fg_node_int(const fg_node *n) {
  if (n == NULL) return 0;
  if (n->kind == FG_NODE_INT) return n->u.i;
  if (n->kind == FG_NODE_BOOL) return n->u.b;
  return 0;
}

double fg_node_float(const fg_node *n) {
  if (n == NULL) return NAN;
  if (n->kind == FG_NODE_FLOAT) return n->u.d;
  if (n->kind == FG_NODE_INT) return (double)n->u.i;
  return NAN;
}

const char *fg_node_str(const fg_node *n) {
  return n && n->kind == FG_NODE_STRING ? n->u.s : NULL;
}

size_t fg_node_len(const fg_node *n) {
  return n && (n->kind == FG_NODE_SEQ || n->kind == FG_NODE_MAP) ? n->len : 0;
}

fg_node *fg_node_at(const fg_node *seq, size_t i) {
  if (seq == NULL || (seq->kind != FG_NODE_SEQ && seq->kind != FG_NODE_MAP) || i >= seq->len)
    return NULL;
  return seq->items[i];
}

const char *fg_node_key_at(const fg_node *map, size_t i) {
  if (map == NULL || map->kind != FG_NODE_MAP || i >= map->len) return NULL;
  return map->keys[i];
}

fg_node *fg_node_value_at(const fg_node *map, size_t i) {
  if (map == NULL || map->kind != FG_NODE_MAP || i >= map->len) return NULL;
  return map->items[i];
}

static long map_index(const fg_node *map, const char *key) {
  if (map == NULL || map->kind != FG_NODE_MAP || key == NULL) return -1;
  for (size_t i = 0; i < map->len; i++)
    if (strcmp(map->keys[i], key) == 0) return (long)i;
  return -1;
}

fg_node *fg_node_get(const fg_node *map, const char *key) {
  long i = map_index(map, key);
  return i < 0 ? NULL : map->items[i];
}

bool fg__parse_index(const char *s, size_t len, long *out) {
  if (len == 0 || len > 18) return false;
  size_t i = 0;
  bool neg = s[0] == '-';
  if (neg) i = 1;
  if (i == len) return false;
  long v = 0;
  for (; i < len; i++) {
    if (s[i] < '0' || s[i] > '9') return false;
    v = v * 10 + (s[i] - '0');
  }
  *out = neg ? -v : v;
  return true;
}

fg_node *fg_node_path(const fg_node *root, const char *path) {
  const fg_node *cur = root;
  const char *p = path;
  while (cur && p && *p) {
    const char *dot = strchr(p, '.');
    size_t len = dot ? (size_t)(dot - p) : strlen(p);
    if (cur->kind == FG_NODE_MAP) {
      char *key = fg__xstrndup(p, len);
      cur = fg_node_get(cur, key);
      free(key);
    } else if (cur->kind == FG_NODE_SEQ) {
      long i;
      if (!fg__parse_index(p, len, &i)) return NULL;
      if (i < 0) i += (long)cur->len;
      if (i < 0 || (size_t)i >= cur->len) return NULL;
      cur = cur->items[i];
    } else {
      return NULL;
    }
    p = dot ? dot + 1 : NULL;
  }
  return (fg_node *)cur;
}

/* ---- mutation ---------------------------------------------------------------- */

static void grow(fg_node *n) {
  if (n->len < n->cap) return;
  n->cap = n->cap ? n->cap * 2 : 4;
  n->items = fg__xrealloc(n->items, n->cap * sizeof *n->items);
  if (n->kind == FG_NODE_MAP) n->keys = fg__xrealloc(n->keys, n->cap * sizeof *n->keys);
}

void fg_node_seq_append(fg_node *seq, fg_node *item) {
  fg_node_seq_insert(seq, seq->len, item);
}

void fg_node_seq_insert(fg_node *seq, size_t i, fg_node *item) {
  FG_ASSERT(seq->kind == FG_NODE_SEQ);
  seq->checked = false;
  if (i > seq->len) i = seq->len;
  grow(seq);
  memmove(seq->items + i + 1, seq->items + i, (seq->len - i) * sizeof *seq->items);
  seq->items[i] = item;
  seq->len++;
}

fg_node *fg_node_seq_take(fg_node *seq, size_t i) {
  if (seq == NULL || seq->kind != FG_NODE_SEQ || i >= seq->len) return NULL;
  seq->checked = false;
  fg_node *item = seq->items[i];
  memmove(seq->items + i, seq->items + i + 1, (seq->len - i - 1) * sizeof *seq->items);
  seq->len--;
  return item;
}

void fg_node_map_set(fg_node *map, const char *key, fg_node *value) {
  FG_ASSERT(map->kind == FG_NODE_MAP);
  map->checked = false;
  long i = map_index(map, key);
  if (i >= 0) {
    if (map->items[i] != value) fg_node_free(map->items[i]);
    map->items[i] = value;
    return;
  }
  grow(map);
  map->keys[map->len] = fg__xstrdup(key);
  map->items[map->len] = value;
  map->len++;
}

fg_node *fg_node_map_take(fg_node *map, const char *key) {
  long i = map_index(map, key);
  if (i < 0) return NULL;
  fg_node *v = map->items[i];
  map->checked = false;
  free(map->keys[i]);
  memmove(map->items + i, map->items + i + 1, (map->len - i - 1) * sizeof *map->items);
  memmove(map->keys + i, map->keys + i + 1, (map->len - i - 1) * sizeof *map->keys);
  map->len--;
  return v;
}

bool fg_node_equal(const fg_node *a, const fg_node *b) {
  if (a == NULL || b == NULL) return a == b;
  if (a->kind != b->kind) return false;
  switch (a->kind) {
    case FG_NODE_NULL: return true;
    case FG_NODE_BOOL: return a->u.b == b->u.b;
    case FG_NODE_INT: return a->u.i == b->u.i;
    case FG_NODE_FLOAT:
      return a->u.d == b->u.d || (isnan(a->u.d) && isnan(b->u.d));
    case FG_NODE_STRING: return strcmp(a->u.s, b->u.s) == 0;
    case FG_NODE_SEQ:
    case FG_NODE_MAP:
      if (a->len != b->len) return false;
      for (size_t i = 0; i < a->len; i++) {
        if (a->kind == FG_NODE_MAP && strcmp(a->keys[i], b->keys[i]) != 0) return false;
        if (!fg_node_equal(a->items[i], b->items[i])) return false;
      }
      return true;
  }
  return false;
}

bool fg__node_checked(const fg_node *n) { return n != NULL && n->checked; }

void fg__node_set_checked(fg_node *n) {
  if (n != NULL) n->checked = true;
}
