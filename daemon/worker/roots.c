/* See roots.h. Which keys hold paths: the engine's schemas do not mark
 * them, so the rule is by name, and it errs on the side of checking: keys
 * named path, images, labels, root, dirpath, plugins (each item), and any
 * key ending in _path, _dir, _file or _root but class_path. A value of null or "" names
 * nothing. */
#include "roots.h"

#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "fulgur/error.h"
#include "util/xalloc.h"

static bool ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

static bool is_path_key(const char *k) {
  if (strcmp(k, "class_path") == 0) return false; /* a class name, not a file */
  static const char *const exact[] = {"path", "images", "labels", "root", "dirpath", "plugins"};
  for (size_t i = 0; i < sizeof exact / sizeof exact[0]; i++)
    if (strcmp(k, exact[i]) == 0) return true;
  return ends_with(k, "_path") || ends_with(k, "_dir") || ends_with(k, "_file") ||
         ends_with(k, "_root");
}

/* The real path of p even when its tail does not exist yet (an output
 * folder): the longest existing prefix is resolved and the rest appended.
 * A ".." in the part that does not exist could climb anywhere once
 * created, so it is refused (NULL). */
static char *resolve(const char *p, const char *cwd) {
  char *abs = p[0] == '/' ? fg__xstrdup(p) : fg__xasprintf("%s/%s", cwd, p);
  char *cut = abs + strlen(abs);
  for (;;) {
    char saved = *cut;
    *cut = '\0';
    char *real = realpath(abs[0] ? abs : "/", NULL);
    *cut = saved;
    if (real) {
      const char *rest = cut;
      while (*rest == '/') rest++;
      char *out;
      if (*rest == '\0') {
        out = real;
      } else {
        /* Refuse ".." components in the part that does not exist. */
        char *dup = fg__xstrdup(rest), *save = NULL;
        bool bad = false;
        for (char *t = strtok_r(dup, "/", &save); t; t = strtok_r(NULL, "/", &save))
          if (strcmp(t, "..") == 0) bad = true;
        free(dup);
        if (bad) {
          free(real);
          free(abs);
          return NULL;
        }
        out = fg__xasprintf("%s%s%s", real, strcmp(real, "/") == 0 ? "" : "/", rest);
        free(real);
      }
      free(abs);
      return out;
    }
    /* Step back to the previous '/'. */
    while (cut > abs && *(cut - 1) != '/') cut--;
    if (cut == abs) {
      free(abs);
      return NULL;
    }
    cut--; /* onto the '/' */
    while (cut > abs && *(cut - 1) == '/') cut--;
    if (cut == abs) cut = abs + 1; /* "/" itself */
  }
}

static bool under(const char *real, const char *root) {
  size_t n = strlen(root);
  if (n == 1 && root[0] == '/') return true;
  return strncmp(real, root, n) == 0 && (real[n] == '\0' || real[n] == '/');
}

static int check_value(const fg_node *v, const char *keypath, const char *cwd,
                       const char *const *roots, size_t n_roots, char **err) {
  const char *s = fg_node_str(v);
  if (s == NULL || s[0] == '\0') return 0;
  char *real = resolve(s, cwd);
  bool ok = false;
  for (size_t i = 0; real && i < n_roots && !ok; i++) ok = under(real, roots[i]);
  if (ok) {
    free(real);
    return 0;
  }
  size_t len = 0;
  for (size_t i = 0; i < n_roots; i++) len += strlen(roots[i]) + 2;
  char *list = fg__xcalloc(1, len + 1);
  for (size_t i = 0; i < n_roots; i++) {
    if (i) strcat(list, ", ");
    strcat(list, roots[i]);
  }
  int rc = fg_config_error(err, v, keypath, "'%s' %s%s%s outside the allowed roots (%s)", s,
                           real ? "resolves to '" : "climbs with '..'", real ? real : "",
                           real ? "'," : "", list);
  free(list);
  free(real);
  return rc == FG_ECONFIG ? FG_EPERM : rc;
}

static int walk(const fg_node *n, const char *keypath, bool path_key, const char *cwd,
                const char *const *roots, size_t n_roots, char **err) {
  switch (fg_node_kind_of(n)) {
    case FG_NODE_MAP:
      for (size_t i = 0; i < fg_node_len(n); i++) {
        const char *k = fg_node_key_at(n, i);
        char *kp = keypath[0] ? fg__xasprintf("%s.%s", keypath, k) : fg__xstrdup(k);
        int rc = walk(fg_node_value_at(n, i), kp, is_path_key(k), cwd, roots, n_roots, err);
        free(kp);
        if (rc) return rc;
      }
      return 0;
    case FG_NODE_SEQ:
      for (size_t i = 0; i < fg_node_len(n); i++) {
        char *kp = fg__xasprintf("%s[%zu]", keypath, i);
        int rc = walk(fg_node_at(n, i), kp, path_key, cwd, roots, n_roots, err);
        free(kp);
        if (rc) return rc;
      }
      return 0;
    case FG_NODE_STRING:
      return path_key ? check_value(n, keypath, cwd, roots, n_roots, err) : 0;
    default:
      return 0;
  }
}

int fg_roots_check(const fg_node *config, const char *cwd, const char *const *roots,
                   size_t n_roots, char **err) {
  return walk(config, "", false, cwd, roots, n_roots, err);
}
