/* fulgur.DataModule(dataset_cfg, dataloader_cfg): both split configs,
 * expanded at check time into explicit fit/val/test/predict entries. The
 * datasets of a split are built on first use, so a fit run never reads the
 * test files. */
#include <stdlib.h>
#include <string.h>

#include "fulgur/config.h"
#include "fulgur/data.h"
#include "fulgur/error.h"
#include "fulgur/registry.h"
#include "registry/builtins.h"
#include "util/xalloc.h"

typedef struct {
  fg_node *dataset_cfg;     /* owned copy */
  fg_dataloader_opts opts;
  fg_dataloader *loader;    /* built on first use */
} loader_slot;

struct fg_datamodule {
  loader_slot *slots[FG_SPLIT_COUNT];
  size_t n_slots[FG_SPLIT_COUNT];
  uint64_t seed;
  int rank, world_size;
  char *keypath;
  char **warnings; /* fg_datamodule_warning's, owned */
  size_t n_warnings;
  /* fg_datamodule_set_fold: one loader per split over the fold (NULL
   * when no fold is set). */
  fg_dataloader *fold_loaders[FG_SPLIT_COUNT];
};

static int split_index(const char *split) {
  for (int s = 0; s < FG_SPLIT_COUNT; s++)
    if (strcmp(fg_split_names[s], split) == 0) return s;
  return -1;
}

static void clear_folds(fg_datamodule *dm) {
  for (int s = 0; s < FG_SPLIT_COUNT; s++) {
    fg_dataloader_free(dm->fold_loaders[s]);
    dm->fold_loaders[s] = NULL;
  }
}

void fg_datamodule_free(fg_datamodule *dm) {
  if (dm == NULL) return;
  clear_folds(dm);
  for (int s = 0; s < FG_SPLIT_COUNT; s++) {
    for (size_t i = 0; i < dm->n_slots[s]; i++) {
      fg_dataloader_free(dm->slots[s][i].loader);
      fg_node_free(dm->slots[s][i].dataset_cfg);
    }
    free(dm->slots[s]);
  }
  for (size_t i = 0; i < dm->n_warnings; i++) free(dm->warnings[i]);
  free(dm->warnings);
  free(dm->keypath);
  free(dm);
}

size_t fg_datamodule_num_loaders(const fg_datamodule *dm, const char *split) {
  int s = split_index(split);
  if (s >= 0 && dm->fold_loaders[s]) return 1;
  return s < 0 ? 0 : dm->n_slots[s];
}

void fg_datamodule_set_seed(fg_datamodule *dm, uint64_t seed) { dm->seed = seed; }

void fg_datamodule_set_distributed(fg_datamodule *dm, int rank, int world_size) {
  dm->rank = rank;
  dm->world_size = world_size;
}

int fg_datamodule_loader(fg_datamodule *dm, const char *split, size_t idx, fg_dataloader **out,
                         char **err) {
  int s = split_index(split);
  if (s >= 0 && dm->fold_loaders[s] && idx == 0) {
    *out = dm->fold_loaders[s];
    return 0;
  }
  if (s < 0 || idx >= dm->n_slots[s])
    return fg_err_set(err, FG_EINVAL, "data: no %s dataloader %zu", split, idx);
  loader_slot *slot = &dm->slots[s][idx];
  if (slot->loader == NULL) {
    char *path = dm->n_slots[s] > 1
                     ? fg__xasprintf("%s.dataset_cfg.%s.%zu", dm->keypath, split, idx)
                     : fg__xasprintf("%s.dataset_cfg.%s", dm->keypath, split);
    void *obj = NULL;
    int rc = fg_registry_create(slot->dataset_cfg, path, FG_KIND_DATASET, &obj, NULL, err);
    free(path);
    if (rc) return rc;
    fg_dataset *ds = obj;
    fg_dataloader_opts o = slot->opts;
    o.seed = dm->seed;
    o.rank = dm->rank;
    o.world_size = dm->world_size;
    o.pad = s == 0; /* fit: every rank the same number of batches */
    rc = fg_dataloader_create(ds, &o, &slot->loader, err);
    fg_dataset_unref(ds);
    if (rc) return rc;
  }
  *out = slot->loader;
  return 0;
}

