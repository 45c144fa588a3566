/* lightning_template's SaveAndLogConfigCallback (its LightningCLI's
 * save_config_callback, a Lightning SaveConfigCallback): when a fit sets
 * up, the merged config is written to <log dir>/<config_filename>, and the
 * config is logged as the loggers' hyperparameters.
 *
 * In fulgur every run already writes the merged config as
 * <run dir>/config.yaml (the log dir of lightning_template's save_config),
 * and TensorBoardLogger logs the config as hyperparameters; so the default
 * config_filename is that file, and another name writes the same document
 * there too. overwrite: false refuses a file that is already there, as
 * SaveConfigCallback does (a new run directory never has one). multifile
 * (jsonargparse writing one file per class) is not available: it is an
 * error rather than silently one file. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fulgur/config.h"
#include "fulgur/error.h"
#include "trainer/callbacks/callback.h"
#include "util/atomic_file.h"
#include "util/xalloc.h"

typedef struct {
  fg_callback base;
  char *filename;
  bool overwrite;
} save_config_cb;

static int setup(fg_callback *cb, fg_loop *l, fg_stage stage, char **err) {
  const save_config_cb *s = (const save_config_cb *)cb;
  /* lightning_template saves on fit only, from rank 0. */
  if (stage != FG_STAGE_FIT || !l->rank_zero || l->run_dir == NULL || l->config == NULL) return 0;
  if (strcmp(s->filename, "config.yaml") == 0) return 0; /* the run's own copy (run.c) */
  char *path = fg__xasprintf("%s/%s", l->run_dir, s->filename);
  int rc = 0;
  if (!s->overwrite && access(path, F_OK) == 0) {
    rc = fg_err_set(err, FG_EIO,
                    "SaveAndLogConfigCallback: '%s' exists already; set overwrite: true to replace it",
                    path);
  } else {
    char *yaml = NULL;
    rc = fg_node_emit(l->config, &yaml, err);
    if (rc == 0) rc = fg__write_file_atomic(path, yaml, strlen(yaml), err);
    free(yaml);
    if (rc) {
      fg_err_prefix(err, rc, "SaveAndLogConfigCallback");
    } else {
      fg_event ev = {.kind = FG_EVENT_ARTIFACT, .text = "config", .path = path, .batch_idx = -1,
                     .num_batches = -1, .max_epochs = -1, .max_steps = -1};
      fg_events_emit(l->events, &ev);
    }
  }
  free(path);
  return rc;
}

static void save_config_free(fg_callback *cb) {
  free(((save_config_cb *)cb)->filename);
  free(cb);
}

static const fg_callback_ops ops = {.name = "SaveAndLogConfigCallback", .setup = setup,
                                    .free = save_config_free};

static int check_filename(const fg_node *v, const char *k, char **err) {
  const char *s = fg_node_str(v);
  if (*s && strchr(s, '/') == NULL && strcmp(s, ".") != 0 && strcmp(s, "..") != 0) return 0;
  return fg_config_error(err, v, k, "expected a file name inside the run directory, got '%s'", s);
}

static int check_multifile(const fg_node *v, const char *k, char **err) {
  if (!fg_node_bool(v)) return 0;
  return fg_config_error(err, v, k,
                         "true is not available: fulgur writes the merged config as one file");
}

static const fg_param params[] = {
    {"config_filename", FG_T_STRING, "config.yaml", "file in the run directory", check_filename, 0},
    {"overwrite", FG_T_BOOL, "false", "replace a file that exists", NULL, 0},
    {"multifile", FG_T_BOOL, "false", "false only (one file)", check_multifile, 0},
    {"save_to_log_dir", FG_T_BOOL, "false", "Lightning's own copy in the log dir (the same file here)", NULL, 0},
};

static int create(const fg_class *cls, const fg_node *a, const char *keypath, void **out,
                  char **err) {
  (void)cls, (void)keypath, (void)err;
  save_config_cb *s = fg__xcalloc(1, sizeof *s);
  s->base.ops = &ops;
  s->filename = fg__xstrdup(fg_node_str(fg_node_get(a, "config_filename")));
  s->overwrite = fg_node_bool(fg_node_get(a, "overwrite"));
  *out = &s->base;
  return 0;
}

static const char *const aliases[] = {
    "SaveAndLogConfigCallback",
    "lightning_template.utils.callbacks.save_and_log_config_callback.SaveAndLogConfigCallback",
    NULL};

const fg_class fg__save_and_log_config_class = {
    .name = "fulgur.callbacks.SaveAndLogConfigCallback", .aliases = aliases,
    .kind = FG_KIND_CALLBACK, .params = params, .n_params = sizeof params / sizeof params[0],
    .create = create, .destroy = fg__callback_free};
