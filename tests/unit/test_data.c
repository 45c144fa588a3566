/* Datasets (IDX from real files, Debian's Fashion-MNIST included; CSV;
 * Synthetic) and the DataLoader (order, shuffling, drop_last, worker
 * threads, errors in order, epochs restarted mid-way). */
#include <criterion/criterion.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "fulgur/data.h"
#include "fulgur/error.h"

static char dir[64];

static void make_dir(void) {
  strcpy(dir, "/tmp/fgdataXXXXXX");
  cr_assert_not_null(mkdtemp(dir));
}

static void remove_dir(void) {
  char cmd[128];
  snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
  cr_assert_eq(system(cmd), 0);
}

static char *path_in(const char *name) {
  static char p[4][256];
  static int k;
  k = (k + 1) % 4;
  snprintf(p[k], sizeof p[k], "%s/%s", dir, name);
  return p[k];
}

static void write_text(const char *name, const char *text) {
  FILE *f = fopen(path_in(name), "w");
  cr_assert_not_null(f);
  fputs(text, f);
  fclose(f);
}

static void write_gz(const char *name, const void *data, size_t len) {
  gzFile f = gzopen(path_in(name), "wb");
  cr_assert_not_null(f);
  cr_assert_eq(gzwrite(f, data, (unsigned)len), (int)len);
  gzclose(f);
}

/* n images of 2x2 pixels, pixel values i*4+j; labels i % 3. */
static void write_idx_pair(int n) {
  unsigned char im[16 + 64 * 4], lb[8 + 64];
  memcpy(im, (unsigned char[]){0, 0, 8, 3, 0, 0, 0, (unsigned char)n, 0, 0, 0, 2, 0, 0, 0, 2}, 16);
  for (int i = 0; i < n * 4; i++) im[16 + i] = (unsigned char)i;
  memcpy(lb, (unsigned char[]){0, 0, 8, 1, 0, 0, 0, (unsigned char)n}, 8);
  for (int i = 0; i < n; i++) lb[8 + i] = (unsigned char)(i % 3);
  write_gz("im.gz", im, 16 + (size_t)n * 4);
  write_gz("lb.gz", lb, 8 + (size_t)n);
}

static float xval(fg_value *batch, int64_t row, int64_t col) {
  fg_tensor *x = fg_value_as_tensor(fg_value_dict_get(batch, "x"));
  float buf[4096];
  cr_assert_eq(fg_tensor_copy_out(x, FG_FLOAT32, buf, sizeof buf, NULL), 0);
  return buf[row * fg_tensor_size(x, 1) + col];
}

static int64_t yval(fg_value *batch, int64_t row) {
  fg_tensor *y = fg_value_as_tensor(fg_value_dict_get(batch, "y"));
  int64_t buf[512];
  cr_assert_eq(fg_tensor_copy_out(y, FG_INT64, buf, sizeof buf, NULL), 0);
  return buf[row];
}

static fg_value *batch_of(fg_dataset *ds, const int64_t *idx, size_t n) {
  fg_value *b = NULL;
  char *err = NULL;
  cr_assert_eq(fg_dataset_get_batch(ds, idx, n, &b, &err), 0, "%s", err);
  return b;
}

TestSuite(idx, .init = make_dir, .fini = remove_dir);

Test(idx, reads_gz_normalizes_and_subsets) {
  write_idx_pair(10);
  fg_idx_opts o = {.images = path_in("im.gz"), .labels = path_in("lb.gz"), .mean = 0.5, .std = 0.25};
  fg_dataset *ds = NULL;
  char *err = NULL;
  cr_assert_eq(fg_dataset_idx_create(&o, &ds, &err), 0, "%s", err);
  cr_assert_eq(fg_dataset_len(ds), 10);
  fg_value *b = batch_of(ds, (int64_t[]){3, 1}, 2);
  /* image 3, pixel 1 has value 13: (13/255 - 0.5) / 0.25 */
  cr_assert_float_eq(xval(b, 0, 1), (13 / 255.0 - 0.5) / 0.25, 1e-6);
  cr_assert_eq(yval(b, 0), 0);
  cr_assert_eq(yval(b, 1), 1);
  fg_value_free(b);
  fg_dataset_unref(ds);

  o.has_subset = true;
  o.subset_start = -4;
  o.subset_end = 0;
  cr_assert_eq(fg_dataset_idx_create(&o, &ds, &err), 0, "%s", err);
  cr_assert_eq(fg_dataset_len(ds), 4);
  b = batch_of(ds, (int64_t[]){0}, 1);
  cr_assert_eq(yval(b, 0), 6 % 3);
  fg_value_free(b);
  fg_dataset_unref(ds);
}