int fg_datamodule_set_fold(fg_datamodule *dm, int64_t num_folds, int64_t fold, char **err) {
  clear_folds(dm);
  if (num_folds <= 1) return 0;
  fg_dataloader *fit = NULL;
  int rc = fg_datamodule_loader(dm, "fit", 0, &fit, err);
  if (rc) return rc;
  fg_dataset *base = fg_dataloader_dataset(fit);
  int64_t *train = NULL, *test = NULL, n_train = 0, n_test = 0;
  rc = fg_kfold_split(fg_dataset_len(base), num_folds, fold, &train, &n_train, &test, &n_test, err);
  if (rc) return fg_err_prefix(err, rc, "trainer.num_folds");
  for (int s = 0; s < FG_SPLIT_COUNT && rc == 0; s++) {
    fg_dataset *ds = NULL;
    rc = s == 0 ? fg_dataset_subset_create(base, train, n_train, &ds, err)
                : fg_dataset_subset_create(base, test, n_test, &ds, err);
    if (rc) break;
    /* Lightning_template builds the fold loaders from each split's own
     * dataloader_cfg (fit's options where a split has none). */
    fg_dataloader_opts o = dm->n_slots[s] > 0 ? dm->slots[s][0].opts : dm->slots[0][0].opts;
    if (dm->n_slots[s] == 0) o.shuffle = false;
    o.seed = dm->seed;
    o.rank = dm->rank;
    o.world_size = dm->world_size;
    o.pad = s == 0;
    rc = fg_dataloader_create(ds, &o, &dm->fold_loaders[s], err);
    fg_dataset_unref(ds);
  }
  free(train);
  free(test);
  if (rc) clear_folds(dm);
  return rc;
}

/* ---- config ------------------------------------------------------------------- */

static int check_batch(const fg_node *v, const char *k, char **err) {
  if (fg_node_kind_of(v) == FG_NODE_NULL)
    return fg_config_error(err, v, k,
                           "null (no automatic batching) is not supported: samples are always "
                           "collated into batches; use batch_size: N");
  if (fg_node_int(v) < 1)
    return fg_config_error(err, v, k, "expected a batch size >= 1, got %lld", (long long)fg_node_int(v));
  return 0;
}
static int check_workers(const fg_node *v, const char *k, char **err) {
  if (fg_node_int(v) < 0 || fg_node_int(v) > 64)
    return fg_config_error(err, v, k, "expected 0 to 64 worker threads, got %lld", (long long)fg_node_int(v));
  return 0;
}
static int check_prefetch(const fg_node *v, const char *k, char **err) {
  if (fg_node_kind_of(v) == FG_NODE_NULL || fg_node_int(v) >= 1) return 0;
  return fg_config_error(err, v, k, "expected null or a number of batches >= 1, got %lld",
                         (long long)fg_node_int(v));
}
static int check_timeout(const fg_node *v, const char *k, char **err) {
  if (fg_node_float(v) >= 0) return 0;
  return fg_config_error(err, v, k, "timeout option should be non-negative, got %g", fg_node_float(v));
}
/* The DataLoader arguments that take Python objects: none can run here,
 * so anything but null is an error saying what does the job instead. */
static int python_only(const fg_node *v, const char *k, const char *instead, char **err) {
  if (fg_node_kind_of(v) == FG_NODE_NULL) return 0;
  return fg_config_error(err, v, k, "takes a Python object, which cannot run here; %s", instead);
}
static int check_sampler(const fg_node *v, const char *k, char **err) {
  return python_only(v, k,
                     "use shuffle (RandomSampler or SequentialSampler) and, under ddp, "
                     "trainer.use_distributed_sampler (DistributedSampler)", err);
}
static int check_batch_sampler(const fg_node *v, const char *k, char **err) {
  return python_only(v, k, "use batch_size, shuffle and drop_last (BatchSampler)", err);
}
static int check_collate(const fg_node *v, const char *k, char **err) {
  return python_only(v, k,
                     "batches are collated as default_collate does (each key's samples stacked); "
                     "give the dataset the layout the model wants", err);
}
static int check_worker_init(const fg_node *v, const char *k, char **err) {
  return python_only(v, k, "workers are threads sharing the dataset; seed with seed_everything", err);
}
static int check_generator(const fg_node *v, const char *k, char **err) {
  return python_only(v, k, "the shuffle order comes from seed_everything", err);
}
static int check_mp_context(const fg_node *v, const char *k, char **err) {
  if (fg_node_kind_of(v) == FG_NODE_NULL) return 0;
  static const char *const ctx[] = {"fork", "spawn", "forkserver"};
  for (size_t i = 0; i < sizeof ctx / sizeof ctx[0]; i++)
    if (strcmp(fg_node_str(v), ctx[i]) == 0) return 0;
  return fg_config_error(err, v, k, "expected null, 'fork', 'spawn' or 'forkserver', got '%s'",
                         fg_node_str(v));
}
static int check_pin_device(const fg_node *v, const char *k, char **err) {
  if (fg_node_str(v)[0] == '\0') return 0;
  return fg_config_error(err, v, k,
                         "'%s': this build's libtorch is CPU-only, there is no device to pin for; "
                         "use pin_memory_device: ''", fg_node_str(v));
}

