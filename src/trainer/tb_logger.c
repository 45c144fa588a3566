/* TensorBoardLogger's sink: one events.out.tfevents.<time>.<host>.<pid>.<n>
 * file per run in the logger's folder, written as torch.utils.tensorboard's
 * SummaryWriter writes it under Lightning:
 *   - a first Event with file_version "brain.Event:2";
 *   - with default_hp_metric, hp_metric = -1 at step 0, then the hparams
 *     plugin's experiment, session start and session end summaries of the
 *     hyperparameters (the run's config);
 *   - each scalar of a STEP or EPOCH event as its own Event (simple_value,
 *     a float32 as add_scalar stores it) at the step Lightning logs it,
 *     with "epoch" added as Lightning's logger connector adds it;
 * and hparams.yaml (the hyperparameters, when the folder has none yet).
 * A continued run (FG_CONTINUED_STATE, trainer.h) writes a new file in the
 * same folder, so TensorBoard shows one run, with a SessionLog START at the
 * checkpoint's global step: TensorBoard then drops what the earlier files
 * logged from that step on, which the continued run logs again.
 * Records are buffered and flushed every max_queue events, every
 * flush_secs seconds and at the end; a write failure fails the run at
 * close, as the CSV logger's does. */
#include <errno.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "fulgur/error.h"
#include "tensorboard/event.pb-c.h"
#include "trainer/tb_hparams.h"
#include "trainer/tfrecord.h"
#include "trainer/trainer.h"
#include "util/xalloc.h"

typedef struct {
  FILE *f;
  char *path;
  char *prefix; /* NULL = none */
  int64_t max_queue;
  double flush_secs;
  int64_t pending;   /* records written since the last flush */
  double last_flush; /* wall time */
  int error;         /* first write failure, reported at close */
  char *error_msg;
} tb_logger;

static double wall_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void fail_errno(tb_logger *t) {
  if (t->error) return;
  t->error = FG_EIO;
  t->error_msg = fg__xasprintf("cannot write %s: %s", t->path, strerror(errno));
}

static void flush(tb_logger *t) {
  if (t->error == 0 && fflush(t->f) != 0) fail_errno(t);
  t->pending = 0;
  t->last_flush = wall_now();
}

static void write_event(tb_logger *t, const Tensorboard__Event *ev) {
  if (t->error) return;
  size_t len = tensorboard__event__get_packed_size(ev);
  uint8_t *buf = fg__xmalloc(len ? len : 1);
  tensorboard__event__pack(ev, buf);
  if (fg__tfrecord_write(t->f, buf, len) != 0) fail_errno(t);
  free(buf);
  t->pending++;
}

static void write_summary_value(tb_logger *t, double wall, int64_t step,
                                Tensorboard__Summary__Value *v) {
  Tensorboard__Summary__Value *vals[1] = {v};
  Tensorboard__Summary s = TENSORBOARD__SUMMARY__INIT;
  s.n_value = 1;
  s.value = vals;
  Tensorboard__Event ev = TENSORBOARD__EVENT__INIT;
  ev.wall_time = wall;
  ev.step = step;
  ev.what_case = TENSORBOARD__EVENT__WHAT_SUMMARY;
  ev.summary = &s;
  write_event(t, &ev);
}

/* Lightning's _add_prefix: "<prefix>-<key>". */
static void write_scalar(tb_logger *t, double wall, int64_t step, const char *key, double value) {
  char *tag = t->prefix ? fg__xasprintf("%s-%s", t->prefix, key) : (char *)key;
  Tensorboard__Summary__Value v = TENSORBOARD__SUMMARY__VALUE__INIT;
  v.tag = tag;
  v.value_case = TENSORBOARD__SUMMARY__VALUE__VALUE_SIMPLE_VALUE;
  v.simple_value = (float)value;
  write_summary_value(t, wall, step, &v);
  if (tag != key) free(tag);
}

static void write_plugin_summary(tb_logger *t, double wall, const char *tag, const fg_tb_blob *b) {
  Tensorboard__SummaryMetadata__PluginData pd = TENSORBOARD__SUMMARY_METADATA__PLUGIN_DATA__INIT;
  pd.plugin_name = "hparams";
  pd.content.data = b->data;
  pd.content.len = b->len;
  Tensorboard__SummaryMetadata md = TENSORBOARD__SUMMARY_METADATA__INIT;
  md.plugin_data = &pd;
  Tensorboard__Summary__Value v = TENSORBOARD__SUMMARY__VALUE__INIT;
  v.tag = (char *)tag;
  v.metadata = &md;
  write_summary_value(t, wall, 0, &v);
}

