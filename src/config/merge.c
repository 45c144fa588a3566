/* Deep update (CONFIG.md "Deep update"): an override merged onto a source,
 * with `__delete__` and the list keywords. The list keywords are resolved
 * against the *original* list and applied together, so their results do
 * not depend on the order the keys were written in.
 *
 * What is merged onto nothing (a key the source lacks, a scalar, null) is
 * kept as written, keywords included, as lightning_template's deep_update
 * keeps it: a keyword waits for a later merge that has something to apply
 * it to (a dataset file's `tags: {pre_item: x}` reaches the runtime file's
 * tags when a run file merges both). Keywords that never meet their target
 * stay in the result, where validation names them as unknown keys. */
#include <stdlib.h>
#include <string.h>

#include "config/node_internal.h"
#include "util/xalloc.h"

char *fg__keypath_join(const char *path, const char *key) {
  if (path == NULL || *path == '\0') return fg__xstrdup(key);
  return fg__xasprintf("%s.%s", path, key);
}

char *fg__keypath_index(const char *path, long i) {
  if (path == NULL || *path == '\0') return fg__xasprintf("%ld", i);
  return fg__xasprintf("%s.%ld", path, i);
}

static const char *const list_keywords[] = {"__delete__", "change_item", "pre_item",
                                            "post_item", "insert_item"};
enum { N_LIST_KEYWORDS = 5 };

static bool is_list_keyword(const char *k) {
  for (int i = 0; i < N_LIST_KEYWORDS; i++)
    if (strcmp(k, list_keywords[i]) == 0) return true;
  return false;
}

bool fg__has_list_keyword(const fg_node *map) {
  if (map == NULL || map->kind != FG_NODE_MAP) return false;
  for (size_t i = 0; i < map->len; i++)
    if (is_list_keyword(map->keys[i])) return true;
  return false;
}

/* An index into a list of n items, negative counting from the end. */
static int list_index(const fg_node *v, size_t n, const char *path, const char *what,
                      size_t *out, char **err) {
  if (v == NULL || v->kind != FG_NODE_INT)
    return fg_config_error(err, v, path, "expected an index (an integer) for %s, got %s", what,
                           fg_node_kind_name(fg_node_kind_of(v)));
  int64_t i = v->u.i;
  if (i < 0) i += (int64_t)n;
  if (i < 0 || i >= (int64_t)n)
    return fg_config_error(err, v, path, "%s index %lld is out of range for a list of %zu items",
                           what, (long long)v->u.i, n);
  *out = (size_t)i;
  return 0;
}

/* ---- mapping onto mapping ------------------------------------------------------ */

/* `__delete__: true` is handled by the caller (the override replaces the
 * source); false deletes nothing.
 *
 * A source that holds list keywords is a list update still waiting for its
 * list (two files deferring onto the same missing key). Merging another
 * update into it works as lightning_template's deep_update does: key names
 * are deleted, list indices (which cannot name a key) are skipped, and an
 * index or false written alone replaces the waiting `__delete__`. */
static int delete_keys(fg_node *source, const fg_node *del, const char *path, char **err) {
  bool waiting = fg__has_list_keyword(source);
  char *dpath = fg__keypath_join(path, "__delete__");
  int rc = 0;
  if (waiting && (del->kind == FG_NODE_INT || (del->kind == FG_NODE_BOOL && !del->u.b))) {
    fg_node_map_set(source, "__delete__", fg_node_clone(del));
  } else if (del->kind == FG_NODE_BOOL) {
    /* nothing to do */
  } else if (del->kind == FG_NODE_STRING) {
    fg_node_free(fg_node_map_take(source, del->u.s));
  } else if (del->kind == FG_NODE_SEQ) {
    for (size_t i = 0; i < del->len && rc == 0; i++) {
      if (del->items[i]->kind == FG_NODE_STRING)
        fg_node_free(fg_node_map_take(source, del->items[i]->u.s));
      else if (!(waiting && del->items[i]->kind == FG_NODE_INT))
        rc = fg_config_error(err, del->items[i], dpath,
                             "expected key names to delete from a mapping, got %s",
                             fg_node_kind_name(del->items[i]->kind));
    }
  } else {
    rc = fg_config_error(err, del, dpath,
                         "expected true, a key or a list of keys to delete from a mapping, got %s",
                         fg_node_kind_name(del->kind));
  }
  free(dpath);
  return rc;
}

/* The override as written, without its own `__delete__`. */
static fg_node *clone_without_delete(const fg_node *ov) {
  fg_node *c = fg_node_clone(ov);
  fg_node_free(fg_node_map_take(c, "__delete__"));
  return c;
}