/* torch.utils.data.DataLoader's arguments (PyTorch 2.x) but the dataset,
 * under their names and defaults. What each does here: README's table. */
static const fg_param loader_params[] = {
    {"batch_size", FG_T_NULL | FG_T_INT, "1", "samples per batch", check_batch, 0},
    {"shuffle", FG_T_NULL | FG_T_BOOL, "null", "shuffle each epoch (null: only for fit)", NULL, 0},
    {"sampler", FG_T_ANY, "null", "null only (use shuffle, trainer.use_distributed_sampler)", check_sampler, 0},
    {"batch_sampler", FG_T_ANY, "null", "null only (use batch_size, shuffle, drop_last)", check_batch_sampler, 0},
    {"num_workers", FG_T_INT, "0", "threads preparing batches ahead of the loop", check_workers, 0},
    {"collate_fn", FG_T_ANY, "null", "null only (samples are stacked as default_collate)", check_collate, 0},
    {"pin_memory", FG_T_BOOL, "false", "no effect on CPU (true warns once)", NULL, 0},
    {"drop_last", FG_T_BOOL, "false", "drop the last incomplete batch", NULL, 0},
    {"timeout", FG_T_INT | FG_T_FLOAT, "0", "seconds to wait for a worker's batch before failing (0: forever)", check_timeout, 0},
    {"worker_init_fn", FG_T_ANY, "null", "null only (workers are threads)", check_worker_init, 0},
    {"multiprocessing_context", FG_T_NULL | FG_T_STRING, "null", "no effect: workers are threads (a value warns once)", check_mp_context, 0},
    {"generator", FG_T_ANY, "null", "null only (the order comes from seed_everything)", check_generator, 0},
    {"prefetch_factor", FG_T_NULL | FG_T_INT, "null", "batches each worker prepares ahead (null: 2 with workers)", check_prefetch, 0},
    {"persistent_workers", FG_T_BOOL, "false", "workers live as long as the loader (needs num_workers > 0)", NULL, 0},
    {"pin_memory_device", FG_T_STRING, "\"\"", "'' only (CPU)", check_pin_device, 0},
    {"in_order", FG_T_BOOL, "true", "batches in sampler order (false warns once: they still are)", NULL, 0},
};

/* PyTorch's DataLoader checks between arguments, with its words. */
static int check_combination(const fg_node *o, const char *k, char **err) {
  if (fg_node_int(fg_node_get(o, "num_workers")) > 0) return 0;
  const fg_node *v = fg_node_get(o, "prefetch_factor");
  char *p = NULL;
  int rc = 0;
  if (v && fg_node_kind_of(v) != FG_NODE_NULL) {
    p = fg__xasprintf("%s.prefetch_factor", k);
    rc = fg_config_error(err, v, p,
                         "prefetch_factor option could only be specified in multiprocessing; let "
                         "num_workers > 0 to enable it, otherwise set prefetch_factor to null");
  } else if ((v = fg_node_get(o, "persistent_workers")) && fg_node_bool(v)) {
    p = fg__xasprintf("%s.persistent_workers", k);
    rc = fg_config_error(err, v, p, "persistent_workers option needs num_workers > 0");
  } else if ((v = fg_node_get(o, "multiprocessing_context")) && fg_node_kind_of(v) != FG_NODE_NULL) {
    p = fg__xasprintf("%s.multiprocessing_context", k);
    rc = fg_config_error(err, v, p,
                         "multiprocessing_context can only be used with multi-process loading "
                         "(num_workers > 0), but got num_workers=0");
  }
  free(p);
  return rc;
}

