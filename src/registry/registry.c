/* The class registry: a process-wide table of classes, filled with the
 * built-ins on first use and by plugins later. Lookups vastly outnumber
 * additions, but both are rare (config time), so one mutex is enough. */
#include "fulgur/registry.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "config/checked.h"
#include "fulgur/error.h"
#include "registry/builtins.h"
#include "util/assert.h"
#include "util/xalloc.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_once_t builtins_once = PTHREAD_ONCE_INIT;
static const fg_class **classes;
static size_t n_classes, cap_classes;

static const char *const kind_names[FG_KIND__COUNT] = {
    "a LightningModule", "a model",    "a DataModule", "a dataset",
    "a metric",          "a callback", "a logger",     "an optimizer",
    "an lr scheduler",
};

const char *fg_class_kind_name(fg_class_kind kind) {
  return kind < FG_KIND__COUNT ? kind_names[kind] : "an object";
}

static bool has_name(const fg_class *c, const char *name) {
  if (strcmp(c->name, name) == 0) return true;
  for (const char *const *a = c->aliases; a && *a; a++)
    if (strcmp(*a, name) == 0) return true;
  return false;
}

static const fg_class *find_locked(const char *name) {
  for (size_t i = 0; i < n_classes; i++)
    if (has_name(classes[i], name)) return classes[i];
  return NULL;
}

static int add_locked(const fg_class *cls, char **err) {
  if (find_locked(cls->name))
    return fg_err_set(err, FG_EINVAL, "class '%s' is already registered",
                      cls->name);
  for (const char *const *a = cls->aliases; a && *a; a++)
    if (find_locked(*a))
      return fg_err_set(err, FG_EINVAL, "class name '%s' is already registered",
                        *a);
  if (n_classes == cap_classes) {
    cap_classes = cap_classes ? cap_classes * 2 : 64;
    classes = fg__xrealloc(classes, cap_classes * sizeof *classes);
  }
  classes[n_classes++] = cls;
  return 0;
}

/* The built-ins come from one table (builtins.c); they are added inside
 * pthread_once, so not through the public add, which waits on the once. */
static void register_builtins(void) {
  pthread_mutex_lock(&lock);
  for (size_t i = 0; i < fg__n_builtin_classes; i++) {
    int rc = add_locked(fg__builtin_classes[i], NULL);
    /* Two built-ins with one name is a programming error. */
    FG_ASSERT(rc == 0);
  }
  pthread_mutex_unlock(&lock);
}

int fg_registry_add(const fg_class *cls, char **err) {
  pthread_once(&builtins_once, register_builtins);
  if (cls == NULL || cls->name == NULL || cls->create == NULL ||
      cls->kind >= FG_KIND__COUNT)
    return fg_err_set(err, FG_EINVAL, "class needs a name, a kind and create");
  pthread_mutex_lock(&lock);
  int rc = add_locked(cls, err);
  pthread_mutex_unlock(&lock);
  return rc;
}

const fg_class *fg_registry_find(const char *name) {
  pthread_once(&builtins_once, register_builtins);
  pthread_mutex_lock(&lock);
  const fg_class *c = find_locked(name);
  pthread_mutex_unlock(&lock);
  return c;
}

/* "; did you mean 'X'?" or a short list of known names of the kind. */
static char *suggestion(const char *name, fg_class_kind kind) {
  pthread_mutex_lock(&lock);
  size_t n = 0;
  const char **known = fg__xmalloc((n_classes * 4 + 1) * sizeof *known);
  for (size_t i = 0; i < n_classes; i++) {
    if (classes[i]->kind != kind) continue;
    known[n++] = classes[i]->name;
    for (const char *const *a = classes[i]->aliases; a && *a; a++)
      known[n++] = *a;
  }
  pthread_mutex_unlock(&lock);
  char *out;
  const char *close = fg_closest_name(name, known, n);
  if (close) {
    out = fg__xasprintf(" (did you mean '%s'?)", close);
  } else {
    size_t len = 0;
    for (size_t i = 0; i < n; i++) len += strlen(known[i]) + 2;
    out = fg__xmalloc(len + 16);
    strcpy(out, n ? " (known: " : "");
    for (size_t i = 0; i < n; i++) {
      strcat(out, known[i]);
      strcat(out, i + 1 < n ? ", " : ")");
    }
  }
  free(known);
  return out;
}

/* Whether obj passed a check as `kind` with defaults filled and is
 * unchanged since (config/checked.h): its class then needs no lookup of
 * aliases, schema or class check again. */
static const fg_class *checked_as(const fg_node *obj, fg_class_kind kind) {
  if (!fg__node_checked(obj)) return NULL;
  const fg_class *cls = fg_registry_find(fg_node_str(fg_node_get(obj, "class_path")));
  return cls && cls->kind == kind ? cls : NULL;
}