Test(idx, errors_name_the_file) {
  write_idx_pair(4);
  unsigned char bad[16] = {0, 0, 8, 2, 0, 0, 0, 4, 0, 0, 0, 2, 0, 0, 0, 2};
  write_gz("bad.gz", bad, sizeof bad);
  unsigned char trunc[20] = {0, 0, 8, 3, 0, 0, 0, 9, 0, 0, 0, 2, 0, 0, 0, 2, 1, 2, 3, 4};
  write_gz("trunc.gz", trunc, sizeof trunc);
  fg_dataset *ds = NULL;
  char *err = NULL;
  fg_idx_opts o = {.images = path_in("bad.gz"), .labels = path_in("lb.gz"), .std = 1};
  cr_assert_eq(fg_dataset_idx_create(&o, &ds, &err), FG_EDATA);
  cr_assert(strstr(err, "bad.gz: not an IDX file"), "%s", err);
  free(err);
  err = NULL;
  o.images = path_in("trunc.gz");
  cr_assert_eq(fg_dataset_idx_create(&o, &ds, &err), FG_EDATA);
  cr_assert(strstr(err, "trunc.gz: truncated"), "%s", err);
  free(err);
  err = NULL;
  o.images = path_in("none.gz");
  cr_assert_eq(fg_dataset_idx_create(&o, &ds, &err), FG_EIO);
  cr_assert(strstr(err, "cannot open '") && strstr(err, "none.gz': No such file"), "%s", err);
  free(err);
  err = NULL;
  o.images = path_in("im.gz");
  o.has_subset = true;
  o.subset_start = 3;
  o.subset_end = 2;
  cr_assert_eq(fg_dataset_idx_create(&o, &ds, &err), FG_EINVAL);
  cr_assert(strstr(err, "subset [3, 2] selects no rows"), "%s", err);
  free(err);
}

Test(idx, debian_fashion_mnist_test_set) {
  fg_idx_opts o = {.images = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz",
                   .labels = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz",
                   .std = 1};
  fg_dataset *ds = NULL;
  char *err = NULL;
  cr_assert_eq(fg_dataset_idx_create(&o, &ds, &err), 0, "%s", err);
  cr_assert_eq(fg_dataset_len(ds), 10000);
  int64_t idx[500];
  int counts[10] = {0};
  for (int start = 0; start < 10000; start += 500) {
    for (int i = 0; i < 500; i++) idx[i] = start + i;
    fg_value *b = batch_of(ds, idx, 500);
    fg_tensor *x = fg_value_as_tensor(fg_value_dict_get(b, "x"));
    cr_assert_eq(fg_tensor_size(x, 1), 784);
    for (int i = 0; i < 500; i++) {
      int64_t y = yval(b, i);
      cr_assert(y >= 0 && y < 10);
      counts[y]++;
    }
    fg_value_free(b);
  }
  for (int c = 0; c < 10; c++) cr_assert_eq(counts[c], 1000, "class %d", c); /* balanced */
  fg_dataset_unref(ds);
}

TestSuite(csv, .init = make_dir, .fini = remove_dir);

Test(csv, features_are_the_other_columns) {
  write_text("d.csv", "a, label ,\"b\"\n1,2,3\n\n4,0,6.5\r\n");
  fg_csv_opts o = {.path = path_in("d.csv"), .target = "label", .target_long = true, .header = true};
  fg_dataset *ds = NULL;
  char *err = NULL;
  cr_assert_eq(fg_dataset_csv_create(&o, &ds, &err), 0, "%s", err);
  cr_assert_eq(fg_dataset_len(ds), 2);
  fg_value *b = batch_of(ds, (int64_t[]){0, 1}, 2);
  cr_assert_float_eq(xval(b, 0, 0), 1, 0);
  cr_assert_float_eq(xval(b, 0, 1), 3, 0);
  cr_assert_float_eq(xval(b, 1, 1), 6.5, 0);
  cr_assert_eq(yval(b, 0), 2);
  cr_assert_eq(yval(b, 1), 0);
  fg_value_free(b);
  fg_dataset_unref(ds);

  /* No header: columns are named by index; float targets. */
  write_text("n.csv", "1,2.5\n3,4.5\n");
  fg_csv_opts o2 = {.path = path_in("n.csv"), .target = "1", .target_long = false, .header = false};
  cr_assert_eq(fg_dataset_csv_create(&o2, &ds, &err), 0, "%s", err);
  b = batch_of(ds, (int64_t[]){1}, 1);
  fg_tensor *y = fg_value_as_tensor(fg_value_dict_get(b, "y"));
  cr_assert_eq(fg_tensor_dtype(y), FG_FLOAT32);
  double v;
  cr_assert_eq(fg_tensor_item(y, &v, NULL), 0);
  cr_assert_float_eq(v, 4.5, 0);
  fg_value_free(b);
  fg_dataset_unref(ds);
}

static void csv_error(const char *text, const char *target, const char *want) {
  write_text("e.csv", text);
  fg_csv_opts o = {.path = path_in("e.csv"), .target = target, .target_long = true, .header = true};
  fg_dataset *ds = NULL;
  char *err = NULL;
  cr_assert_neq(fg_dataset_csv_create(&o, &ds, &err), 0);
  cr_assert(strstr(err, want), "%s does not contain %s", err, want);
  free(err);
}

