/* Pausing a fit (fg_run_opts.pause) and resuming from pause.ckpt: a run
 * paused any number of times, anywhere (before the first step, inside an
 * accumulation window, at an epoch's end), and resumed each time must end
 * exactly as a run never paused: the same weights bit for bit, optimizer,
 * scheduler and generator states, global_step, metrics.csv rows,
 * EarlyStopping and ModelCheckpoint states and kept files.
 *
 * The runs are real: fg_run on a small config with shuffled data, dropout,
 * SGD with momentum, a per-step StepLR with a warmup, accumulation over 2
 * batches, validation twice an epoch, EarlyStopping, ModelCheckpoint
 * (top 2 and last), LearningRateMonitor and fit evaluators (Accuracy and a
 * macro F1Score, whose per-class counts a pause keeps).
 *
 * The pause is triggered on the training thread at a chosen batch: the fit
 * dataset is a test class that wraps fulgur.data.Synthetic and raises the
 * pause flag while it builds the N-th batch of a run (the loop then pauses
 * before the next batch; with num_workers 0 batches are built when the loop
 * asks for them). A second trigger, an event sink that raises the flag on
 * the PROGRESS event of a global step, runs with loader workers. */
#include <criterion/criterion.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <dirent.h>
#include <unistd.h>

#include "fulgur/config.h"
#include "fulgur/data.h"
#include "fulgur/error.h"
#include "fulgur/events.h"
#include "fulgur/registry.h"
#include "fulgur/run.h"
#include "fulgur/torch.h"
#include "fulgur/value.h"
#include "trainer/trainer.h"
#include "util/file.h"

/* ---- the pause trigger in the fit dataset ---------------------------------- */

static volatile sig_atomic_t g_pause;
static int64_t g_batches_left = -1; /* raise g_pause when it reaches 0 */
static int64_t g_batches_built;

typedef struct {
  fg_dataset *inner;
} counting;

static int64_t counting_len(void *self) { return fg_dataset_len(((counting *)self)->inner); }

static int counting_get_batch(void *self, const int64_t *idx, size_t n, fg_value **out,
                              char **err) {
  g_batches_built++;
  if (g_batches_left > 0 && --g_batches_left == 0) g_pause = 1;
  return fg_dataset_get_batch(((counting *)self)->inner, idx, n, out, err);
}

static void counting_free(void *self) {
  fg_dataset_unref(((counting *)self)->inner);
  free(self);
}

static const fg_dataset_vtable counting_vt = {counting_len, counting_get_batch, counting_free};

static const fg_param counting_params[] = {
    {"num_samples", FG_T_INT, NULL, "samples", NULL, 0},
    {"shape", FG_T_SEQ, NULL, "shape of one sample's x", NULL, FG_T_INT},
    {"num_classes", FG_T_INT, "10", "classes of y", NULL, 0},
    {"seed", FG_T_INT, "0", "generator seed", NULL, 0},
};

static int counting_create(const fg_class *cls, const fg_node *a, const char *keypath,
                           void **out, char **err) {
  const fg_node *sh = fg_node_get(a, "shape");
  int64_t shape[FG_MAX_DIMS];
  int nd = (int)fg_node_len(sh);
  for (int i = 0; i < nd; i++) shape[i] = fg_node_int(fg_node_at(sh, (size_t)i));
  fg_synthetic_opts o = {.num_samples = fg_node_int(fg_node_get(a, "num_samples")),
                         .shape = shape,
                         .ndim = nd,
                         .num_classes = fg_node_int(fg_node_get(a, "num_classes")),
                         .seed = (uint64_t)fg_node_int(fg_node_get(a, "seed"))};
  counting *c = calloc(1, sizeof *c);
  int rc = fg_dataset_synthetic_create(&o, &c->inner, err);
  if (rc) {
    free(c);
    return rc;
  }
  *out = fg_dataset_create(&counting_vt, c);
  return 0;
}

static void counting_destroy(void *obj) { fg_dataset_unref(obj); }

static const fg_class counting_class = {
    .name = "test.CountingSynthetic", .kind = FG_KIND_DATASET, .params = counting_params,
    .n_params = sizeof counting_params / sizeof counting_params[0], .create = counting_create,
    .destroy = counting_destroy};

static void register_counting(void) { cr_assert_eq(fg_registry_add(&counting_class, NULL), 0); }

/* ---- watching the run's events ---------------------------------------------- */

typedef struct {
  int64_t pause_at_step; /* raise g_pause on this fit PROGRESS step; -1 never */
  char state[32];        /* the last STATE text */
  char ckpt[4096];       /* the last checkpoint artifact */
  int n_paused_states;
  int64_t max_batch_seen; /* the highest fit batch_idx in PROGRESS events */
  int64_t first_batch_seen;
} watch;

