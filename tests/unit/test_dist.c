/* fg_dist: c10d's TCPStore and Gloo group from C, with two real processes
 * (this test and a forked child) on loopback sockets. */
#include <arpa/inet.h>
#include <criterion/criterion.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fulgur/dist.h"
#include "fulgur/error.h"
#include "fulgur/torch.h"

/* A port nobody listens on right now (the kernel's pick for port 0). */
static int free_port(void) {
  int s = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof a), 0);
  socklen_t len = sizeof a;
  cr_assert_eq(getsockname(s, (struct sockaddr *)&a, &len), 0);
  close(s);
  return ntohs(a.sin_port);
}

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int join(int rank, int world, int port, double timeout, fg_dist **d, char **err) {
  fg_dist_opts o = {.rank = rank, .world_size = world, .master_addr = "127.0.0.1",
                    .master_port = port, .timeout_s = timeout};
  return fg_dist_create(&o, d, err);
}

/* The whole exchange, run by both ranks; returns 0 when every check
 * passes (the child reports through its exit status). */
static int exchange(int rank, int port, char **err) {
  fg_dist *d = NULL;
  int rc = join(rank, 2, port, 20, &d, err);
  if (rc) return 10;
  if (fg_dist_rank(d) != rank || fg_dist_world_size(d) != 2) return 11;
  /* Many small tensors through 64-byte buckets: several collectives, each
   * tensor back in place. */
  enum { K = 40 };
  fg_tensor *ts[K];
  for (int i = 0; i < K; i++) {
    int64_t shape[2] = {3, i % 5 + 1};
    if (fg_tensor_zeros(shape, 2, FG_FLOAT32, &ts[i], err)) return 12;
    if (fg_tensor_fill_(ts[i], (rank + 1) * (i + 1), err)) return 12;
  }
  if (fg_dist_allreduce(d, ts, K, FG_DIST_AVG, 64, err)) return 13;
  for (int i = 0; i < K; i++) {
    float v[15];
    int64_t n = fg_tensor_numel(ts[i]);
    if (fg_tensor_copy_out(ts[i], FG_FLOAT32, v, (size_t)n * sizeof(float), err)) return 14;
    for (int64_t j = 0; j < n; j++)
      if (v[j] != 1.5f * (float)(i + 1)) return 15;
  }
  if (fg_dist_allreduce(d, ts, 1, FG_DIST_SUM, 0, err)) return 16;
  double x;
  fg_tensor *row = NULL;
  fg_op_slice(ts[0], 0, 1, &row, err);
  fg_tensor *s = NULL;
  fg_op_sum(row, &s, err);
  fg_tensor_item(s, &x, err);
  if (x != 3.0) return 17; /* 1.5 summed over 2 ranks, one element */
  fg_tensor_free(row);
  fg_tensor_free(s);
  /* Broadcast: rank 0's values everywhere. */
  fg_tensor_fill_(ts[1], rank == 0 ? 7 : -1, err);
  if (fg_dist_broadcast(d, &ts[1], 1, 0, err)) return 18;
  if (fg_op_sum(ts[1], &s, err) || fg_tensor_item(s, &x, err)) return 19;
  fg_tensor_free(s);
  if (x != 7.0 * (double)fg_tensor_numel(ts[1])) return 20;
  for (int i = 0; i < K; i++) fg_tensor_free(ts[i]);
  /* Bytes of different lengths, in rank order. */
  const char *mine = rank == 0 ? "zero" : "rank one";
  char **bufs = NULL;
  size_t *lens = NULL;
  if (fg_dist_allgather_bytes(d, mine, strlen(mine), &bufs, &lens, err)) return 21;
  if (lens[0] != 4 || strcmp(bufs[0], "zero") != 0 || lens[1] != 8 || strcmp(bufs[1], "rank one"))
    return 22;
  free(bufs[0]);
  free(bufs[1]);
  free(bufs);
  free(lens);
  /* The store: set by one, read by the other; add counts both. */
  char key[16];
  snprintf(key, sizeof key, "k%d", rank);
  if (fg_dist_store_set(d, key, mine, strlen(mine), err)) return 23;
  char *got = NULL;
  size_t glen = 0;
  if (fg_dist_store_get(d, rank == 0 ? "k1" : "k0", &got, &glen, err)) return 24;
  if (strcmp(got, rank == 0 ? "rank one" : "zero") != 0) return 25;
  free(got);
  int64_t v = 0;
  if (fg_dist_store_add(d, "count", 1, &v, err) || v < 1 || v > 2) return 26;
  bool found = true;
  if (fg_dist_store_try_get(d, "never", 0.05, &found, &got, &glen, err) || found) return 27;
  if (fg_dist_barrier(d, err)) return 28;
  fg_dist_free(d);
  return 0;
}

Test(dist, two_ranks_collectives_and_store) {
  int port = free_port();
  pid_t pid = fork();
  cr_assert_neq(pid, -1);
  if (pid == 0) {
    char *err = NULL;
    int r = exchange(1, port, &err);
    if (r) fprintf(stderr, "rank 1: check %d: %s\n", r, err ? err : "");
    _exit(r);
  }
  char *err = NULL;
  int r = exchange(0, port, &err);
  int status = 0;
  waitpid(pid, &status, 0);
  cr_assert_eq(r, 0, "rank 0: check %d: %s", r, err ? err : "");
  cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "rank 1 failed: status %d", status);
  free(err);
}

Test(dist, unreachable_master_fails_within_timeout) {
  int port = free_port();
  fg_dist *d = NULL;
  char *err = NULL;
  double t0 = now_s();
  int rc = join(1, 2, port, 1.0, &d, &err);
  double dt = now_s() - t0;
  cr_assert_eq(rc, FG_ETORCH);
  cr_assert_null(d);
  cr_assert(strstr(err, "cannot reach the rendezvous store at 127.0.0.1:") != NULL, "%s", err);
  cr_assert(dt < 10, "took %.1f s", dt);
  free(err);
}

Test(dist, bad_rank_is_an_error) {
  fg_dist *d = NULL;
  char *err = NULL;
  cr_assert_eq(join(2, 2, 29500, 1, &d, &err), FG_ETORCH);
  cr_assert(strstr(err, "rank 2 is outside 0..1") != NULL, "%s", err);
  free(err);
}

/* A peer that dies after the rendezvous: the survivor's collective fails
 * within the timeout instead of hanging. */
Test(dist, dead_peer_fails_collective) {
  int port = free_port();
  pid_t pid = fork();
  cr_assert_neq(pid, -1);
  if (pid == 0) {
    fg_dist *d = NULL;
    if (join(1, 2, port, 20, &d, NULL)) _exit(1);
    raise(SIGKILL);
  }
  fg_dist *d = NULL;
  char *err = NULL;
  cr_assert_eq(join(0, 2, port, 3, &d, &err), 0, "%s", err);
  int64_t shape[1] = {4};
  fg_tensor *t = NULL;
  cr_assert_eq(fg_tensor_zeros(shape, 1, FG_FLOAT32, &t, NULL), 0);
  int status;
  waitpid(pid, &status, 0);
  double t0 = now_s();
  int rc = fg_dist_allreduce(d, &t, 1, FG_DIST_SUM, 0, &err);
  cr_assert_eq(rc, FG_ETORCH);
  cr_assert(now_s() - t0 < 10);
  fg_tensor_free(t);
  fg_dist_free(d);
  free(err);
}