Test(csv, errors_name_file_line_and_column) {
  csv_error("a,b,label\n1,2,0\n3,x,1\n", "label", "e.csv:3: column 'b': not a number ('x')");
  csv_error("a,b,label\n1,2,0\n3,4\n", "label", "e.csv:3: expected 3 columns, got 2");
  csv_error("a,b\n1,2\n", "label", "e.csv:1: no column named 'label' for the target");
  csv_error("a,label\n1,0.5\n", "label", "e.csv:2: column 'label': not an integer class label");
  csv_error("a,label\n", "label", "e.csv: no data rows");
  csv_error("a,label\n\"1,0\n", "label", "e.csv:2: unterminated quoted field");
}

static void write_raw(const char *name, const void *data, size_t len) {
  FILE *f = fopen(path_in(name), "wb");
  cr_assert_not_null(f);
  cr_assert_eq(fwrite(data, 1, len, f), len);
  cr_assert_eq(fclose(f), 0);
}

static void idx_error(const char *images, const char *want) {
  fg_idx_opts o = {.images = path_in(images), .labels = path_in("lb.gz"), .std = 1};
  fg_dataset *ds = NULL;
  char *err = NULL;
  cr_assert_eq(fg_dataset_idx_create(&o, &ds, &err), FG_EDATA);
  cr_assert(strstr(err, want), "%s does not contain %s", err, want);
  free(err);
}

/* The header's sizes are checked against the file before that much is
 * allocated (util/limits.h): a plain file must hold exactly the declared
 * bytes, a .gz file no more than deflate can expand its bytes to. */
Test(idx, declared_size_is_checked_against_the_file) {
  write_idx_pair(4);
  unsigned char huge[20] = {0, 0, 8, 3, 0, 0, 0xff, 0xff, 0, 0, 0xff, 0xff, 0, 0, 0xff, 0xff, 1, 2, 3, 4};
  write_raw("huge.idx", huge, sizeof huge);
  idx_error("huge.idx", "huge.idx: the header declares 281462092005375 bytes of data "
                        "(65535 x 65535 x 65535) but the file holds 4");
  write_gz("huge.gz", huge, sizeof huge);
  idx_error("huge.gz", "huge.gz: the header declares 281462092005375 bytes of data, more than its ");
  unsigned char wrap[20] = {0, 0, 8, 3, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                            0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4};
  write_gz("wrap.gz", wrap, sizeof wrap);
  idx_error("wrap.gz", "wrap.gz: the header declares more than 2^64 bytes of data");
  unsigned char shortf[18] = {0, 0, 8, 3, 0, 0, 0, 4, 0, 0, 0, 2, 0, 0, 0, 2, 9, 9};
  write_raw("short.idx", shortf, sizeof shortf);
  idx_error("short.idx", "short.idx: the header declares 16 bytes of data (4 x 2 x 2) but the file holds 2");

  /* A plain file of the declared size reads, as the .gz one does. */
  unsigned char im[16 + 16] = {0, 0, 8, 3, 0, 0, 0, 4, 0, 0, 0, 2, 0, 0, 0, 2};
  write_raw("im.idx", im, sizeof im);
  fg_idx_opts o = {.images = path_in("im.idx"), .labels = path_in("lb.gz"), .std = 1};
  fg_dataset *ds = NULL;
  char *err = NULL;
  cr_assert_eq(fg_dataset_idx_create(&o, &ds, &err), 0, "%s", err);
  cr_assert_eq(fg_dataset_len(ds), 4);
  fg_dataset_unref(ds);
}

Test(csv, limits_name_the_line) {
  /* 65,537 columns (the limit is 65,536). */
  size_t n = 65537;
  char *row = malloc(2 * n + 16);
  cr_assert_not_null(row);
  char *p = row;
  for (size_t i = 0; i < n; i++) p += sprintf(p, "%s0", i ? "," : "");
  strcpy(p, "\n");
  write_text("wide.csv", row);
  free(row);
  fg_csv_opts o = {.path = path_in("wide.csv"), .target = "0", .header = false};
  fg_dataset *ds = NULL;
  char *err = NULL;
  cr_assert_eq(fg_dataset_csv_create(&o, &ds, &err), FG_EDATA);
  cr_assert(strstr(err, "wide.csv:1: 65537 columns (the limit is 65536)"), "%s", err);
  free(err);
  err = NULL;

  /* A line of 16 MiB and one byte. */
  size_t len = (16u << 20) + 1;
  char *line = malloc(len + 16);
  cr_assert_not_null(line);
  memcpy(line, "a,label\n", 8);
  memset(line + 8, '1', len);
  strcpy(line + 8 + len, ",0\n");
  write_text("long.csv", line);
  free(line);
  o.path = path_in("long.csv");
  o.target = "label";
  o.header = true;
  cr_assert_eq(fg_dataset_csv_create(&o, &ds, &err), FG_EDATA);
  cr_assert(strstr(err, "long.csv:2: a line of 16777220 bytes (the limit is 16777216 bytes)"), "%s", err);
  free(err);
}

