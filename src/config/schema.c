/* init_args schemas and config error messages. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/node_internal.h"
#include "util/xalloc.h"

int fg_config_error(char **err, const fg_node *at, const char *keypath, const char *fmt, ...) {
  if (err == NULL || *err != NULL) return FG_ECONFIG;
  va_list ap;
  va_start(ap, fmt);
  char *msg = NULL;
  if (vasprintf(&msg, fmt, ap) < 0) msg = NULL;
  va_end(ap);
  fg_mark m = fg_node_mark(at);
  char *where = m.file ? fg__xasprintf("%s:%d:%d", m.file, m.line, m.col)
                       : fg__xstrdup("<config>");
  if (keypath && *keypath)
    *err = fg__xasprintf("%s: %s: %s", where, keypath, msg ? msg : "invalid value");
  else
    *err = fg__xasprintf("%s: %s", where, msg ? msg : "invalid value");
  free(where);
  free(msg);
  return FG_ECONFIG;
}

char *fg_config_warning(const fg_node *at, const char *keypath, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *msg = NULL;
  if (vasprintf(&msg, fmt, ap) < 0) msg = NULL;
  va_end(ap);
  fg_mark m = fg_node_mark(at);
  char *w = fg__xasprintf("%s:%d:%d: %s: %s", m.file ? m.file : "<config>", m.line, m.col, keypath,
                          msg ? msg : "");
  free(msg);
  return w;
}

static size_t edit_distance(const char *a, const char *b) {
  size_t la = strlen(a), lb = strlen(b);
  size_t *row = fg__xmalloc((lb + 1) * sizeof *row);
  for (size_t j = 0; j <= lb; j++) row[j] = j;
  for (size_t i = 1; i <= la; i++) {
    size_t diag = row[0];
    row[0] = i;
    for (size_t j = 1; j <= lb; j++) {
      size_t up = row[j];
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      size_t best = diag + cost;
      if (up + 1 < best) best = up + 1;
      if (row[j - 1] + 1 < best) best = row[j - 1] + 1;
      row[j] = best;
      diag = up;
    }
  }
  size_t d = row[lb];
  free(row);
  return d;
}

const char *fg_closest_name(const char *name, const char *const *known, size_t n_known) {
  size_t len = strlen(name);
  size_t limit = len / 3 > 2 ? len / 3 : 2;
  const char *best = NULL;
  size_t best_d = limit + 1;
  for (size_t i = 0; i < n_known; i++) {
    size_t d = edit_distance(name, known[i]);
    if (d < best_d) {
      best_d = d;
      best = known[i];
    }
  }
  return best;
}

/* "an integer or null" from a type set. */
static char *types_text(unsigned types) {
  static const struct {
    unsigned bit;
    const char *name;
  } names[] = {{FG_T_BOOL, "a boolean"}, {FG_T_INT, "an integer"}, {FG_T_FLOAT, "a number"},
               {FG_T_STRING, "a string"}, {FG_T_SEQ, "a list"},   {FG_T_MAP, "a mapping"},
               {FG_T_NULL, "null"}};
  if ((types & FG_T_ANY) == FG_T_ANY) return fg__xstrdup("any value");
  if ((types & FG_T_FLOAT) && (types & FG_T_INT)) types &= ~(unsigned)FG_T_INT;
  const char *parts[8];
  size_t n = 0;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    if (types & names[i].bit) parts[n++] = names[i].name;
  size_t len = 1;
  for (size_t i = 0; i < n; i++) len += strlen(parts[i]) + 5;
  char *out = fg__xmalloc(len);
  out[0] = '\0';
  for (size_t i = 0; i < n; i++) {
    if (i) strcat(out, i + 1 == n ? " or " : ", ");
    strcat(out, parts[i]);
  }
  return out;
}

static unsigned kind_bit(fg_node_kind k) { return 1u << k; }

