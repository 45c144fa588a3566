/* fg_value: a small tagged tree. Dicts keep insertion order and are
 * searched linearly: a forward's output or a loss dict has a handful of
 * keys, where a hash table would cost more than it saves; a state_dict of a
 * few hundred entries is looked up once per checkpoint. */
#include "fulgur/value.h"
#include "fulgur/torch.h"

#include <stdlib.h>
#include <string.h>

#include "util/assert.h"
#include "util/xalloc.h"

struct fg_value {
  fg_value_kind kind;
  union {
    bool b;
    int64_t i;
    double d;
    char *s;
    fg_tensor *t;
  } u;
  /* LIST and DICT */
  fg_value **items;
  char **keys; /* DICT only */
  size_t n, cap;
};

static fg_value *make(fg_value_kind k) {
  fg_value *v = fg__xcalloc(1, sizeof *v);
  v->kind = k;
  return v;
}

fg_value *fg_value_none(void) { return make(FG_VALUE_NONE); }
fg_value *fg_value_bool(bool b) { fg_value *v = make(FG_VALUE_BOOL); v->u.b = b; return v; }
fg_value *fg_value_int(int64_t i) { fg_value *v = make(FG_VALUE_INT); v->u.i = i; return v; }
fg_value *fg_value_double(double d) { fg_value *v = make(FG_VALUE_DOUBLE); v->u.d = d; return v; }
fg_value *fg_value_string(const char *s) { fg_value *v = make(FG_VALUE_STRING); v->u.s = fg__xstrdup(s); return v; }
fg_value *fg_value_tensor(fg_tensor *t) { fg_value *v = make(FG_VALUE_TENSOR); v->u.t = t; return v; }
fg_value *fg_value_list(void) { return make(FG_VALUE_LIST); }
fg_value *fg_value_dict(void) { return make(FG_VALUE_DICT); }

void fg_value_free(fg_value *v) {
  if (v == NULL) return;
  if (v->kind == FG_VALUE_STRING) free(v->u.s);
  if (v->kind == FG_VALUE_TENSOR) fg_tensor_free(v->u.t);
  for (size_t i = 0; i < v->n; i++) {
    fg_value_free(v->items[i]);
    if (v->keys) free(v->keys[i]);
  }
  free(v->items);
  free(v->keys);
  free(v);
}

fg_value *fg_value_copy(const fg_value *v) {
  switch (v->kind) {
    case FG_VALUE_NONE: return fg_value_none();
    case FG_VALUE_BOOL: return fg_value_bool(v->u.b);
    case FG_VALUE_INT: return fg_value_int(v->u.i);
    case FG_VALUE_DOUBLE: return fg_value_double(v->u.d);
    case FG_VALUE_STRING: return fg_value_string(v->u.s);
    case FG_VALUE_TENSOR: return fg_value_tensor(fg_tensor_ref(v->u.t));
    case FG_VALUE_LIST: {
      fg_value *c = fg_value_list();
      for (size_t i = 0; i < v->n; i++) fg_value_list_append(c, fg_value_copy(v->items[i]));
      return c;
    }
    case FG_VALUE_DICT: {
      fg_value *c = fg_value_dict();
      for (size_t i = 0; i < v->n; i++) fg_value_dict_set(c, v->keys[i], fg_value_copy(v->items[i]));
      return c;
    }
  }
  return fg_value_none();
}

fg_value_kind fg_value_kind_of(const fg_value *v) { return v->kind; }

const char *fg_value_kind_name(fg_value_kind k) {
  static const char *const names[] = {"None", "a bool", "an int", "a float", "a string",
                                      "a tensor", "a list", "a dict"};
  return (unsigned)k < 8 ? names[k] : "an unknown value";
}

bool fg_value_as_bool(const fg_value *v) { FG_ASSERT(v->kind == FG_VALUE_BOOL); return v->u.b; }
int64_t fg_value_as_int(const fg_value *v) { FG_ASSERT(v->kind == FG_VALUE_INT); return v->u.i; }
double fg_value_as_double(const fg_value *v) {
  FG_ASSERT(v->kind == FG_VALUE_INT || v->kind == FG_VALUE_DOUBLE);
  return v->kind == FG_VALUE_INT ? (double)v->u.i : v->u.d;
}
const char *fg_value_as_string(const fg_value *v) { FG_ASSERT(v->kind == FG_VALUE_STRING); return v->u.s; }
fg_tensor *fg_value_as_tensor(const fg_value *v) { FG_ASSERT(v->kind == FG_VALUE_TENSOR); return v->u.t; }