static void watch_emit(void *self, const fg_event *ev) {
  watch *w = self;
  if (ev->kind == FG_EVENT_STATE) {
    snprintf(w->state, sizeof w->state, "%s", ev->text);
    if (strcmp(ev->text, "paused") == 0) w->n_paused_states++;
  } else if (ev->kind == FG_EVENT_ARTIFACT && strcmp(ev->text, "checkpoint") == 0) {
    snprintf(w->ckpt, sizeof w->ckpt, "%s", ev->path);
  } else if (ev->kind == FG_EVENT_PROGRESS && ev->split && strcmp(ev->split, "fit") == 0) {
    if (w->first_batch_seen < 0) w->first_batch_seen = ev->batch_idx;
    if (ev->batch_idx > w->max_batch_seen) w->max_batch_seen = ev->batch_idx;
    if (ev->global_step == w->pause_at_step) g_pause = 1;
  }
}

/* ---- the config ----------------------------------------------------------------- */

/* 96 samples in batches of 8: 12 batches, 6 optimizer steps an epoch;
 * validation after batches 6 and 12. */
static fg_node *make_config(const char *root, int workers, int64_t batch_size,
                            int64_t log_every, const char *lr_interval, const char *extra_trainer) {
  char *text = NULL;
  int n = asprintf(&text,
                   "seed_everything: 11\n"
                   "trainer:\n"
                   "  max_epochs: 3\n"
                   "  default_root_dir: %s\n"
                   "  enable_progress_bar: false\n"
                   "  num_threads: 1\n"
                   "  log_every_n_steps: %lld\n"
                   "  accumulate_grad_batches: 2\n"
                   "  val_check_interval: 0.5\n"
                   "%s"
                   "  callbacks:\n"
                   "    - {class_path: ModelCheckpoint, init_args: {monitor: val/Accuracy, mode: max, "
                   "save_top_k: 2, save_last: true}}\n"
                   "    - {class_path: EarlyStopping, init_args: {monitor: val/loss, patience: 50}}\n"
                   "    - {class_path: LearningRateMonitor, init_args: {logging_interval: %s}}\n"
                   "model:\n"
                   "  class_path: fulgur.ClassificationModule\n"
                   "  init_args:\n"
                   "    model:\n"
                   "      class_path: fulgur.models.MLP\n"
                   "      init_args: {in_features: 6, hidden: [16], out_features: 3, dropout: 0.3}\n"
                   "    evaluator_cfg:\n"
                   "      class_path: fulgur.metrics.MetricCollection\n"
                   "      init_args:\n"
                   "        metrics:\n"
                   "          - {class_path: fulgur.metrics.Accuracy, init_args: {task: multiclass, "
                   "num_classes: 3}}\n"
                   "          - {class_path: fulgur.metrics.F1Score, init_args: {task: multiclass, "
                   "num_classes: 3, average: macro}}\n"
                   "optimizer_config:\n"
                   "  optimizer: {class_path: torch.optim.SGD, init_args: {lr: 0.2, momentum: 0.9}}\n"
                   "  lr_scheduler:\n"
                   "    scheduler: {class_path: StepLR, init_args: {step_size: 4, gamma: 0.7}}\n"
                   "    interval: step\n"
                   "    warmup_config: {warmup_iters: 5}\n"
                   "data:\n"
                   "  class_path: fulgur.DataModule\n"
                   "  init_args:\n"
                   "    dataset_cfg:\n"
                   "      fit: {class_path: test.CountingSynthetic, init_args: {num_samples: 96, "
                   "shape: [6], num_classes: 3, seed: 1}}\n"
                   "      val: {class_path: fulgur.data.Synthetic, init_args: {num_samples: 24, "
                   "shape: [6], num_classes: 3, seed: 2}}\n"
                   "    dataloader_cfg: {batch_size: %lld, shuffle: true, num_workers: %d}\n",
                   root, (long long)log_every, extra_trainer ? extra_trainer : "",
                   lr_interval ? lr_interval : "step", (long long)batch_size, workers);
  cr_assert_gt(n, 0);
  fg_node *cfg = NULL;
  char *err = NULL;
  int rc = fg_node_parse(text, strlen(text), "pause.yaml", &cfg, &err);
  cr_assert_eq(rc, 0, "config: %s", err ? err : "");
  free(text);
  return cfg;
}

typedef struct {
  const char *root;
  const char *ckpt;      /* resume from it, or NULL */
  int64_t pause_after;   /* raise the flag while building this many batches; -1 never; 0 at once */
  int64_t pause_at_step; /* or on this global step's PROGRESS event; -1 never */
  int workers;
  int64_t batch_size;
  int64_t log_every; /* 0: 1 */
  const char *lr_interval; /* LearningRateMonitor's; NULL: step */
  fg_stage stage;
} run_spec;