/* Checks one value against a type set; ints become floats where only
 * floats are expected, so later code reads one kind. */
static int check_kind(fg_node *v, unsigned types, const char *path, char **err) {
  if (types == 0 || (types & kind_bit(v->kind))) return 0;
  if (v->kind == FG_NODE_INT && (types & FG_T_FLOAT)) {
    double d = (double)v->u.i;
    v->kind = FG_NODE_FLOAT;
    v->u.d = d;
    return 0;
  }
  char *want = types_text(types);
  int rc = fg_config_error(err, v, path, "expected %s, got %s", want, fg_node_kind_name(v->kind));
  free(want);
  return rc;
}

int fg_schema_check(const fg_param *params, size_t n_params, fg_node *init_args,
                    const char *keypath, bool fill_defaults, char **err) {
  if (init_args && init_args->kind != FG_NODE_MAP && init_args->kind != FG_NODE_NULL)
    return fg_config_error(err, init_args, keypath, "expected a mapping, got %s",
                           fg_node_kind_name(init_args->kind));
  size_t nk = fg_node_len(init_args);
  for (size_t i = 0; i < nk; i++) {
    const char *k = init_args->keys[i];
    size_t p;
    for (p = 0; p < n_params; p++)
      if (strcmp(params[p].name, k) == 0) break;
    if (p < n_params) continue;
    const char **names = fg__xmalloc((n_params + 1) * sizeof *names);
    for (size_t j = 0; j < n_params; j++) names[j] = params[j].name;
    const char *close = fg_closest_name(k, names, n_params);
    char *kp = fg__keypath_join(keypath, k);
    int rc;
    if (close) {
      rc = fg_config_error(err, init_args->items[i], kp, "unknown key '%s' (did you mean '%s'?)", k,
                           close);
    } else {
      size_t len = 1;
      for (size_t j = 0; j < n_params; j++) len += strlen(names[j]) + 2;
      char *list = fg__xmalloc(len);
      list[0] = '\0';
      for (size_t j = 0; j < n_params; j++) {
        if (j) strcat(list, ", ");
        strcat(list, names[j]);
      }
      rc = fg_config_error(err, init_args->items[i], kp, "unknown key '%s' (known keys: %s)", k,
                           n_params ? list : "none");
      free(list);
    }
    free(kp);
    free(names);
    return rc;
  }
  for (size_t p = 0; p < n_params; p++) {
    const fg_param *par = &params[p];
    char *kp = fg__keypath_join(keypath, par->name);
    fg_node *v = fg_node_get(init_args, par->name);
    int rc = 0;
    if (v == NULL) {
      if (par->def_yaml == NULL) {
        rc = fg_config_error(err, init_args, kp, "missing required key '%s'%s%s", par->name,
                             par->doc ? ": " : "", par->doc ? par->doc : "");
      } else if (fill_defaults && init_args && init_args->kind == FG_NODE_MAP) {
        fg_node *def = NULL;
        rc = fg_node_parse(par->def_yaml, strlen(par->def_yaml), "<default>", &def, err);
        if (rc == 0) {
          def->mark = init_args->mark; /* errors about a default point at its object */
          if (check_kind(def, par->types, kp, NULL) != 0) {
            /* e.g. an int default for a float: converted above; anything
             * else is a schema bug, kept as written. */
          }
          fg_node_map_set(init_args, par->name, def);
        }
      }
    } else {
      rc = check_kind(v, par->types, kp, err);
      if (rc == 0 && v->kind == FG_NODE_SEQ && par->item_types)
        for (size_t i = 0; i < v->len && rc == 0; i++) {
          char *ip = fg__keypath_index(kp, (long)i);
          rc = check_kind(v->items[i], par->item_types, ip, err);
          free(ip);
        }
      if (rc == 0 && par->check) rc = par->check(v, kp, err);
    }
    free(kp);
    if (rc) return rc;
  }
  return 0;
}
