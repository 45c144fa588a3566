/* trainer.logger: the TensorBoardLogger class, the loggers fulgur cannot
 * serve, the run directory Lightning's first logger decides, and one sink
 * per logger. */
#include <dirent.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "fulgur/error.h"
#include "fulgur/registry.h"
#include "trainer/trainer.h"
#include "util/xalloc.h"

int64_t fg__logged_step(const fg_event *ev) {
  return ev->global_step > 0 && ev->split && strcmp(ev->split, "test") != 0 ? ev->global_step - 1
                                                                            : ev->global_step;
}

void fg__logger_cfg_free(void *obj) {
  fg_logger_cfg *c = obj;
  if (c == NULL) return;
  free(c->save_dir);
  free(c->name);
  free(c->version);
  free(c->prefix);
  free(c->sub_dir);
  free(c->filename_suffix);
  free(c);
}

/* ---- loggers that need a service ------------------------------------------------ */

/* Lightning's service loggers, each under its class name, its package path
 * and its module path (lightning.pytorch.loggers.wandb.WandbLogger), and
 * lightning_template's W&B subclass. */
static const struct {
  const char *cls, *module, *service;
} service_loggers[] = {
    {"WandbLogger", "wandb", "Weights & Biases"},
    {"MLFlowLogger", "mlflow", "an MLflow tracking server"},
    {"CometLogger", "comet", "Comet"},
    {"NeptuneLogger", "neptune", "Neptune"},
};

static const char *service_of(const char *class_path) {
  if (strcmp(class_path, "lightning_template.utils.loggers.wandb.WandbNamedLogger") == 0)
    return service_loggers[0].service;
  static const char *const roots[] = {"lightning.pytorch.loggers.", "pytorch_lightning.loggers."};
  for (size_t i = 0; i < sizeof service_loggers / sizeof service_loggers[0]; i++) {
    const char *c = service_loggers[i].cls;
    if (strcmp(class_path, c) == 0) return service_loggers[i].service;
    for (size_t r = 0; r < 2; r++) {
      char *a = fg__xasprintf("%s%s", roots[r], c);
      char *b = fg__xasprintf("%s%s.%s", roots[r], service_loggers[i].module, c);
      bool hit = strcmp(class_path, a) == 0 || strcmp(class_path, b) == 0;
      free(a);
      free(b);
      if (hit) return service_loggers[i].service;
    }
  }
  return NULL;
}

static int check_one(fg_node *obj, const char *keypath, bool fill, char **err) {
  const fg_node *cp = fg_node_kind_of(obj) == FG_NODE_MAP ? fg_node_get(obj, "class_path") : NULL;
  const char *svc = cp && fg_node_kind_of(cp) == FG_NODE_STRING ? service_of(fg_node_str(cp)) : NULL;
  if (svc) {
    char *p = fg__xasprintf("%s.class_path", keypath);
    int rc = fg_config_error(err, cp, p,
                             "'%s' logs to %s, which fulgur does not connect to; use "
                             "TensorBoardLogger or CSVLogger (lightning.pytorch.loggers.TensorBoardLogger, "
                             "lightning.pytorch.loggers.CSVLogger), which write files in the run directory",
                             fg_node_str(cp), svc);
    free(p);
    return rc;
  }
  return fg_registry_check(obj, keypath, FG_KIND_LOGGER, fill, err);
}

int fg__loggers_check(fg_node *lg, bool fill, char **err) {
  if (fg_node_kind_of(lg) == FG_NODE_MAP) return check_one(lg, "trainer.logger", fill, err);
  if (fg_node_kind_of(lg) != FG_NODE_SEQ) return 0;
  for (size_t i = 0; i < fg_node_len(lg); i++) {
    char *p = fg__xasprintf("trainer.logger.%zu", i);
    int rc = check_one(fg_node_at(lg, i), p, fill, err);
    free(p);
    if (rc) return rc;
  }
  return 0;
}

/* ---- TensorBoardLogger ------------------------------------------------------------- */

/* name, a version string and sub_dir are folders under save_dir: none may
 * climb out of it (fulgurd checks save_dir against its roots, not these). */