/* One fg_run; returns its code, *err its message (caller frees). */
static int run_once(const run_spec *s, watch *w, fg_value **metrics, char **err) {
  fg_node *cfg = make_config(s->root, s->workers, s->batch_size ? s->batch_size : 8,
                             s->log_every ? s->log_every : 1, s->lr_interval, NULL);
  if (s->ckpt) fg_node_map_set(cfg, "ckpt_path", fg_node_new_string(s->ckpt));
  g_pause = s->pause_after == 0 ? 1 : 0;
  g_batches_left = s->pause_after > 0 ? s->pause_after : -1;
  g_batches_built = 0;
  memset(w, 0, sizeof *w);
  w->pause_at_step = s->pause_at_step;
  w->max_batch_seen = -1;
  w->first_batch_seen = -1;
  fg_events *bus = fg_events_create();
  fg_events_add_sink(bus, (fg_sink){watch_emit, NULL, w});
  fg_run_opts ro = {.stage = s->stage ? s->stage : FG_STAGE_FIT, .events = bus, .pause = &g_pause};
  int rc = fg_run(cfg, &ro, metrics, err);
  cr_assert_eq(fg_events_free(bus, NULL), 0);
  fg_node_free(cfg);
  return rc;
}

/* ---- comparing runs ------------------------------------------------------------------ */

static fg_value *read_ckpt(const char *path) {
  char *buf = NULL, *err = NULL;
  size_t len = 0;
  cr_assert_eq(fg__read_file(path, &buf, &len, &err), 0, "%s", err ? err : "");
  fg_value *v = NULL;
  cr_assert_eq(fg_value_unpickle(buf, len, &v, &err), 0, "%s: %s", path, err ? err : "");
  free(buf);
  return v;
}

static bool tensor_equal(const fg_tensor *a, const fg_tensor *b) {
  if (fg_tensor_dtype(a) != fg_tensor_dtype(b) || fg_tensor_ndim(a) != fg_tensor_ndim(b))
    return false;
  for (int d = 0; d < fg_tensor_ndim(a); d++)
    if (fg_tensor_size(a, d) != fg_tensor_size(b, d)) return false;
  size_t bytes = (size_t)fg_tensor_numel(a) * fg_dtype_size(fg_tensor_dtype(a));
  char *x = malloc(bytes + 1), *y = malloc(bytes + 1);
  cr_assert_eq(fg_tensor_copy_out(a, fg_tensor_dtype(a), x, bytes, NULL), 0);
  cr_assert_eq(fg_tensor_copy_out(b, fg_tensor_dtype(b), y, bytes, NULL), 0);
  bool same = memcmp(x, y, bytes) == 0;
  free(x);
  free(y);
  return same;
}

/* Deep equality, tensors bit for bit; *where names the first difference. */
static bool value_equal(const fg_value *a, const fg_value *b, char *where, size_t len) {
  if (fg_value_kind_of(a) != fg_value_kind_of(b)) return false;
  switch (fg_value_kind_of(a)) {
    case FG_VALUE_NONE: return true;
    case FG_VALUE_BOOL: return fg_value_as_bool(a) == fg_value_as_bool(b);
    case FG_VALUE_INT: return fg_value_as_int(a) == fg_value_as_int(b);
    case FG_VALUE_DOUBLE: {
      double x = fg_value_as_double(a), y = fg_value_as_double(b);
      return memcmp(&x, &y, sizeof x) == 0;
    }
    case FG_VALUE_STRING: return strcmp(fg_value_as_string(a), fg_value_as_string(b)) == 0;
    case FG_VALUE_TENSOR: return tensor_equal(fg_value_as_tensor(a), fg_value_as_tensor(b));
    case FG_VALUE_LIST:
      if (fg_value_len(a) != fg_value_len(b)) return false;
      for (size_t i = 0; i < fg_value_len(a); i++)
        if (!value_equal(fg_value_list_at(a, i), fg_value_list_at(b, i), where, len)) {
          char tmp[512];
          snprintf(tmp, sizeof tmp, "[%zu]%s", i, where);
          snprintf(where, len, "%s", tmp);
          return false;
        }
      return true;
    case FG_VALUE_DICT:
      if (fg_value_len(a) != fg_value_len(b)) {
        snprintf(where, len, " (%zu vs %zu keys)", fg_value_len(a), fg_value_len(b));
        return false;
      }
      for (size_t i = 0; i < fg_value_len(a); i++) {
        const char *k = fg_value_dict_key_at(a, i);
        const fg_value *bv = fg_value_dict_get(b, k);
        if (bv == NULL || !value_equal(fg_value_dict_value_at(a, i), bv, where, len)) {
          char tmp[512];
          snprintf(tmp, sizeof tmp, ".%s%s", k, bv ? where : " (missing)");
          snprintf(where, len, "%s", tmp);
          return false;
        }
      }
      return true;
  }
  return false;
}

