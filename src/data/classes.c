/* The built-in dataset classes as the config names them:
 * fulgur.data.IDX, fulgur.data.CSV, fulgur.data.Synthetic,
 * fulgur.data.TensorDict. Errors from the
 * readers name the file; this layer adds the config key path. */
#include <stdlib.h>
#include <string.h>

#include "fulgur/config.h"
#include "fulgur/data.h"
#include "fulgur/error.h"
#include "fulgur/registry.h"
#include "registry/builtins.h"
#include "util/xalloc.h"


static int check_normalize(const fg_node *v, const char *k, char **err) {
  if (fg_node_kind_of(v) == FG_NODE_NULL) return 0;
  for (size_t i = 0; i < fg_node_len(v); i++) {
    const char *key = fg_node_key_at(v, i);
    const fg_node *x = fg_node_value_at(v, i);
    char *p = fg__xasprintf("%s.%s", k, key);
    int rc = 0;
    if (strcmp(key, "mean") != 0 && strcmp(key, "std") != 0)
      rc = fg_config_error(err, x, p, "unknown key '%s' (expected mean and std)", key);
    else if (fg_node_kind_of(x) != FG_NODE_INT && fg_node_kind_of(x) != FG_NODE_FLOAT)
      rc = fg_config_error(err, x, p, "expected a number, got %s", fg_node_kind_name(fg_node_kind_of(x)));
    else if (strcmp(key, "std") == 0 && !(fg_node_float(x) > 0))
      rc = fg_config_error(err, x, p, "expected a positive std, got %g", fg_node_float(x));
    free(p);
    if (rc) return rc;
  }
  return 0;
}

static int check_subset(const fg_node *v, const char *k, char **err) {
  if (fg_node_kind_of(v) == FG_NODE_NULL) return 0;
  if (fg_node_len(v) != 2)
    return fg_config_error(err, v, k, "expected [start, end], got %zu items", fg_node_len(v));
  return 0;
}

static const fg_param idx_params[] = {
    {"images", FG_T_STRING, NULL, "IDX image file (.gz read directly)", NULL, 0},
    {"labels", FG_T_STRING, NULL, "IDX label file (.gz read directly)", NULL, 0},
    {"normalize", FG_T_NULL | FG_T_MAP, "null", "{mean, std} applied after scaling to [0, 1]", check_normalize, 0},
    {"subset", FG_T_NULL | FG_T_SEQ, "null", "[start, end) rows (negative: from the end; end 0: to the end)", check_subset, FG_T_INT},
};

static int wrap_err(int rc, const char *keypath, char **err) {
  return rc ? fg_err_prefix(err, rc, "%s", keypath) : 0;
}

static int idx_create(const fg_class *cls, const fg_node *a, const char *keypath, void **out,
                      char **err) {
  fg_idx_opts o = {0};
  o.images = fg_node_str(fg_node_get(a, "images"));
  o.labels = fg_node_str(fg_node_get(a, "labels"));
  o.mean = 0;
  o.std = 1;
  const fg_node *n = fg_node_get(a, "normalize");
  if (n && fg_node_kind_of(n) == FG_NODE_MAP) {
    if (fg_node_get(n, "mean")) o.mean = fg_node_float(fg_node_get(n, "mean"));
    if (fg_node_get(n, "std")) o.std = fg_node_float(fg_node_get(n, "std"));
  }
  const fg_node *s = fg_node_get(a, "subset");
  if (s && fg_node_kind_of(s) == FG_NODE_SEQ) {
    o.has_subset = true;
    o.subset_start = fg_node_int(fg_node_at(s, 0));
    o.subset_end = fg_node_int(fg_node_at(s, 1));
  }
  fg_dataset *ds = NULL;
  int rc = fg_dataset_idx_create(&o, &ds, err);
  if (rc == 0) *out = ds;
  return wrap_err(rc, keypath, err);
}

static int check_dtype(const fg_node *v, const char *k, char **err) {
  const char *s = fg_node_str(v);
  if (strcmp(s, "long") == 0 || strcmp(s, "float") == 0) return 0;
  return fg_config_error(err, v, k, "expected 'long' or 'float', got '%s'", s);
}

static const fg_param csv_params[] = {
    {"path", FG_T_STRING, NULL, "CSV file", NULL, 0},
    {"target", FG_T_STRING, NULL, "target column (header name, or index when header is false)", NULL, 0},
    {"target_dtype", FG_T_STRING, "long", "long (class labels) or float (regression)", check_dtype, 0},
    {"header", FG_T_BOOL, "true", "the first row names the columns", NULL, 0},
};

static int csv_create(const fg_class *cls, const fg_node *a, const char *keypath, void **out,
                      char **err) {
  fg_csv_opts o = {
      .path = fg_node_str(fg_node_get(a, "path")),
      .target = fg_node_str(fg_node_get(a, "target")),
      .target_long = strcmp(fg_node_str(fg_node_get(a, "target_dtype")), "long") == 0,
      .header = fg_node_bool(fg_node_get(a, "header")),
  };
  fg_dataset *ds = NULL;
  int rc = fg_dataset_csv_create(&o, &ds, err);
  if (rc == 0) *out = ds;
  return wrap_err(rc, keypath, err);
}

static int check_pos(const fg_node *v, const char *k, char **err) {
  if (fg_node_int(v) < 1)
    return fg_config_error(err, v, k, "expected a positive integer, got %lld", (long long)fg_node_int(v));
  return 0;
}

