/* ModelCheckpoint (Lightning's options and file names): at each epoch's
 * end (every_n_epochs), the top save_top_k checkpoints by a monitored
 * metric (or the latest ones without a monitor), and last.ckpt. Rank 0
 * alone writes. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fulgur/error.h"
#include "trainer/callbacks/callback.h"
#include "util/xalloc.h"

typedef struct {
  fg_callback base;
  char *dirpath;  /* NULL = <run dir>/checkpoints */
  char *filename; /* NULL = "epoch={epoch}-step={step}" */
  char *monitor;  /* NULL = keep the latest */
  bool mode_max;
  int64_t save_top_k;
  bool save_last;
  int64_t every_n_epochs;
  bool auto_insert_metric_name;
  /* state */
  size_t n_kept;
  char **kept_paths;
  double *kept_scores;
  char *best_path;
  double best_score;
  char *last_path;
} model_checkpoint;

static const fg_callback_ops ops;

/* "epoch={epoch}-step={step}" with {name} and {name:fmt} filled from the
 * loop position and the latest metrics; Lightning's auto_insert_metric_name
 * writes "name=" before each value. '/' in names becomes '_' so a metric
 * such as val/loss does not create folders. */
static int format_name(const fg_loop *l, const model_checkpoint *c, char **out, char **err) {
  const char *tpl = c->filename ? c->filename : "{epoch}-{step}";
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  int rc = 0;
  for (const char *p = tpl; *p; p++) {
    if (*p != '{') {
      fputc(*p == '/' ? '_' : *p, f);
      continue;
    }
    const char *end = strchr(p, '}');
    if (end == NULL) {
      fputc(*p, f);
      continue;
    }
    char *spec = fg__xstrndup(p + 1, (size_t)(end - p - 1));
    char *fmt = strchr(spec, ':');
    if (fmt) *fmt++ = '\0';
    if (c->auto_insert_metric_name) {
      for (char *s = spec; *s; s++) fputc(*s == '/' ? '_' : *s, f);
      fputc('=', f);
    }
    if (strcmp(spec, "epoch") == 0) {
      fprintf(f, "%lld", (long long)l->pos.epoch);
    } else if (strcmp(spec, "step") == 0) {
      fprintf(f, "%lld", (long long)l->pos.global_step);
    } else {
      const fg_value *v = fg_value_dict_get(l->last_metrics, spec);
      if (v == NULL) {
        rc = fg_err_set(err, FG_ECONFIG, "ModelCheckpoint: filename names '%s', which was never logged", spec);
        free(spec);
        break;
      }
      char cfmt[32] = "%.4f";
      if (fmt && strlen(fmt) < 16 && strspn(fmt, "0123456789.efgEG") == strlen(fmt))
        snprintf(cfmt, sizeof cfmt, "%%%s", fmt);
      fprintf(f, cfmt, fg_value_as_double(v));
    }
    free(spec);
    p = end;
  }
  fclose(f);
  if (rc) {
    free(buf);
    return rc;
  }
  *out = buf;
  return 0;
}

static char *ckpt_dir(const fg_loop *l, const model_checkpoint *c) {
  return c->dirpath ? fg__xstrdup(c->dirpath) : fg__xasprintf("%s/checkpoints", l->run_dir);
}

static char *state_key(const fg_callback *cb) { return fg__xstrdup("ModelCheckpoint"); }

static fg_value *state_dict(const fg_callback *cb, const fg_loop *l) {
  const model_checkpoint *c = (const model_checkpoint *)cb;
  char *dir = ckpt_dir(l, c);
  fg_value *d = fg_value_dict();
  fg_value_dict_set(d, "monitor", c->monitor ? fg_value_string(c->monitor) : fg_value_none());
  fg_value_dict_set(d, "best_model_score", c->best_path ? fg_value_double(c->best_score) : fg_value_none());
  fg_value_dict_set(d, "best_model_path", fg_value_string(c->best_path ? c->best_path : ""));
  fg_value_dict_set(d, "last_model_path", fg_value_string(c->last_path ? c->last_path : ""));
  fg_value_dict_set(d, "dirpath", fg_value_string(dir));
  fg_value *k = fg_value_dict();
  for (size_t i = 0; i < c->n_kept; i++)
    fg_value_dict_set(k, c->kept_paths[i], fg_value_double(c->kept_scores[i]));
  fg_value_dict_set(d, "best_k_models", k);
  free(dir);
  return d;
}