static void assert_same_key(const fg_value *a, const fg_value *b, const char *key) {
  char where[512] = "";
  const fg_value *x = fg_value_dict_get(a, key), *y = fg_value_dict_get(b, key);
  cr_assert(x && y, "checkpoint key %s missing", key);
  cr_assert(value_equal(x, y, where, sizeof where), "checkpoint %s differs at %s%s", key, key, where);
}

static const char *base_name(const char *p) {
  const char *s = strrchr(p, '/');
  return s ? s + 1 : p;
}

/* ModelCheckpoint's state with paths cut to file names (the run dirs differ). */
static char *ckpt_cb_summary(const fg_value *ck) {
  const fg_value *st = fg_value_dict_get(fg_value_dict_get(ck, "callbacks"), "ModelCheckpoint");
  cr_assert(st);
  char *out = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&out, &len);
  const fg_value *bs = fg_value_dict_get(st, "best_model_score");
  fprintf(f, "best %s %.17g;", base_name(fg_value_as_string(fg_value_dict_get(st, "best_model_path"))),
          fg_value_kind_of(bs) == FG_VALUE_DOUBLE ? fg_value_as_double(bs) : -1.0);
  const fg_value *k = fg_value_dict_get(st, "best_k_models");
  for (size_t i = 0; i < fg_value_len(k); i++)
    fprintf(f, " %s=%.17g", base_name(fg_value_dict_key_at(k, i)),
            fg_value_as_double(fg_value_dict_value_at(k, i)));
  fclose(f);
  return out;
}

/* Every metrics.csv row as "key=value,..." of its non-empty cells, appended
 * to *rows (one line each). A run paused before logging has no file. */
static void csv_rows(const char *path, char **rows, size_t *len) {
  FILE *f = fopen(path, "r");
  if (f == NULL) return;
  char *line = NULL;
  size_t cap = 0;
  char *cols[64];
  size_t n_cols = 0;
  char *mine = NULL;
  size_t mine_len = 0;
  FILE *out = open_memstream(&mine, &mine_len);
  ssize_t got;
  bool header = true;
  while ((got = getline(&line, &cap, f)) > 0) {
    if (line[got - 1] == '\n') line[got - 1] = '\0';
    char *save = NULL, *cell;
    if (header) {
      for (cell = strtok_r(line, ",", &save); cell && n_cols < 64; cell = strtok_r(NULL, ",", &save))
        cols[n_cols++] = strdup(cell);
      header = false;
      continue;
    }
    size_t c = 0;
    char *p = line;
    for (;;) {
      char *comma = strchr(p, ',');
      if (comma) *comma = '\0';
      if (*p && c < n_cols) fprintf(out, "%s=%s ", cols[c], p);
      c++;
      if (!comma) break;
      p = comma + 1;
    }
    fputc('\n', out);
  }
  fclose(out);
  *rows = realloc(*rows, *len + mine_len + 1);
  memcpy(*rows + *len, mine, mine_len + 1);
  *len += mine_len;
  free(mine);
  for (size_t i = 0; i < n_cols; i++) free(cols[i]);
  free(line);
  fclose(f);
}

/* The epoch=...ckpt files ModelCheckpoint kept under root (every version),
 * sorted, as one line. */
static char *kept_files(const char *root) {
  char *names[256];
  size_t n = 0;
  DIR *d = opendir(root);
  cr_assert(d);
  struct dirent *e;
  while ((e = readdir(d))) {
    if (strncmp(e->d_name, "version_", 8) != 0) continue;
    char *dir = NULL;
    cr_assert_gt(asprintf(&dir, "%s/%s/checkpoints", root, e->d_name), 0);
    DIR *c = opendir(dir);
    struct dirent *f;
    while (c && (f = readdir(c)))
      if (strncmp(f->d_name, "epoch=", 6) == 0 && n < 256) names[n++] = strdup(f->d_name);
    if (c) closedir(c);
    free(dir);
  }
  closedir(d);
  for (size_t i = 0; i < n; i++)
    for (size_t j = i + 1; j < n; j++)
      if (strcmp(names[j], names[i]) < 0) {
        char *t = names[i];
        names[i] = names[j];
        names[j] = t;
      }
  char *out = strdup("");
  for (size_t i = 0; i < n; i++) {
    char *s = NULL;
    cr_assert_gt(asprintf(&s, "%s%s ", out, names[i]), 0);
    free(out);
    free(names[i]);
    out = s;
  }
  return out;
}

static char *make_tmp(void) {
  char tmpl[] = "/tmp/fg_pause_XXXXXX";
  char *d = mkdtemp(tmpl);
  cr_assert(d);
  return strdup(d);
}