Test(synthetic, seeded_and_learnable_shape) {
  int64_t shape[] = {3, 2};
  fg_synthetic_opts o = {.num_samples = 50, .shape = shape, .ndim = 2, .num_classes = 4, .seed = 9};
  fg_dataset *a = NULL, *b = NULL, *c = NULL;
  cr_assert_eq(fg_dataset_synthetic_create(&o, &a, NULL), 0);
  cr_assert_eq(fg_dataset_synthetic_create(&o, &b, NULL), 0);
  o.seed = 10;
  cr_assert_eq(fg_dataset_synthetic_create(&o, &c, NULL), 0);
  int64_t idx[50];
  for (int i = 0; i < 50; i++) idx[i] = 49 - i;
  fg_value *ba = batch_of(a, idx, 50), *bb = batch_of(b, idx, 50), *bc = batch_of(c, idx, 50);
  fg_tensor *xa = fg_value_as_tensor(fg_value_dict_get(ba, "x"));
  cr_assert_eq(fg_tensor_ndim(xa), 3);
  cr_assert_eq(fg_tensor_size(xa, 1), 3);
  cr_assert_eq(fg_tensor_size(xa, 2), 2);
  bool same, other;
  cr_assert_eq(fg_op_allclose(xa, fg_value_as_tensor(fg_value_dict_get(bb, "x")), 0, 0, &same, NULL), 0);
  cr_assert_eq(fg_op_allclose(xa, fg_value_as_tensor(fg_value_dict_get(bc, "x")), 0, 0, &other, NULL), 0);
  cr_assert(same, "same seed, same data");
  cr_assert(!other, "another seed, other samples");
  for (int i = 0; i < 50; i++) cr_assert(yval(ba, i) >= 0 && yval(ba, i) < 4);
  fg_value_free(ba);
  fg_value_free(bb);
  fg_value_free(bc);
  fg_dataset_unref(a);
  fg_dataset_unref(b);
  fg_dataset_unref(c);
}

/* ---- the DataLoader ------------------------------------------------------------- */

/* y = the sample index, so batches show the order; fails on fail_at. */
typedef struct {
  int64_t n, fail_at;
} index_ds;

static int64_t ids_len(void *self) { return ((index_ds *)self)->n; }

static int ids_batch(void *self, const int64_t *idx, size_t n, fg_value **out, char **err) {
  index_ds *d = self;
  for (size_t i = 0; i < n; i++)
    if (idx[i] == d->fail_at) return fg_err_set(err, FG_EDATA, "sample %lld is broken", (long long)idx[i]);
  int64_t shape[1] = {(int64_t)n};
  fg_tensor *y = NULL;
  int rc = fg_tensor_from_data(idx, FG_INT64, shape, 1, &y, err);
  if (rc) return rc;
  *out = fg_value_dict();
  fg_value_dict_set(*out, "y", fg_value_tensor(y));
  usleep(200); /* let workers interleave */
  return 0;
}

static void ids_free(void *self) { free(self); }

static const fg_dataset_vtable ids_vt = {ids_len, ids_batch, ids_free};

static fg_dataset *index_dataset(int64_t n, int64_t fail_at) {
  index_ds *d = malloc(sizeof *d);
  d->n = n;
  d->fail_at = fail_at;
  return fg_dataset_create(&ids_vt, d);
}

/* The whole epoch's sample order; returns the number of batches. */
static int64_t epoch_order(fg_dataloader *dl, int64_t epoch, int64_t *order, int64_t *sizes) {
  cr_assert_eq(fg_dataloader_start_epoch(dl, epoch, NULL), 0);
  int64_t nb = 0, k = 0;
  for (;;) {
    fg_value *b = NULL;
    char *err = NULL;
    cr_assert_eq(fg_dataloader_next(dl, &b, &err), 0, "%s", err);
    if (b == NULL) break;
    int64_t n = fg_tensor_size(fg_value_as_tensor(fg_value_dict_get(b, "y")), 0);
    for (int64_t i = 0; i < n; i++) order[k++] = yval(b, i);
    sizes[nb++] = n;
    fg_value_free(b);
  }
  return nb;
}

static fg_dataloader *loader(fg_dataset *ds, int64_t bs, bool shuffle, bool drop_last, int workers,
                             uint64_t seed) {
  fg_dataloader_opts o = {.batch_size = bs, .shuffle = shuffle, .drop_last = drop_last,
                          .num_workers = workers, .seed = seed};
  fg_dataloader *dl = NULL;
  char *err = NULL;
  cr_assert_eq(fg_dataloader_create(ds, &o, &dl, &err), 0, "%s", err);
  return dl;
}