/* Puts back what state_dict saved: the kept files with their scores (in
 * order: which one is replaced next depends on it), the best and the last. */
static int load_state_dict(fg_callback *cb, const fg_value *st, char **err) {
  model_checkpoint *c = (model_checkpoint *)cb;
  const fg_value *k = fg_value_dict_get(st, "best_k_models");
  if (k && fg_value_kind_of(k) == FG_VALUE_DICT) {
    for (size_t i = 0; i < c->n_kept; i++) free(c->kept_paths[i]);
    c->n_kept = 0;
    size_t n = fg_value_len(k);
    c->kept_paths = fg__xrealloc(c->kept_paths, (n ? n : 1) * sizeof *c->kept_paths);
    c->kept_scores = fg__xrealloc(c->kept_scores, (n ? n : 1) * sizeof *c->kept_scores);
    for (size_t i = 0; i < n; i++) {
      const fg_value *v = fg_value_dict_value_at(k, i);
      bool num = fg_value_kind_of(v) == FG_VALUE_DOUBLE || fg_value_kind_of(v) == FG_VALUE_INT;
      c->kept_paths[c->n_kept] = fg__xstrdup(fg_value_dict_key_at(k, i));
      c->kept_scores[c->n_kept++] = num ? fg_value_as_double(v) : NAN;
    }
  }
  const fg_value *bp = fg_value_dict_get(st, "best_model_path");
  const fg_value *bs = fg_value_dict_get(st, "best_model_score");
  const fg_value *lp = fg_value_dict_get(st, "last_model_path");
  if (bp && fg_value_kind_of(bp) == FG_VALUE_STRING) {
    free(c->best_path);
    c->best_path = *fg_value_as_string(bp) ? fg__xstrdup(fg_value_as_string(bp)) : NULL;
  }
  if (bs && (fg_value_kind_of(bs) == FG_VALUE_DOUBLE || fg_value_kind_of(bs) == FG_VALUE_INT))
    c->best_score = fg_value_as_double(bs);
  if (lp && fg_value_kind_of(lp) == FG_VALUE_STRING) {
    free(c->last_path);
    c->last_path = *fg_value_as_string(lp) ? fg__xstrdup(fg_value_as_string(lp)) : NULL;
  }
  return 0;
}

static bool better(const model_checkpoint *c, double a, double b) {
  if (isnan(b)) return !isnan(a);
  return c->mode_max ? a > b : a < b;
}

/* The monitor's latest value; Lightning raises when it was never logged
 * too: a typo in monitor must not go unseen. */
static int monitored(const fg_loop *l, const model_checkpoint *c, double *score, char **err) {
  const fg_value *v = fg_value_dict_get(l->last_metrics, c->monitor);
  if (v) {
    *score = fg_value_as_double(v);
    return 0;
  }
  char *keys = fg__xstrdup("");
  for (size_t i = 0; i < fg_value_len(l->last_metrics); i++) {
    char *k2 = fg__xasprintf("%s%s%s", keys, i ? ", " : "", fg_value_dict_key_at(l->last_metrics, i));
    free(keys);
    keys = k2;
  }
  int rc = fg_err_set(err, FG_ECONFIG, "ModelCheckpoint(monitor='%s'): no such logged metric (logged: %s)",
                      c->monitor, keys);
  free(keys);
  return rc;
}

/* Which kept file a new checkpoint with this score replaces: *save false
 * when it does not make the top k; *replace (size_t)-1 when it is added. */