static void rm_rf(const char *path) {
  char *cmd = NULL;
  cr_assert_gt(asprintf(&cmd, "rm -rf '%s'", path), 0);
  cr_assert_eq(system(cmd), 0);
  free(cmd);
}

static char *path_join(const char *a, const char *b) {
  char *p = NULL;
  cr_assert_gt(asprintf(&p, "%s/%s", a, b), 0);
  return p;
}

/* The uninterrupted run and the paused chain, compared. pauses[i] > 0:
 * pause after that many more batches (dataset trigger); steps[i] >= 0:
 * pause on that global step (event trigger); first_at_once: the first run
 * has the flag up from the start. */
static void check_chain(int workers, const char *lr_interval, bool first_at_once,
                        const int64_t *pauses, const int64_t *steps, size_t n_pauses,
                        const int64_t *expect_batch) {
  register_counting();
  char *tmp = make_tmp();
  char *straight = path_join(tmp, "straight"), *chain = path_join(tmp, "chain");
  watch w;
  char *err = NULL;
  fg_value *m_straight = NULL, *m_chain = NULL;
  run_spec s = {.root = straight, .pause_after = -1, .pause_at_step = -1, .workers = workers,
                .lr_interval = lr_interval};
  int rc = run_once(&s, &w, &m_straight, &err);
  cr_assert_eq(rc, 0, "uninterrupted run: %s", err ? err : "");
  cr_assert_str_eq(w.state, "succeeded");

  char *ckpt = NULL;
  size_t n_runs = 0;
  for (size_t i = 0; i <= n_pauses + (first_at_once ? 1 : 0); i++, n_runs++) {
    run_spec c = {.root = chain, .ckpt = ckpt, .pause_after = -1, .pause_at_step = -1,
                  .workers = workers, .lr_interval = lr_interval};
    size_t p = first_at_once ? i - 1 : i; /* which entry of pauses/steps */
    bool last = i == n_pauses + (first_at_once ? 1 : 0);
    if (first_at_once && i == 0) c.pause_after = 0;
    else if (!last && pauses) c.pause_after = pauses[p];
    else if (!last && steps) c.pause_at_step = steps[p];
    free(err);
    err = NULL;
    fg_value *m = NULL;
    rc = run_once(&c, &w, last ? &m_chain : &m, &err);
    fg_value_free(m);
    if (last) {
      cr_assert_eq(rc, 0, "last resumed run: %s", err ? err : "");
      cr_assert_str_eq(w.state, "succeeded");
      break;
    }
    cr_assert_eq(rc, FG_EPAUSED, "run %zu: expected a pause, got %s: %s", i, fg_err_name(rc),
                 err ? err : "");
    cr_assert_str_eq(w.state, "paused");
    cr_assert_eq(w.n_paused_states, 1);
    cr_assert(strstr(w.ckpt, "/checkpoints/pause.ckpt"), "artifact %s", w.ckpt);
    char *want = NULL;
    cr_assert_gt(asprintf(&want, "batch %lld (global step", (long long)expect_batch[i]), 0);
    cr_assert(strstr(err, want), "run %zu: '%s' lacks '%s'", i, err, want);
    cr_assert(strstr(err, w.ckpt), "the message names the checkpoint: %s", err);
    free(want);
    free(ckpt);
    ckpt = strdup(w.ckpt);
    struct stat st;
    cr_assert_eq(stat(ckpt, &st), 0, "%s", ckpt);
  }
  free(err);

  /* The final last.ckpt of both. */
  char *a_path = path_join(straight, "version_0/checkpoints/last.ckpt");
  char *b_dir = NULL;
  cr_assert_gt(asprintf(&b_dir, "version_%zu/checkpoints/last.ckpt", n_runs), 0);
  char *b_path = path_join(chain, b_dir);
  fg_value *a = read_ckpt(a_path), *b = read_ckpt(b_path);
  /* The fit's elapsed seconds (max_time) are wall clock: both runs keep
   * one, its value is theirs. */
  fg_value *ta = fg_value_dict_take((fg_value *)fg_value_dict_get(a, "fulgur_loop"), "time_elapsed");
  fg_value *tb = fg_value_dict_take((fg_value *)fg_value_dict_get(b, "fulgur_loop"), "time_elapsed");
  cr_assert(ta && tb && fg_value_as_double(ta) > 0 && fg_value_as_double(tb) > 0, "fulgur_loop.time_elapsed");
  fg_value_free(ta);
  fg_value_free(tb);
  /* log_rows counts the rows of the checkpoint's own run directory (what
   * a continued run keeps), and each resume here is a new version. */
  fg_value_free(fg_value_dict_take(fg_value_dict_get(a, "fulgur_loop"), "log_rows"));
  fg_value_free(fg_value_dict_take(fg_value_dict_get(b, "fulgur_loop"), "log_rows"));
  static const char *const keys[] = {"epoch", "global_step", "state_dict", "optimizer_states",
                                     "lr_schedulers", "fulgur_warmup_schedulers", "fulgur_loop"};
  for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++) assert_same_key(a, b, keys[i]);
  cr_assert_eq(fg_value_as_int(fg_value_dict_get(a, "global_step")), 18);
  char where[512] = "";
  const char *es = "EarlyStopping{'monitor': 'val/loss', 'mode': 'min'}";
  cr_assert(value_equal(fg_value_dict_get(fg_value_dict_get(a, "callbacks"), es),
                        fg_value_dict_get(fg_value_dict_get(b, "callbacks"), es), where, sizeof where),
            "EarlyStopping state differs%s", where);
  char *sa = ckpt_cb_summary(a), *sb = ckpt_cb_summary(b);
  cr_assert_str_eq(sa, sb, "ModelCheckpoint state");
  char *ka = kept_files(straight), *kb = kept_files(chain);
  cr_assert_str_eq(ka, kb, "kept checkpoint files");
  cr_assert(strlen(ka) > 0);

  /* Every metrics.csv row, the chain's runs read in order. */
  char *ra = NULL, *rb = NULL;
  size_t la = 0, lb = 0;
  char *p = path_join(straight, "version_0/metrics.csv");
  csv_rows(p, &ra, &la);
  free(p);
  for (size_t v = 0; v <= n_runs; v++) {
    char *rel = NULL;
    cr_assert_gt(asprintf(&rel, "version_%zu/metrics.csv", v), 0);
    p = path_join(chain, rel);
    csv_rows(p, &rb, &lb);
    free(p);
    free(rel);
  }
  cr_assert(ra && rb);
  if (strcmp(ra, rb) != 0) {
    size_t i = 0, line = 0, start = 0;
    while (ra[i] && ra[i] == rb[i]) {
      if (ra[i] == '\n') line++, start = i + 1;
      i++;
    }
    cr_assert_fail("metrics.csv rows differ from row %zu:\n  uninterrupted: %.300s\n  paused:        %.300s",
                   line, ra + start, rb + start);
  }
  cr_assert(strstr(ra, "fit/Accuracy="), "the fit evaluator is logged");
  cr_assert(strstr(ra, "fit/F1Score="), "the fit evaluator is logged");
  cr_assert(strstr(ra, "val/Accuracy="), "validation is logged");

  /* The final metrics fg_run returns. */
  where[0] = '\0';
  cr_assert(value_equal(m_straight, m_chain, where, sizeof where), "final metrics differ%s", where);

  free(ra);
  free(rb);
  free(sa);
  free(sb);
  free(ka);
  free(kb);
  fg_value_free(a);
  fg_value_free(b);
  fg_value_free(m_straight);
  fg_value_free(m_chain);
  free(a_path);
  free(b_path);
  free(b_dir);
  free(ckpt);
  rm_rf(tmp);
  free(straight);
  free(chain);
  free(tmp);
}

