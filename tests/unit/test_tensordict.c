/* fulgur.data.TensorDict on files written by Python's torch.save (the
 * committed script tests/fixtures/make_tensordict.py, run at test time with
 * python3-torch): dtypes and values kept, OrderedDict, several files
 * concatenated, keys, index_key, DDP shards, and each bad input's message. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fulgur/config.h"
#include "fulgur/data.h"
#include "fulgur/error.h"
#include "fulgur/registry.h"

static char dir[64];

static void make_fixtures(void) {
  strcpy(dir, "/tmp/fg_td_XXXXXX");
  cr_assert_not_null(mkdtemp(dir));
  const char *py = getenv("FG_PYTHON"), *src = getenv("FG_SOURCE_DIR");
  char cmd[1024];
  snprintf(cmd, sizeof cmd, "'%s' '%s/tests/fixtures/make_tensordict.py' '%s'", py ? py : "python3",
           src ? src : ".", dir);
  cr_assert_eq(system(cmd), 0, "the fixture script failed: %s", cmd);
}

static void remove_fixtures(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  cr_assert_eq(system(cmd), 0);
}

TestSuite(tensordict, .init = make_fixtures, .fini = remove_fixtures);

/* Creates the dataset from `init_args` (YAML flow text, %s = the fixture
 * folder, used as often as it appears up to three times). */
static int create(const char *init_args, fg_dataset **out, char **err) {
  char args[1024], yaml[1200];
  snprintf(args, sizeof args, init_args, dir, dir, dir);
  snprintf(yaml, sizeof yaml, "class_path: fulgur.data.TensorDict\ninit_args: %s\n", args);
  fg_node *n = NULL;
  cr_assert_eq(fg_node_parse(yaml, strlen(yaml), "<test>", &n, err), 0, "%s", *err);
  void *obj = NULL;
  int rc = fg_registry_create(n, "data.init_args.dataset_cfg.fit", FG_KIND_DATASET, &obj, NULL, err);
  fg_node_free(n);
  if (rc == 0) *out = obj;
  return rc;
}

static fg_dataset *make(const char *init_args) {
  fg_dataset *ds = NULL;
  char *err = NULL;
  cr_assert_eq(create(init_args, &ds, &err), 0, "%s", err);
  return ds;
}

static const fg_tensor *entry(const fg_value *batch, const char *key) {
  const fg_value *v = fg_value_dict_get(batch, key);
  cr_assert_not_null(v, "batch has no '%s'", key);
  cr_assert_eq(fg_value_kind_of(v), FG_VALUE_TENSOR);
  return fg_value_as_tensor(v);
}

static fg_value *batch_of(fg_dataset *ds, const int64_t *idx, size_t n) {
  fg_value *b = NULL;
  char *err = NULL;
  cr_assert_eq(fg_dataset_get_batch(ds, idx, n, &b, &err), 0, "%s", err);
  return b;
}

/* Rows idx of a.pt/b.pt (row i: data = 6i..6i+5, label 10+i, mask 200+i). */
static void check_rows(const fg_value *b, const int64_t *idx, size_t n) {
  const fg_tensor *x = entry(b, "data"), *y = entry(b, "label"), *m = entry(b, "mask");
  cr_assert_eq(fg_tensor_dtype(x), FG_FLOAT32);
  cr_assert_eq(fg_tensor_dtype(y), FG_INT64);
  cr_assert_eq(fg_tensor_dtype(m), FG_UINT8);
  char shape[64];
  fg_tensor_shape_str(x, shape, sizeof shape);
  char want[64];
  snprintf(want, sizeof want, "[%zu, 2, 3]", n);
  cr_assert_str_eq(shape, want);
  float xs[64 * 6];
  int64_t ys[64];
  uint8_t ms[64];
  cr_assert_eq(fg_tensor_copy_out(x, FG_FLOAT32, xs, n * 6 * sizeof(float), NULL), 0);
  cr_assert_eq(fg_tensor_copy_out(y, FG_INT64, ys, n * sizeof(int64_t), NULL), 0);
  cr_assert_eq(fg_tensor_copy_out(m, FG_UINT8, ms, n, NULL), 0);
  for (size_t i = 0; i < n; i++) {
    for (int j = 0; j < 6; j++) cr_assert_float_eq(xs[i * 6 + j], (float)(idx[i] * 6 + j), 0);
    cr_assert_eq(ys[i], 10 + idx[i]);
    cr_assert_eq(ms[i], 200 + idx[i]);
  }
}