static int update_map(fg_node *source, const fg_node *ov, const char *path, char **err) {
  const fg_node *del = fg_node_get(ov, "__delete__");
  int rc = 0;
  if (del && del->kind == FG_NODE_BOOL && del->u.b) {
    /* Delete all: the override replaces the source, as written. */
    fg__node_replace(source, clone_without_delete(ov));
    return 0;
  }
  if (del && (rc = delete_keys(source, del, path, err))) return rc;
  for (size_t i = 0; i < ov->len && rc == 0; i++) {
    const char *k = ov->keys[i];
    if (strcmp(k, "__delete__") == 0) continue;
    char *kp = fg__keypath_join(path, k);
    fg_node *cur = fg_node_get(source, k);
    if (cur == NULL) {
      fg_node_map_set(source, k, fg_node_clone(ov->items[i]));
    } else {
      /* Update through the map's own slot: the update may replace the node. */
      for (size_t j = 0; j < source->len; j++)
        if (source->items[j] == cur) {
          rc = fg__deep_update_at(&source->items[j], ov->items[i], kp, err);
          break;
        }
    }
    free(kp);
  }
  return rc;
}

/* ---- mapping onto list ------------------------------------------------------------ */

typedef struct {
  size_t pos;   /* before original item pos (n = at the end) */
  size_t order; /* the order written, for ties */
  fg_node *item;
} insertion;

static int cmp_insertion(const void *a, const void *b) {
  const insertion *x = a, *y = b;
  if (x->pos != y->pos) return x->pos < y->pos ? -1 : 1;
  return x->order < y->order ? -1 : x->order > y->order;
}

/* [index, item] or [index, items, true]: checks the shape. */
static int pair_shape(const fg_node *p, const char *path, const char *kw, bool allow_expand,
                      char **err) {
  if (p->kind != FG_NODE_SEQ || p->len < 2 || p->len > (allow_expand ? 3u : 2u) ||
      (p->len == 3 && p->items[2]->kind != FG_NODE_BOOL))
    return fg_config_error(err, p, path, "expected %s entries as [index, item]%s, got %s", kw,
                           allow_expand ? " or [index, items, true]" : "",
                           p->kind == FG_NODE_SEQ ? "a list of another shape"
                                                  : fg_node_kind_name(p->kind));
  return 0;
}

