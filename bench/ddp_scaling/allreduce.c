/* bench_ddp_allreduce: the all-reduce a DDP step pays, alone.
 *
 *   bench_ddp_allreduce --sizes 803840,1024,... [--iters 50]
 *
 * Forks a second rank; both join a c10d Gloo group on the loopback
 * (fg_dist, the engine's own) and all-reduce (average) tensors of the given
 * element counts — a model's parameter sizes — in DDP's 25 MiB buckets,
 * as the trainer does after backward. Prints the median time per
 * all-reduce of the whole set. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fulgur/dist.h"
#include "fulgur/torch.h"

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static int run_rank(int rank, int port, int64_t *sizes, size_t n, int iters, double *median_ms) {
  char *err = NULL;
  fg_torch_set_num_threads(1, &err);
  fg_dist_opts o = {.rank = rank, .world_size = 2, .master_addr = "127.0.0.1",
                    .master_port = port, .timeout_s = 60};
  fg_dist *d = NULL;
  if (fg_dist_create(&o, &d, &err)) {
    fprintf(stderr, "rank %d: %s\n", rank, err);
    return 1;
  }
  fg_tensor **ts = calloc(n, sizeof *ts);
  for (size_t i = 0; i < n; i++) fg_tensor_zeros(&sizes[i], 1, FG_FLOAT32, &ts[i], &err);
  double *t = calloc((size_t)iters, sizeof *t);
  int rc = 0;
  for (int k = -3; k < iters && rc == 0; k++) { /* 3 warm-up rounds */
    double t0 = now_s();
    rc = fg_dist_allreduce(d, ts, n, FG_DIST_AVG, 0, &err);
    if (k >= 0) t[k] = (now_s() - t0) * 1e3;
  }
  if (rc) fprintf(stderr, "rank %d: %s\n", rank, err);
  qsort(t, (size_t)iters, sizeof *t, cmp_d);
  *median_ms = t[iters / 2];
  for (size_t i = 0; i < n; i++) fg_tensor_free(ts[i]);
  free(ts);
  free(t);
  fg_dist_free(d);
  free(err);
  return rc ? 1 : 0;
}

int main(int argc, char **argv) {
  const char *sizes_arg = NULL;
  int iters = 50;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--sizes") == 0) sizes_arg = argv[i + 1];
    else if (strcmp(argv[i], "--iters") == 0) iters = atoi(argv[i + 1]);
  }
  if (!sizes_arg || iters < 1) {
    fprintf(stderr, "usage: bench_ddp_allreduce --sizes N,N,... [--iters K]\n");
    return 2;
  }
  int64_t sizes[256];
  size_t n = 0;
  int64_t total = 0;
  for (char *s = strdup(sizes_arg), *tok = strtok(s, ","), *keep = s; tok || (free(keep), 0);
       tok = strtok(NULL, ","))
    if (n < 256) total += sizes[n++] = atoll(tok);
  /* A free port: rank 0 picks any (0) and could tell rank 1 only through a
   * store it does not have yet, so pick one from the pid instead. */
  int port = 20000 + (int)(getpid() % 20000);
  pid_t child = fork();
  if (child == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    double ms;
    _exit(run_rank(1, port, sizes, n, iters, &ms));
  }
  double ms = 0;
  int rc = run_rank(0, port, sizes, n, iters, &ms);
  int st = 0;
  waitpid(child, &st, 0);
  if (rc || !WIFEXITED(st) || WEXITSTATUS(st) != 0) return 1;
  printf("all-reduce of %zu tensors, %lld floats (%.1f MB), 2 ranks on the loopback: median %.3f ms\n",
         n, (long long)total, (double)total * 4 / 1e6, ms);
  return 0;
}