static void top_k_slot(const model_checkpoint *c, double score, bool *save, size_t *replace) {
  *save = false;
  *replace = (size_t)-1;
  if (c->save_top_k == 0) return;
  if (c->save_top_k < 0 || (int64_t)c->n_kept < c->save_top_k) {
    *save = true;
  } else if (!c->monitor) {
    *save = true;
    *replace = 0; /* no monitor: keep the latest */
  } else {
    size_t worst = 0;
    for (size_t i = 1; i < c->n_kept; i++)
      if (better(c, c->kept_scores[worst], c->kept_scores[i])) worst = i;
    if (better(c, score, c->kept_scores[worst])) {
      *save = true;
      *replace = worst;
    }
  }
}

static void keep(model_checkpoint *c, const char *path, double score, size_t replace) {
  if (replace != (size_t)-1) {
    if (strcmp(c->kept_paths[replace], path) != 0) remove(c->kept_paths[replace]);
    free(c->kept_paths[replace]);
    c->kept_paths[replace] = fg__xstrdup(path);
    c->kept_scores[replace] = score;
  } else {
    c->kept_paths = fg__xrealloc(c->kept_paths, (c->n_kept + 1) * sizeof *c->kept_paths);
    c->kept_scores = fg__xrealloc(c->kept_scores, (c->n_kept + 1) * sizeof *c->kept_scores);
    c->kept_paths[c->n_kept] = fg__xstrdup(path);
    c->kept_scores[c->n_kept] = score;
    c->n_kept++;
  }
}

static int on_train_epoch_end(fg_callback *cb, fg_loop *l, char **err) {
  model_checkpoint *c = (model_checkpoint *)cb;
  if (!l->rank_zero) return 0; /* rank 0 alone writes checkpoints */
  if ((l->pos.epoch + 1) % c->every_n_epochs != 0) return 0;
  char *dir = ckpt_dir(l, c);
  fg_value *st = NULL;
  int rc = fg__mkdirs(dir, err);
  if (rc == 0) rc = fg__loop_state(l, false, &st, err);
  double score = NAN;
  if (rc == 0 && c->monitor) rc = monitored(l, c, &score, err);
  char *name = NULL, *path = NULL;
  if (rc == 0) rc = format_name(l, c, &name, err);
  if (rc == 0) path = fg__xasprintf("%s/%s.ckpt", dir, name);
  bool save = false;
  size_t replace = (size_t)-1;
  if (rc == 0) top_k_slot(c, score, &save, &replace);
  if (save) {
    if (c->monitor && (c->best_path == NULL || better(c, score, c->best_score))) {
      free(c->best_path);
      c->best_path = fg__xstrdup(path);
      c->best_score = score;
    } else if (!c->monitor) {
      free(c->best_path);
      c->best_path = fg__xstrdup(path);
    }
    rc = fg__loop_save_checkpoint(l, path, cb, st, -1, err);
    if (rc == 0) keep(c, path, score, replace);
  }
  if (rc == 0 && c->save_last) {
    char *last = fg__xasprintf("%s/last.ckpt", dir);
    free(c->last_path);
    c->last_path = fg__xstrdup(last);
    rc = fg__loop_save_checkpoint(l, last, cb, st, -1, err);
    free(last);
  }
  fg_value_free(st);
  free(name);
  free(path);
  free(dir);
  return rc;
}

static void model_checkpoint_free(fg_callback *cb) {
  model_checkpoint *c = (model_checkpoint *)cb;
  free(c->dirpath);
  free(c->filename);
  free(c->monitor);
  for (size_t i = 0; i < c->n_kept; i++) free(c->kept_paths[i]);
  free(c->kept_paths);
  free(c->kept_scores);
  free(c->best_path);
  free(c->last_path);
  free(c);
}

static const fg_callback_ops ops = {
    .name = "ModelCheckpoint",
    .saves_checkpoints = true,
    .on_train_epoch_end = on_train_epoch_end,
    .state_key = state_key,
    .state_dict = state_dict,
    .load_state_dict = load_state_dict,
    .free = model_checkpoint_free,
};

