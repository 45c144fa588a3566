/* Loading configs: `__base__` inheritance at any mapping level, several
 * --config files, and LightningCLI-style command-line overrides. */
#include <errno.h>
#include <libgen.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>

#include "config/node_internal.h"
#include "util/limits.h"
#include "util/xalloc.h"

/* The files being loaded, outermost first, to name a cycle's chain. */
typedef struct chain {
  const struct chain *up;
  const char *real; /* realpath, for comparing */
  const char *shown; /* as written, for messages */
  size_t *loads;     /* files read so far by the whole load (FG_CONFIG_MAX_BASE_FILES) */
} chain;

static int resolve(fg_node *n, const char *dir, const chain *ch, const char *path,
                   char **err);

static char *dir_of(const char *file) {
  char *copy = fg__xstrdup(file);
  char *d = fg__xstrdup(dirname(copy));
  free(copy);
  return d;
}

static char *join_path(const char *dir, const char *rel) {
  if (rel[0] == '/' || dir == NULL || *dir == '\0') return fg__xstrdup(rel);
  return fg__xasprintf("%s/%s", dir, rel);
}

/* Loads `file` with its own bases resolved; `at` is the node that named
 * it (for messages). */
static int load_with_bases(const char *file, const chain *ch, const fg_node *at,
                           const char *path, fg_node **out, char **err) {
  char real[PATH_MAX];
  if (realpath(file, real) == NULL) {
    if (at)
      return fg_config_error(err, at, path, "cannot read base config '%s': %s", file,
                             strerror(errno));
    return fg_err_set(err, errno == ENOENT ? FG_ENOENT : FG_EIO, "cannot read '%s': %s", file,
                      strerror(errno));
  }
  for (const chain *c = ch; c; c = c->up) {
    if (strcmp(c->real, real) != 0) continue;
    /* Name the chain from the first file of the cycle to its return. */
    size_t depth = 0;
    for (const chain *d = ch; d != c->up; d = d->up) depth++;
    const char **names = fg__xmalloc((depth + 1) * sizeof *names);
    size_t k = depth;
    for (const chain *d = ch; d != c->up; d = d->up) names[--k] = d->shown;
    size_t len = strlen(file) + 1;
    for (size_t i = 0; i < depth; i++) len += strlen(names[i]) + 4;
    char *msg = fg__xmalloc(len);
    msg[0] = '\0';
    for (size_t i = 0; i < depth; i++) {
      strcat(msg, names[i]);
      strcat(msg, " -> ");
    }
    strcat(msg, file);
    int rc = fg_config_error(err, at, path, "__base__ cycle: %s", msg);
    free(msg);
    free(names);
    return rc;
  }
  size_t *loads = ch->loads;
  if (++*loads > FG_CONFIG_MAX_BASE_FILES)
    return fg_config_error(err, at, path, "__base__ reads more than %u files (the limit)",
                           FG_CONFIG_MAX_BASE_FILES);
  fg_node *n = NULL;
  int rc = fg_node_parse_file(file, &n, err);
  if (rc) return rc;
  chain here = {ch, real, file, loads};
  char *dir = dir_of(file);
  rc = resolve(n, dir, &here, "", err);
  free(dir);
  if (rc) {
    fg_node_free(n);
    return rc;
  }
  *out = n;
  return 0;
}

/* One `__base__` entry: "path" or [path, key.path]. */
static int load_base_entry(const fg_node *e, const char *dir, const chain *ch,
                           const char *path, fg_node **out, char **err) {
  const fg_node *file = e, *sub = NULL;
  if (e->kind == FG_NODE_SEQ) {
    if (e->len != 2 || e->items[0]->kind != FG_NODE_STRING ||
        e->items[1]->kind != FG_NODE_STRING)
      return fg_config_error(err, e, path, "expected a base as a path or [path, key.path]");
    file = e->items[0];
    sub = e->items[1];
  } else if (e->kind != FG_NODE_STRING) {
    return fg_config_error(err, e, path,
                           "expected a path, a list of paths or [path, key.path] pairs, got %s",
                           fg_node_kind_name(e->kind));
  }
  char *full = join_path(dir, file->u.s);
  fg_node *doc = NULL;
  int rc = load_with_bases(full, ch, file, path, &doc, err);
  free(full);
  if (rc) return rc;
  if (sub) {
    fg_node *part = fg_node_path(doc, sub->u.s);
    if (part == NULL) {
      rc = fg_config_error(err, sub, path, "'%s' has no key path '%s'", file->u.s, sub->u.s);
      fg_node_free(doc);
      return rc;
    }
    fg_node *copy = fg_node_clone(part);
    fg_node_free(doc);
    doc = copy;
  }
  *out = doc;
  return 0;
}

