/* The trainer's callback list: its order, the hooks called over it, and
 * the callbacks' states in a checkpoint (the built-in callback classes are
 * in registry/builtins.c). The interface is in callback.h. */
#include <stdlib.h>
#include <string.h>

#include "trainer/callbacks/callback.h"
#include "util/xalloc.h"

void fg__callback_free(void *obj) {
  fg_callback *cb = obj;
  if (cb) cb->ops->free(cb);
}

void fg__callbacks_add(fg_trainer_opts *o, fg_callback *cb) {
  o->callbacks = fg__xrealloc(o->callbacks, (o->n_callbacks + 1) * sizeof *o->callbacks);
  /* Savers last, each group in config order (Lightning's _reorder_callbacks). */
  size_t at = o->n_callbacks;
  if (!cb->ops->saves_checkpoints)
    while (at > 0 && o->callbacks[at - 1]->ops->saves_checkpoints) at--;
  memmove(o->callbacks + at + 1, o->callbacks + at, (o->n_callbacks - at) * sizeof *o->callbacks);
  o->callbacks[at] = cb;
  o->n_callbacks++;
}

bool fg__callbacks_have_saver(const fg_trainer_opts *o) {
  for (size_t i = 0; i < o->n_callbacks; i++)
    if (o->callbacks[i]->ops->saves_checkpoints) return true;
  return false;
}

/* ---- hooks ------------------------------------------------------------------ */

/* Lightning's fast_dev_run: checkpoint savers and EarlyStopping skip
 * their work (ModelCheckpoint's and EarlyStopping's _should_skip_*). */
static bool idle(const fg_loop *l, const fg_callback *cb) {
  return l->opts->fast_dev_run > 0 && (cb->ops->saves_checkpoints || cb->ops->idle_in_fast_dev_run);
}

/* Calls one hook of every callback, in list order, up to the first error;
 * the profiler times each (Lightning's "[Callback]Name.hook" actions). */
#define EACH_CALLBACK(l, hook, ...)                                            \
  do {                                                                         \
    for (size_t i_ = 0; i_ < (l)->opts->n_callbacks; i_++) {                   \
      fg_callback *cb_ = (l)->opts->callbacks[i_];                             \
      if (cb_->ops->hook == NULL || idle((l), cb_)) continue;                  \
      double t_ = fg__profiler_start((l)->profiler);                           \
      int rc_ = cb_->ops->hook(cb_, (l), __VA_ARGS__);                         \
      fg__profiler_stop_callback((l)->profiler, cb_->ops->name, #hook, t_);    \
      if (rc_) return rc_;                                                     \
    }                                                                          \
    return 0;                                                                  \
  } while (0)

int fg__callbacks_setup(fg_loop *l, char **err) { EACH_CALLBACK(l, setup, l->stage, err); }
int fg__callbacks_on_fit_start(fg_loop *l, char **err) { EACH_CALLBACK(l, on_fit_start, err); }
int fg__callbacks_on_train_epoch_start(fg_loop *l, char **err) {
  EACH_CALLBACK(l, on_train_epoch_start, err);
}
int fg__callbacks_on_train_batch_start(fg_loop *l, int64_t b, fg_value *step_log, char **err) {
  EACH_CALLBACK(l, on_train_batch_start, b, step_log, err);
}
int fg__callbacks_on_train_batch_end(fg_loop *l, int64_t b, char **err) {
  EACH_CALLBACK(l, on_train_batch_end, b, err);
}
int fg__callbacks_on_validation_end(fg_loop *l, char **err) {
  EACH_CALLBACK(l, on_validation_end, err);
}
int fg__callbacks_on_train_epoch_end(fg_loop *l, char **err) {
  EACH_CALLBACK(l, on_train_epoch_end, err);
}
int fg__callbacks_on_fit_end(fg_loop *l, char **err) { EACH_CALLBACK(l, on_fit_end, err); }

/* ---- states ------------------------------------------------------------------- */

fg_value *fg__callbacks_state_dict(const fg_loop *l, const fg_callback *saver) {
  fg_value *cbs = fg_value_dict();
  if (saver && saver->ops->state_dict) {
    char *key = saver->ops->state_key(saver);
    fg_value_dict_set(cbs, key, saver->ops->state_dict(saver, l));
    free(key);
  }
  for (size_t i = 0; i < l->opts->n_callbacks; i++) {
    const fg_callback *cb = l->opts->callbacks[i];
    if (cb->ops->saves_checkpoints || cb->ops->state_dict == NULL) continue;
    char *key = cb->ops->state_key(cb);
    fg_value_dict_set(cbs, key, cb->ops->state_dict(cb, l));
    free(key);
  }
  return cbs;
}

int fg__callbacks_load_state_dict(fg_trainer_opts *o, const fg_value *cbs, char **err) {
  if (cbs == NULL || fg_value_kind_of(cbs) != FG_VALUE_DICT) return 0;
  int rc = 0;
  for (size_t i = 0; i < o->n_callbacks && rc == 0; i++) {
    fg_callback *cb = o->callbacks[i];
    if (cb->ops->saves_checkpoints || cb->ops->load_state_dict == NULL) continue;
    char *key = cb->ops->state_key(cb);
    const fg_value *st = fg_value_dict_get(cbs, key);
    free(key);
    if (st && fg_value_kind_of(st) == FG_VALUE_DICT) rc = cb->ops->load_state_dict(cb, st, err);
  }
  return rc;
}

int fg__callbacks_load_first_saver_state(fg_trainer_opts *o, const fg_value *cbs, char **err) {
  fg_callback *cb = (fg_callback *)fg__callbacks_first_saver(o);
  if (cb == NULL || cb->ops->load_state_dict == NULL || cbs == NULL ||
      fg_value_kind_of(cbs) != FG_VALUE_DICT)
    return 0;
  char *key = cb->ops->state_key(cb);
  const fg_value *st = fg_value_dict_get(cbs, key);
  free(key);
  return st && fg_value_kind_of(st) == FG_VALUE_DICT ? cb->ops->load_state_dict(cb, st, err) : 0;
}

const fg_callback *fg__callbacks_first_saver(const fg_trainer_opts *o) {
  for (size_t i = 0; i < o->n_callbacks; i++)
    if (o->callbacks[i]->ops->saves_checkpoints) return o->callbacks[i];
  return NULL;
}

fg_value *fg__callbacks_saver_states(const fg_loop *l) {
  fg_value *list = fg_value_list();
  for (size_t i = 0; i < l->opts->n_callbacks; i++) {
    const fg_callback *cb = l->opts->callbacks[i];
    if (cb->ops->saves_checkpoints && cb->ops->state_dict)
      fg_value_list_append(list, cb->ops->state_dict(cb, l));
  }
  return list;
}

int fg__callbacks_load_saver_states(fg_trainer_opts *o, const fg_value *list, char **err) {
  if (list == NULL || fg_value_kind_of(list) != FG_VALUE_LIST) return 0;
  size_t k = 0;
  int rc = 0;
  for (size_t i = 0; i < o->n_callbacks && k < fg_value_len(list) && rc == 0; i++) {
    fg_callback *cb = o->callbacks[i];
    if (!cb->ops->saves_checkpoints || cb->ops->state_dict == NULL) continue;
    const fg_value *st = fg_value_list_at(list, k++);
    if (cb->ops->load_state_dict && fg_value_kind_of(st) == FG_VALUE_DICT)
      rc = cb->ops->load_state_dict(cb, st, err);
  }
  return rc;
}