Test(dataloader, order_batches_and_drop_last) {
  fg_dataset *ds = index_dataset(10, -1);
  int64_t order[10], sizes[10];
  fg_dataloader *dl = loader(ds, 4, false, false, 0, 0);
  cr_assert_eq(fg_dataloader_num_batches(dl), 3);
  cr_assert_eq(epoch_order(dl, 0, order, sizes), 3);
  for (int i = 0; i < 10; i++) cr_assert_eq(order[i], i);
  cr_assert_eq(sizes[2], 2);
  fg_dataloader_free(dl);
  dl = loader(ds, 4, false, true, 2, 0);
  cr_assert_eq(fg_dataloader_num_batches(dl), 2);
  cr_assert_eq(epoch_order(dl, 0, order, sizes), 2);
  fg_dataloader_free(dl);
  fg_dataset_unref(ds);
}

Test(dataloader, shuffle_is_seeded_per_epoch_and_workers_keep_order) {
  fg_dataset *ds = index_dataset(100, -1);
  int64_t a0[100], a1[100], b0[100], c0[100], sizes[100];
  fg_dataloader *single = loader(ds, 7, true, false, 0, 42);
  fg_dataloader *threaded = loader(ds, 7, true, false, 3, 42);
  fg_dataloader *other = loader(ds, 7, true, false, 0, 43);
  epoch_order(single, 0, a0, sizes);
  epoch_order(single, 1, a1, sizes);
  epoch_order(threaded, 0, b0, sizes);
  epoch_order(other, 0, c0, sizes);
  cr_assert_arr_eq(a0, b0, sizeof a0, "workers give the single-threaded order");
  cr_assert(memcmp(a0, a1, sizeof a0) != 0, "a new order each epoch");
  cr_assert(memcmp(a0, c0, sizeof a0) != 0, "another seed, another order");
  bool seen[100] = {false};
  for (int i = 0; i < 100; i++) {
    cr_assert(!seen[a0[i]], "a permutation");
    seen[a0[i]] = true;
  }
  fg_dataloader_free(single);
  fg_dataloader_free(threaded);
  fg_dataloader_free(other);
  fg_dataset_unref(ds);
}

/* start_epoch_at yields exactly the rest of the epoch start_epoch would
 * give, with or without workers, and never builds the skipped batches. */
Test(dataloader, start_at_a_batch_yields_the_rest_of_the_epoch) {
  fg_dataset *ds = index_dataset(50, 3); /* sample 3 fails: batch 0 must not be built */
  int64_t full[50], sizes[50];
  fg_dataset *ok = index_dataset(50, -1);
  fg_dataloader *ref = loader(ok, 4, true, false, 0, 9);
  int64_t nb = epoch_order(ref, 2, full, sizes);
  cr_assert_eq(nb, 13);
  /* The failing sample sits in some batch of the shuffled epoch; start past it. */
  int64_t bad_batch = -1;
  for (int64_t i = 0; i < 50; i++)
    if (full[i] == 3) bad_batch = i / 4;
  for (int workers = 0; workers <= 2; workers += 2) {
    fg_dataloader *dl = loader(ds, 4, true, false, workers, 9);
    for (int64_t first = bad_batch + 1; first <= nb; first++) {
      cr_assert_eq(fg_dataloader_start_epoch_at(dl, 2, first, NULL), 0);
      int64_t k = first * 4 < 50 ? first * 4 : 50;
      for (;;) {
        fg_value *b = NULL;
        char *err = NULL;
        cr_assert_eq(fg_dataloader_next(dl, &b, &err), 0, "first %lld workers %d: %s",
                     (long long)first, workers, err ? err : "");
        if (b == NULL) break;
        int64_t n = fg_tensor_size(fg_value_as_tensor(fg_value_dict_get(b, "y")), 0);
        for (int64_t i = 0; i < n; i++, k++) cr_assert_eq(yval(b, i), full[k]);
        fg_value_free(b);
      }
      cr_assert_eq(k, 50, "first %lld: every remaining sample, once", (long long)first);
    }
    char *err = NULL;
    cr_assert_eq(fg_dataloader_start_epoch_at(dl, 2, nb + 1, &err), FG_EINVAL);
    cr_assert_str_eq(err, "dataloader: cannot start at batch 14 of 13");
    free(err);
    fg_dataloader_free(dl);
  }
  fg_dataloader_free(ref);
  fg_dataset_unref(ok);
  fg_dataset_unref(ds);
}

Test(dataloader, epoch_restarted_midway_and_freed_midway) {
  fg_dataset *ds = index_dataset(64, -1);
  fg_dataloader *dl = loader(ds, 4, false, false, 2, 0);
  for (int round = 0; round < 5; round++) {
    cr_assert_eq(fg_dataloader_start_epoch(dl, round, NULL), 0);
    for (int i = 0; i < 3; i++) {
      fg_value *b = NULL;
      cr_assert_eq(fg_dataloader_next(dl, &b, NULL), 0);
      cr_assert_eq(yval(b, 0), i * 4, "a restarted epoch starts from the beginning");
      fg_value_free(b);
    }
  }
  fg_dataloader_free(dl); /* with builds in flight */
  fg_dataset_unref(ds);
}

