/* The callback interface (src/trainer/callbacks/callback.h), driven by real
 * fits: a test callback class, registered like a plugin's, records every
 * hook the loop calls, and an event sink records the checkpoints written,
 * in one log. The order must be Lightning's (its documented hook
 * pseudo-code: setup, on_fit_start, the sanity check's on_validation_end,
 * then per epoch on_train_epoch_start, on_train_batch_start/_end for every
 * batch with validations between them, the epoch's last validation before
 * on_train_epoch_end, and on_fit_end), with ModelCheckpoint after the other
 * callbacks of a hook (Lightning's _reorder_callbacks) though the config
 * lists it first. The callback's state goes into the checkpoint's
 * "callbacks" under its state_key beside ModelCheckpoint's, and comes back
 * through load_state_dict when a fit resumes from it (after setup, before
 * on_fit_start, as Lightning restores it). A failing hook fails the run
 * with its error, and the hooks after it do not run. */
#include <criterion/criterion.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fulgur/config.h"
#include "fulgur/error.h"
#include "fulgur/events.h"
#include "fulgur/registry.h"
#include "fulgur/run.h"
#include "fulgur/value.h"
#include "trainer/callbacks/callback.h"

/* ---- the log both the callback and the sink write ----------------------------- */

static char g_log[16384];
static int64_t g_hooks; /* hook calls so far: the recorder's state */

static void note(const char *fmt, ...) {
  size_t len = strlen(g_log);
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_log + len, sizeof g_log - len, fmt, ap);
  va_end(ap);
  len = strlen(g_log);
  if (len + 1 < sizeof g_log) strcat(g_log, "\n");
}

static void sink_emit(void *self, const fg_event *ev) {
  if (ev->kind == FG_EVENT_ARTIFACT && strcmp(ev->text, "checkpoint") == 0) {
    const char *slash = strrchr(ev->path, '/');
    note("checkpoint %s", slash ? slash + 1 : ev->path);
  }
}

/* ---- the recorder: a callback class from outside the engine -------------------------- */

typedef struct {
  fg_callback base;
  char *fail_at; /* a hook name that fails, or NULL */
} recorder;

static int hook(fg_callback *cb, const char *name, char **err) {
  g_hooks++;
  recorder *r = (recorder *)cb;
  if (r->fail_at && strcmp(r->fail_at, name) == 0)
    return fg_err_set(err, FG_ERUN, "HookRecorder: %s failed on purpose", name);
  return 0;
}

static int rec_setup(fg_callback *cb, fg_loop *l, fg_stage stage, char **err) {
  note("setup %s", fg_stage_name(stage));
  return hook(cb, "setup", err);
}
static int rec_fit_start(fg_callback *cb, fg_loop *l, char **err) {
  note("on_fit_start");
  return hook(cb, "on_fit_start", err);
}
static int rec_epoch_start(fg_callback *cb, fg_loop *l, char **err) {
  note("on_train_epoch_start %lld", (long long)l->pos.epoch);
  return hook(cb, "on_train_epoch_start", err);
}
static int rec_batch_start(fg_callback *cb, fg_loop *l, int64_t b, fg_value *step_log, char **err) {
  note("on_train_batch_start %lld", (long long)b);
  return hook(cb, "on_train_batch_start", err);
}
static int rec_batch_end(fg_callback *cb, fg_loop *l, int64_t b, char **err) {
  note("on_train_batch_end %lld", (long long)b);
  return hook(cb, "on_train_batch_end", err);
}
static int rec_val_end(fg_callback *cb, fg_loop *l, char **err) {
  note(l->sanity_checking ? "on_validation_end (sanity check)" : "on_validation_end");
  return hook(cb, "on_validation_end", err);
}
static int rec_epoch_end(fg_callback *cb, fg_loop *l, char **err) {
  note("on_train_epoch_end %lld", (long long)l->pos.epoch);
  return hook(cb, "on_train_epoch_end", err);
}
static int rec_fit_end(fg_callback *cb, fg_loop *l, char **err) {
  note("on_fit_end");
  return hook(cb, "on_fit_end", err);
}
static char *rec_state_key(const fg_callback *cb) { return strdup("HookRecorder"); }
static fg_value *rec_state_dict(const fg_callback *cb, const fg_loop *l) {
  fg_value *d = fg_value_dict();
  fg_value_dict_set(d, "hooks_seen", fg_value_int(g_hooks));
  return d;
}
static int rec_load_state_dict(fg_callback *cb, const fg_value *st, char **err) {
  const fg_value *n = fg_value_dict_get(st, "hooks_seen");
  note("load_state_dict %lld", n ? (long long)fg_value_as_int(n) : -1LL);
  return 0;
}
static void rec_free(fg_callback *cb) {
  free(((recorder *)cb)->fail_at);
  free(cb);
}

static const fg_callback_ops rec_ops = {
    .name = "HookRecorder",
    .setup = rec_setup,
    .on_fit_start = rec_fit_start,
    .on_train_epoch_start = rec_epoch_start,
    .on_train_batch_start = rec_batch_start,
    .on_train_batch_end = rec_batch_end,
    .on_validation_end = rec_val_end,
    .on_train_epoch_end = rec_epoch_end,
    .on_fit_end = rec_fit_end,
    .state_key = rec_state_key,
    .state_dict = rec_state_dict,
    .load_state_dict = rec_load_state_dict,
    .free = rec_free,
};