static void tb_emit(void *self, const fg_event *ev) {
  tb_logger *t = self;
  if (ev->kind == FG_EVENT_STATE && ev->text && strcmp(ev->text, FG_CONTINUED_STATE) == 0) {
    Tensorboard__SessionLog sl = TENSORBOARD__SESSION_LOG__INIT;
    sl.status = TENSORBOARD__SESSION_LOG__SESSION_STATUS__START;
    Tensorboard__Event e = TENSORBOARD__EVENT__INIT;
    e.wall_time = wall_now();
    e.step = ev->global_step;
    e.what_case = TENSORBOARD__EVENT__WHAT_SESSION_LOG;
    e.session_log = &sl;
    write_event(t, &e);
    flush(t);
    return;
  }
  if ((ev->kind != FG_EVENT_STEP && ev->kind != FG_EVENT_EPOCH) || ev->n_values == 0) return;
  double wall = wall_now();
  int64_t step = fg__logged_step(ev);
  bool has_epoch = false;
  for (size_t i = 0; i < ev->n_values; i++) {
    write_scalar(t, wall, step, ev->keys[i], ev->values[i]);
    if (strcmp(ev->keys[i], "epoch") == 0) has_epoch = true;
  }
  /* The logger connector's metrics.setdefault("epoch", current_epoch). */
  if (!has_epoch) write_scalar(t, wall, step, "epoch", (double)ev->epoch);
  if (t->pending >= t->max_queue || wall - t->last_flush >= t->flush_secs) flush(t);
}

static int tb_close(void *self, char **err) {
  tb_logger *t = self;
  if (t->error == 0) flush(t);
  if (fclose(t->f) != 0 && t->error == 0) fail_errno(t);
  int rc = t->error;
  if (rc && err && *err == NULL) *err = t->error_msg, t->error_msg = NULL;
  free(t->error_msg);
  free(t->path);
  free(t->prefix);
  free(t);
  return rc;
}

/* Lightning saves hparams.yaml once: a folder that has one keeps it. */
static int write_hparams_yaml(const char *dir, const fg_node *hparams, char **err) {
  char *path = fg__xasprintf("%s/hparams.yaml", dir);
  int rc = 0;
  if (access(path, F_OK) != 0) {
    char *yaml = NULL;
    rc = fg_node_emit(hparams, &yaml, err);
    if (rc == 0) rc = fg__write_file_atomic(path, yaml, strlen(yaml), err);
    free(yaml);
  }
  free(path);
  return rc;
}

/* SummaryWriter numbers its files within a process from 0. */
static atomic_int file_counter;

int fg__tb_logger_create(const fg_logger_cfg *cfg, const char *dir, const fg_node *hparams,
                         fg_sink *out, char **err) {
  int rc = write_hparams_yaml(dir, hparams, err);
  if (rc) return rc;
  char host[256];
  if (gethostname(host, sizeof host) != 0) strcpy(host, "localhost");
  host[sizeof host - 1] = '\0';
  double wall = wall_now();
  char *path = fg__xasprintf("%s/events.out.tfevents.%010lld.%s.%ld.%d%s", dir, (long long)wall, host,
                             (long)getpid(), atomic_fetch_add(&file_counter, 1),
                             cfg->filename_suffix ? cfg->filename_suffix : "");
  FILE *f = fopen(path, "wb");
  if (f == NULL) {
    rc = fg_err_set(err, FG_EIO, "cannot create %s: %s", path, strerror(errno));
    free(path);
    return rc;
  }
  tb_logger *t = fg__xcalloc(1, sizeof *t);
  t->f = f;
  t->path = path;
  t->prefix = cfg->prefix && cfg->prefix[0] ? fg__xstrdup(cfg->prefix) : NULL;
  t->max_queue = cfg->max_queue > 0 ? cfg->max_queue : 10;
  t->flush_secs = cfg->flush_secs > 0 ? cfg->flush_secs : 120;

  Tensorboard__Event first = TENSORBOARD__EVENT__INIT;
  first.wall_time = wall;
  first.what_case = TENSORBOARD__EVENT__WHAT_FILE_VERSION;
  first.file_version = "brain.Event:2";
  write_event(t, &first);
  if (cfg->default_hp_metric) {
    /* log_hyperparams(params) with metrics None: hp_metric -1 at step 0
     * (prefixed like every scalar), then the plugin's summaries, whose
     * metric is the unprefixed name. */
    write_scalar(t, wall, 0, "hp_metric", -1);
    fg_tb_blob b[3];
    fg__tb_hparams_pack(hparams, "hp_metric", b);
    write_plugin_summary(t, wall, "_hparams_/experiment", &b[FG_TB_HP_EXPERIMENT]);
    write_plugin_summary(t, wall, "_hparams_/session_start_info", &b[FG_TB_HP_SESSION_START]);
    write_plugin_summary(t, wall, "_hparams_/session_end_info", &b[FG_TB_HP_SESSION_END]);
    for (int i = 0; i < 3; i++) free(b[i].data);
  }
  /* The file and its header are there from the start, as SummaryWriter's. */
  flush(t);
  if (t->error) {
    char *e = NULL;
    rc = tb_close(t, &e);
    fg_err_set(err, rc, "%s", e);
    free(e);
    return rc;
  }
  *out = (fg_sink){tb_emit, tb_close, t};
  return 0;
}
