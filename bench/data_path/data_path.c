/* bench_data_path: what the data path costs beside the step it feeds.
 *
 * From a fulgur config (model, optimizer, data), on one intra-op thread:
 * the fit loader's time per batch alone (index, gather, copy; on the
 * caller's thread when num_workers is 0), and a training step's time per
 * batch alone (zero_grad, forward, loss, backward, optimizer step, the
 * loss read back) over batches taken ahead. The two are interleaved in
 * ROUNDS rounds of N batches each, so the machine's drift hits both
 * alike; printed: medians and min..max of wall and CPU (this thread's
 * user + system) per batch, and the ratio of the loader's median to the
 * step's.
 *
 * usage: bench_data_path CONFIG ROUNDS N */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "fulgur/config.h"
#include "fulgur/data.h"
#include "fulgur/error.h"
#include "fulgur/module.h"
#include "fulgur/optim.h"
#include "fulgur/registry.h"
#include "fulgur/run.h"
#include "fulgur/torch.h"

#define RING 8

typedef struct {
  double wall, cpu;
} sample;

static sample now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  struct rusage ru;
  getrusage(RUSAGE_THREAD, &ru);
  sample s = {(double)ts.tv_sec + (double)ts.tv_nsec * 1e-9,
              (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec * 1e-6 +
                  (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec * 1e-6};
  return s;
}

static int cmp(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static void report(const char *what, double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp);
  printf("%s %9.1f us (%.1f..%.1f)", what, v[n / 2] * 1e6, v[0] * 1e6, v[n - 1] * 1e6);
}

static int die(const char *what, char *err) {
  fprintf(stderr, "bench_data_path: %s: %s\n", what, err ? err : "failed");
  free(err);
  return 1;
}

/* The next batch, starting another epoch when one ends. */
static int next(fg_dataloader *dl, int64_t *epoch, fg_value **out, char **err) {
  int rc = fg_dataloader_next(dl, out, err);
  if (rc == 0 && *out == NULL && (rc = fg_dataloader_start_epoch(dl, ++*epoch, err)) == 0)
    rc = fg_dataloader_next(dl, out, err);
  return rc;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: bench_data_path CONFIG ROUNDS N\n");
    return 2;
  }
  int rounds = atoi(argv[2]), n = atoi(argv[3]);
  if (rounds < 1 || n < 1) return die("arguments", NULL);
  char *err = NULL;
  fg_node *cfg = NULL;
  if (fg_config_load_file(argv[1], &cfg, &err) || fg_config_check_stage(cfg, FG_STAGE_FIT, true, &err))
    return die(argv[1], err);
  if (fg_torch_set_num_threads(1, &err)) return die("threads", err);
  fg_torch_manual_seed(1);
  void *obj = NULL;
  if (fg_registry_create(fg_node_get(cfg, "model"), "model", FG_KIND_MODULE, &obj, NULL, &err))
    return die("model", err);
  fg_module *m = obj;
  if (fg_registry_create(fg_node_get(cfg, "data"), "data", FG_KIND_DATAMODULE, &obj, NULL, &err))
    return die("data", err);
  fg_datamodule *dm = obj;
  fg_datamodule_set_seed(dm, 1);
  fg_optim_set *os = NULL;
  if (fg_optim_set_build(fg_node_get(cfg, "optimizer_config"), "optimizer_config", m, &os, &err))
    return die("optimizer_config", err);
  fg_dataloader *dl = NULL;
  int64_t epoch = 0;
  if (fg_datamodule_loader(dm, "fit", 0, &dl, &err) || fg_dataloader_start_epoch(dl, 0, &err))
    return die("fit loader", err);
  fg_module_train(m, true);

  fg_value *ring[RING];
  for (int i = 0; i < RING; i++)
    if (next(dl, &epoch, &ring[i], &err)) return die("batch", err);
  double *lw = calloc((size_t)rounds, sizeof *lw), *lc = calloc((size_t)rounds, sizeof *lc);
  double *sw = calloc((size_t)rounds, sizeof *sw), *sc = calloc((size_t)rounds, sizeof *sc);
  /* One round of each outside the timings: pages touched, the optimizer's
   * state allocated. */
  for (int r = -1; r < rounds; r++) {
    sample a = now();
    for (int i = 0; i < n; i++) {
      fg_value *b = NULL;
      if (next(dl, &epoch, &b, &err)) return die("batch", err);
      fg_value_free(b);
    }
    sample b = now();
    for (int i = 0; i < n; i++) {
      for (size_t k = 0; k < os->n; k++)
        if (fg_optimizer_zero_grad(os->opts[k], &err)) return die("zero_grad", err);
      fg_step_result res;
      double loss;
      if (fg_module_forward_step(m, FG_SPLIT_FIT, 0, ring[i % RING], &res, &err) ||
          fg_tensor_backward(res.loss, &err))
        return die("step", err);
      for (size_t k = 0; k < os->n; k++)
        if (fg_optimizer_step(os->opts[k], &err)) return die("optimizer step", err);
      if (fg_tensor_item(res.loss, &loss, &err)) return die("loss", err);
      fg_step_result_clear(&res);
    }
    sample c = now();
    if (r < 0) continue;
    lw[r] = (b.wall - a.wall) / n, lc[r] = (b.cpu - a.cpu) / n;
    sw[r] = (c.wall - b.wall) / n, sc[r] = (c.cpu - b.cpu) / n;
  }
  printf("  batch size %lld, %d rounds of %d batches: median (min..max) per batch\n",
         (long long)fg_dataloader_batch_size(dl), rounds, n);
  printf("  loader");
  report("  wall", lw, rounds);
  report("  cpu", lc, rounds);
  printf("\n  step  ");
  report("  wall", sw, rounds);
  report("  cpu", sc, rounds);
  printf("\n  loader/step wall ratio of medians: %.2f%% (target < 5%%)\n",
         100.0 * lw[rounds / 2] / sw[rounds / 2]);
  for (int i = 0; i < RING; i++) fg_value_free(ring[i]);
  free(lw), free(lc), free(sw), free(sc);
  fg_optim_set_free(os);
  fg_datamodule_free(dm);
  fg_module_free(m);
  fg_node_free(cfg);
  return 0;
}