static int check_items(fg_node *v, const char *path, bool is_dataset, bool fill, char **err) {
  bool list = fg_node_kind_of(v) == FG_NODE_SEQ;
  size_t n = list ? fg_node_len(v) : 1;
  for (size_t i = 0; i < n; i++) {
    fg_node *item = list ? fg_node_at(v, i) : v;
    char *p = list ? fg__xasprintf("%s.%zu", path, i) : fg__xstrdup(path);
    int rc;
    if (is_dataset) {
      rc = fg_registry_check(item, p, FG_KIND_DATASET, fill, err);
    } else if (fg_node_kind_of(item) != FG_NODE_MAP) {
      rc = fg_config_error(err, item, p, "expected DataLoader options (a mapping), got %s",
                           fg_node_kind_name(fg_node_kind_of(item)));
    } else {
      rc = fg_schema_check(loader_params, sizeof loader_params / sizeof loader_params[0], item, p,
                           fill, err);
      if (rc == 0) rc = check_combination(item, p, err);
    }
    free(p);
    if (rc) return rc;
  }
  return 0;
}

static int check_dm(const fg_class *cls, fg_node *args, const char *keypath, bool fill, char **err) {
  static const char *const keys[] = {"dataset_cfg", "dataloader_cfg"};
  for (int k = 0; k < 2; k++) {
    fg_node *v = fg_node_get(args, keys[k]);
    char *path = fg__xasprintf("%s.%s", keypath, keys[k]);
    fg_node *expanded = NULL;
    int rc = fg_config_expand_split(v, path, &expanded, err);
    for (int s = 0; rc == 0 && s < FG_SPLIT_COUNT; s++) {
      fg_node *sv = fg_node_get(expanded, fg_split_names[s]);
      char *p = fg__xasprintf("%s.%s", path, fg_split_names[s]);
      if (sv && fg_node_kind_of(sv) != FG_NODE_NULL) rc = check_items(sv, p, k == 0, fill, err);
      free(p);
    }
    free(path);
    if (rc) {
      fg_node_free(expanded);
      return rc;
    }
    fg_node_map_set(args, keys[k], expanded);
  }
  /* Several loader option sets must match several datasets one to one. */
  for (int s = 0; s < FG_SPLIT_COUNT; s++) {
    fg_node *ds = fg_node_get(fg_node_get(args, "dataset_cfg"), fg_split_names[s]);
    fg_node *dl = fg_node_get(fg_node_get(args, "dataloader_cfg"), fg_split_names[s]);
    if (dl && fg_node_kind_of(dl) == FG_NODE_SEQ &&
        (ds == NULL || fg_node_kind_of(ds) != FG_NODE_SEQ || fg_node_len(ds) != fg_node_len(dl))) {
      char *p = fg__xasprintf("%s.dataloader_cfg.%s", keypath, fg_split_names[s]);
      int rc = fg_config_error(err, dl, p,
                               "%zu DataLoader option sets for %zu datasets: give one set, or one per dataset",
                               fg_node_len(dl), ds && fg_node_kind_of(ds) == FG_NODE_SEQ ? fg_node_len(ds) : (size_t)1);
      free(p);
      return rc;
    }
  }
  return 0;
}

/* An option that is accepted but does nothing here, said once per run:
 * the split expansion copies one written node into every split, so the
 * same place is one warning. */
static void add_warning(fg_datamodule *dm, const fg_node *v, const char *key, const char *why) {
  char *kp = fg__xasprintf("%s.dataloader_cfg", dm->keypath);
  char *w = fg_config_warning(v, kp, "%s: %s", key, why);
  free(kp);
  for (size_t i = 0; i < dm->n_warnings; i++)
    if (strcmp(dm->warnings[i], w) == 0) {
      free(w);
      return;
    }
  dm->warnings = fg__xrealloc(dm->warnings, (dm->n_warnings + 1) * sizeof *dm->warnings);
  dm->warnings[dm->n_warnings++] = w;
}