/* Pauses before the first step, after batch 7 (inside the window 6-7,
 * right after the mid-epoch validation), at the end of epoch 0 (the flag
 * rises on its last batch; the pause comes after the epoch-end validation
 * and checkpoints), after batch 9 of epoch 1 and after batch 3 of epoch 2.
 * Each resume starts from the previous pause.ckpt. */
Test(pause, chain_of_pauses_matches_an_uninterrupted_run) {
  const int64_t after[] = {7, 5, 9, 6};
  const int64_t batch[] = {0, 7, 0, 9, 3};
  check_chain(0, "step", true, after, NULL, 4, batch);
}

/* With loader workers prefetching, pauses at optimizer steps 4 (batch 8
 * next) and 9 (epoch 1, batch 6 next, right after its mid-epoch
 * validation) and 12 (the epoch's last step: epoch 2 starts). The lr is
 * logged at epoch starts here: a resume inside an epoch must not log it
 * again, one at an epoch's start must. */
Test(pause, pauses_with_loader_workers) {
  const int64_t steps[] = {4, 9, 12};
  const int64_t batch[] = {8, 6, 0};
  check_chain(2, "epoch", false, NULL, steps, 3, batch);
}

/* The checkpoint records the position; the message and the events say
 * where the run stopped; Python's torch.load reads the file. */
