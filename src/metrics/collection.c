/* MetricCollection with TorchMetrics' names and semantics: update passes
 * the same keyword arguments to every member, compute returns a dict
 * {name: result}, reset resets them all.
 *
 * init_args.metrics is a list of metric configs (each named by its class's
 * short name, "Accuracy"; two of the same name are an error, as in
 * TorchMetrics), a mapping name -> metric config, or one metric config.
 * A member whose result is itself a dict (a nested collection, a
 * ClasswiseWrapper) has its entries merged into the result, as TorchMetrics
 * flattens them; prefix and postfix wrap every key. */
#include <stdlib.h>
#include <string.h>

#include "fulgur/config.h"
#include "fulgur/error.h"
#include "fulgur/metrics.h"
#include "fulgur/registry.h"
#include "registry/builtins.h"
#include "metrics/metric_util.h"
#include "util/xalloc.h"

typedef struct {
  size_t n;
  char **names;
  fg_metric **metrics;
  char *prefix, *postfix;
} collection;

static int collection_update(void *self, const fg_value *kw, char **err) {
  collection *c = self;
  for (size_t i = 0; i < c->n; i++) {
    /* Each member gets only the arguments its update takes (TorchMetrics'
     * _filter_kwargs), so MeanMetric and Accuracy can share a collection. */
    fg_value *mine = fg_value_dict();
    for (size_t k = 0; k < fg_value_len(kw); k++)
      if (fg_metric_takes(c->metrics[i], fg_value_dict_key_at(kw, k)))
        fg_value_dict_set(mine, fg_value_dict_key_at(kw, k),
                          fg_value_copy(fg_value_dict_value_at(kw, k)));
    int rc = fg_value_len(mine) ? fg_metric_update(c->metrics[i], mine, err) : 0;
    fg_value_free(mine);
    if (rc) return rc;
  }
  return 0;
}

static void put(const collection *c, fg_value *dict, const char *name, fg_value *v) {
  char *key = fg__xasprintf("%s%s%s", c->prefix ? c->prefix : "", name,
                            c->postfix ? c->postfix : "");
  fg_value_dict_set(dict, key, v);
  free(key);
}

/* Whether flattening the members' results gives a key twice
 * (TorchMetrics' _flatten_dict). */
static bool has_duplicates(const collection *c, fg_value *const *rs) {
  fg_value *seen = fg_value_dict();
  bool dup = false;
  for (size_t i = 0; i < c->n && !dup; i++) {
    bool is_dict = fg_value_kind_of(rs[i]) == FG_VALUE_DICT;
    size_t n = is_dict ? fg_value_len(rs[i]) : 1;
    for (size_t k = 0; k < n && !dup; k++) {
      const char *key = is_dict ? fg_value_dict_key_at(rs[i], k) : c->names[i];
      dup = fg_value_dict_get(seen, key) != NULL;
      fg_value_dict_set(seen, key, fg_value_int(1));
    }
  }
  fg_value_free(seen);
  return dup;
}

static int collection_compute(void *self, fg_value **out, char **err) {
  collection *c = self;
  fg_value **rs = fg__xcalloc(c->n ? c->n : 1, sizeof *rs);
  int rc = 0;
  for (size_t i = 0; i < c->n && rc == 0; i++)
    if ((rc = fg_metric_compute(c->metrics[i], &rs[i], err)))
      fg_err_prefix(err, rc, "%s.compute", c->names[i]);
  fg_value *res = fg_value_dict();
  /* A dict result (a ClasswiseWrapper, a nested collection) is merged by
   * its keys; when two keys would clash, every dict entry is named
   * "<member>_<key>" instead, as MetricCollection._compute_and_reduce does. */
  bool dup = rc == 0 && has_duplicates(c, rs);
  for (size_t i = 0; i < c->n && rc == 0; i++) {
    if (fg_value_kind_of(rs[i]) != FG_VALUE_DICT) {
      put(c, res, c->names[i], fg_value_copy(rs[i]));
      continue;
    }
    for (size_t k = 0; k < fg_value_len(rs[i]); k++) {
      const char *key = fg_value_dict_key_at(rs[i], k);
      char *name = dup ? fg__xasprintf("%s_%s", c->names[i], key) : fg__xstrdup(key);
      put(c, res, name, fg_value_copy(fg_value_dict_value_at(rs[i], k)));
      free(name);
    }
  }
  for (size_t i = 0; i < c->n; i++) fg_value_free(rs[i]);
  free(rs);
  if (rc) {
    fg_value_free(res);
    return rc;
  }
  *out = res;
  return 0;
}

