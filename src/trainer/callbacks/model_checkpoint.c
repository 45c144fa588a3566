/* ModelCheckpoint (Lightning's options and file names): at each epoch's
 * end (every_n_epochs), the top save_top_k checkpoints by a monitored
 * metric (or the latest ones without a monitor), and last.ckpt. Rank 0
 * alone writes. */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

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
  int save_last; /* 0, 1 (a copy) or SAVE_LAST_LINK */
  int64_t every_n_epochs;      /* 0: not at epoch ends */
  int64_t every_n_train_steps; /* 0: not after steps */
  int save_on_train_epoch_end; /* -1 (null), 0, 1 */
  bool auto_insert_metric_name;
  bool save_best;   /* lightning_template's ModelCheckpointWithLinkBest: best.ckpt links the best */
  bool link_best;   /* the class is ModelCheckpointWithLinkBest */
  int64_t last_step_saved; /* Lightning's _last_global_step_saved: one save per step */
  char *last_saved; /* Lightning's _last_checkpoint_saved: what save_last: link points at */
  /* state */
  size_t n_kept;
  char **kept_paths;
  double *kept_scores;
  char *best_path;
  double best_score;
  char *last_path;
} model_checkpoint;

#define SAVE_LAST_LINK 2

static const fg_callback_ops ops;

/* One value as Python's format(value, spec) writes it, for the specs
 * checkpoint names use: [[fill]align][sign][#][0][width][.precision][type].
 * Lightning's metrics are 0-d tensors, whose __format__ formats .item():
 * an int for epoch, step and a missing metric, a float otherwise. */
static int py_format(FILE *f, const char *spec, bool is_int, int64_t iv, double dv, const char *name, char **err) {
  const char *p = spec;
  char fill = ' ', align = 0;
  if (p[0] && strchr("<>^=", p[1]) && p[1]) {
    fill = p[0];
    align = p[1];
    p += 2;
  } else if (*p && strchr("<>^=", *p)) {
    align = *p++;
  }
  char sign = 0;
  if (*p && strchr("+- ", *p)) sign = *p++;
  bool alt = false, zero = false;
  if (*p == '#') alt = true, p++;
  if (*p == '0') zero = true, p++;
  int width = 0, prec = -1;
  while (*p >= '0' && *p <= '9') width = width * 10 + (*p++ - '0');
  if (*p == '.') {
    p++;
    prec = 0;
    if (!(*p >= '0' && *p <= '9')) goto bad;
    while (*p >= '0' && *p <= '9') prec = prec * 10 + (*p++ - '0');
  }
  char type = 0;
  if (*p && strchr("bcdeEfFgGnosxX%", *p)) type = *p++;
  if (*p || width > 200 || prec > 100) goto bad;
  if (is_int && type == 0 && prec >= 0) goto bad; /* Python: precision not allowed in integer format */
  if (!is_int && type && strchr("bcdoxXn", type) && type != 'n') goto bad; /* Python: unknown format code for float */
  char body[512];
  char cf[16], *q = cf;
  *q++ = '%';
  if (sign == '+' || sign == ' ') *q++ = sign;
  if (alt) *q++ = '#';
  if (is_int && (type == 0 || type == 'd' || type == 'n' || type == 'x' || type == 'X' || type == 'o')) {
    *q++ = 'l', *q++ = 'l';
    *q++ = type == 0 || type == 'n' ? 'd' : type;
    *q = '\0';
    snprintf(body, sizeof body, cf, (long long)iv);
  } else if (is_int && (type == 'b' || type == 'c' || type == 's')) {
    goto bad;
  } else {
    double x = is_int ? (double)iv : dv;
    char t = type;
    if (t == '%') x *= 100.0, t = 'f';
    if (t == 0 && prec < 0 && !is_int) {
      /* Python's repr: the shortest digits that read back the same */
      int d = 1;
      for (; d < 17; d++) {
        snprintf(body, sizeof body, "%.*g", d, x);
        if (strtod(body, NULL) == x) break;
      }
      int e = (int)floor(log10(fabs(x)));
      if (x != 0 && isfinite(x) && (e < -4 || e >= 16)) snprintf(body, sizeof body, "%.*e", d - 1, x);
      else snprintf(body, sizeof body, "%.*f", d - 1 - e > 0 ? d - 1 - e : 0, x);
      if (x == 0) snprintf(body, sizeof body, "%s", signbit(x) ? "-0.0" : "0.0");
      else if (isfinite(x) && !strpbrk(body, ".e")) strcat(body, ".0");
      if (!isfinite(x)) snprintf(body, sizeof body, "%s", isnan(x) ? "nan" : x > 0 ? "inf" : "-inf");
    } else {
      if (t == 0 || t == 'n') t = 'g'; /* '' with a precision: 'g'-like */
      if (prec < 0) prec = 6;
      snprintf(q, sizeof cf - (size_t)(q - cf), ".*%c", t);
      snprintf(body, sizeof body, cf, prec, x);
      if (!isfinite(x)) snprintf(body, sizeof body, "%s", isnan(x) ? "nan" : x > 0 ? "inf" : "-inf");
    }
    if (type == '%') strcat(body, "%");
  }
  if ((sign == '+' || sign == ' ') && body[0] != '-' && body[0] != sign) {
    memmove(body + 1, body, strlen(body) + 1);
    body[0] = sign;
  }
  int len = (int)strlen(body), pad = width > len ? width - len : 0;
  if (zero && !align) fill = '0', align = '=';
  if (!align) align = '>'; /* Python right-aligns numbers */
  int left = align == '<' ? 0 : align == '^' ? pad / 2 : pad;
  int sgn = align == '=' && (body[0] == '-' || body[0] == '+' || body[0] == ' ') ? 1 : 0;
  if (align == '=') fwrite(body, 1, (size_t)sgn, f);
  for (int i = 0; i < left; i++) fputc(fill, f);
  fputs(body + (align == '=' ? sgn : 0), f);
  for (int i = 0; i < pad - left; i++) fputc(fill, f);
  return 0;
bad:
  return fg_err_set(err, FG_ECONFIG, "ModelCheckpoint: filename: invalid format spec '%s' for %s %s", spec,
                    is_int ? "the integer" : "the float", name);
}

