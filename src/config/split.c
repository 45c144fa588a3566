/* Split configs (CONFIG.md "Split configs" and "Split attr set"): one
 * value written with optional fit/val/test/predict entries, expanded into
 * an explicit config per split. */
#include <stdlib.h>
#include <string.h>

#include "config/node_internal.h"
#include "util/xalloc.h"

const char *const fg_split_names[FG_SPLIT_COUNT] = {"fit", "val", "test", "predict"};

static bool is_split_name(const char *k) {
  for (int s = 0; s < FG_SPLIT_COUNT; s++)
    if (strcmp(k, fg_split_names[s]) == 0) return true;
  return false;
}

typedef struct {
  fg_node *format_to;   /* SEQ of STRING, owned */
  const char *names[FG_SPLIT_COUNT];
  const char *prefix;
  const char *sep;
} split_info;

static int expect_string(const fg_node *v, const char *path, char **err) {
  if (v->kind == FG_NODE_STRING) return 0;
  return fg_config_error(err, v, path, "expected a string, got %s", fg_node_kind_name(v->kind));
}

static int read_split_info(const fg_node *si, const char *path, split_info *out, char **err) {
  static const char *const defaults[FG_SPLIT_COUNT] = {"train", "val", "val", "val"};
  static const char *const keys[] = {"split_format_to", "split_name_map", "split_prefix",
                                     "split_attr_split_str"};
  for (int s = 0; s < FG_SPLIT_COUNT; s++) out->names[s] = defaults[s];
  out->prefix = "init_args";
  out->sep = ".";
  out->format_to = fg_node_new_seq();
  if (si->kind != FG_NODE_MAP)
    return fg_config_error(err, si, path, "expected a mapping, got %s",
                           fg_node_kind_name(si->kind));
  int rc = 0;
  for (size_t i = 0; i < si->len && rc == 0; i++) {
    const char *k = si->keys[i];
    const fg_node *v = si->items[i];
    char *kp = fg__keypath_join(path, k);
    if (strcmp(k, "split_format_to") == 0) {
      if (v->kind == FG_NODE_STRING) {
        fg_node_seq_append(out->format_to, fg_node_clone(v));
      } else if (v->kind == FG_NODE_SEQ) {
        for (size_t j = 0; j < v->len && rc == 0; j++)
          if ((rc = expect_string(v->items[j], kp, err)) == 0)
            fg_node_seq_append(out->format_to, fg_node_clone(v->items[j]));
      } else {
        rc = fg_config_error(err, v, kp, "expected a string or a list of strings, got %s",
                             fg_node_kind_name(v->kind));
      }
    } else if (strcmp(k, "split_name_map") == 0) {
      if (v->kind != FG_NODE_MAP) {
        rc = fg_config_error(err, v, kp, "expected a mapping from split to name, got %s",
                             fg_node_kind_name(v->kind));
      }
      for (size_t j = 0; rc == 0 && j < fg_node_len(v); j++) {
        char *np = fg__keypath_join(kp, v->keys[j]);
        int s;
        for (s = 0; s < FG_SPLIT_COUNT; s++)
          if (strcmp(v->keys[j], fg_split_names[s]) == 0) break;
        if (s == FG_SPLIT_COUNT)
          rc = fg_config_error(err, v->items[j], np,
                               "unknown split '%s' (expected fit, val, test or predict)",
                               v->keys[j]);
        else if ((rc = expect_string(v->items[j], np, err)) == 0)
          out->names[s] = v->items[j]->u.s;
        free(np);
      }
    } else if (strcmp(k, "split_prefix") == 0) {
      if (v->kind == FG_NODE_NULL) out->prefix = "";
      else if ((rc = expect_string(v, kp, err)) == 0) out->prefix = v->u.s;
    } else if (strcmp(k, "split_attr_split_str") == 0) {
      if ((rc = expect_string(v, kp, err)) == 0) {
        if (v->u.s[0] == '\0') rc = fg_config_error(err, v, kp, "expected a non-empty separator");
        else out->sep = v->u.s;
      }
    } else {
      const char *close = fg_closest_name(k, keys, 4);
      rc = fg_config_error(err, v, kp, "unknown key '%s' in split_info%s%s%s", k,
                           close ? " (did you mean '" : "", close ? close : "",
                           close ? "'?)" : "");
    }
    free(kp);
  }
  return rc;
}

/* Splits `s` at every occurrence of sep into a NULL-terminated array. */
static char **split_str(const char *s, const char *sep, size_t *n) {
  size_t cap = 4, count = 0, sl = strlen(sep);
  char **parts = fg__xmalloc(cap * sizeof *parts);
  for (;;) {
    const char *hit = strstr(s, sep);
    if (count + 2 > cap) parts = fg__xrealloc(parts, (cap *= 2) * sizeof *parts);
    if (hit == NULL) {
      parts[count++] = fg__xstrdup(s);
      break;
    }
    parts[count++] = fg__xstrndup(s, (size_t)(hit - s));
    s = hit + sl;
  }
  parts[count] = NULL;
  *n = count;
  return parts;
}