Test(dataloader, worker_errors_arrive_in_order) {
  fg_dataset *ds = index_dataset(40, 21); /* batch 5 of size 4 fails */
  for (int workers = 0; workers <= 3; workers += 3) {
    fg_dataloader *dl = loader(ds, 4, false, false, workers, 0);
    cr_assert_eq(fg_dataloader_start_epoch(dl, 0, NULL), 0);
    int good = 0, rc = 0;
    char *err = NULL;
    for (;;) {
      fg_value *b = NULL;
      if ((rc = fg_dataloader_next(dl, &b, &err)) != 0 || b == NULL) break;
      good++;
      fg_value_free(b);
    }
    cr_assert_eq(rc, FG_EDATA, "workers=%d", workers);
    cr_assert_eq(good, 5, "workers=%d", workers);
    cr_assert_str_eq(err, "sample 21 is broken");
    free(err);
    fg_dataloader_free(dl);
  }
  fg_dataset_unref(ds);
}

/* Each rank's indices for (n, world, shuffle, seed, epoch) are exactly
 * torch.utils.data.DistributedSampler's (drop_last false) when padded,
 * and every index once across the ranks when not (val, test, predict). */
static void sharded(fg_dataset *ds, int rank, int world, bool shuffle, bool pad, int workers,
                    int64_t epoch, int64_t *order, int64_t *count) {
  fg_dataloader_opts o = {.batch_size = 3, .shuffle = shuffle, .num_workers = workers,
                          .seed = 1234, .rank = rank, .world_size = world, .pad = pad};
  fg_dataloader *dl = NULL;
  char *err = NULL;
  cr_assert_eq(fg_dataloader_create(ds, &o, &dl, &err), 0, "%s", err);
  int64_t sizes[64];
  int64_t nb = epoch_order(dl, epoch, order, sizes);
  *count = 0;
  for (int64_t b = 0; b < nb; b++) *count += sizes[b];
  cr_assert_eq(nb, fg_dataloader_num_batches(dl));
  fg_dataloader_free(dl);
}

Test(dataloader, distributed_sampler_matches_pytorch) {
  const char *py = getenv("FG_PYTHON") ? getenv("FG_PYTHON") : "/usr/bin/python3";
  char cmd[1024];
  /* 11 samples over 3 ranks: 1 padded index; shuffle on and off; 2 epochs. */
  snprintf(cmd, sizeof cmd,
           "'%s' -c 'from torch.utils.data import DistributedSampler as S\n"
           "for sh in (0, 1):\n"
           "  for e in (0, 1):\n"
           "    for r in range(3):\n"
           "      s = S(range(11), num_replicas=3, rank=r, shuffle=bool(sh), seed=1234); s.set_epoch(e)\n"
           "      print(\" \".join(map(str, s)))'",
           py);
  FILE *p = popen(cmd, "r");
  cr_assert_not_null(p);
  fg_dataset *ds = index_dataset(11, -1);
  char line[256];
  for (int sh = 0; sh < 2; sh++)
    for (int e = 0; e < 2; e++)
      for (int r = 0; r < 3; r++) {
        cr_assert_not_null(fgets(line, sizeof line, p), "python gave too few lines");
        int64_t order[16], n;
        sharded(ds, r, 3, sh, true, r == 1 ? 2 : 0, e, order, &n);
        cr_assert_eq(n, 4);
        char *s = line;
        for (int64_t i = 0; i < n; i++) {
          char *end;
          long want = strtol(s, &end, 10);
          cr_assert_neq(end, s, "python line: %s", line);
          cr_assert_eq(order[i], want, "shuffle %d epoch %d rank %d position %lld: %lld, python %ld",
                       sh, e, r, (long long)i, (long long)order[i], want);
          s = end;
        }
      }
  cr_assert_eq(pclose(p), 0);
  /* Unpadded: 11 = 4 + 4 + 3, each index exactly once. */
  int seen[11] = {0};
  for (int r = 0; r < 3; r++) {
    int64_t order[16], n;
    sharded(ds, r, 3, true, false, 0, 5, order, &n);
    cr_assert_eq(n, r < 2 ? 4 : 3);
    for (int64_t i = 0; i < n; i++) seen[order[i]]++;
  }
  for (int i = 0; i < 11; i++) cr_assert_eq(seen[i], 1);
  fg_dataset_unref(ds);
}

/* ---- prefetch_factor and timeout -------------------------------------------- */

typedef struct {
  int64_t n;
  useconds_t delay;
  atomic_int built;
} slow_ds;

static int64_t slow_len(void *self) { return ((slow_ds *)self)->n; }