static int check_inside(const fg_node *v, const char *k, char **err) {
  if (fg_node_kind_of(v) != FG_NODE_STRING) return 0;
  const char *s = fg_node_str(v);
  bool up = false;
  char *dup = fg__xstrdup(s), *save = NULL;
  for (char *t = strtok_r(dup, "/", &save); t; t = strtok_r(NULL, "/", &save))
    if (strcmp(t, "..") == 0) up = true;
  free(dup);
  if (s[0] == '/' || up)
    return fg_config_error(err, v, k, "expected a folder inside save_dir (relative, without '..'), got '%s'", s);
  return 0;
}
static int check_version(const fg_node *v, const char *k, char **err) {
  if (fg_node_kind_of(v) == FG_NODE_INT && fg_node_int(v) < 0)
    return fg_config_error(err, v, k, "expected a version number >= 0, a folder name or null, got %lld",
                           (long long)fg_node_int(v));
  if (fg_node_kind_of(v) == FG_NODE_STRING && fg_node_str(v)[0] == '\0')
    return fg_config_error(err, v, k, "expected a version number, a folder name or null, got ''");
  return check_inside(v, k, err);
}
static int check_log_graph(const fg_node *v, const char *k, char **err) {
  if (!fg_node_bool(v)) return 0;
  return fg_config_error(err, v, k,
                         "log_graph: true is not supported: fulgur writes no TensorFlow GraphDef of "
                         "the model; set log_graph: false");
}
static int check_queue(const fg_node *v, const char *k, char **err) {
  if (fg_node_int(v) >= 1) return 0;
  return fg_config_error(err, v, k, "expected an integer >= 1, got %lld", (long long)fg_node_int(v));
}
static int check_secs(const fg_node *v, const char *k, char **err) {
  if (fg_node_float(v) > 0) return 0;
  return fg_config_error(err, v, k, "expected a number of seconds > 0, got %g", fg_node_float(v));
}
static int check_suffix(const fg_node *v, const char *k, char **err) {
  if (strchr(fg_node_str(v), '/') == NULL) return 0;
  return fg_config_error(err, v, k, "expected a file name suffix without '/', got '%s'", fg_node_str(v));
}

static const fg_param tb_params[] = {
    {"save_dir", FG_T_STRING, NULL, "folder of the logs (Lightning: required)", NULL, 0},
    {"name", FG_T_NULL | FG_T_STRING, "lightning_logs", "subfolder of save_dir (null or '': none)", check_inside, 0},
    {"version", FG_T_NULL | FG_T_INT | FG_T_STRING, "null", "N: version_N; a string: that folder; null: the next version_N", check_version, 0},
    {"log_graph", FG_T_BOOL, "false", "must be false (no graph is written)", check_log_graph, 0},
    {"default_hp_metric", FG_T_BOOL, "true", "log hp_metric -1 and the hyperparameters at the start", NULL, 0},
    {"prefix", FG_T_STRING, "''", "prepended to every scalar's tag as '<prefix>-'", NULL, 0},
    {"sub_dir", FG_T_NULL | FG_T_STRING, "null", "subfolder of the version folder for the event files", check_inside, 0},
    {"max_queue", FG_T_INT, "10", "SummaryWriter: events buffered before a flush", check_queue, 0},
    {"flush_secs", FG_T_INT | FG_T_FLOAT, "120", "SummaryWriter: seconds between flushes", check_secs, 0},
    {"filename_suffix", FG_T_STRING, "''", "SummaryWriter: appended to the event file's name", check_suffix, 0},
};

static char *opt_str(const fg_node *a, const char *k) {
  const fg_node *v = fg_node_get(a, k);
  return v && fg_node_kind_of(v) == FG_NODE_STRING ? fg__xstrdup(fg_node_str(v)) : NULL;
}

static int tb_create(const fg_class *cls, const fg_node *a, const char *keypath, void **out, char **err) {
  fg_logger_cfg *c = fg__xcalloc(1, sizeof *c);
  c->type = FG_LOGGER_TENSORBOARD;
  c->save_dir = opt_str(a, "save_dir");
  c->name = opt_str(a, "name");
  if (c->name && c->name[0] == '\0') free(c->name), c->name = NULL;
  const fg_node *v = fg_node_get(a, "version");
  if (fg_node_kind_of(v) == FG_NODE_INT) c->version = fg__xasprintf("version_%lld", (long long)fg_node_int(v));
  else c->version = opt_str(a, "version");
  c->default_hp_metric = fg_node_bool(fg_node_get(a, "default_hp_metric"));
  c->prefix = opt_str(a, "prefix");
  c->sub_dir = opt_str(a, "sub_dir");
  c->max_queue = fg_node_int(fg_node_get(a, "max_queue"));
  c->flush_secs = fg_node_float(fg_node_get(a, "flush_secs"));
  c->filename_suffix = opt_str(a, "filename_suffix");
  *out = c;
  return 0;
}

static const char *const tb_aliases[] = {
    "TensorBoardLogger", "lightning.pytorch.loggers.TensorBoardLogger",
    "pytorch_lightning.loggers.TensorBoardLogger", "lightning.pytorch.loggers.tensorboard.TensorBoardLogger",
    "pytorch_lightning.loggers.tensorboard.TensorBoardLogger", NULL};

const fg_class fg__tb_logger_class = {
    .name = "fulgur.loggers.TensorBoardLogger", .aliases = tb_aliases, .kind = FG_KIND_LOGGER,
    .params = tb_params, .n_params = sizeof tb_params / sizeof tb_params[0],
    .create = tb_create, .destroy = fg__logger_cfg_free};

/* ---- the run directory ---------------------------------------------------------------- */

/* <root>/version_<N> with N one more than the largest existing (Lightning's
 * _get_next_version); mkdir's EEXIST makes two runs starting at once take
 * different numbers. */
