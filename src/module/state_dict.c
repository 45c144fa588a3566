/* A LightningModule's state_dict: gathered for checkpoints and applied
 * from them, with PyTorch's load_state_dict rules (strict or not) and its
 * facts when a state does not fit: missing keys, unexpected keys, and
 * shape mismatches with both shapes. */
#include <stdlib.h>
#include <string.h>

#include "fulgur/error.h"
#include "fulgur/module.h"
#include "util/xalloc.h"

/* How many names of each kind a message lists before "and N more". */
#define LIST_MAX 5

int fg_module_state_dict(const fg_module *m, fg_value *sd, char **err) {
  for (size_t i = 0; i < fg_module_num_state(m); i++) {
    fg_tensor *d = NULL;
    int rc = fg_tensor_detach(fg_module_state(m, i), &d, err);
    if (rc) return rc;
    fg_value_dict_set(sd, fg_module_state_name(m, i), fg_value_tensor(d));
  }
  return fg_module_evaluator_state(m, sd, err);
}

/* A list of names, its count, and the first LIST_MAX of them. */
typedef struct {
  size_t n;
  char *text;
} name_list;

static void list_add(name_list *l, const char *name) {
  if (++l->n > LIST_MAX) return;
  char *joined = l->text ? fg__xasprintf("%s, %s", l->text, name) : fg__xstrdup(name);
  free(l->text);
  l->text = joined;
}

/* "missing keys (3): a, b, c" or "missing keys (12): a, ..., e and 7 more". */
static char *list_describe(const name_list *l, const char *what) {
  if (l->n > LIST_MAX)
    return fg__xasprintf("%s (%zu): %s and %zu more", what, l->n, l->text, l->n - LIST_MAX);
  return fg__xasprintf("%s (%zu): %s", what, l->n, l->text);
}

static bool same_shape(const fg_tensor *a, const fg_tensor *b) {
  if (fg_tensor_ndim(a) != fg_tensor_ndim(b)) return false;
  for (int d = 0; d < fg_tensor_ndim(a); d++)
    if (fg_tensor_size(a, d) != fg_tensor_size(b, d)) return false;
  return true;
}

static bool is_state_key(const fg_module *m, const char *key) {
  for (size_t i = 0; i < fg_module_num_state(m); i++)
    if (strcmp(fg_module_state_name(m, i), key) == 0) return true;
  return false;
}

int fg_module_load_state_dict(fg_module *m, const fg_value *sd, bool strict, const char *where,
                              char **report, char **err) {
  if (report) *report = NULL;
  name_list missing = {0}, unexpected = {0}, mismatched = {0};
  size_t n = fg_module_num_state(m);
  int rc = 0;
  for (size_t i = 0; i < n; i++) {
    const char *name = fg_module_state_name(m, i);
    const fg_value *v = fg_value_dict_get(sd, name);
    if (v == NULL || fg_value_kind_of(v) != FG_VALUE_TENSOR) {
      list_add(&missing, name);
      continue;
    }
    const fg_tensor *src = fg_value_as_tensor(v);
    if (!same_shape(src, fg_module_state(m, i))) {
      char a[96], b[96];
      fg_tensor_shape_str(src, a, sizeof a);
      fg_tensor_shape_str(fg_module_state(m, i), b, sizeof b);
      char *one = fg__xasprintf("'%s' has shape %s in the checkpoint, %s in the model", name, a, b);
      list_add(&mismatched, one);
      free(one);
    }
  }
  for (size_t k = 0; k < fg_value_len(sd); k++) {
    const char *key = fg_value_dict_key_at(sd, k);
    /* Evaluator states (evaluator_as_submodule) are not the model's. */
    if (strncmp(key, "_evaluators.", 12) != 0 && !is_state_key(m, key)) list_add(&unexpected, key);
  }
  char *mt = missing.n ? list_describe(&missing, "missing keys") : NULL;
  char *ut = unexpected.n ? list_describe(&unexpected, "unexpected keys") : NULL;
  char *st = mismatched.n ? list_describe(&mismatched, "shape mismatches") : NULL;
  char *facts = fg__xasprintf("%s%s%s%s%s", mt ? mt : "", mt && (ut || st) ? "; " : "",
                              ut ? ut : "", ut && st ? "; " : "", st ? st : "");
  /* PyTorch refuses a shape mismatch even when not strict, and copies
   * nothing then: a half-loaded model is worse than none. */
  if (mismatched.n || (strict && (missing.n || unexpected.n))) {
    rc = fg_err_set(err, FG_EDATA, "%s: the state_dict does not fit the model: %s", where, facts);
    goto done;
  }
  for (size_t i = 0; i < n && rc == 0; i++) {
    const fg_value *v = fg_value_dict_get(sd, fg_module_state_name(m, i));
    if (v && fg_value_kind_of(v) == FG_VALUE_TENSOR)
      rc = fg_tensor_copy_(fg_module_state(m, i), fg_value_as_tensor(v), err);
  }
  if (rc == 0) rc = fg_module_load_evaluator_state(m, sd, err);
  if (rc) {
    fg_err_prefix(err, rc, "%s", where);
    goto done;
  }
  if (report && (missing.n || unexpected.n)) {
    *report = facts;
    facts = NULL;
  }
done:
  free(mt);
  free(ut);
  free(st);
  free(facts);
  free(missing.text);
  free(unexpected.text);
  free(mismatched.text);
  return rc;
}