static const fg_param rec_params[] = {
    {"fail_at", FG_T_NULL | FG_T_STRING, "null", "a hook that fails", NULL, 0},
};

static int rec_create(const fg_class *cls, const fg_node *a, const char *keypath, void **out,
                      char **err) {
  recorder *r = calloc(1, sizeof *r);
  r->base.ops = &rec_ops;
  const fg_node *f = fg_node_get(a, "fail_at");
  if (f && fg_node_kind_of(f) == FG_NODE_STRING) r->fail_at = strdup(fg_node_str(f));
  *out = &r->base;
  return 0;
}

static void rec_destroy(void *obj) {
  if (obj) rec_free(obj);
}

static const fg_class rec_class = {
    .name = "test.HookRecorder", .kind = FG_KIND_CALLBACK, .params = rec_params,
    .n_params = sizeof rec_params / sizeof rec_params[0], .create = rec_create,
    .destroy = rec_destroy};

static void setup_suite(void) { cr_assert_eq(fg_registry_add(&rec_class, NULL), 0); }

/* ---- runs -------------------------------------------------------------------------------- */

/* 16 samples in batches of 4: 4 batches an epoch, an optimizer step every
 * 2 (accumulation), validation after batch 1 and at the epoch's end. */
static int fit(const char *root, int64_t max_epochs, const char *fail_at, const char *ckpt,
               char **err) {
  char *text = NULL;
  int n = asprintf(&text,
                   "seed_everything: 3\n"
                   "trainer:\n"
                   "  max_epochs: %lld\n"
                   "  default_root_dir: %s\n"
                   "  enable_progress_bar: false\n"
                   "  logger: false\n"
                   "  num_threads: 1\n"
                   "  log_every_n_steps: 1\n"
                   "  num_sanity_val_steps: 1\n"
                   "  accumulate_grad_batches: 2\n"
                   "  val_check_interval: 0.5\n"
                   "  callbacks:\n"
                   "    - {class_path: ModelCheckpoint, init_args: {save_last: true}}\n"
                   "    - {class_path: test.HookRecorder, init_args: {fail_at: %s}}\n"
                   "model:\n"
                   "  class_path: fulgur.ClassificationModule\n"
                   "  init_args:\n"
                   "    model:\n"
                   "      class_path: fulgur.models.MLP\n"
                   "      init_args: {in_features: 4, hidden: [8], out_features: 2}\n"
                   "optimizer_config:\n"
                   "  optimizer: {class_path: torch.optim.SGD, init_args: {lr: 0.1}}\n"
                   "data:\n"
                   "  class_path: fulgur.DataModule\n"
                   "  init_args:\n"
                   "    dataset_cfg:\n"
                   "      fit: {class_path: fulgur.data.Synthetic, init_args: {num_samples: 16, "
                   "shape: [4], num_classes: 2, seed: 1}}\n"
                   "      val: {class_path: fulgur.data.Synthetic, init_args: {num_samples: 8, "
                   "shape: [4], num_classes: 2, seed: 2}}\n"
                   "    dataloader_cfg: {batch_size: 4, num_workers: 0}\n",
                   (long long)max_epochs, root, fail_at ? fail_at : "null");
  cr_assert_gt(n, 0);
  fg_node *cfg = NULL;
  cr_assert_eq(fg_node_parse(text, strlen(text), "callbacks.yaml", &cfg, err), 0, "%s", *err);
  free(text);
  if (ckpt) fg_node_map_set(cfg, "ckpt_path", fg_node_new_string(ckpt));
  g_log[0] = '\0';
  g_hooks = 0;
  fg_events *bus = fg_events_create();
  fg_events_add_sink(bus, (fg_sink){sink_emit, NULL, NULL});
  fg_run_opts ro = {.stage = FG_STAGE_FIT, .events = bus};
  int rc = fg_run(cfg, &ro, NULL, err);
  cr_assert_eq(fg_events_free(bus, NULL), 0);
  fg_node_free(cfg);
  return rc;
}

static char *make_root(void) {
  char tmpl[] = "/tmp/fg_callbacks_XXXXXX";
  char *d = mkdtemp(tmpl);
  cr_assert_not_null(d);
  return strdup(d);
}

static void remove_tree(const char *root) {
  char *cmd = NULL;
  cr_assert_gt(asprintf(&cmd, "rm -rf '%s'", root), 0);
  cr_assert_eq(system(cmd), 0);
  free(cmd);
}

/* One epoch of the run below, as Lightning orders it. */
#define EPOCH(e, step)                                                                  \
  "on_train_epoch_start " #e "\n"                                                      \
  "on_train_batch_start 0\non_train_batch_end 0\n"                                     \
  "on_train_batch_start 1\non_train_batch_end 1\n"                                     \
  "on_validation_end\n"                                                                \
  "on_train_batch_start 2\non_train_batch_end 2\n"                                     \
  "on_train_batch_start 3\non_train_batch_end 3\n"                                     \
  "on_validation_end\n"                                                                \
  "on_train_epoch_end " #e "\n"                                                        \
  "checkpoint epoch=" #e "-step=" #step ".ckpt\n"                                      \
  "checkpoint last.ckpt\n"

