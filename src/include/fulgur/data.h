/* Datasets and the DataLoader.
 *
 * A dataset is anything that can say its length and build a batch for a
 * list of indices; built-in ones keep their samples in memory as two
 * tensors. The IDX, CSV and synthetic datasets yield batches as a dict
 * value {"x": float32 tensor [B, ...], "y": int64 [B] (class labels) or
 * float32 [B] (regression targets)}; TensorDict keeps its file's keys.
 *
 * The DataLoader follows Lightning's defaults: shuffle only for fit, seeded
 * shuffling (a new permutation each epoch, derived from seed and epoch),
 * drop_last false, and num_workers threads that build batches ahead of the
 * loop (0 = built on the caller's thread when asked for).
 */
#ifndef FULGUR_DATA_H
#define FULGUR_DATA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fulgur/torch.h"
#include "fulgur/value.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fg_dataset fg_dataset;

typedef struct {
  int64_t (*len)(void *self);
  /* Builds the batch of samples idx[0..n-1] into *out (a dict value the
   * caller frees). Called from loader worker threads: must be thread-safe
   * for concurrent calls. */
  int (*get_batch)(void *self, const int64_t *idx, size_t n, fg_value **out,
                   char **err);
  void (*free)(void *self);
} fg_dataset_vtable;

/* Wraps an implementation; the dataset owns self (vt->free releases it).
 * Datasets are reference-counted because several loaders may share one. */
fg_dataset *fg_dataset_create(const fg_dataset_vtable *vt, void *self);
fg_dataset *fg_dataset_ref(fg_dataset *ds);
void fg_dataset_unref(fg_dataset *ds); /* NULL is a no-op */
int64_t fg_dataset_len(const fg_dataset *ds);
int fg_dataset_get_batch(fg_dataset *ds, const int64_t *idx, size_t n,
                         fg_value **out, char **err);

/* In-memory dataset over x [N, ...] float32 and y [N]; takes ownership of
 * both tensors. The shared base of the built-ins. */
int fg_dataset_tensor_create(fg_tensor *x, fg_tensor *y, fg_dataset **out,
                             char **err);

/* IDX files (MNIST / Fashion-MNIST format; .gz read directly with zlib).
 * Images become float32 [N, rows*cols] scaled to [0, 1], then normalized
 * as (x - mean) / std; labels int64 [N]. subset_start/subset_end select
 * rows [start, end) (negative counts from the end; end 0 = to the end). */
typedef struct {
  const char *images;
  const char *labels;
  double mean, std; /* std 1, mean 0 = none */
  int64_t subset_start, subset_end;
  bool has_subset;
} fg_idx_opts;
int fg_dataset_idx_create(const fg_idx_opts *opts, fg_dataset **out,
                          char **err);

/* CSV with a header row (or columns named by index when header is false):
 * `target` names the target column; every other column must be numeric and
 * becomes a feature. target_long: int64 labels, else float32. Errors name
 * file:line and the column. */
typedef struct {
  const char *path;
  const char *target;
  bool target_long;
  bool header;
} fg_csv_opts;
int fg_dataset_csv_create(const fg_csv_opts *opts, fg_dataset **out,
                          char **err);

/* Seeded synthetic classification data: x ~ N(0,1) of the given shape plus a
 * class-dependent offset (so it is learnable), y uniform in [0, num_classes). */
typedef struct {
  int64_t num_samples;
  const int64_t *shape; /* per-sample shape */
  int ndim;
  int64_t num_classes;
  uint64_t seed;
} fg_synthetic_opts;
int fg_dataset_synthetic_create(const fg_synthetic_opts *opts,
                                fg_dataset **out, char **err);

/* Files written by Python's torch.save({"data": Tensor[N, ...], "label":
 * Tensor[N], ...}) (a dict or OrderedDict of tensors), concatenated along
 * dim 0 in the order given. A sample is row i of every tensor; batches are
 * dicts with the same keys (not "x"/"y"), plus index_key (when not NULL):
 * the samples' dataset indices, int64 [B]. keys (NULL = every entry) picks
 * the entries to keep. Errors name the file and the key: a file that is not
 * a dict of tensors, tensors of different lengths, a missing key, files
 * whose tensors differ in dtype or per-sample shape. */
typedef struct {
  const char *const *paths;
  size_t n_paths;
  const char *const *keys; /* NULL = all */
  size_t n_keys;
  const char *index_key; /* NULL = none */
} fg_tensordict_opts;
int fg_dataset_tensordict_create(const fg_tensordict_opts *opts,
                                 fg_dataset **out, char **err);

/* torch.utils.data.Subset(base, idx): samples idx[0..n-1] of base, in that
 * order (the subset takes a reference to base and copies idx). An index
 * outside base is FG_EINVAL. */
int fg_dataset_subset_create(fg_dataset *base, const int64_t *idx, int64_t n,
                             fg_dataset **out, char **err);
/* sklearn.model_selection.KFold(n_splits) without shuffling, fold `fold`
 * of split(range(n_samples)): *test the fold's contiguous block, *train
 * the other indices in order (both malloc'd, the caller frees). Errors as
 * sklearn's: n_splits < 2, or more splits than samples. */
int fg_kfold_split(int64_t n_samples, int64_t n_splits, int64_t fold, int64_t **train,
                   int64_t *n_train, int64_t **test, int64_t *n_test, char **err);

/* ---- DataLoader ----------------------------------------------------------- */

