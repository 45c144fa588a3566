/* fulgur.data.TensorDict: samples from files written by Python's
 * torch.save({"data": Tensor[N, ...], "label": Tensor[N], ...}).
 *
 * The files are read once, through the checkpoint reader
 * (fg_value_unpickle, which also reads what Python wrote), and the tensors
 * of several files are concatenated along dim 0. A batch is index_select on
 * each whole tensor with the batch's indices: one gather per key, no
 * per-sample copies, and the source tensors are never written, so loader
 * threads may share them. */
#include <stdlib.h>
#include <string.h>

#include "fulgur/data.h"
#include "fulgur/error.h"
#include "util/file.h"
#include "util/xalloc.h"

typedef struct {
  size_t n_keys;
  char **keys;
  fg_tensor **t; /* [N, ...] per key */
  int64_t n;
  char *index_key; /* or NULL */
} tensordict;

static void td_free(void *self) {
  tensordict *d = self;
  for (size_t k = 0; k < d->n_keys; k++) {
    free(d->keys[k]);
    fg_tensor_free(d->t[k]);
  }
  free(d->keys);
  free(d->t);
  free(d->index_key);
  free(d);
}

static int64_t td_len(void *self) { return ((tensordict *)self)->n; }

static int td_get_batch(void *self, const int64_t *idx, size_t n, fg_value **out, char **err) {
  tensordict *d = self;
  if (n == 0) return fg_err_set(err, FG_EINVAL, "empty batch");
  int64_t shape[1] = {(int64_t)n};
  fg_tensor *index = NULL;
  int rc = fg_tensor_from_data(idx, FG_INT64, shape, 1, &index, err);
  if (rc) return rc;
  fg_value *b = fg_value_dict();
  for (size_t k = 0; k < d->n_keys && rc == 0; k++) {
    fg_tensor *t = NULL;
    rc = fg_op_index_select(d->t[k], 0, index, &t, err);
    if (rc == 0) fg_value_dict_set(b, d->keys[k], fg_value_tensor(t));
  }
  if (rc == 0 && d->index_key) fg_value_dict_set(b, d->index_key, fg_value_tensor(index));
  else fg_tensor_free(index);
  if (rc) {
    fg_value_free(b);
    return rc;
  }
  *out = b;
  return 0;
}

static const fg_dataset_vtable tensordict_vt = {td_len, td_get_batch, td_free};

static bool wanted(const fg_tensordict_opts *o, const char *key) {
  if (o->keys == NULL) return true;
  for (size_t i = 0; i < o->n_keys; i++)
    if (strcmp(o->keys[i], key) == 0) return true;
  return false;
}

/* "data, label" for messages; the caller frees it. */
static char *key_list(const fg_value *d) {
  size_t len = 1;
  for (size_t i = 0; i < fg_value_len(d); i++) len += strlen(fg_value_dict_key_at(d, i)) + 2;
  char *s = fg__xcalloc(1, len);
  for (size_t i = 0; i < fg_value_len(d); i++) {
    if (i) strcat(s, ", ");
    strcat(s, fg_value_dict_key_at(d, i));
  }
  return s;
}

/* Reads one file: a dict whose chosen entries are tensors of equal length.
 * *out is the whole dict (the caller frees it); *rows its length. */
static int read_one(const char *path, const fg_tensordict_opts *o, fg_value **out, int64_t *rows,
                    char **err) {
  char *buf = NULL;
  size_t len = 0;
  int rc = fg__read_file(path, &buf, &len, err);
  if (rc) return rc;
  fg_value *v = NULL;
  rc = fg_value_unpickle(buf, len, &v, err);
  free(buf);
  if (rc) return fg_err_prefix(err, FG_EDATA, "%s: not a file written by torch.save", path);
  if (fg_value_kind_of(v) != FG_VALUE_DICT) {
    rc = fg_err_set(err, FG_EDATA, "%s: expected a dict of tensors, got %s", path,
                    fg_value_kind_name(fg_value_kind_of(v)));
    fg_value_free(v);
    return rc;
  }
  for (size_t i = 0; rc == 0 && o->keys && i < o->n_keys; i++)
    if (fg_value_dict_get(v, o->keys[i]) == NULL) {
      char *have = key_list(v);
      rc = fg_err_set(err, FG_EDATA, "%s: no key '%s' (keys: %s)", path, o->keys[i], have);
      free(have);
    }
  const char *first = NULL;
  *rows = -1;
  for (size_t i = 0; rc == 0 && i < fg_value_len(v); i++) {
    const char *key = fg_value_dict_key_at(v, i);
    const fg_value *e = fg_value_dict_value_at(v, i);
    if (!wanted(o, key)) continue;
    if (fg_value_kind_of(e) != FG_VALUE_TENSOR) {
      rc = fg_err_set(err, FG_EDATA, "%s: '%s' is %s, expected a tensor (a dict of tensors)", path,
                      key, fg_value_kind_name(fg_value_kind_of(e)));
      break;
    }
    const fg_tensor *t = fg_value_as_tensor(e);
    if (fg_tensor_ndim(t) < 1) {
      rc = fg_err_set(err, FG_EDATA, "%s: '%s' is a 0-dimensional tensor, expected one row per sample",
                      path, key);
    } else if (*rows < 0) {
      *rows = fg_tensor_size(t, 0);
      first = key;
    } else if (fg_tensor_size(t, 0) != *rows) {
      rc = fg_err_set(err, FG_EDATA, "%s: '%s' has %lld rows but '%s' has %lld (tensors of different lengths)",
                      path, key, (long long)fg_tensor_size(t, 0), first, (long long)*rows);
    }
  }
  if (rc == 0 && *rows < 0) rc = fg_err_set(err, FG_EDATA, "%s: the dict has no tensors", path);
  if (rc) {
    fg_value_free(v);
    return rc;
  }
  *out = v;
  return 0;
}