Test(tensordict, reads_a_torch_save_dict_keeping_keys_dtypes_and_rows) {
  fg_dataset *ds = make("{path: %s/a.pt}");
  cr_assert_eq(fg_dataset_len(ds), 5);
  int64_t idx[] = {3, 0, 4};
  fg_value *b = batch_of(ds, idx, 3);
  cr_assert_eq(fg_value_len(b), 3, "exactly the file's keys");
  cr_assert_str_eq(fg_value_dict_key_at(b, 0), "data", "in the file's order");
  cr_assert_str_eq(fg_value_dict_key_at(b, 1), "label");
  cr_assert_str_eq(fg_value_dict_key_at(b, 2), "mask");
  check_rows(b, idx, 3);
  fg_value_free(b);
  fg_dataset_unref(ds);
}

Test(tensordict, reads_an_ordered_dict) {
  fg_dataset *ds = make("{path: [%s/ordered.pt]}");
  int64_t idx[] = {1, 2};
  fg_value *b = batch_of(ds, idx, 2);
  check_rows(b, idx, 2);
  fg_value_free(b);
  fg_dataset_unref(ds);
}

Test(tensordict, concatenates_files_in_order) {
  fg_dataset *ds = make("{path: [%s/a.pt, %s/b.pt]}");
  cr_assert_eq(fg_dataset_len(ds), 8);
  int64_t idx[] = {7, 0, 5, 4};
  fg_value *b = batch_of(ds, idx, 4);
  check_rows(b, idx, 4);
  fg_value_free(b);
  fg_dataset_unref(ds);
}

Test(tensordict, keys_pick_a_subset_and_index_key_adds_the_indices) {
  fg_dataset *ds = make("{path: [%s/a.pt, %s/b.pt], keys: [label], index_key: index}");
  int64_t idx[] = {6, 2, 7};
  fg_value *b = batch_of(ds, idx, 3);
  cr_assert_eq(fg_value_len(b), 2);
  cr_assert_str_eq(fg_value_dict_key_at(b, 0), "label");
  cr_assert_str_eq(fg_value_dict_key_at(b, 1), "index");
  int64_t ys[3], is[3];
  cr_assert_eq(fg_tensor_copy_out(entry(b, "label"), FG_INT64, ys, sizeof ys, NULL), 0);
  cr_assert_eq(fg_tensor_dtype(entry(b, "index")), FG_INT64);
  cr_assert_eq(fg_tensor_copy_out(entry(b, "index"), FG_INT64, is, sizeof is, NULL), 0);
  for (int i = 0; i < 3; i++) {
    cr_assert_eq(is[i], idx[i]);
    cr_assert_eq(ys[i], 10 + idx[i]);
  }
  fg_value_free(b);
  fg_dataset_unref(ds);
}

/* Two ranks' unpadded shards (val/test/predict) of shuffled data: every
 * sample once, and each batch's rows are the samples its indices name. */