static int resolve(fg_node *n, const char *dir, const chain *ch, const char *path,
                   char **err) {
  int rc = 0;
  if (n->kind == FG_NODE_SEQ) {
    for (size_t i = 0; i < n->len && rc == 0; i++) {
      char *p = fg__keypath_index(path, (long)i);
      rc = resolve(n->items[i], dir, ch, p, err);
      free(p);
    }
    return rc;
  }
  if (n->kind != FG_NODE_MAP) return 0;
  /* `__import__` holds YAML anchors for the rest of the file; the parser has
   * resolved its aliases, so it is dropped at every level, as
   * lightning_template's loader drops it. */
  fg_node_free(fg_node_map_take(n, "__import__"));
  for (size_t i = 0; i < n->len && rc == 0; i++) {
    if (strcmp(n->keys[i], "__base__") == 0) continue;
    char *p = fg__keypath_join(path, n->keys[i]);
    rc = resolve(n->items[i], dir, ch, p, err);
    free(p);
  }
  if (rc) return rc;
  fg_node *bases = fg_node_get(n, "__base__");
  if (bases == NULL) return 0;
  if (bases->kind == FG_NODE_NULL) {
    /* No bases: the mapping stays as written, keywords and all. */
    fg_node_free(fg_node_map_take(n, "__base__"));
    return 0;
  }
  char *bpath = fg__keypath_join(path, "__base__");
  /* A list of entries, unless it is a single [path, key.path] pair: that
   * is a list of two strings whose second is not a file. Pairs must be
   * written inside a list ([[file, key]]), as CONFIG.md shows. The bases
   * merge onto an empty mapping one by one (so a `__delete__` at the top of
   * the first base has nothing to delete), then the mapping's own keys
   * merge onto them. */
  fg_node *merged = fg_node_new_map();
  merged->mark = n->mark;
  size_t n_entries = bases->kind == FG_NODE_SEQ ? bases->len : 1;
  for (size_t i = 0; i < n_entries && rc == 0; i++) {
    fg_node *one = NULL;
    rc = load_base_entry(bases->kind == FG_NODE_SEQ ? bases->items[i] : bases, dir, ch, bpath,
                         &one, err);
    if (rc == 0) rc = fg__deep_update_at(&merged, one, path, err);
    fg_node_free(one);
  }
  fg_node *own = NULL;
  if (rc == 0) {
    own = fg_node_clone(n);
    fg_node_free(fg_node_map_take(own, "__base__"));
  }
  /* Bases that merge to a list take the list keywords of the mapping
   * (`callbacks: {__base__: [[f, trainer.callbacks]], post_item: X}`); any
   * other mapping would replace them, losing the bases without a word. */
  if (rc == 0 && merged->kind != FG_NODE_MAP &&
      !(merged->kind == FG_NODE_SEQ && fg__has_list_keyword(own)))
    rc = fg_config_error(err, bases, bpath, "the bases of a mapping must be mappings, got %s%s",
                         fg_node_kind_name(merged->kind),
                         merged->kind == FG_NODE_SEQ
                             ? " (a list takes only the list keywords: __delete__, change_item, "
                               "pre_item, post_item, insert_item)"
                             : "");
  free(bpath);
  if (rc == 0) rc = fg__deep_update_at(&merged, own, path, err);
  fg_node_free(own);
  if (rc) {
    fg_node_free(merged);
    return rc;
  }
  if (merged->kind == FG_NODE_MAP && merged->mark.file == NULL) merged->mark = n->mark;
  fg__node_replace(n, merged);
  return 0;
}

/* The root of a load's chain: a link no file matches (realpaths are
 * absolute), to carry the count of files the whole load reads. */
#define CHAIN_TOP(loads) {NULL, "", "", (loads)}

int fg_config_resolve_bases(fg_node *root, const char *base_dir, char **err) {
  if (root == NULL) return 0;
  size_t loads = 0;
  chain top = CHAIN_TOP(&loads);
  return resolve(root, base_dir ? base_dir : ".", &top, "", err);
}

int fg_config_load_file(const char *path, fg_node **out, char **err) {
  size_t loads = 0;
  chain top = CHAIN_TOP(&loads);
  return load_with_bases(path, &top, NULL, "", out, err);
}

/* ---- command-line overrides ---------------------------------------------------- */