static void collection_reset(void *self) {
  collection *c = self;
  for (size_t i = 0; i < c->n; i++) fg_metric_reset(c->metrics[i]);
}

static void collection_free(void *self) {
  collection *c = self;
  if (c == NULL) return;
  for (size_t i = 0; i < c->n; i++) {
    fg_metric_free(c->metrics[i]);
    free(c->names[i]);
  }
  free(c->metrics);
  free(c->names);
  free(c->prefix);
  free(c->postfix);
  free(c);
}

/* The members' states under "<name>.<key>" (a nested collection's keys
 * nest the same way). Only used when every member has a state. */
static int collection_state(void *self, fg_value **out, char **err) {
  collection *c = self;
  fg_value *st = fg_value_dict();
  for (size_t i = 0; i < c->n; i++) {
    fg_value *ms = NULL;
    int rc = fg_metric_state_dict(c->metrics[i], &ms, err);
    if (rc) {
      fg_value_free(st);
      return fg_err_prefix(err, rc, "%s", c->names[i]);
    }
    for (size_t k = 0; k < fg_value_len(ms); k++) {
      char *key = fg__xasprintf("%s.%s", c->names[i], fg_value_dict_key_at(ms, k));
      fg_value_dict_set(st, key, fg_value_copy(fg_value_dict_value_at(ms, k)));
      free(key);
    }
    fg_value_free(ms);
  }
  *out = st;
  return 0;
}

static int collection_load(void *self, const fg_value *st, char **err) {
  collection *c = self;
  int rc = 0;
  for (size_t i = 0; i < c->n && rc == 0; i++) {
    /* The member's own keys say what to look for. */
    fg_value *ms = NULL;
    if ((rc = fg_metric_state_dict(c->metrics[i], &ms, err))) break;
    fg_value *mine = fg_value_dict();
    for (size_t k = 0; k < fg_value_len(ms); k++) {
      char *key = fg__xasprintf("%s.%s", c->names[i], fg_value_dict_key_at(ms, k));
      const fg_value *v = fg_value_dict_get(st, key);
      if (v) fg_value_dict_set(mine, fg_value_dict_key_at(ms, k), fg_value_copy(v));
      free(key);
    }
    rc = fg_metric_load_state_dict(c->metrics[i], mine, err);
    if (rc) fg_err_prefix(err, rc, "%s", c->names[i]);
    fg_value_free(mine);
    fg_value_free(ms);
  }
  return rc;
}

/* Each member reduces its own entries: counts sum, kept scores concatenate. */
static int collection_reduce(void *self, fg_value *const *states, int n, fg_value **out,
                             char **err) {
  collection *c = self;
  fg_value *res = fg_value_dict();
  int rc = 0;
  for (size_t i = 0; i < c->n && rc == 0; i++) {
    char *prefix = fg__xasprintf("%s.", c->names[i]);
    rc = fg__reduce_member_states(c->metrics[i], states, n, prefix, res, err);
    if (rc) fg_err_prefix(err, rc, "%s", c->names[i]);
    free(prefix);
  }
  if (rc) {
    fg_value_free(res);
    return rc;
  }
  *out = res;
  return 0;
}

static const char *const collection_args[] = {"*", NULL}; /* filtered per member */
static const fg_metric_vtable collection_vt = {collection_update, collection_compute,
                                               collection_reset, collection_free, NULL, NULL,
                                               collection_args};
static const fg_metric_vtable collection_state_vt = {
    collection_update, collection_compute, collection_reset, collection_free,
    collection_state,  collection_load,    collection_args,  collection_reduce};

/* A mapping with a class_path is one metric config, not a name -> config
 * mapping. */
static bool is_single(const fg_node *ms) {
  return fg_node_kind_of(ms) == FG_NODE_MAP && fg_node_get(ms, "class_path") != NULL;
}

/* The i-th member config of `metrics` and its key path (malloc'd). */
static fg_node *member(const fg_node *ms, size_t i, const char *mpath, char **path) {
  if (is_single(ms)) {
    *path = fg__xstrdup(mpath);
    return (fg_node *)ms;
  }
  if (fg_node_kind_of(ms) == FG_NODE_SEQ) {
    *path = fg__xasprintf("%s.%zu", mpath, i);
    return fg_node_at(ms, i);
  }
  *path = fg__xasprintf("%s.%s", mpath, fg_node_key_at(ms, i));
  return fg_node_value_at(ms, i);
}