Test(callbacks, hooks_in_lightnings_order, .init = setup_suite, .timeout = 120) {
  char *root = make_root(), *err = NULL;
  int rc = fit(root, 2, NULL, NULL, &err);
  cr_assert_eq(rc, 0, "fit: %s", err ? err : "");
  cr_assert_str_eq(g_log, "setup fit\n"
                          "on_fit_start\n"
                          "on_validation_end (sanity check)\n"
                          EPOCH(0, 2) EPOCH(1, 4)
                          "on_fit_end\n");
  remove_tree(root);
  free(root);
}

/* The run directory the fit made under root (one). */
static char *run_dir(const char *root) {
  char *cmd = NULL, line[4096] = "";
  cr_assert_gt(asprintf(&cmd, "ls -d '%s'/*/checkpoints", root), 0);
  FILE *p = popen(cmd, "r");
  cr_assert_not_null(p);
  cr_assert_not_null(fgets(line, sizeof line, p));
  pclose(p);
  free(cmd);
  line[strcspn(line, "\n")] = '\0';
  return strdup(line);
}

static fg_value *read_ckpt(const char *path) {
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "%s", path);
  cr_assert_eq(fseek(f, 0, SEEK_END), 0);
  long len = ftell(f);
  rewind(f);
  char *buf = malloc((size_t)len);
  cr_assert_eq(fread(buf, 1, (size_t)len, f), (size_t)len);
  cr_assert_eq(fclose(f), 0);
  fg_value *v = NULL;
  char *err = NULL;
  cr_assert_eq(fg_value_unpickle(buf, (size_t)len, &v, &err), 0, "%s: %s", path, err ? err : "");
  free(buf);
  return v;
}

Test(callbacks, state_in_checkpoint_and_back_on_resume, .init = setup_suite, .timeout = 120) {
  char *root = make_root(), *err = NULL;
  cr_assert_eq(fit(root, 1, NULL, NULL, &err), 0, "fit: %s", err ? err : "");
  char *dir = run_dir(root), *last = NULL;
  cr_assert_gt(asprintf(&last, "%s/last.ckpt", dir), 0);
  fg_value *ck = read_ckpt(last);
  const fg_value *cbs = fg_value_dict_get(ck, "callbacks");
  cr_assert_not_null(cbs);
  /* The saver's entry first, then the other callbacks', under their keys. */
  cr_assert_eq(fg_value_len(cbs), 2);
  cr_assert_str_eq(fg_value_dict_key_at(cbs, 0), "ModelCheckpoint");
  cr_assert_str_eq(fg_value_dict_key_at(cbs, 1), "HookRecorder");
  const fg_value *mc = fg_value_dict_value_at(cbs, 0);
  cr_assert_str_eq(fg_value_as_string(fg_value_dict_get(mc, "last_model_path")), last);
  /* last.ckpt is written after the recorder's on_train_epoch_end: every
   * hook of the epoch had run (15, counted from setup on). */
  const fg_value *seen = fg_value_dict_get(fg_value_dict_value_at(cbs, 1), "hooks_seen");
  cr_assert_not_null(seen);
  cr_assert_eq(fg_value_as_int(seen), 15);
  fg_value_free(ck);

  /* A fit resumed from it: the state comes back after setup, before
   * on_fit_start; the epoch done is not run again. */
  char *root2 = make_root();
  cr_assert_eq(fit(root2, 2, NULL, last, &err), 0, "resume: %s", err ? err : "");
  cr_assert_str_eq(g_log, "setup fit\n"
                          "load_state_dict 15\n"
                          "on_fit_start\n"
                          "on_validation_end (sanity check)\n"
                          EPOCH(1, 4)
                          "on_fit_end\n");
  remove_tree(root2);
  remove_tree(root);
  free(root2);
  free(last);
  free(dir);
  free(root);
}

Test(callbacks, failing_hook_fails_the_run, .init = setup_suite, .timeout = 120) {
  char *root = make_root(), *err = NULL;
  int rc = fit(root, 2, "on_train_epoch_end", NULL, &err);
  cr_assert_eq(rc, FG_ERUN, "rc %d: %s", rc, err ? err : "");
  cr_assert_not_null(err);
  cr_assert_str_eq(err, "HookRecorder: on_train_epoch_end failed on purpose");
  /* ModelCheckpoint, after the recorder in the hook's order, never saved;
   * nothing ran after the failure. */
  const char *tail = "on_validation_end\non_train_epoch_end 0\n";
  size_t n = strlen(g_log), t = strlen(tail);
  cr_assert(n >= t && strcmp(g_log + n - t, tail) == 0, "log:\n%s", g_log);
  cr_assert_null(strstr(g_log, "checkpoint"), "log:\n%s", g_log);
  free(err);
  remove_tree(root);
  free(root);
}