size_t fg_value_len(const fg_value *v) { return v->n; }

static void grow(fg_value *v) {
  if (v->n < v->cap) return;
  v->cap = v->cap ? v->cap * 2 : 4;
  v->items = fg__xrealloc(v->items, v->cap * sizeof *v->items);
  if (v->kind == FG_VALUE_DICT) v->keys = fg__xrealloc(v->keys, v->cap * sizeof *v->keys);
}

void fg_value_list_append(fg_value *list, fg_value *item) {
  FG_ASSERT(list->kind == FG_VALUE_LIST);
  grow(list);
  list->items[list->n++] = item;
}

fg_value *fg_value_list_at(const fg_value *list, size_t i) {
  FG_ASSERT(i < list->n);
  return list->items[i];
}

static size_t find(const fg_value *d, const char *key) {
  for (size_t i = 0; i < d->n; i++)
    if (strcmp(d->keys[i], key) == 0) return i;
  return (size_t)-1;
}

void fg_value_dict_set(fg_value *d, const char *key, fg_value *item) {
  FG_ASSERT(d->kind == FG_VALUE_DICT);
  size_t i = find(d, key);
  if (i != (size_t)-1) {
    fg_value_free(d->items[i]);
    d->items[i] = item;
    return;
  }
  grow(d);
  d->keys[d->n] = fg__xstrdup(key);
  d->items[d->n++] = item;
}

fg_value *fg_value_dict_get(const fg_value *d, const char *key) {
  if (d->kind != FG_VALUE_DICT) return NULL;
  size_t i = find(d, key);
  return i == (size_t)-1 ? NULL : d->items[i];
}

const char *fg_value_dict_key_at(const fg_value *d, size_t i) { FG_ASSERT(i < d->n); return d->keys[i]; }
fg_value *fg_value_dict_value_at(const fg_value *d, size_t i) { FG_ASSERT(i < d->n); return d->items[i]; }

fg_value *fg_value_dict_take(fg_value *d, const char *key) {
  size_t i = find(d, key);
  if (i == (size_t)-1) return NULL;
  fg_value *v = d->items[i];
  free(d->keys[i]);
  memmove(d->items + i, d->items + i + 1, (d->n - i - 1) * sizeof *d->items);
  memmove(d->keys + i, d->keys + i + 1, (d->n - i - 1) * sizeof *d->keys);
  d->n--;
  return v;
}

int fg_value_dicts_sum(fg_value *const *vals, int n, fg_value **out, char **err) {
  fg_value *acc = fg_value_dict();
  int rc = 0;
  for (int r = 0; r < n && rc == 0; r++) {
    for (size_t k = 0; k < fg_value_len(vals[r]) && rc == 0; k++) {
      const char *key = fg_value_dict_key_at(vals[r], k);
      const fg_value *v = fg_value_dict_value_at(vals[r], k);
      const fg_value *old = fg_value_dict_get(acc, key);
      if (old == NULL) {
        fg_value_dict_set(acc, key, fg_value_copy(v));
      } else if (fg_value_kind_of(v) == FG_VALUE_TENSOR && fg_value_kind_of(old) == FG_VALUE_TENSOR) {
        fg_tensor *s = NULL;
        if ((rc = fg_op_add(fg_value_as_tensor(old), fg_value_as_tensor(v), &s, err)) == 0)
          fg_value_dict_set(acc, key, fg_value_tensor(s));
      } else if (fg_value_kind_of(v) == FG_VALUE_INT && fg_value_kind_of(old) == FG_VALUE_INT) {
        fg_value_dict_set(acc, key, fg_value_int(fg_value_as_int(old) + fg_value_as_int(v)));
      } else {
        fg_value_dict_set(acc, key, fg_value_double(fg_value_as_double(old) + fg_value_as_double(v)));
      }
    }
  }
  if (rc) {
    fg_value_free(acc);
    return rc;
  }
  *out = acc;
  return 0;
}