static int slow_batch(void *self, const int64_t *idx, size_t n, fg_value **out, char **err) {
  slow_ds *d = self;
  usleep(d->delay);
  int64_t shape[1] = {(int64_t)n};
  fg_tensor *y = NULL;
  int rc = fg_tensor_from_data(idx, FG_INT64, shape, 1, &y, err);
  if (rc) return rc;
  *out = fg_value_dict();
  fg_value_dict_set(*out, "y", fg_value_tensor(y));
  atomic_fetch_add(&d->built, 1);
  return 0;
}

static void slow_free(void *self) { free(self); }

static const fg_dataset_vtable slow_vt = {slow_len, slow_batch, slow_free};

/* Batches built ahead with nobody consuming: the ring holds
 * prefetch_factor x num_workers of them (PyTorch's default factor 2). */
Test(dataloader, prefetch_factor_bounds_the_batches_built_ahead) {
  int want[] = {2 * 2, 3 * 2, 1 * 2};
  int factor[] = {0, 3, 1};
  for (int k = 0; k < 3; k++) {
    slow_ds *d = calloc(1, sizeof *d);
    d->n = 40;
    fg_dataset *ds = fg_dataset_create(&slow_vt, d);
    fg_dataloader_opts o = {.batch_size = 2, .num_workers = 2, .prefetch_factor = factor[k]};
    fg_dataloader *dl = NULL;
    char *err = NULL;
    cr_assert_eq(fg_dataloader_create(ds, &o, &dl, &err), 0, "%s", err);
    cr_assert_eq(fg_dataloader_start_epoch(dl, 0, NULL), 0);
    for (int i = 0; i < 200 && atomic_load(&d->built) < want[k]; i++) usleep(5000);
    usleep(50000); /* time for a worker to overrun the ring, if it could */
    cr_assert_eq(atomic_load(&d->built), want[k], "factor %d: %d built", factor[k], atomic_load(&d->built));
    fg_dataloader_free(dl);
    fg_dataset_unref(ds);
  }
}

Test(dataloader, timeout_fails_a_slow_batch_with_pytorchs_words) {
  slow_ds *d = calloc(1, sizeof *d);
  d->n = 4;
  d->delay = 2000000; /* 2 s a batch */
  fg_dataset *ds = fg_dataset_create(&slow_vt, d);
  fg_dataloader_opts o = {.batch_size = 2, .num_workers = 1, .timeout = 0.05};
  fg_dataloader *dl = NULL;
  char *err = NULL;
  cr_assert_eq(fg_dataloader_create(ds, &o, &dl, &err), 0, "%s", err);
  cr_assert_eq(fg_dataloader_start_epoch(dl, 0, NULL), 0);
  fg_value *b = NULL;
  cr_assert_eq(fg_dataloader_next(dl, &b, &err), FG_ERUN);
  cr_assert_null(b);
  cr_assert_str_eq(err, "DataLoader timed out after 0.05 seconds waiting for batch 0");
  free(err);
  err = NULL;
  /* Without a limit the same batch arrives. */
  fg_dataloader_free(dl);
  d = calloc(1, sizeof *d);
  d->n = 4;
  d->delay = 100000;
  fg_dataset_unref(ds);
  ds = fg_dataset_create(&slow_vt, d);
  o.timeout = 0;
  cr_assert_eq(fg_dataloader_create(ds, &o, &dl, &err), 0, "%s", err);
  cr_assert_eq(fg_dataloader_start_epoch(dl, 0, NULL), 0);
  cr_assert_eq(fg_dataloader_next(dl, &b, &err), 0, "%s", err);
  cr_assert_not_null(b);
  fg_value_free(b);
  fg_dataloader_free(dl);
  o.timeout = -1;
  cr_assert_eq(fg_dataloader_create(ds, &o, &dl, &err), FG_EINVAL);
  free(err);
  fg_dataset_unref(ds);
}

/* ---- the data path: batches gathered by index ------------------------------- */

/* A loader's whole epoch of key `key`, batch after batch, as bytes
 * (malloc'd; *len its size). */
static char *epoch_bytes(fg_dataloader *dl, int64_t epoch, const char *key, size_t *len) {
  cr_assert_eq(fg_dataloader_start_epoch(dl, epoch, NULL), 0);
  char *out = NULL;
  *len = 0;
  for (;;) {
    fg_value *b = NULL;
    char *err = NULL;
    cr_assert_eq(fg_dataloader_next(dl, &b, &err), 0, "%s", err);
    if (b == NULL) break;
    fg_tensor *t = fg_value_as_tensor(fg_value_dict_get(b, key));
    size_t n = (size_t)fg_tensor_numel(t) * fg_dtype_size(fg_tensor_dtype(t));
    out = realloc(out, *len + n);
    cr_assert_eq(fg_tensor_copy_out(t, fg_tensor_dtype(t), out + *len, n, NULL), 0);
    *len += n;
    fg_value_free(b);
  }
  return out;
}

static char *read_all(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f, "%s", path);
  fseek(f, 0, SEEK_END);
  *len = (size_t)ftell(f);
  rewind(f);
  char *buf = malloc(*len + 1);
  cr_assert_eq(fread(buf, 1, *len, f), *len);
  fclose(f);
  return buf;
}