int fg_registry_check(fg_node *obj, const char *keypath, fg_class_kind kind,
                      bool fill_defaults, char **err) {
  pthread_once(&builtins_once, register_builtins);
  if (checked_as(obj, kind)) return 0;
  if (obj == NULL || fg_node_kind_of(obj) != FG_NODE_MAP)
    return fg_config_error(err, obj, keypath,
                           "expected %s as {class_path: NAME, init_args: "
                           "{...}}, got %s",
                           fg_class_kind_name(kind),
                           obj ? fg_node_kind_name(fg_node_kind_of(obj))
                               : "nothing");
  for (size_t i = 0; i < fg_node_len(obj); i++) {
    const char *k = fg_node_key_at(obj, i);
    if (strcmp(k, "class_path") != 0 && strcmp(k, "init_args") != 0) {
      char *path = fg__xasprintf("%s.%s", keypath, k);
      static const char *const allowed[] = {"class_path", "init_args"};
      const char *close = fg_closest_name(k, allowed, 2);
      int rc = fg_config_error(
          err, fg_node_value_at(obj, i), path,
          "unknown key '%s' in an object (expected class_path and "
          "init_args)%s%s%s",
          k, close ? " (did you mean '" : "", close ? close : "",
          close ? "'?)" : "");
      free(path);
      return rc;
    }
  }
  fg_node *cp = fg_node_get(obj, "class_path");
  if (cp == NULL || fg_node_kind_of(cp) != FG_NODE_STRING) {
    char *path = fg__xasprintf("%s.class_path", keypath);
    int rc = fg_config_error(err, cp ? cp : obj, path,
                             "expected the class name of %s as a string",
                             fg_class_kind_name(kind));
    free(path);
    return rc;
  }
  const fg_class *cls = fg_registry_find(fg_node_str(cp));
  if (cls == NULL || cls->kind != kind) {
    char *path = fg__xasprintf("%s.class_path", keypath);
    char *hint = suggestion(fg_node_str(cp), kind);
    int rc = cls ? fg_config_error(err, cp, path, "'%s' is %s, expected %s",
                                   fg_node_str(cp),
                                   fg_class_kind_name(cls->kind),
                                   fg_class_kind_name(kind))
                 : fg_config_error(err, cp, path, "unknown class '%s'%s",
                                   fg_node_str(cp), hint);
    free(hint);
    free(path);
    return rc;
  }
  /* Normalize aliases to the canonical name so print-config shows one. */
  if (strcmp(fg_node_str(cp), cls->name) != 0) {
    fg_node *canon = fg_node_new_string(cls->name);
    fg_mark m = fg_node_mark(cp);
    if (m.file) fg_node_set_mark(canon, m.file, m.line, m.col);
    fg_node_map_set(obj, "class_path", canon);
  }
  fg_node *args = fg_node_get(obj, "init_args");
  char *apath = fg__xasprintf("%s.init_args", keypath);
  int rc = 0;
  if (args == NULL || fg_node_kind_of(args) == FG_NODE_NULL) {
    args = fg_node_new_map();
    fg_mark m = fg_node_mark(obj);
    if (m.file) fg_node_set_mark(args, m.file, m.line, m.col);
    fg_node_map_set(obj, "init_args", args);
  } else if (fg_node_kind_of(args) != FG_NODE_MAP) {
    rc = fg_config_error(err, args, apath, "expected a mapping, got %s",
                         fg_node_kind_name(fg_node_kind_of(args)));
    goto done;
  }
  rc = fg_schema_check(cls->params, cls->n_params, args, apath, fill_defaults,
                       err);
  if (rc == 0 && cls->check) rc = cls->check(cls, args, apath, fill_defaults, err);
  /* Only a check that filled the defaults makes the object ready to
   * create; the class's check may have edited init_args, so the flag goes
   * on last. */
  if (rc == 0 && fill_defaults) fg__node_set_checked(obj);
done:
  free(apath);
  return rc;
}

int fg_registry_create(const fg_node *obj, const char *keypath,
                       fg_class_kind kind, void **out, const fg_class **cls_out,
                       char **err) {
  /* An object from a checked config is created as it is (check once); any
   * other is checked, with defaults filled, on a private copy. */
  const fg_class *cls = checked_as(obj, kind);
  fg_node *copy = NULL;
  int rc = 0;
  if (cls == NULL) {
    copy = obj ? fg_node_clone(obj) : NULL;
    if ((rc = fg_registry_check(copy, keypath, kind, true, err)) != 0) {
      fg_node_free(copy);
      return rc;
    }
    obj = copy;
    cls = fg_registry_find(fg_node_str(fg_node_get(obj, "class_path")));
  }
  char *apath = fg__xasprintf("%s.init_args", keypath);
  rc = cls->create(cls, fg_node_get(obj, "init_args"), apath, out, err);
  free(apath);
  fg_node_free(copy);
  if (rc == 0 && cls_out) *cls_out = cls;
  return rc;
}