static int check_shape(const fg_node *v, const char *k, char **err) {
  if (fg_node_len(v) < 1 || fg_node_len(v) > FG_MAX_DIMS - 1)
    return fg_config_error(err, v, k, "expected 1 to %d dimensions", FG_MAX_DIMS - 1);
  for (size_t i = 0; i < fg_node_len(v); i++)
    if (fg_node_int(fg_node_at(v, i)) < 1)
      return fg_config_error(err, fg_node_at(v, i), k, "expected positive dimensions");
  return 0;
}

static const fg_param syn_params[] = {
    {"num_samples", FG_T_INT, NULL, "samples", check_pos, 0},
    {"shape", FG_T_SEQ, NULL, "shape of one sample's x", check_shape, FG_T_INT},
    {"num_classes", FG_T_INT, "10", "classes of y", check_pos, 0},
    {"seed", FG_T_INT, "0", "generator seed", NULL, 0},
};

static int syn_create(const fg_class *cls, const fg_node *a, const char *keypath, void **out,
                      char **err) {
  const fg_node *sh = fg_node_get(a, "shape");
  int64_t shape[FG_MAX_DIMS];
  int nd = (int)fg_node_len(sh);
  for (int i = 0; i < nd; i++) shape[i] = fg_node_int(fg_node_at(sh, (size_t)i));
  fg_synthetic_opts o = {.num_samples = fg_node_int(fg_node_get(a, "num_samples")),
                         .shape = shape,
                         .ndim = nd,
                         .num_classes = fg_node_int(fg_node_get(a, "num_classes")),
                         .seed = (uint64_t)fg_node_int(fg_node_get(a, "seed"))};
  fg_dataset *ds = NULL;
  int rc = fg_dataset_synthetic_create(&o, &ds, err);
  if (rc == 0) *out = ds;
  return wrap_err(rc, keypath, err);
}

static int check_nonempty(const fg_node *v, const char *k, char **err) {
  if (fg_node_kind_of(v) == FG_NODE_SEQ && fg_node_len(v) == 0)
    return fg_config_error(err, v, k, "expected at least one entry");
  return 0;
}

static const fg_param td_params[] = {
    {"path", FG_T_STRING | FG_T_SEQ, NULL, "file written by torch.save({key: Tensor[N, ...]}), or a list of them (concatenated)", check_nonempty, FG_T_STRING},
    {"keys", FG_T_NULL | FG_T_SEQ, "null", "entries to keep (null: all)", check_nonempty, FG_T_STRING},
    {"index_key", FG_T_NULL | FG_T_STRING, "null", "adds each sample's dataset index (int64) under this key", NULL, 0},
};

/* The strings of a string or a list of strings; the caller frees the array
 * (the strings are the node's). */
static const char **strings_of(const fg_node *v, size_t *n) {
  if (fg_node_kind_of(v) == FG_NODE_STRING) {
    const char **s = fg__xcalloc(1, sizeof *s);
    s[0] = fg_node_str(v);
    *n = 1;
    return s;
  }
  *n = fg_node_len(v);
  const char **s = fg__xcalloc(*n ? *n : 1, sizeof *s);
  for (size_t i = 0; i < *n; i++) s[i] = fg_node_str(fg_node_at(v, i));
  return s;
}

static int td_create(const fg_class *cls, const fg_node *a, const char *keypath, void **out,
                     char **err) {
  fg_tensordict_opts o = {0};
  const char **paths = strings_of(fg_node_get(a, "path"), &o.n_paths);
  const char **keys = NULL;
  const fg_node *kn = fg_node_get(a, "keys");
  if (kn && fg_node_kind_of(kn) == FG_NODE_SEQ) keys = strings_of(kn, &o.n_keys);
  const fg_node *ik = fg_node_get(a, "index_key");
  o.paths = paths;
  o.keys = keys;
  o.index_key = ik && fg_node_kind_of(ik) == FG_NODE_STRING ? fg_node_str(ik) : NULL;
  fg_dataset *ds = NULL;
  int rc = fg_dataset_tensordict_create(&o, &ds, err);
  free(paths);
  free(keys);
  if (rc == 0) *out = ds;
  return wrap_err(rc, keypath, err);
}

static void ds_destroy(void *obj) { fg_dataset_unref(obj); }

const fg_class fg__idx_dataset_class = {
    .name = "fulgur.data.IDX", .kind = FG_KIND_DATASET, .params = idx_params,
    .n_params = sizeof idx_params / sizeof idx_params[0], .create = idx_create, .destroy = ds_destroy};
const fg_class fg__csv_dataset_class = {
    .name = "fulgur.data.CSV", .kind = FG_KIND_DATASET, .params = csv_params,
    .n_params = sizeof csv_params / sizeof csv_params[0], .create = csv_create, .destroy = ds_destroy};
const fg_class fg__synthetic_dataset_class = {
    .name = "fulgur.data.Synthetic", .kind = FG_KIND_DATASET, .params = syn_params,
    .n_params = sizeof syn_params / sizeof syn_params[0], .create = syn_create, .destroy = ds_destroy};
const fg_class fg__tensordict_dataset_class = {
    .name = "fulgur.data.TensorDict", .kind = FG_KIND_DATASET, .params = td_params,
    .n_params = sizeof td_params / sizeof td_params[0], .create = td_create, .destroy = ds_destroy};