Test(pause, checkpoint_records_the_position) {
  register_counting();
  char *tmp = make_tmp();
  watch w;
  char *err = NULL;
  run_spec s = {.root = tmp, .pause_after = 15, .pause_at_step = -1};
  int rc = run_once(&s, &w, NULL, &err);
  cr_assert_eq(rc, FG_EPAUSED, "%s", err ? err : "");
  char *want = NULL;
  cr_assert_gt(asprintf(&want, "run paused at epoch 1 batch 3 (global step 7); resume from %s/version_0/checkpoints/pause.ckpt", tmp), 0);
  cr_assert_str_eq(err, want);
  cr_assert_eq(g_batches_built, 15, "the loop stopped right after the batch that raised the flag");
  fg_value *ck = read_ckpt(w.ckpt);
  cr_assert_eq(fg_value_as_int(fg_value_dict_get(ck, "epoch")), 1);
  cr_assert_eq(fg_value_as_int(fg_value_dict_get(ck, "global_step")), 7);
  const fg_value *loop = fg_value_dict_get(ck, "fulgur_loop");
  cr_assert_eq(fg_value_as_int(fg_value_dict_get(loop, "batches_done")), 3);
  cr_assert_not(fg_value_as_bool(fg_value_dict_get(loop, "epoch_done")));
  cr_assert(fg_value_as_bool(fg_value_dict_get(loop, "paused")));
  cr_assert_eq(fg_value_as_int(fg_value_dict_get(loop, "seed")), 11);
  /* Batch 2 opened a window that batch 3 has not closed: its gradients wait. */
  const fg_value *grads = fg_value_dict_get(loop, "grads");
  cr_assert_eq(fg_value_len(grads), 4, "every MLP parameter has an accumulated gradient");
  cr_assert_eq(fg_value_kind_of(fg_value_dict_get(loop, "rng_state")), FG_VALUE_TENSOR);
  cr_assert_eq(fg_tensor_dtype(fg_value_as_tensor(fg_value_dict_get(loop, "rng_state"))), FG_UINT8);
  const fg_value *evs = fg_value_dict_get(loop, "fit_evaluators");
  cr_assert_eq(fg_value_len(evs), 1);
  const fg_value *acc = fg_value_list_at(evs, 0);
  cr_assert_eq(fg_value_kind_of(acc), FG_VALUE_DICT);
  cr_assert_float_eq(fg_value_as_double(fg_value_dict_get(acc, "Accuracy.total")), 24.0, 1e-12,
                     "the fit Accuracy has seen 3 batches of 8 this epoch");
  const fg_value *tp = fg_value_dict_get(acc, "F1Score.tp");
  cr_assert(tp && fg_value_kind_of(tp) == FG_VALUE_TENSOR && fg_tensor_numel(fg_value_as_tensor(tp)) == 3,
            "F1Score keeps per-class counts");
  cr_assert_eq(fg_value_len(fg_value_dict_get(loop, "model_checkpoints")), 1);
  cr_assert(fg_value_dict_get(fg_value_dict_get(loop, "last_metrics"), "val/loss"));
  fg_value_free(ck);

  const char *py = getenv("FG_PYTHON");
  if (py && access(py, X_OK) == 0) {
    char *cmd = NULL;
    cr_assert_gt(asprintf(&cmd,
                          "%s -c \"import torch; ck = torch.load('%s'); l = ck['fulgur_loop']; "
                          "assert (ck['epoch'], ck['global_step'], l['batches_done']) == (1, 7, 3), l; "
                          "assert torch.get_rng_state().shape == l['rng_state'].shape; "
                          "torch.set_rng_state(l['rng_state']); "
                          "assert set(l['grads']) == set(ck['state_dict'])\"",
                          py, w.ckpt),
                 0);
    cr_assert_eq(system(cmd), 0, "python's torch.load reads pause.ckpt");
    free(cmd);
  }
  free(want);
  free(err);
  rm_rf(tmp);
  free(tmp);
}

/* The latest value of every logged key survives a pause: after logging
 * every 4 steps, a run paused at step 17 and resumed logs fit/loss no more
 * (18 steps in all), yet its final metrics, as an uninterrupted run's,
 * hold the value of step 16. */
Test(pause, latest_metrics_survive_a_pause) {
  register_counting();
  char *tmp = make_tmp();
  watch w;
  char *err = NULL;
  fg_value *ma = NULL, *mb = NULL;
  run_spec s = {.root = tmp, .pause_after = -1, .pause_at_step = -1, .log_every = 4};
  cr_assert_eq(run_once(&s, &w, &ma, &err), 0, "%s", err ? err : "");
  run_spec p = {.root = tmp, .pause_after = 34, .pause_at_step = -1, .log_every = 4};
  cr_assert_eq(run_once(&p, &w, NULL, &err), FG_EPAUSED);
  cr_assert(strstr(err, "epoch 2 batch 10 (global step 17)"), "%s", err);
  free(err);
  err = NULL;
  char *ckpt = strdup(w.ckpt);
  run_spec r = {.root = tmp, .ckpt = ckpt, .pause_after = -1, .pause_at_step = -1, .log_every = 4};
  cr_assert_eq(run_once(&r, &w, &mb, &err), 0, "%s", err ? err : "");
  cr_assert(fg_value_dict_get(ma, "fit/loss"));
  char where[512] = "";
  cr_assert(value_equal(ma, mb, where, sizeof where), "final metrics differ%s", where);
  fg_value_free(ma);
  fg_value_free(mb);
  free(ckpt);
  rm_rf(tmp);
  free(tmp);
}