static int update_list(fg_node **source, const fg_node *ov, const char *path, char **err) {
  fg_node *src = *source;
  size_t n = src->len;
  int rc = 0;
  for (size_t i = 0; i < ov->len; i++)
    if (!is_list_keyword(ov->keys[i])) {
      char *kp = fg__keypath_join(path, ov->keys[i]);
      rc = fg_config_error(err, ov->items[i], kp,
                           "unknown list keyword '%s' (expected __delete__, change_item, "
                           "pre_item, post_item or insert_item)",
                           ov->keys[i]);
      free(kp);
      return rc;
    }

  /* Everything is checked and built on copies first: an error leaves the
   * source as it was. */
  fg_node *items = fg_node_clone(src);
  bool *deleted = fg__xcalloc(n + 1, sizeof *deleted);
  insertion *ins = NULL;
  size_t n_ins = 0;
  fg_node *pre = fg_node_new_seq(), *post = fg_node_new_seq();

  const fg_node *v;
  if (rc == 0 && (v = fg_node_get(ov, "change_item"))) {
    char *kp = fg__keypath_join(path, "change_item");
    if (v->kind != FG_NODE_SEQ)
      rc = fg_config_error(err, v, kp, "expected a list of [index, item], got %s",
                           fg_node_kind_name(v->kind));
    for (size_t i = 0; rc == 0 && i < fg_node_len(v); i++) {
      size_t at;
      const fg_node *p = v->items[i];
      if ((rc = pair_shape(p, kp, "change_item", false, err))) break;
      if ((rc = list_index(p->items[0], n, kp, "change_item", &at, err))) break;
      char *ip = fg__keypath_index(path, (long)at);
      rc = fg__deep_update_at(&items->items[at], p->items[1], ip, err);
      free(ip);
    }
    free(kp);
  }
  if (rc == 0 && (v = fg_node_get(ov, "__delete__"))) {
    char *kp = fg__keypath_join(path, "__delete__");
    if (v->kind == FG_NODE_BOOL) {
      for (size_t i = 0; i < n; i++) deleted[i] = v->u.b;
    } else if (v->kind == FG_NODE_INT) {
      size_t at;
      if ((rc = list_index(v, n, kp, "__delete__", &at, err)) == 0) deleted[at] = true;
    } else if (v->kind == FG_NODE_SEQ) {
      for (size_t i = 0; rc == 0 && i < v->len; i++) {
        size_t at;
        if ((rc = list_index(v->items[i], n, kp, "__delete__", &at, err)) == 0) deleted[at] = true;
      }
    } else {
      rc = fg_config_error(err, v, kp,
                           "expected true, an index or a list of indices to delete from a "
                           "list, got %s",
                           fg_node_kind_name(v->kind));
    }
    free(kp);
  }
  if (rc == 0 && (v = fg_node_get(ov, "insert_item"))) {
    char *kp = fg__keypath_join(path, "insert_item");
    if (v->kind != FG_NODE_SEQ)
      rc = fg_config_error(err, v, kp, "expected a list of [index, item], got %s",
                           fg_node_kind_name(v->kind));
    for (size_t i = 0; rc == 0 && i < fg_node_len(v); i++) {
      const fg_node *p = v->items[i];
      if ((rc = pair_shape(p, kp, "insert_item", true, err))) break;
      if (p->items[0]->kind != FG_NODE_INT) {
        rc = fg_config_error(err, p->items[0], kp, "expected an index (an integer), got %s",
                             fg_node_kind_name(p->items[0]->kind));
        break;
      }
      int64_t at = p->items[0]->u.i;
      if (at < 0) at += (int64_t)n;
      if (at < 0) at = 0;             /* < -len prepends */
      if (at > (int64_t)n) at = (int64_t)n; /* >= len appends */
      bool expand = p->len == 3 && p->items[2]->u.b;
      const fg_node *what = p->items[1];
      if (expand && what->kind != FG_NODE_SEQ) {
        rc = fg_config_error(err, what, kp, "expected a list of items to insert (with true), got %s",
                             fg_node_kind_name(what->kind));
        break;
      }
      size_t count = expand ? what->len : 1;
      ins = fg__xrealloc(ins, (n_ins + count + 1) * sizeof *ins);
      for (size_t j = 0; j < count; j++) {
        ins[n_ins].pos = (size_t)at;
        ins[n_ins].order = n_ins;
        ins[n_ins].item = fg_node_clone(expand ? what->items[j] : what);
        n_ins++;
      }
    }
    free(kp);
  }
  static const char *const ends[] = {"pre_item", "post_item"};
  for (int e = 0; e < 2 && rc == 0; e++) {
    if ((v = fg_node_get(ov, ends[e])) == NULL) continue;
    fg_node *dst = e == 0 ? pre : post;
    if (v->kind == FG_NODE_SEQ)
      for (size_t i = 0; i < v->len; i++) fg_node_seq_append(dst, fg_node_clone(v->items[i]));
    else
      fg_node_seq_append(dst, fg_node_clone(v));
  }

  if (rc == 0) {
    /* ins is NULL when nothing is inserted, and qsort's array must not be
     * NULL even for no elements (UBSan: nonnull-attribute). */
    if (n_ins > 1) qsort(ins, n_ins, sizeof *ins, cmp_insertion);
    fg_node *out = fg_node_new_seq();
    out->mark = src->mark;
    while (pre->len) fg_node_seq_append(out, fg_node_seq_take(pre, 0));
    size_t k = 0;
    for (size_t i = 0; i <= n; i++) {
      for (; k < n_ins && ins[k].pos == i; k++) {
        fg_node_seq_append(out, ins[k].item);
        ins[k].item = NULL;
      }
      if (i < n && !deleted[i]) {
        fg_node_seq_append(out, items->items[i]);
        items->items[i] = NULL;
      }
    }
    while (post->len) fg_node_seq_append(out, fg_node_seq_take(post, 0));
    fg_node_free(src);
    *source = out;
  }
  /* items may hold NULL holes where nodes moved to out. */
  for (size_t i = 0; i < items->len; i++) fg_node_free(items->items[i]);
  items->len = 0;
  fg_node_free(items);
  for (size_t i = 0; i < n_ins; i++) fg_node_free(ins[i].item);
  free(ins);
  free(deleted);
  fg_node_free(pre);
  fg_node_free(post);
  return rc;
}

/* ---- entry points --------------------------------------------------------------- */

int fg__deep_update_at(fg_node **source, const fg_node *ov, const char *path, char **err) {
  if (ov == NULL) return 0;
  if (ov->kind != FG_NODE_MAP) {
    fg_node_free(*source);
    *source = fg_node_clone(ov);
    return 0;
  }
  fg_node *src = *source;
  if (src && src->kind == FG_NODE_SEQ && fg__has_list_keyword(ov))
    return update_list(source, ov, path, err);
  if (src == NULL || src->kind != FG_NODE_MAP) {
    /* Onto a scalar, a list (no keywords) or nothing: the mapping replaces
     * it as written; its keywords wait (see the top of this file). */
    fg_node_free(src);
    *source = fg_node_clone(ov);
    return 0;
  }
  /* Merge onto a copy so that an error loses nothing already accepted. */
  fg_node *copy = fg_node_clone(src);
  int rc = update_map(copy, ov, path, err);
  if (rc) {
    fg_node_free(copy);
    return rc;
  }
  fg__node_replace(src, copy);
  return 0;
}

int fg_config_deep_update(fg_node **source, const fg_node *override, char **err) {
  return fg__deep_update_at(source, override, "", err);
}