int fg_config_apply_override(fg_node **root, const char *arg, const char *value,
                             char **err) {
  if (strncmp(arg, "--", 2) != 0 || arg[2] == '\0' || arg[2] == '=' || arg[2] == '.')
    return fg_err_set(err, FG_ECONFIG, "override '%s': expected --key.path=VALUE or --key.path VALUE",
                      arg);
  const char *key = arg + 2;
  const char *eq = strchr(key, '=');
  char *keypath, *text, *label;
  if (eq) {
    if (value)
      return fg_err_set(err, FG_ECONFIG, "override '%s': give the value after '=' or as the next argument, not both", arg);
    keypath = fg__xstrndup(key, (size_t)(eq - key));
    text = fg__xstrdup(eq + 1);
    label = fg__xasprintf("<override %s>", arg);
  } else {
    if (value == NULL)
      return fg_err_set(err, FG_ECONFIG, "override '%s': missing value", arg);
    keypath = fg__xstrdup(key);
    text = fg__xstrdup(value);
    label = fg__xasprintf("<override %s %s>", arg, value);
  }
  int rc = 0;
  fg_node *v = NULL;
  size_t kl = strlen(keypath);
  if (kl == 0 || keypath[kl - 1] == '.' || strstr(keypath, "..")) {
    rc = fg_err_set(err, FG_ECONFIG, "override '%s': '%s' is not a key path", arg, keypath);
    goto out;
  }
  if ((rc = fg_node_parse(text, strlen(text), label, &v, err))) goto out;

  /* Work on a copy: a failed override leaves the config as it was. */
  fg_node *copy = *root ? fg_node_clone(*root) : fg_node_new_map();
  if (copy->kind == FG_NODE_NULL) {
    fg_node_free(copy);
    copy = fg_node_new_map();
  }
  fg_node **slot = &copy;
  char *p = keypath;
  char *walked = fg__xstrdup("");
  while (rc == 0) {
    char *dot = strchr(p, '.');
    if (dot) *dot = '\0';
    fg_node *cur = *slot;
    char *next_walked = fg__keypath_join(walked, p);
    if (cur->kind == FG_NODE_NULL) {
      fg__node_replace(cur, fg_node_new_map());
    }
    if (cur->kind == FG_NODE_MAP) {
      fg_node *child = fg_node_get(cur, p);
      if (child == NULL) {
        child = dot ? fg_node_new_map() : fg_node_new_null();
        fg_node_map_set(cur, p, child);
      }
      for (size_t i = 0; i < cur->len; i++)
        if (cur->items[i] == child) slot = &cur->items[i];
    } else if (cur->kind == FG_NODE_SEQ) {
      long i;
      if (!fg__parse_index(p, strlen(p), &i)) {
        rc = fg_err_set(err, FG_ECONFIG, "override '%s': '%s' is a list; '%s' is not an index",
                        arg, *walked ? walked : "(top level)", p);
      } else {
        long at = i < 0 ? i + (long)cur->len : i;
        if (at < 0 || at >= (long)cur->len)
          rc = fg_err_set(err, FG_ECONFIG,
                          "override '%s': index %ld is out of range for '%s' (%zu items)", arg, i,
                          *walked ? walked : "(top level)", cur->len);
        else
          slot = &cur->items[at];
      }
    } else {
      rc = fg_config_error(err, cur, walked, "override '%s': cannot set a key inside %s", arg,
                           fg_node_kind_name(cur->kind));
    }
    free(walked);
    walked = next_walked;
    if (!dot || rc) break;
    p = dot + 1;
  }
  free(walked);
  /* As jsonargparse does: an object with another class_path replaces the
   * old object instead of merging into it, so `--data.init_args.dataset_cfg
   * "{class_path: B, ...}"` does not inherit A's init_args (or a split
   * config's fit/val keys). */
  if (rc == 0 && v->kind == FG_NODE_MAP && fg_node_str(fg_node_get(v, "class_path")) &&
      (*slot)->kind == FG_NODE_MAP) {
    const char *old = fg_node_str(fg_node_get(*slot, "class_path"));
    if (old == NULL || strcmp(old, fg_node_str(fg_node_get(v, "class_path"))) != 0)
      fg__node_replace(*slot, fg_node_new_null());
  }
  if (rc == 0) rc = fg__deep_update_at(slot, v, keypath, err);
  if (rc == 0) {
    fg_node_free(*root);
    *root = copy;
  } else {
    fg_node_free(copy);
  }
out:
  fg_node_free(v);
  free(keypath);
  free(text);
  free(label);
  return rc;
}

int fg_config_load(const char *const *files, size_t n_files, const char *const *overrides,
                   size_t n_overrides, fg_node **out, char **err) {
  fg_node *merged = NULL;
  int rc = 0;
  for (size_t i = 0; i < n_files && rc == 0; i++) {
    fg_node *one = NULL;
    rc = fg_config_load_file(files[i], &one, err);
    if (rc == 0) {
      if (merged == NULL) {
        merged = one;
        one = NULL;
      } else {
        rc = fg_config_deep_update(&merged, one, err);
      }
    }
    fg_node_free(one);
  }
  if (rc == 0 && merged == NULL) merged = fg_node_new_map();
  for (size_t i = 0; i < n_overrides && rc == 0; i++) {
    const char *arg = overrides[i];
    const char *value = NULL;
    if (strchr(arg, '=') == NULL) {
      if (i + 1 >= n_overrides) {
        rc = fg_err_set(err, FG_ECONFIG, "override '%s': missing value", arg);
        break;
      }
      value = overrides[++i];
    }
    rc = fg_config_apply_override(&merged, arg, value, err);
  }
  if (rc) {
    fg_node_free(merged);
    return rc;
  }
  *out = merged;
  return 0;
}