static void read_opts(fg_datamodule *dm, const fg_node *o, int split, fg_dataloader_opts *out) {
  out->batch_size = fg_node_int(fg_node_get(o, "batch_size"));
  const fg_node *sh = fg_node_get(o, "shuffle");
  out->shuffle = sh && fg_node_kind_of(sh) == FG_NODE_BOOL ? fg_node_bool(sh) : split == 0;
  out->drop_last = fg_node_bool(fg_node_get(o, "drop_last"));
  out->num_workers = (int)fg_node_int(fg_node_get(o, "num_workers"));
  const fg_node *pf = fg_node_get(o, "prefetch_factor");
  out->prefetch_factor = pf && fg_node_kind_of(pf) == FG_NODE_INT ? (int)fg_node_int(pf) : 0;
  const fg_node *to = fg_node_get(o, "timeout");
  out->timeout = to ? fg_node_float(to) : 0;
  const fg_node *v = fg_node_get(o, "pin_memory");
  if (v && fg_node_bool(v))
    add_warning(dm, v, "pin_memory",
                "true has no effect: pinned memory speeds copies to a GPU, and this build's "
                "libtorch is CPU-only");
  v = fg_node_get(o, "multiprocessing_context");
  if (v && fg_node_kind_of(v) == FG_NODE_STRING)
    add_warning(dm, v, "multiprocessing_context",
                "has no effect: the workers are threads of this process, no worker processes are started");
  v = fg_node_get(o, "in_order");
  if (v && !fg_node_bool(v))
    add_warning(dm, v, "in_order",
                "false has no effect: batches always arrive in order here (a slow batch holds back "
                "only the loop, not the workers)");
}

bool fg_datamodule_unshuffle(fg_datamodule *dm, const char *split) {
  int s = split_index(split);
  bool was = false;
  for (size_t i = 0; s >= 0 && i < dm->n_slots[s]; i++) {
    was = was || dm->slots[s][i].opts.shuffle;
    dm->slots[s][i].opts.shuffle = false;
  }
  if (was) fg_datamodule_reload(dm, split);
  return was;
}

size_t fg_datamodule_num_warnings(const fg_datamodule *dm) { return dm->n_warnings; }
const char *fg_datamodule_warning(const fg_datamodule *dm, size_t i) { return dm->warnings[i]; }

void fg_datamodule_reload(fg_datamodule *dm, const char *split) {
  int s = split_index(split);
  for (size_t i = 0; s >= 0 && i < dm->n_slots[s]; i++) {
    fg_dataloader_free(dm->slots[s][i].loader);
    dm->slots[s][i].loader = NULL;
  }
}

static int dm_create(const fg_class *cls, const fg_node *args, const char *keypath, void **out,
                     char **err) {
  fg_datamodule *dm = fg__xcalloc(1, sizeof *dm);
  dm->keypath = fg__xstrdup(keypath);
  const fg_node *dsc = fg_node_get(args, "dataset_cfg");
  const fg_node *dlc = fg_node_get(args, "dataloader_cfg");
  for (int s = 0; s < FG_SPLIT_COUNT; s++) {
    const fg_node *ds = fg_node_get(dsc, fg_split_names[s]);
    const fg_node *dl = fg_node_get(dlc, fg_split_names[s]);
    if (ds == NULL || fg_node_kind_of(ds) == FG_NODE_NULL) continue;
    bool list = fg_node_kind_of(ds) == FG_NODE_SEQ;
    size_t n = list ? fg_node_len(ds) : 1;
    dm->slots[s] = fg__xcalloc(n ? n : 1, sizeof(loader_slot));
    dm->n_slots[s] = n;
    for (size_t i = 0; i < n; i++) {
      dm->slots[s][i].dataset_cfg = fg_node_clone(list ? fg_node_at(ds, i) : ds);
      const fg_node *o = dl && fg_node_kind_of(dl) == FG_NODE_SEQ ? fg_node_at(dl, i) : dl;
      read_opts(dm, o, s, &dm->slots[s][i].opts);
    }
  }
  *out = dm;
  return 0;
}

static void dm_destroy(void *obj) { fg_datamodule_free(obj); }

static const fg_param dm_params[] = {
    {"dataset_cfg", FG_T_MAP | FG_T_SEQ, NULL, "datasets per split (a split config)", NULL, 0},
    {"dataloader_cfg", FG_T_MAP | FG_T_SEQ, "{}", "DataLoader options per split (a split config)", NULL, 0},
};

static const char *const dm_aliases[] = {"DataModule", "lightning_template.DataModule",
                                        "lightning_template.LightningDataModule", NULL};

const fg_class fg__datamodule_class = {
    .name = "fulgur.DataModule", .aliases = dm_aliases, .kind = FG_KIND_DATAMODULE,
    .params = dm_params, .n_params = 2, .create = dm_create, .destroy = dm_destroy,
    .check = check_dm};