/* Files after the first must have the same keys, and tensors of the same
 * dtype and per-sample shape, to be concatenated. */
static int check_like(const char *path, const fg_value *v, const char *path0, const fg_value *v0,
                      const fg_tensordict_opts *o, char **err) {
  for (size_t i = 0; i < fg_value_len(v0); i++) {
    const char *key = fg_value_dict_key_at(v0, i);
    if (!wanted(o, key)) continue;
    const fg_value *e = fg_value_dict_get(v, key);
    if (e == NULL)
      return fg_err_set(err, FG_EDATA, "%s: no key '%s' (%s has it)", path, key, path0);
    const fg_tensor *a = fg_value_as_tensor(fg_value_dict_value_at(v0, i)), *b = fg_value_as_tensor(e);
    bool same = fg_tensor_dtype(a) == fg_tensor_dtype(b) && fg_tensor_ndim(a) == fg_tensor_ndim(b);
    for (int d = 1; same && d < fg_tensor_ndim(a); d++) same = fg_tensor_size(a, d) == fg_tensor_size(b, d);
    if (!same) {
      char sa[64], sb[64];
      fg_tensor_shape_str(a, sa, sizeof sa);
      fg_tensor_shape_str(b, sb, sizeof sb);
      return fg_err_set(err, FG_EDATA, "%s: '%s' is %s %s but %s has %s %s (cannot concatenate)", path,
                        key, fg_dtype_name(fg_tensor_dtype(b)), sb, path0,
                        fg_dtype_name(fg_tensor_dtype(a)), sa);
    }
  }
  for (size_t i = 0; i < fg_value_len(v); i++) {
    const char *key = fg_value_dict_key_at(v, i);
    if (wanted(o, key) && fg_value_dict_get(v0, key) == NULL)
      return fg_err_set(err, FG_EDATA, "%s: key '%s' is not in %s", path, key, path0);
  }
  return 0;
}

int fg_dataset_tensordict_create(const fg_tensordict_opts *o, fg_dataset **out, char **err) {
  if (o->n_paths == 0) return fg_err_set(err, FG_EINVAL, "no files given");
  fg_value **files = fg__xcalloc(o->n_paths, sizeof *files);
  int64_t total = 0;
  int rc = 0;
  for (size_t f = 0; f < o->n_paths && rc == 0; f++) {
    int64_t rows = 0;
    rc = read_one(o->paths[f], o, &files[f], &rows, err);
    if (rc == 0 && f > 0) rc = check_like(o->paths[f], files[f], o->paths[0], files[0], o, err);
    total += rows;
  }
  tensordict *d = NULL;
  if (rc == 0) {
    d = fg__xcalloc(1, sizeof *d);
    d->n = total;
    const fg_value *v0 = files[0];
    for (size_t i = 0; i < fg_value_len(v0); i++)
      if (wanted(o, fg_value_dict_key_at(v0, i))) d->n_keys++;
    d->keys = fg__xcalloc(d->n_keys, sizeof *d->keys);
    d->t = fg__xcalloc(d->n_keys, sizeof *d->t);
    const fg_tensor **parts = fg__xcalloc(o->n_paths, sizeof *parts);
    size_t k = 0;
    for (size_t i = 0; i < fg_value_len(v0) && rc == 0; i++) {
      const char *key = fg_value_dict_key_at(v0, i);
      if (!wanted(o, key)) continue;
      d->keys[k] = fg__xstrdup(key);
      for (size_t f = 0; f < o->n_paths; f++) parts[f] = fg_value_as_tensor(fg_value_dict_get(files[f], key));
      /* One file: its tensor as read (a view of the file's storage). */
      if (o->n_paths == 1) d->t[k] = fg_tensor_ref(parts[0]);
      else rc = fg_op_cat(parts, o->n_paths, 0, &d->t[k], err);
      if (rc) rc = fg_err_prefix(err, rc, "'%s': cannot concatenate the files", key);
      k++;
    }
    free(parts);
    if (rc == 0 && o->index_key) {
      for (size_t i = 0; i < d->n_keys && rc == 0; i++)
        if (strcmp(d->keys[i], o->index_key) == 0)
          rc = fg_err_set(err, FG_EINVAL, "index_key '%s': %s already has a tensor of that name",
                          o->index_key, o->paths[0]);
      d->index_key = fg__xstrdup(o->index_key);
    }
  }
  for (size_t f = 0; f < o->n_paths; f++) fg_value_free(files[f]);
  free(files);
  if (rc) {
    if (d) td_free(d);
    return rc;
  }
  *out = fg_dataset_create(&tensordict_vt, d);
  return 0;
}