/* A resume whose epoch is now shorter than the batches already done. */
Test(pause, resume_with_fewer_batches_is_an_error) {
  register_counting();
  char *tmp = make_tmp();
  watch w;
  char *err = NULL;
  run_spec s = {.root = tmp, .pause_after = 9, .pause_at_step = -1};
  cr_assert_eq(run_once(&s, &w, NULL, &err), FG_EPAUSED);
  free(err);
  err = NULL;
  char *ckpt = strdup(w.ckpt);
  run_spec r = {.root = tmp, .ckpt = ckpt, .pause_after = -1, .pause_at_step = -1,
                .batch_size = 16};
  int rc = run_once(&r, &w, NULL, &err);
  cr_assert_eq(rc, FG_EDATA, "%s: %s", fg_err_name(rc), err ? err : "");
  cr_assert(strstr(err, "stopped after batch 9 of epoch 0, which now has only 6 batches"), "%s", err);
  cr_assert_str_eq(w.state, "failed");
  free(err);
  free(ckpt);
  rm_rf(tmp);
  free(tmp);
}

/* validate has nothing to resume: a pause cancels it. */
Test(pause, pause_cancels_validate) {
  register_counting();
  char *tmp = make_tmp();
  watch w;
  char *err = NULL;
  run_spec s = {.root = tmp, .pause_after = 0, .pause_at_step = -1, .stage = FG_STAGE_VALIDATE};
  int rc = run_once(&s, &w, NULL, &err);
  cr_assert_eq(rc, FG_ECANCELED, "%s: %s", fg_err_name(rc), err ? err : "");
  cr_assert_str_eq(w.state, "cancelled");
  cr_assert_str_eq(w.ckpt, "", "no checkpoint is written");
  free(err);
  rm_rf(tmp);
  free(tmp);
}

/* Without the flag nothing changes: the run succeeds and writes no
 * pause.ckpt; a resume from an epoch-end last.ckpt still works and also
 * continues the generator (dropout) exactly. */
Test(pause, epoch_end_resume_is_exact_too) {
  register_counting();
  char *tmp = make_tmp();
  char *straight = path_join(tmp, "s"), *half = path_join(tmp, "h");
  watch w;
  char *err = NULL;
  run_spec s = {.root = straight, .pause_after = -1, .pause_at_step = -1};
  cr_assert_eq(run_once(&s, &w, NULL, &err), 0, "%s", err ? err : "");
  char *pause = path_join(straight, "version_0/checkpoints/pause.ckpt");
  cr_assert_neq(access(pause, F_OK), 0, "no pause.ckpt without a pause");
  /* 1 epoch (max_epochs 1 through the trainer override), then resume. */
  fg_node *cfg = make_config(half, 0, 8, 1, NULL, NULL);
  fg_node_map_set(fg_node_get(cfg, "trainer"), "max_epochs", fg_node_new_int(1));
  fg_events *bus = fg_events_create();
  memset(&w, 0, sizeof w);
  w.pause_at_step = -1;
  fg_events_add_sink(bus, (fg_sink){watch_emit, NULL, &w});
  g_pause = 0;
  fg_run_opts ro = {.stage = FG_STAGE_FIT, .events = bus, .pause = &g_pause};
  cr_assert_eq(fg_run(cfg, &ro, NULL, &err), 0, "%s", err ? err : "");
  cr_assert_eq(fg_events_free(bus, NULL), 0);
  fg_node_free(cfg);
  char *last = path_join(half, "version_0/checkpoints/last.ckpt");
  run_spec r = {.root = half, .ckpt = last, .pause_after = -1, .pause_at_step = -1};
  cr_assert_eq(run_once(&r, &w, NULL, &err), 0, "%s", err ? err : "");
  char *pa = path_join(straight, "version_0/checkpoints/last.ckpt");
  char *pb = path_join(half, "version_1/checkpoints/last.ckpt");
  fg_value *a = read_ckpt(pa), *b = read_ckpt(pb);
  assert_same_key(a, b, "state_dict");
  assert_same_key(a, b, "optimizer_states");
  assert_same_key(a, b, "global_step");
  fg_value_free(a);
  fg_value_free(b);
  free(pa);
  free(pb);
  free(last);
  free(pause);
  rm_rf(tmp);
  free(straight);
  free(half);
  free(tmp);
}