Test(tensordict, ddp_shards_read_every_sample_once) {
  fg_dataset *ds = make("{path: [%s/a.pt, %s/b.pt], index_key: index}");
  int seen[8] = {0};
  for (int rank = 0; rank < 2; rank++) {
    fg_dataloader_opts o = {.batch_size = 3, .shuffle = true, .seed = 7, .rank = rank, .world_size = 2};
    fg_dataloader *dl = NULL;
    char *err = NULL;
    cr_assert_eq(fg_dataloader_create(ds, &o, &dl, &err), 0, "%s", err);
    cr_assert_eq(fg_dataloader_start_epoch(dl, 1, &err), 0, "%s", err);
    fg_value *b = NULL;
    while (fg_dataloader_next(dl, &b, &err) == 0 && b) {
      int64_t n = fg_tensor_size(entry(b, "index"), 0), is[8];
      cr_assert_eq(fg_tensor_copy_out(entry(b, "index"), FG_INT64, is, (size_t)n * sizeof(int64_t), NULL), 0);
      check_rows(b, is, (size_t)n);
      for (int64_t i = 0; i < n; i++) seen[is[i]]++;
      fg_value_free(b);
    }
    cr_assert_null(err);
    fg_dataloader_free(dl);
  }
  for (int i = 0; i < 8; i++) cr_assert_eq(seen[i], 1, "sample %d seen %d times", i, seen[i]);
  fg_dataset_unref(ds);
}

/* Creating fails with `code` and a message holding every one of `want`. */
static void expect_error(const char *init_args, int code, const char *const *want) {
  fg_dataset *ds = NULL;
  char *err = NULL;
  int rc = create(init_args, &ds, &err);
  cr_assert_eq(rc, code, "got %d (%s)", rc, err ? err : "");
  cr_assert_not_null(err);
  for (; *want; want++) cr_assert_not_null(strstr(err, *want), "'%s' not in: %s", *want, err);
  free(err);
}

Test(tensordict, tensors_of_different_lengths_name_the_file_and_keys) {
  expect_error("{path: %s/bad_len.pt}", FG_EDATA,
               (const char *[]){"data.init_args.dataset_cfg.fit", "bad_len.pt", "'label' has 3 rows",
                                "'data' has 4", NULL});
}

Test(tensordict, a_file_that_is_not_a_dict_of_tensors_is_named) {
  expect_error("{path: %s/tensor.pt}", FG_EDATA,
               (const char *[]){"tensor.pt", "expected a dict of tensors, got a tensor", NULL});
  expect_error("{path: %s/mixed.pt}", FG_EDATA,
               (const char *[]){"mixed.pt", "'name' is a string, expected a tensor", NULL});
  /* Not written by torch.save at all: the fixture script itself. */
  char args[600];
  snprintf(args, sizeof args, "{path: %s/tests/fixtures/make_tensordict.py}", getenv("FG_SOURCE_DIR"));
  expect_error(args, FG_EDATA, (const char *[]){"make_tensordict.py", "not a file written by torch.save", NULL});
}

Test(tensordict, a_missing_keys_entry_names_the_file_and_the_key) {
  expect_error("{path: %s/a.pt, keys: [data, nope]}", FG_EDATA,
               (const char *[]){"a.pt", "no key 'nope'", "keys: data, label, mask", NULL});
  /* With several files, the file that lacks it. */
  expect_error("{path: [%s/a.pt, %s/mixed.pt], keys: [label]}", FG_EDATA,
               (const char *[]){"mixed.pt", "no key 'label'", NULL});
}

Test(tensordict, files_that_cannot_be_concatenated_name_the_key) {
  expect_error("{path: [%s/a.pt, %s/b_f64.pt]}", FG_EDATA,
               (const char *[]){"b_f64.pt", "'data' is float64 [3, 2, 3]", "float32 [5, 2, 3]", NULL});
}

Test(tensordict, a_missing_file_and_a_clashing_index_key_are_errors) {
  expect_error("{path: %s/none.pt}", FG_ENOENT, (const char *[]){"none.pt", NULL});
  expect_error("{path: %s/a.pt, index_key: label}", FG_EINVAL,
               (const char *[]){"index_key 'label'", "a.pt", NULL});
}