/* Lightning's _format_checkpoint_name: each "{name" up to ':' or '}' is a
 * key of the monitor candidates (epoch, step and every logged metric, so a
 * name may hold '/': it then makes folders, as in Lightning);
 * auto_insert_metric_name writes "name=" before it; a key nobody logged
 * formats as the integer 0, as Lightning's torch.tensor(0). ver > 0 appends
 * "-v<ver>" (CHECKPOINT_JOIN_CHAR) for a name that exists already. */
static int format_name(const fg_loop *l, const model_checkpoint *c, const char *tpl, int ver, char **out,
                       char **err) {
  if (tpl == NULL || *tpl == '\0') tpl = "{epoch}-{step}";
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  int rc = 0;
  for (const char *p = tpl; *p && rc == 0; p++) {
    const char *end = *p == '{' ? strchr(p, '}') : NULL;
    if (end == NULL) {
      fputc(*p, f);
      continue;
    }
    char *key = fg__xstrndup(p + 1, (size_t)(end - p - 1));
    char *fmt = strchr(key, ':');
    if (fmt) *fmt++ = '\0';
    if (c->auto_insert_metric_name) fprintf(f, "%s=", key);
    const fg_value *v = NULL;
    if (strcmp(key, "epoch") == 0) {
      rc = py_format(f, fmt ? fmt : "", true, l->pos.epoch, 0, key, err);
    } else if (strcmp(key, "step") == 0) {
      rc = py_format(f, fmt ? fmt : "", true, l->pos.global_step, 0, key, err);
    } else if ((v = fg_value_dict_get(l->last_metrics, key)) == NULL) {
      rc = py_format(f, fmt ? fmt : "", true, 0, 0, key, err);
    } else {
      bool is_int = fg_value_kind_of(v) == FG_VALUE_INT;
      rc = py_format(f, fmt ? fmt : "", is_int, is_int ? fg_value_as_int(v) : 0, fg_value_as_double(v), key,
                     err);
    }
    free(key);
    p = end;
  }
  if (ver > 0) fprintf(f, "-v%d", ver);
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

/* Puts path in the top-k (in slot replace, or a new one). Returns the file
 * it pushed out, which the caller removes once path is written (caller
 * frees), or NULL. */
static char *keep(model_checkpoint *c, const char *path, double score, size_t replace) {
  char *evicted = NULL;
  if (replace != (size_t)-1) {
    if (strcmp(c->kept_paths[replace], path) != 0) evicted = fg__xstrdup(c->kept_paths[replace]);
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
  return evicted;
}

/* Lightning's version counter: "<name>-v1.ckpt", ... while the file
 * exists and is not the one this save replaces. */
static char *free_path(const fg_loop *l, const model_checkpoint *c, const char *dir, const char *tpl,
                       const char *replaced, char **err) {
  char *path = NULL;
  struct stat sb;
  for (int ver = 0;; ver++) {
    char *name = NULL;
    if (format_name(l, c, tpl, ver, &name, err)) return NULL;
    path = fg__xasprintf("%s/%s.ckpt", dir, name);
    free(name);
    if (stat(path, &sb) != 0 || (replaced && strcmp(path, replaced) == 0)) return path;
    free(path);
  }
}

/* A template with '/' in a key's value makes folders (Lightning writes
 * through fsspec's makedirs), so the file's own folder is made. */
static int mkparent(const char *path, char **err) {
  char *d = fg__xstrdup(path);
  char *slash = strrchr(d, '/');
  int rc = 0;
  if (slash) {
    *slash = '\0';
    rc = fg__mkdirs(d, err);
  }
  free(d);
  return rc;
}

/* A full save replaces a link or file there (ModelCheckpointWithLinkBest's
 * _save_checkpoint). The write is atomic (a temp file renamed over the
 * path), so it never writes through a link, and the file or link there
 * stays whole until the new file is: a save that fails (a full disk)
 * leaves the previous last.ckpt to resume from, and says so. */
static int save_file(fg_loop *l, model_checkpoint *c, const char *path, const fg_value *st, int64_t b,
                     char **err) {
  int rc = mkparent(path, err);
  if (rc == 0) rc = fg__loop_save_checkpoint(l, path, &c->base, st, b, err);
  /* Say what a resume still has: the file there, else the last save. */
  struct stat sb;
  const char *kept = rc == 0                   ? NULL
                     : lstat(path, &sb) == 0   ? path
                     : c->last_saved && lstat(c->last_saved, &sb) == 0 ? c->last_saved
                                                                       : NULL;
  if (rc && kept)
    fg_err_prefix(err, rc, "ModelCheckpoint: saving %s failed; the previous checkpoint %s is kept",
                  path, kept);
  else if (rc)
    fg_err_prefix(err, rc, "ModelCheckpoint: saving %s failed", path);
  if (rc == 0) {
    free(c->last_saved);
    c->last_saved = fg__xstrdup(path);
  }
  return rc;
}

/* Lightning's _link_checkpoint: linkpath becomes a symlink to target,
 * relative when both are in one folder (the folder can move). */
static int link_file(const char *target, const char *linkpath, char **err) {
  const char *ls = strrchr(linkpath, '/');
  size_t dl = ls ? (size_t)(ls - linkpath) + 1 : 0;
  const char *rel = strncmp(target, linkpath, dl) == 0 && strchr(target + dl, '/') == NULL ? target + dl : target;
  int rc = mkparent(linkpath, err);
  if (rc) return rc;
  /* Made beside it and renamed over it: the old link or file stays until
   * the new link exists. */
  char *tmp = fg__xasprintf("%s.link.%ld", linkpath, (long)getpid());
  unlink(tmp);
  if (symlink(rel, tmp) != 0 || rename(tmp, linkpath) != 0) {
    rc = fg_err_set(err, FG_EIO, "ModelCheckpoint: linking %s to %s: %s", linkpath, target, strerror(errno));
    unlink(tmp);
  }
  free(tmp);
  return rc;
}

/* Lightning's _save_topk_checkpoint then _save_last_checkpoint, at the
 * loop's position (b: the batch just done for a save after a step, -1 at
 * an epoch's end). */
static int save_checkpoints(model_checkpoint *c, fg_loop *l, int64_t b, char **err) {
  if (!l->rank_zero || l->sanity_checking || l->stage != FG_STAGE_FIT) return 0;
  if (c->last_step_saved == l->pos.global_step) return 0;
  char *dir = ckpt_dir(l, c);
  fg_value *st = NULL;
  fg_ckpt_pos saved = l->pos;
  if (b >= 0) { /* a resume from it starts at the next batch */
    l->pos.epoch_done = false;
    l->pos.batches_done = b + 1;
  }
  int rc = fg__mkdirs(dir, err);
  if (rc == 0) rc = fg__loop_state(l, false, &st, err);
  double score = NAN;
  if (rc == 0 && c->monitor) rc = monitored(l, c, &score, err);
  char *path = NULL;
  bool save = false;
  size_t replace = (size_t)-1;
  if (rc == 0) top_k_slot(c, score, &save, &replace);
  if (rc == 0 && save) {
    path = free_path(l, c, dir, c->filename, replace != (size_t)-1 ? c->kept_paths[replace] : NULL, err);
    if (path == NULL) rc = FG_ECONFIG;
  }
  if (rc == 0 && save) {
    char *old_best = c->best_path ? fg__xstrdup(c->best_path) : NULL;
    if (c->monitor && (c->best_path == NULL || better(c, score, c->best_score))) {
      free(c->best_path);
      c->best_path = fg__xstrdup(path);
      c->best_score = score;
    } else if (!c->monitor) {
      free(c->best_path);
      c->best_path = fg__xstrdup(path);
    }
    /* As Lightning's best_k_models: updated before the save, so the file's
     * own state counts it (a run continued from it goes on with the same
     * top-k), and the file it pushed out removed after. */
    char *evicted = keep(c, path, score, replace);
    rc = save_file(l, c, path, st, b, err);
    if (rc == 0 && evicted) remove(evicted);
    free(evicted);
    /* save_best: only a monitored top-k updates the best (Lightning's
     * _update_best_and_save), and best.ckpt follows it. */
    if (rc == 0 && c->save_best && c->monitor && (old_best == NULL || strcmp(old_best, c->best_path) != 0)) {
      char *bp = fg__xasprintf("%s/best.ckpt", dir); /* CHECKPOINT_NAME_BEST, no version counter */
      rc = link_file(c->best_path, bp, err);
      free(bp);
    }
    free(old_best);
  }
  if (rc == 0 && c->save_last) {
    char *last = fg__xasprintf("%s/last.ckpt", dir);
    free(c->last_path);
    c->last_path = fg__xstrdup(last);
    if (c->save_last == SAVE_LAST_LINK && c->last_saved && c->save_top_k != 0) rc = link_file(c->last_saved, last, err);
    else rc = save_file(l, c, last, st, b, err);
    /* ModelCheckpointWithLinkBest forgets the saved file after each last:
     * a round whose top-k saved nothing writes last.ckpt in full. */
    if (c->link_best) {
      free(c->last_saved);
      c->last_saved = NULL;
    }
    free(last);
  }
  if (rc == 0) c->last_step_saved = l->pos.global_step;
  l->pos = saved;
  fg_value_free(st);
  free(path);
  free(dir);
  return rc;
}

/* Lightning's _should_save_on_train_epoch_end: the loops here run the
 * epoch's validation before on_train_epoch_end, so null saves there too;
 * false saves after each validation of the fit instead (mid-epoch ones of
 * val_check_interval included). */
static bool epoch_due(const model_checkpoint *c, const fg_loop *l) {
  return c->every_n_epochs >= 1 && (l->pos.epoch + 1) % c->every_n_epochs == 0;
}

static int on_train_epoch_end(fg_callback *cb, fg_loop *l, char **err) {
  model_checkpoint *c = (model_checkpoint *)cb;
  if (c->save_on_train_epoch_end == 0 || !epoch_due(c, l)) return 0;
  return save_checkpoints(c, l, -1, err);
}

static int on_validation_end(fg_callback *cb, fg_loop *l, char **err) {
  model_checkpoint *c = (model_checkpoint *)cb;
  if (c->save_on_train_epoch_end != 0 || !epoch_due(c, l)) return 0;
  return save_checkpoints(c, l, -1, err);
}

/* every_n_train_steps: after the step that makes global_step a multiple. */
static int on_train_batch_end(fg_callback *cb, fg_loop *l, int64_t b, char **err) {
  model_checkpoint *c = (model_checkpoint *)cb;
  if (c->every_n_train_steps < 1 || l->pos.global_step % c->every_n_train_steps != 0) return 0;
  return save_checkpoints(c, l, b, err);
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
  free(c->last_saved);
  free(c);
}

static const fg_callback_ops ops = {
    .name = "ModelCheckpoint",
    .saves_checkpoints = true,
    .on_train_epoch_end = on_train_epoch_end,
    .on_validation_end = on_validation_end,
    .on_train_batch_end = on_train_batch_end,
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
  c->save_on_train_epoch_end = -1;
  c->last_step_saved = -1;
  c->auto_insert_metric_name = true;
  return &c->base;
}

/* ---- the class ------------------------------------------------------------------ */

/* save_last: Lightning 2.1+ also takes "link" (last.ckpt a symlink to the
 * checkpoint just saved). */
static int check_save_last(const fg_node *v, const char *k, char **err) {
  if (fg_node_kind_of(v) != FG_NODE_STRING || strcmp(fg_node_str(v), "link") == 0) return 0;
  return fg_config_error(err, v, k, "expected true, false, null or 'link', got '%s'", fg_node_str(v));
}

/* A datetime.timedelta, which a YAML config cannot write (LightningCLI's
 * parser takes no string for it): only null is a value here. */
static int check_interval(const fg_node *v, const char *k, char **err) {
  if (fg_node_kind_of(v) == FG_NODE_NULL) return 0;
  return fg_config_error(err, v, k,
                         "a datetime.timedelta, which a config cannot express; only null is accepted "
                         "(use every_n_train_steps or every_n_epochs)");
}

/* ModelCheckpointWithLinkBest's params are these plus its save_best, last. */
static const fg_param params[] = {
    {"dirpath", FG_T_NULL | FG_T_STRING, "null", "folder (null: <run dir>/checkpoints)", NULL, 0},
    {"filename", FG_T_NULL | FG_T_STRING, "null", "name template (null: '{epoch}-{step}')", NULL, 0},
    {"monitor", FG_T_NULL | FG_T_STRING, "null", "logged key to rank checkpoints by", NULL, 0},
    {"verbose", FG_T_BOOL, "false", "log each save", NULL, 0},
    {"save_last", FG_T_NULL | FG_T_BOOL | FG_T_STRING, "null", "also keep last.ckpt ('link': a symlink)",
     check_save_last, 0},
    {"save_top_k", FG_T_INT, "1", "best checkpoints kept (-1: all)", fg__check_count, 0},
    {"save_weights_only", FG_T_BOOL, "false", "must be false", NULL, 0},
    {"mode", FG_T_STRING, "min", "min or max", fg__check_mode, 0},
    {"auto_insert_metric_name", FG_T_BOOL, "true", "write 'name=value' in file names", NULL, 0},
    {"every_n_train_steps", FG_T_NULL | FG_T_INT, "null", "save every N optimizer steps (0: never)",
     fg__check_count, 0},
    {"train_time_interval", FG_T_ANY, "null", "a timedelta: only null", check_interval, 0},
    {"every_n_epochs", FG_T_NULL | FG_T_INT, "null", "save every N epochs (0: never)", fg__check_count, 0},
    {"save_on_train_epoch_end", FG_T_NULL | FG_T_BOOL, "null", "save at the train epoch's end, not validation's",
     NULL, 0},
    {"enable_version_counter", FG_T_BOOL, "true", "must be true", NULL, 0},
    {"save_best", FG_T_NULL | FG_T_BOOL, "null", "best.ckpt: a symlink to the best checkpoint", NULL, 0},
};

static char *opt_str(const fg_node *args, const char *k) {
  const fg_node *v = fg_node_get(args, k);
  return v && fg_node_kind_of(v) == FG_NODE_STRING ? fg__xstrdup(fg_node_str(v)) : NULL;
}

static int unsupported(const fg_node *a, const char *keypath, const char *key, bool bad, const char *why,
                       char **err) {
  if (!bad) return 0;
  char *p = fg__xasprintf("%s.%s", keypath, key);
  int rc = fg_config_error(err, fg_node_get(a, key), p, "%s", why);
  free(p);
  return rc;
}

static int64_t opt_int(const fg_node *a, const char *k, int64_t dflt) {
  const fg_node *v = fg_node_get(a, k);
  return v && fg_node_kind_of(v) == FG_NODE_INT ? fg_node_int(v) : dflt;
}

static int create(const fg_class *cls, const fg_node *a, const char *keypath, void **out, char **err) {
  int rc = unsupported(a, keypath, "save_weights_only", fg_node_bool(fg_node_get(a, "save_weights_only")),
                       "not supported by this fulgur version (checkpoints always hold the full state)", err);
  if (rc == 0)
    rc = unsupported(a, keypath, "enable_version_counter", !fg_node_bool(fg_node_get(a, "enable_version_counter")),
                     "false is not supported by this fulgur version (an existing name gets -v1, -v2, ...)", err);
  if (rc) return rc;
  model_checkpoint *c = fg__xcalloc(1, sizeof *c);
  c->base.ops = &ops;
  c->dirpath = opt_str(a, "dirpath");
  c->filename = opt_str(a, "filename");
  c->monitor = opt_str(a, "monitor");
  c->mode_max = strcmp(fg_node_str(fg_node_get(a, "mode")), "max") == 0;
  c->save_top_k = fg_node_int(fg_node_get(a, "save_top_k"));
  const fg_node *sl = fg_node_get(a, "save_last");
  c->save_last = fg_node_kind_of(sl) == FG_NODE_STRING ? SAVE_LAST_LINK
                 : fg_node_kind_of(sl) == FG_NODE_BOOL && fg_node_bool(sl) ? 1 : 0;
  /* Lightning's __init_triggers: with no trigger set, every epoch. */
  const fg_node *ev = fg_node_get(a, "every_n_epochs"), *es = fg_node_get(a, "every_n_train_steps");
  bool none = fg_node_kind_of(ev) == FG_NODE_NULL && fg_node_kind_of(es) == FG_NODE_NULL;
  c->every_n_epochs = none ? 1 : opt_int(a, "every_n_epochs", 0);
  c->every_n_train_steps = none ? 0 : opt_int(a, "every_n_train_steps", 0);
  const fg_node *se = fg_node_get(a, "save_on_train_epoch_end");
  c->save_on_train_epoch_end = fg_node_kind_of(se) == FG_NODE_BOOL ? fg_node_bool(se) : -1;
  c->auto_insert_metric_name = fg_node_bool(fg_node_get(a, "auto_insert_metric_name"));
  c->link_best = cls->n_params == sizeof params / sizeof params[0];
  const fg_node *sb = c->link_best ? fg_node_get(a, "save_best") : NULL;
  c->save_best = sb && fg_node_kind_of(sb) == FG_NODE_BOOL && fg_node_bool(sb);
  c->last_step_saved = -1;
  *out = &c->base;
  return 0;
}

static const char *const aliases[] = {"ModelCheckpoint", "lightning.pytorch.callbacks.ModelCheckpoint",
                                      "pytorch_lightning.callbacks.ModelCheckpoint",
                                      "lightning.pytorch.callbacks.model_checkpoint.ModelCheckpoint",
                                      "pytorch_lightning.callbacks.model_checkpoint.ModelCheckpoint", NULL};

const fg_class fg__model_checkpoint_class = {
    .name = "fulgur.callbacks.ModelCheckpoint", .aliases = aliases, .kind = FG_KIND_CALLBACK,
    .params = params, .n_params = sizeof params / sizeof params[0] - 1, .create = create,
    .destroy = fg__callback_free};

/* lightning_template's subclass, under the class paths its configs write. */
static const char *const link_best_aliases[] = {
    "ModelCheckpointWithLinkBest", "lightning_template.utils.callbacks.ModelCheckpointWithLinkBest",
    "lightning_template.utils.callbacks.model_checkpoint.ModelCheckpointWithLinkBest", NULL};

const fg_class fg__model_checkpoint_link_best_class = {
    .name = "fulgur.callbacks.ModelCheckpointWithLinkBest", .aliases = link_best_aliases,
    .kind = FG_KIND_CALLBACK, .params = params, .n_params = sizeof params / sizeof params[0], .create = create,
    .destroy = fg__callback_free};