fg_callback *fg__model_checkpoint_default(void) {
  /* Unlike Lightning's default it keeps last.ckpt, so a daemon always has
   * a known file to resume from. */
  model_checkpoint *c = fg__xcalloc(1, sizeof *c);
  c->base.ops = &ops;
  c->save_top_k = 1;
  c->save_last = true;
  c->every_n_epochs = 1;
  c->auto_insert_metric_name = true;
  return &c->base;
}

/* ---- the class ------------------------------------------------------------------ */

static const fg_param params[] = {
    {"dirpath", FG_T_NULL | FG_T_STRING, "null", "folder (null: <run dir>/checkpoints)", NULL, 0},
    {"filename", FG_T_NULL | FG_T_STRING, "null", "name template (null: 'epoch={epoch}-step={step}')", NULL, 0},
    {"monitor", FG_T_NULL | FG_T_STRING, "null", "logged key to rank checkpoints by", NULL, 0},
    {"mode", FG_T_STRING, "min", "min or max", fg__check_mode, 0},
    {"save_top_k", FG_T_INT, "1", "best checkpoints kept (-1: all)", fg__check_count, 0},
    {"save_last", FG_T_NULL | FG_T_BOOL, "null", "also keep last.ckpt", NULL, 0},
    {"every_n_epochs", FG_T_NULL | FG_T_INT, "null", "save every N epochs (null: 1)", fg__check_null_or_positive, 0},
    {"auto_insert_metric_name", FG_T_BOOL, "true", "write 'name=value' in file names", NULL, 0},
    {"verbose", FG_T_BOOL, "false", "log each save", NULL, 0},
    {"save_weights_only", FG_T_BOOL, "false", "must be false", NULL, 0},
};

static char *opt_str(const fg_node *args, const char *k) {
  const fg_node *v = fg_node_get(args, k);
  return v && fg_node_kind_of(v) == FG_NODE_STRING ? fg__xstrdup(fg_node_str(v)) : NULL;
}

static int create(const fg_class *cls, const fg_node *a, const char *keypath, void **out, char **err) {
  if (fg_node_bool(fg_node_get(a, "save_weights_only"))) {
    char *p = fg__xasprintf("%s.save_weights_only", keypath);
    int rc = fg_config_error(err, fg_node_get(a, "save_weights_only"), p,
                             "not supported by this fulgur version (checkpoints always hold the full state)");
    free(p);
    return rc;
  }
  model_checkpoint *c = fg__xcalloc(1, sizeof *c);
  c->base.ops = &ops;
  c->dirpath = opt_str(a, "dirpath");
  c->filename = opt_str(a, "filename");
  c->monitor = opt_str(a, "monitor");
  c->mode_max = strcmp(fg_node_str(fg_node_get(a, "mode")), "max") == 0;
  c->save_top_k = fg_node_int(fg_node_get(a, "save_top_k"));
  const fg_node *sl = fg_node_get(a, "save_last");
  c->save_last = fg_node_kind_of(sl) == FG_NODE_BOOL && fg_node_bool(sl);
  const fg_node *ev = fg_node_get(a, "every_n_epochs");
  c->every_n_epochs = fg_node_kind_of(ev) == FG_NODE_INT ? fg_node_int(ev) : 1;
  c->auto_insert_metric_name = fg_node_bool(fg_node_get(a, "auto_insert_metric_name"));
  *out = &c->base;
  return 0;
}

static const char *const aliases[] = {"ModelCheckpoint", "lightning.pytorch.callbacks.ModelCheckpoint",
                                      "pytorch_lightning.callbacks.ModelCheckpoint", NULL};

const fg_class fg__model_checkpoint_class = {
    .name = "fulgur.callbacks.ModelCheckpoint", .aliases = aliases, .kind = FG_KIND_CALLBACK,
    .params = params, .n_params = sizeof params / sizeof params[0], .create = create,
    .destroy = fg__callback_free};
