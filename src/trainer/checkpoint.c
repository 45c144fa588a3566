/* Checkpoints in Lightning's layout, as PyTorch files that Python's
 * torch.load reads: epoch, global_step, state_dict, optimizer_states,
 * lr_schedulers, callbacks, fulgur_version, plus fulgur's loop position. */
#include <stdlib.h>
#include <string.h>

#include "fulgur/error.h"
#include "trainer/trainer.h"
#include "util/xalloc.h"

#ifndef FG_VERSION
#define FG_VERSION "0.0.0"
#endif

int fg__checkpoint_save(const char *path, fg_module *m, fg_optimizer *opt,
                        const fg_ckpt_pos *pos, const fg_value *callbacks, char **err) {
  fg_value *ck = fg_value_dict();
  fg_value_dict_set(ck, "epoch", fg_value_int(pos->epoch));
  fg_value_dict_set(ck, "global_step", fg_value_int(pos->global_step));
  fg_value_dict_set(ck, "pytorch-lightning_version", fg_value_string("2.0.0"));
  fg_value *sd = fg_value_dict();
  int rc = 0;
  for (size_t i = 0; i < fg_module_num_params(m); i++) {
    fg_tensor *d = NULL;
    if ((rc = fg_tensor_detach(fg_module_param(m, i), &d, err))) goto done;
    fg_value_dict_set(sd, fg_module_param_name(m, i), fg_value_tensor(d));
  }
  fg_value_dict_set(ck, "state_dict", sd);
  fg_value *opts = fg_value_list();
  if (opt) {
    fg_value *os = NULL;
    if ((rc = fg_optimizer_state_dict(opt, &os, err))) {
      fg_value_free(opts);
      goto done;
    }
    fg_value_list_append(opts, os);
  }
  fg_value_dict_set(ck, "optimizer_states", opts);
  fg_value_dict_set(ck, "lr_schedulers", fg_value_list());
  fg_value_dict_set(ck, "callbacks", callbacks ? fg_value_copy(callbacks) : fg_value_dict());
  fg_value *loop = fg_value_dict();
  fg_value_dict_set(loop, "epoch_done", fg_value_bool(pos->epoch_done));
  fg_value_dict_set(ck, "fulgur_loop", loop);
  fg_value_dict_set(ck, "fulgur_version", fg_value_string(FG_VERSION));
  char *buf = NULL;
  size_t len = 0;
  if ((rc = fg_value_pickle(ck, &buf, &len, err)) == 0) {
    rc = fg__write_file_atomic(path, buf, len, err);
    free(buf);
  }
done:
  fg_value_free(ck);
  return rc;
}

int fg__checkpoint_load(const char *path, fg_module *m, fg_optimizer *opt,
                        fg_ckpt_pos *pos, char **err) {
  char *buf = NULL;
  size_t len = 0;
  int rc = fg__read_file(path, &buf, &len, err);
  if (rc) return rc;
  fg_value *ck = NULL;
  rc = fg_value_unpickle(buf, len, &ck, err);
  free(buf);
  if (rc) return fg_err_prefix(err, rc, "%s: not a checkpoint", path);
  const fg_value *sd = fg_value_kind_of(ck) == FG_VALUE_DICT ? fg_value_dict_get(ck, "state_dict") : NULL;
  if (sd == NULL || fg_value_kind_of(sd) != FG_VALUE_DICT) {
    rc = fg_err_set(err, FG_EDATA, "%s: not a checkpoint: no state_dict", path);
    goto done;
  }
  for (size_t i = 0; i < fg_module_num_params(m); i++) {
    const char *name = fg_module_param_name(m, i);
    const fg_value *v = fg_value_dict_get(sd, name);
    if (v == NULL || fg_value_kind_of(v) != FG_VALUE_TENSOR) {
      rc = fg_err_set(err, FG_EDATA, "%s: state_dict has no tensor '%s'", path, name);
      goto done;
    }
    fg_tensor *p = fg_module_param(m, i);
    const fg_tensor *src = fg_value_as_tensor(v);
    bool same = fg_tensor_ndim(p) == fg_tensor_ndim(src);
    for (int d = 0; same && d < fg_tensor_ndim(p); d++)
      same = fg_tensor_size(p, d) == fg_tensor_size(src, d);
    if (!same) {
      char a[64], b[64];
      fg_tensor_shape_str(src, a, sizeof a);
      fg_tensor_shape_str(p, b, sizeof b);
      rc = fg_err_set(err, FG_EDATA, "%s: '%s' has shape %s, the model has %s", path, name, a, b);
      goto done;
    }
    if ((rc = fg_tensor_copy_(p, src, err))) goto done;
  }
  if (opt) {
    const fg_value *os = fg_value_dict_get(ck, "optimizer_states");
    if (os && fg_value_kind_of(os) == FG_VALUE_LIST && fg_value_len(os) > 0 &&
        (rc = fg_optimizer_load_state_dict(opt, fg_value_list_at(os, 0), err))) {
      fg_err_prefix(err, rc, "%s: optimizer state", path);
      goto done;
    }
  }
  if (pos) {
    const fg_value *e = fg_value_dict_get(ck, "epoch");
    const fg_value *s = fg_value_dict_get(ck, "global_step");
    pos->epoch = e && fg_value_kind_of(e) == FG_VALUE_INT ? fg_value_as_int(e) : 0;
    pos->global_step = s && fg_value_kind_of(s) == FG_VALUE_INT ? fg_value_as_int(s) : 0;
    const fg_value *loop = fg_value_dict_get(ck, "fulgur_loop");
    const fg_value *done_v = loop && fg_value_kind_of(loop) == FG_VALUE_DICT
                                 ? fg_value_dict_get(loop, "epoch_done") : NULL;
    /* Lightning's own checkpoints are taken at epoch ends. */
    pos->epoch_done = done_v == NULL || fg_value_as_bool(done_v);
  }
done:
  fg_value_free(ck);
  return rc;
}
