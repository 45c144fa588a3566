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
  if (fg_node_int(v) < 1)
    return fg_config_error(err, v, k, "expected a batch size >= 1, got %lld", (long long)fg_node_int(v));
  return 0;
}
static int check_workers(const fg_node *v, const char *k, char **err) {
  if (fg_node_int(v) < 0 || fg_node_int(v) > 64)
    return fg_config_error(err, v, k, "expected 0 to 64 worker threads, got %lld", (long long)fg_node_int(v));
  return 0;
}

static const fg_param loader_params[] = {
    {"batch_size", FG_T_INT, "1", "samples per batch", check_batch, 0},
    {"shuffle", FG_T_NULL | FG_T_BOOL, "null", "shuffle each epoch (null: only for fit)", NULL, 0},
    {"drop_last", FG_T_BOOL, "false", "drop the last incomplete batch", NULL, 0},
    {"num_workers", FG_T_INT, "0", "threads preparing batches ahead of the loop", check_workers, 0},
    {"pin_memory", FG_T_BOOL, "false", "no effect on CPU (accepted for PyTorch configs)", NULL, 0},
    {"persistent_workers", FG_T_BOOL, "false", "no effect: worker threads live as long as the loader", NULL, 0},
};

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

static void read_opts(const fg_node *o, int split, fg_dataloader_opts *out) {
  out->batch_size = fg_node_int(fg_node_get(o, "batch_size"));
  const fg_node *sh = fg_node_get(o, "shuffle");
  out->shuffle = sh && fg_node_kind_of(sh) == FG_NODE_BOOL ? fg_node_bool(sh) : split == 0;
  out->drop_last = fg_node_bool(fg_node_get(o, "drop_last"));
  out->num_workers = (int)fg_node_int(fg_node_get(o, "num_workers"));
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
      read_opts(o, s, &dm->slots[s][i].opts);
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