TestSuite(data_path, .init = make_dir, .fini = remove_dir);

/* A shuffled epoch with a worker thread gives, batch for batch, exactly
 * what python3-torch gets by indexing its tensors with the same order
 * (TensorDict, a file torch.save wrote), and exactly the batches built
 * one sample at a time (the IDX reader over Debian's Fashion-MNIST, with
 * normalization and a subset). */
Test(data_path, shuffled_batches_equal_pytorch_indexing_and_per_sample_batches) {
  enum { N = 300, BS = 64, SEED = 9, EPOCH = 1 };
  fg_dataset *ids = index_dataset(N, -1);
  fg_dataloader *dl = loader(ids, BS, true, false, 0, SEED);
  int64_t order[N], sizes[N];
  epoch_order(dl, EPOCH, order, sizes);
  fg_dataloader_free(dl);
  fg_dataset_unref(ids);
  FILE *f = fopen(path_in("order.txt"), "w");
  for (int i = 0; i < N; i++) fprintf(f, "%lld\n", (long long)order[i]);
  fclose(f);
  const char *py = getenv("FG_PYTHON") ? getenv("FG_PYTHON") : "/usr/bin/python3";
  char cmd[2048];
  snprintf(cmd, sizeof cmd,
           "'%s' -c 'import torch\n"
           "torch.manual_seed(3)\n"
           "x, y = torch.randn(%d, 3, 4), torch.randint(0, 10, (%d,))\n"
           "torch.save({\"x\": x, \"y\": y}, \"%s/td.pt\")\n"
           "o = torch.tensor([int(l) for l in open(\"%s/order.txt\")])\n"
           "open(\"%s/x.bin\", \"wb\").write(x[o].numpy().tobytes())\n"
           "open(\"%s/y.bin\", \"wb\").write(y[o].numpy().tobytes())'",
           py, N, N, dir, dir, dir, dir);
  cr_assert_eq(system(cmd), 0);
  const char *paths[] = {path_in("td.pt")};
  fg_tensordict_opts to = {.paths = paths, .n_paths = 1};
  fg_dataset *td = NULL;
  char *err = NULL;
  cr_assert_eq(fg_dataset_tensordict_create(&to, &td, &err), 0, "%s", err);
  dl = loader(td, BS, true, false, 1, SEED);
  const char *keys[] = {"x", "y"};
  for (int k = 0; k < 2; k++) {
    size_t got_len, want_len;
    char *got = epoch_bytes(dl, EPOCH, keys[k], &got_len);
    char *want = read_all(path_in(k ? "y.bin" : "x.bin"), &want_len);
    cr_assert_eq(got_len, want_len, "%s: %zu bytes, python %zu", keys[k], got_len, want_len);
    cr_assert(memcmp(got, want, got_len) == 0, "%s: the batches differ from python's x[order]", keys[k]);
    free(got);
    free(want);
  }
  fg_dataloader_free(dl);
  fg_dataset_unref(td);

  /* IDX: the gathered batch against one-sample batches, row by row. */
  fg_idx_opts io = {.images = "/usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz",
                    .labels = "/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz",
                    .mean = 0.2860, .std = 0.3530, .subset_start = 1000, .subset_end = 1000 + N,
                    .has_subset = true};
  fg_dataset *ds = NULL;
  cr_assert_eq(fg_dataset_idx_create(&io, &ds, &err), 0, "%s", err);
  cr_assert_eq(fg_dataset_len(ds), N);
  dl = loader(ds, BS, true, false, 1, SEED);
  size_t xl, yl;
  char *xs = epoch_bytes(dl, EPOCH, "x", &xl), *ys = epoch_bytes(dl, EPOCH, "y", &yl);
  cr_assert_eq(xl, (size_t)N * 784 * sizeof(float));
  cr_assert_eq(yl, (size_t)N * sizeof(int64_t));
  for (int i = 0; i < N; i++) {
    fg_value *one = batch_of(ds, &order[i], 1);
    float row[784];
    int64_t label;
    cr_assert_eq(fg_tensor_copy_out(fg_value_as_tensor(fg_value_dict_get(one, "x")), FG_FLOAT32, row,
                                    sizeof row, NULL), 0);
    cr_assert_eq(fg_tensor_copy_out(fg_value_as_tensor(fg_value_dict_get(one, "y")), FG_INT64, &label,
                                    sizeof label, NULL), 0);
    cr_assert(memcmp(xs + (size_t)i * sizeof row, row, sizeof row) == 0, "sample %d (index %lld)", i,
              (long long)order[i]);
    cr_assert(memcmp(ys + (size_t)i * sizeof label, &label, sizeof label) == 0, "label %d", i);
    fg_value_free(one);
  }
  free(xs);
  free(ys);
  fg_dataloader_free(dl);
  fg_dataset_unref(ds);
}