static size_t n_members(const fg_node *ms) { return is_single(ms) ? 1 : fg_node_len(ms); }

const fg_class fg__metric_collection_class;

static int collection_create(const fg_class *cls, const fg_node *args, const char *keypath,
                             void **out, char **err) {
  const fg_node *ms = fg_node_get(args, "metrics");
  char *mpath = fg__xasprintf("%s.metrics", keypath);
  collection *c = fg__xcalloc(1, sizeof *c);
  size_t n = n_members(ms);
  c->names = fg__xcalloc(n, sizeof *c->names);
  c->metrics = fg__xcalloc(n, sizeof *c->metrics);
  const fg_node *pre = fg_node_get(args, "prefix"), *post = fg_node_get(args, "postfix");
  if (fg_node_kind_of(pre) == FG_NODE_STRING) c->prefix = fg__xstrdup(fg_node_str(pre));
  if (fg_node_kind_of(post) == FG_NODE_STRING) c->postfix = fg__xstrdup(fg_node_str(post));
  bool named = fg_node_kind_of(ms) == FG_NODE_MAP && !is_single(ms);
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    char *path = NULL;
    const fg_node *cfg = member(ms, i, mpath, &path);
    void *obj = NULL;
    const fg_class *mcls = NULL;
    rc = fg_registry_create(cfg, path, FG_KIND_METRIC, &obj, &mcls, err);
    if (rc == 0) {
      c->metrics[c->n] = obj;
      c->names[c->n] = fg__xstrdup(named ? fg_node_key_at(ms, i) : fg_metric_name(obj));
      c->n++;
      /* Nested collections merge their own keys, so only plain metrics
       * can clash by class name. */
      for (size_t k = 0; !named && mcls != &fg__metric_collection_class && k + 1 < c->n; k++)
        if (strcmp(c->names[k], c->names[c->n - 1]) == 0) {
          rc = fg_config_error(err, cfg, path,
                               "two metrics are named '%s'; give them names with a mapping "
                               "name -> metric",
                               c->names[k]);
          break;
        }
    }
    free(path);
  }
  free(mpath);
  if (rc) {
    collection_free(c);
    return rc;
  }
  bool stateful = true;
  for (size_t i = 0; i < c->n; i++) stateful = stateful && fg_metric_has_state(c->metrics[i]);
  *out = fg_metric_create(stateful ? &collection_state_vt : &collection_vt, c, "MetricCollection");
  return 0;
}

/* Checks every member config in place (so print-config shows their
 * defaults), with key paths metrics.0 or metrics.NAME. */
static int collection_check(const fg_class *cls, fg_node *args, const char *keypath, bool fill,
                            char **err) {
  fg_node *ms = fg_node_get(args, "metrics");
  char *mpath = fg__xasprintf("%s.metrics", keypath);
  int rc = 0;
  if (n_members(ms) == 0)
    rc = fg_config_error(err, ms, mpath,
                         "expected at least one metric (a list of metric configs or a mapping "
                         "name -> metric config)");
  for (size_t i = 0; rc == 0 && i < n_members(ms); i++) {
    char *path = NULL;
    fg_node *cfg = member(ms, i, mpath, &path);
    rc = fg_registry_check(cfg, path, FG_KIND_METRIC, fill, err);
    free(path);
  }
  free(mpath);
  return rc;
}

static const fg_param collection_params[] = {
    {"metrics", FG_T_SEQ | FG_T_MAP, NULL, "metric configs: a list, a mapping name -> config, or one config", NULL, 0},
    {"prefix", FG_T_NULL | FG_T_STRING, "null", "put before every result name", NULL, 0},
    {"postfix", FG_T_NULL | FG_T_STRING, "null", "put after every result name", NULL, 0},
    {"compute_groups", FG_T_BOOL | FG_T_SEQ, "true", "accepted for compatibility (a speed-up only; every member is updated)", NULL, 0},
};

static const char *const collection_aliases[] = {"torchmetrics.MetricCollection",
                                                 "torchmetrics.collections.MetricCollection", NULL};

const fg_class fg__metric_collection_class = {
    .name = "fulgur.metrics.MetricCollection", .aliases = collection_aliases,
    .kind = FG_KIND_METRIC, .params = collection_params,
    .n_params = sizeof collection_params / sizeof collection_params[0],
    .create = collection_create, .destroy = fg__metric_destroy, .check = collection_check};