static int make_version_dir(const char *root, char **out, char **err) {
  int rc = fg__mkdirs(root, err);
  if (rc) return rc;
  long next = 0;
  DIR *d = opendir(root);
  if (d) {
    struct dirent *e;
    while ((e = readdir(d))) {
      char *end;
      if (strncmp(e->d_name, "version_", 8) != 0) continue;
      long n = strtol(e->d_name + 8, &end, 10);
      if (*end == '\0' && n >= next) next = n + 1;
    }
    closedir(d);
  }
  for (int tries = 0; tries < 1000; tries++, next++) {
    char *p = fg__xasprintf("%s/version_%ld", root, next);
    if (mkdir(p, 0777) == 0) {
      *out = p;
      return 0;
    }
    int e = errno;
    free(p);
    if (e != EEXIST) return fg_err_set(err, FG_EIO, "cannot create run directory in %s: %s", root, strerror(e));
  }
  return fg_err_set(err, FG_EIO, "cannot create a run directory in %s", root);
}

/* A TensorBoardLogger's <save_dir>/<name>/<version>, made. */
static int tb_version_dir(const fg_logger_cfg *c, char **out, char **err) {
  char *root = c->name ? fg__xasprintf("%s/%s", c->save_dir, c->name) : fg__xstrdup(c->save_dir);
  int rc;
  if (c->version) {
    /* A given version is reused as it is, as Lightning does. */
    char *dir = fg__xasprintf("%s/%s", root, c->version);
    rc = fg__mkdirs(dir, err);
    if (rc == 0) *out = dir;
    else free(dir);
  } else {
    rc = make_version_dir(root, out, err);
  }
  free(root);
  return rc;
}

int fg__ckpt_run_dir(const char *ckpt, const char *key, char **out, char **err) {
  /* Lightning's layout: <run dir>/checkpoints/<file>. */
  const char *slash = strrchr(ckpt, '/');
  size_t dlen = slash ? (size_t)(slash - ckpt) : 0;
  const char *base = dlen >= 11 ? ckpt + dlen - 11 : NULL;
  if (base == NULL || strncmp(base, "checkpoints", 11) != 0 || (base > ckpt && base[-1] != '/'))
    return fg_err_set(err, FG_ECONFIG,
                      "%s: '%s' is not in a run directory's checkpoints/ folder, so there is no run "
                      "to continue (set trainer.continue_run: false for a new version)",
                      key, ckpt);
  *out = base > ckpt ? fg__xstrndup(ckpt, (size_t)(base - 1 - ckpt)) : fg__xstrdup(".");
  return 0;
}

int fg__run_dir_make(const fg_trainer_opts *o, char **out, char **err) {
  if (o->n_loggers > 0 && o->loggers[0]->type == FG_LOGGER_TENSORBOARD)
    return tb_version_dir(o->loggers[0], out, err);
  return make_version_dir(o->default_root_dir, out, err);
}

/* ---- sinks ------------------------------------------------------------------------------- */

static int start_csv(const fg_logger_cfg *c, const char *run_dir, bool continuing, fg_events *bus,
                     char **err) {
  const char *version = strrchr(run_dir, '/') + 1;
  char *dir = c->save_dir ? (c->name ? fg__xasprintf("%s/%s/%s", c->save_dir, c->name, version)
                                     : fg__xasprintf("%s/%s", c->save_dir, version))
                          : fg__xstrdup(run_dir);
  char *path = fg__xasprintf("%s/metrics.csv", dir);
  fg_sink csv;
  int rc = fg__mkdirs(dir, err);
  if (rc == 0) rc = fg__csv_logger_create(path, c->flush_every, continuing, &csv, err);
  if (rc == 0) fg_events_add_sink(bus, csv);
  free(dir);
  free(path);
  return rc;
}

/* The first logger's folder is the run directory; a later TensorBoardLogger
 * numbers its own versions under its own save_dir, as each Lightning
 * logger does. */
static int start_tb(const fg_logger_cfg *c, bool first, const fg_node *config, const char *run_dir,
                    fg_events *bus, char **err) {
  char *vdir = NULL;
  int rc = first ? (vdir = fg__xstrdup(run_dir), 0) : tb_version_dir(c, &vdir, err);
  if (rc) return rc;
  char *dir = c->sub_dir ? fg__xasprintf("%s/%s", vdir, c->sub_dir) : fg__xstrdup(vdir);
  free(vdir);
  fg_sink tb;
  rc = fg__mkdirs(dir, err);
  if (rc == 0) rc = fg__tb_logger_create(c, dir, config, &tb, err);
  if (rc == 0) {
    fg_events_add_sink(bus, tb);
    fg_events_log(bus, FG_LOG_INFO, "TensorBoard logs: %s", dir);
  }
  free(dir);
  return rc;
}

int fg__loggers_start(const fg_trainer_opts *o, const fg_node *config, const char *run_dir,
                      bool continuing, fg_events *bus, char **err) {
  for (size_t i = 0; i < o->n_loggers; i++) {
    const fg_logger_cfg *c = o->loggers[i];
    int rc = c->type == FG_LOGGER_TENSORBOARD ? start_tb(c, i == 0, config, run_dir, bus, err)
                                              : start_csv(c, run_dir, continuing, bus, err);
    if (rc) return rc;
  }
  return 0;
}