static void free_parts(char **parts) {
  for (char **p = parts; *p; p++) free(*p);
  free(parts);
}

/* An identifier as string.Template's idpattern reads one: [_a-zA-Z][_a-zA-Z0-9]*
 * (ASCII). Returns its length, 0 when s does not start one. */
static size_t ident_len(const char *s) {
  if (!(*s == '_' || (*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z'))) return 0;
  size_t n = 1;
  while (s[n] == '_' || (s[n] >= 'a' && s[n] <= 'z') || (s[n] >= 'A' && s[n] <= 'Z') ||
         (s[n] >= '0' && s[n] <= '9'))
    n++;
  return n;
}

static bool is_split_ident(const char *s, size_t n) {
  return n == 5 && strncmp(s, "split", 5) == 0;
}

/* string.Template(s).safe_substitute(split=name), as lightning_template
 * fills split_format_to: `$$` is a literal `$`; `$split` and `${split}`
 * become the name; any other `$identifier`, `${identifier}` or lone `$`
 * stays as written (`$splitx` is the identifier splitx, not $split + x). */
static char *substitute_split(const char *s, const char *name) {
  size_t nl = strlen(name), cap = strlen(s) + 1;
  for (const char *p = s; (p = strchr(p, '$')); p++) cap += nl;
  char *out = fg__xmalloc(cap), *o = out;
  while (*s) {
    if (*s != '$') {
      *o++ = *s++;
      continue;
    }
    size_t n;
    if (s[1] == '$') {
      *o++ = '$';
      s += 2;
    } else if ((n = ident_len(s + 1)) > 0) {
      if (is_split_ident(s + 1, n)) {
        memcpy(o, name, nl);
        o += nl;
      } else {
        memcpy(o, s, n + 1);
        o += n + 1;
      }
      s += n + 1;
    } else if (s[1] == '{' && (n = ident_len(s + 2)) > 0 && s[2 + n] == '}') {
      if (is_split_ident(s + 2, n)) {
        memcpy(o, name, nl);
        o += nl;
      } else {
        memcpy(o, s, n + 3);
        o += n + 3;
      }
      s += n + 3;
    } else {
      *o++ = *s++; /* a `$` that starts nothing stays */
    }
  }
  *o = '\0';
  return out;
}

/* Applies split_info to one split item (an object config). */
static int apply_info(fg_node *item, const split_info *si, const char *name, const char *path,
                      char **err) {
  if (item->kind == FG_NODE_NULL) return 0;
  if (item->kind != FG_NODE_MAP)
    return fg_config_error(err, item, path, "expected a mapping to apply split_info to, got %s",
                           fg_node_kind_name(item->kind));
  fg_node *base = item;
  char *bpath = fg__xstrdup(path);
  int rc = 0;
  if (si->prefix[0]) {
    size_t n;
    char **parts = split_str(si->prefix, si->sep, &n);
    for (size_t i = 0; i < n && rc == 0; i++) {
      char *np = fg__keypath_join(bpath, parts[i]);
      free(bpath);
      bpath = np;
      fg_node *child = fg_node_get(base, parts[i]);
      if (child == NULL || child->kind == FG_NODE_NULL) {
        child = fg_node_new_map();
        fg_node_map_set(base, parts[i], child);
      } else if (child->kind != FG_NODE_MAP) {
        rc = fg_config_error(err, child, bpath, "expected a mapping (split_prefix), got %s",
                             fg_node_kind_name(child->kind));
      }
      base = child;
    }
    free_parts(parts);
  }
  for (size_t f = 0; rc == 0 && f < si->format_to->len; f++) {
    size_t n;
    char **parts = split_str(si->format_to->items[f]->u.s, si->sep, &n);
    fg_node *cur = base;
    char *p = fg__xstrdup(bpath);
    for (size_t i = 0; i + 1 < n && rc == 0; i++) {
      char *np = fg__keypath_join(p, parts[i]);
      free(p);
      p = np;
      fg_node *next = cur->kind == FG_NODE_MAP ? fg_node_get(cur, parts[i]) : NULL;
      if (cur->kind == FG_NODE_SEQ) {
        long idx;
        if (fg__parse_index(parts[i], strlen(parts[i]), &idx)) next = fg_node_path(cur, parts[i]);
      }
      if (next == NULL)
        rc = fg_config_error(err, item, p, "split_format_to '%s': '%s' does not exist",
                             si->format_to->items[f]->u.s, p);
      cur = next;
    }
    if (rc == 0) {
      char *np = fg__keypath_join(p, parts[n - 1]);
      free(p);
      p = np;
      if (cur->kind != FG_NODE_MAP) {
        rc = fg_config_error(err, cur, p, "split_format_to '%s': expected a mapping around '%s', got %s",
                             si->format_to->items[f]->u.s, parts[n - 1],
                             fg_node_kind_name(cur->kind));
      } else {
        fg_node *attr = fg_node_get(cur, parts[n - 1]);
        if (attr == NULL || attr->kind == FG_NODE_NULL) {
          fg_node *fresh = fg_node_new_string("$split");
          if (attr) fresh->mark = attr->mark;
          fg_node_map_set(cur, parts[n - 1], fresh);
          attr = fresh;
        }
        if (attr->kind != FG_NODE_STRING) {
          rc = fg_config_error(err, attr, p, "expected a string to put the split name in, got %s",
                               fg_node_kind_name(attr->kind));
        } else {
          char *s = substitute_split(attr->u.s, name);
          free(attr->u.s);
          attr->u.s = s;
        }
      }
    }
    free(p);
    free_parts(parts);
  }
  free(bpath);
  return rc;
}

int fg_config_expand_split(const fg_node *value, const char *keypath, fg_node **out,
                           char **err) {
  fg_node *res = fg_node_new_map();
  if (value) res->mark = value->mark;
  bool written = false;
  if (value && value->kind == FG_NODE_MAP)
    for (size_t i = 0; i < value->len; i++)
      if (is_split_name(value->keys[i])) written = true;
  if (!written) {
    fg_node *same = value ? fg_node_clone(value) : fg_node_new_null();
    /* split_info means nothing without split keys; it must not reach the
     * object's own key checks. */
    if (same->kind == FG_NODE_MAP) fg_node_free(fg_node_map_take(same, "split_info"));
    for (int s = 0; s < FG_SPLIT_COUNT; s++)
      fg_node_map_set(res, fg_split_names[s], s + 1 < FG_SPLIT_COUNT ? fg_node_clone(same) : same);
    *out = res;
    return 0;
  }
  int rc = 0;
  for (size_t i = 0; i < value->len && rc == 0; i++) {
    const char *k = value->keys[i];
    if (is_split_name(k) || strcmp(k, "split_info") == 0) continue;
    static const char *const known[] = {"fit", "val", "test", "predict", "split_info"};
    const char *close = fg_closest_name(k, known, 5);
    char *kp = fg__keypath_join(keypath, k);
    rc = fg_config_error(err, value->items[i], kp,
                         "unknown key '%s' in a split config (expected fit, val, test, predict "
                         "or split_info)%s%s%s",
                         k, close ? " (did you mean '" : "", close ? close : "",
                         close ? "'?)" : "");
    free(kp);
  }
  split_info si = {0};
  const fg_node *info = fg_node_get(value, "split_info");
  if (rc == 0 && info) {
    char *ip = fg__keypath_join(keypath, "split_info");
    rc = read_split_info(info, ip, &si, err);
    free(ip);
  }
  fg_node *prev = NULL; /* what the next split inherits */
  for (int s = 0; s < FG_SPLIT_COUNT && rc == 0; s++) {
    const fg_node *entry = fg_node_get(value, fg_split_names[s]);
    char *sp = fg__keypath_join(keypath, fg_split_names[s]);
    fg_node *result;
    if (entry && entry->kind == FG_NODE_SEQ) {
      result = fg_node_new_seq();
      result->mark = entry->mark;
      fg_node *last = prev ? fg_node_clone(prev) : NULL;
      for (size_t j = 0; j < entry->len && rc == 0; j++) {
        char *ip = fg__keypath_index(sp, (long)j);
        fg_node *item = last ? fg_node_clone(last) : NULL;
        rc = fg__deep_update_at(&item, entry->items[j], ip, err);
        if (rc == 0) {
          fg_node_free(last);
          last = fg_node_clone(item);
          if (j == 0) {
            fg_node_free(prev);
            prev = fg_node_clone(item);
          }
          fg_node_seq_append(result, item);
        } else {
          fg_node_free(item);
        }
        free(ip);
      }
      fg_node_free(last);
    } else {
      result = prev ? fg_node_clone(prev) : fg_node_new_null();
      if (entry) rc = fg__deep_update_at(&result, entry, sp, err);
      if (rc == 0) {
        fg_node_free(prev);
        prev = fg_node_clone(result);
      }
    }
    if (rc == 0 && info) {
      bool list = result->kind == FG_NODE_SEQ;
      size_t n = list ? result->len : 1;
      for (size_t j = 0; j < n && rc == 0; j++) {
        char *ip = list ? fg__keypath_index(sp, (long)j) : fg__xstrdup(sp);
        rc = apply_info(list ? result->items[j] : result, &si, si.names[s], ip, err);
        free(ip);
      }
    }
    fg_node_map_set(res, fg_split_names[s], result);
    free(sp);
  }
  fg_node_free(prev);
  fg_node_free(si.format_to);
  if (rc) {
    fg_node_free(res);
    return rc;
  }
  *out = res;
  return 0;
}