typedef struct fg_dataloader fg_dataloader;

typedef struct {
  int64_t batch_size;
  bool shuffle;
  bool drop_last;
  int num_workers;
  /* Batches each worker keeps ready ahead of the loop (PyTorch's
   * prefetch_factor); 0 = PyTorch's default, 2. */
  int prefetch_factor;
  /* Seconds the loop waits for a worker's batch before failing (PyTorch's
   * timeout; only workers can keep it waiting); 0 = no limit. */
  double timeout;
  uint64_t seed;
  /* Distributed sharding, PyTorch's DistributedSampler(num_replicas =
   * world_size, rank, shuffle, seed) with set_epoch(epoch): the epoch's
   * indices are torch.randperm(n) from a generator seeded with seed +
   * epoch (shuffle) or 0..n-1, and the loader reads indices[rank::world_size].
   * With pad (the fit loader), the indices are first padded to a multiple
   * of world_size by repeating them from the start, so that every rank has
   * the same number of samples and batches; without it (val, test,
   * predict) every sample is read exactly once across the ranks, as
   * Lightning's UnrepeatedDistributedSampler. world_size 0 or 1 = the
   * whole dataset in the loader's own order (above). */
  int rank;
  int world_size;
  bool pad;
} fg_dataloader_opts;

/* The loader takes a reference to ds. */
int fg_dataloader_create(fg_dataset *ds, const fg_dataloader_opts *opts,
                         fg_dataloader **out, char **err);
/* Stops the workers and frees; NULL is a no-op. */
void fg_dataloader_free(fg_dataloader *dl);
int64_t fg_dataloader_num_batches(const fg_dataloader *dl);
int64_t fg_dataloader_batch_size(const fg_dataloader *dl);
/* Samples this loader reads per epoch: its rank's shard (padded or not,
 * as opts.pad says), or the whole dataset in one process. */
int64_t fg_dataloader_len(const fg_dataloader *dl);
fg_dataset *fg_dataloader_dataset(const fg_dataloader *dl); /* borrowed */
/* Starts an epoch: a fresh permutation (when shuffling) from (seed, epoch);
 * workers begin building batches at once. Ends any epoch in progress. */
int fg_dataloader_start_epoch(fg_dataloader *dl, int64_t epoch, char **err);
/* The same, but the epoch yields batches first_batch, first_batch + 1, ...
 * only: exactly what is left of the epoch after first_batch batches, as a
 * resume in the middle of an epoch needs. The skipped batches are never
 * built. first_batch outside 0..num_batches is FG_EINVAL. */
int fg_dataloader_start_epoch_at(fg_dataloader *dl, int64_t epoch, int64_t first_batch,
                                 char **err);
/* Next batch of the epoch in order, or *out = NULL when the epoch is done.
 * The caller frees *out. A worker's error is returned here, in order. */
int fg_dataloader_next(fg_dataloader *dl, fg_value **out, char **err);

/* ---- DataModule ----------------------------------------------------------- */

/* fulgur.DataModule(dataset_cfg, dataloader_cfg): both split configs. For
 * each split, one or several datasets (several val dataloaders) and their
 * loader options. */
typedef struct fg_datamodule fg_datamodule;

void fg_datamodule_free(fg_datamodule *dm);
/* Number of dataloaders of a split (0 when the split has none). split is
 * one of "fit", "val", "test", "predict". */
size_t fg_datamodule_num_loaders(const fg_datamodule *dm, const char *split);
/* Builds (on first call) and returns the idx-th loader of a split; borrowed,
 * owned by the datamodule. `seed` is the run's seed (seed_everything). */
int fg_datamodule_loader(fg_datamodule *dm, const char *split, size_t idx,
                         fg_dataloader **out, char **err);
void fg_datamodule_set_seed(fg_datamodule *dm, uint64_t seed);
/* Makes every loader built from now on read rank's shard of its dataset
 * (fg_dataloader_opts.rank/world_size; padded for fit only). */
void fg_datamodule_set_distributed(fg_datamodule *dm, int rank, int world_size);
/* The DataLoader options that are accepted but mean nothing here
 * (pin_memory on CPU, ...): one message each, with its file:line:col, for
 * the run to log once. Borrowed; i < fg_datamodule_num_warnings. */
size_t fg_datamodule_num_warnings(const fg_datamodule *dm);
const char *fg_datamodule_warning(const fg_datamodule *dm, size_t i);
/* Drops the loaders (and their datasets) of a split, so the next
 * fg_datamodule_loader builds them again from the dataset config (the
 * files are read anew): Lightning's reload_dataloaders_every_n_epochs. */
void fg_datamodule_reload(fg_datamodule *dm, const char *split);
/* Turns shuffling off for the loaders of a split (Lightning's
 * overfit_batches does it for fit); returns whether any had it on. */
bool fg_datamodule_unshuffle(fg_datamodule *dm, const char *split);
/* lightning_template's k-fold cross-validation (LightningDataModule's
 * setup_folds and setup_fold_index): fold `fold` of fg_kfold_split over the
 * fit dataset (the first fit dataset) replaces every split's loaders by one
 * loader: fit reads the other folds, val, test and predict read this fold,
 * each with its split's first DataLoader options (fit's when the split has
 * none). num_folds 1 (or less) goes back to the configured loaders. */
int fg_datamodule_set_fold(fg_datamodule *dm, int64_t num_folds, int64_t fold, char **err);

#ifdef __cplusplus
}
#endif
#endif
