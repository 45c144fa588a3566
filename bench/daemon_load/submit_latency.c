/* bench_submit_latency: how long SubmitJob takes while a job trains.
 *
 *   bench_submit_latency --server unix:PATH --config FILE [--submits 50]
 *
 * Submits the config once (trained for as long as the submits take) and
 * waits until that job runs, then submits it
 * --submits more times, one after another (each waits in the queue behind
 * the first; a valid config, so every call goes through the full config
 * check), timing each call. Prints p50, p99, min and max in ms, then
 * cancels every job it made. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fg_rpc.h"
#include "fg_rpc_client.h"

static fg_rpc_client *client;

static double now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static int cmp_d(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return x < y ? -1 : x > y;
}

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) return NULL;
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  rewind(f);
  char *buf = malloc((size_t)n + 1);
  if (fread(buf, 1, (size_t)n, f) != (size_t)n) n = 0;
  buf[n] = '\0';
  fclose(f);
  return buf;
}

static Fulgur__V1__Job *call(const char *method, const ProtobufCMessage *req, bool may_fail) {
  ProtobufCMessage *resp = NULL;
  char *details = NULL;
  grpc_status_code st = fg_rpc_call(client, method, req, &fulgur__v1__job__descriptor, 120000, &resp,
                                    &details);
  if (st && may_fail) {
    free(details);
    return NULL;
  }
  if (st) {
    fprintf(stderr, "bench_submit_latency: %s: %s: %s\n", method, fg_rpc_status_name(st),
            details ? details : "");
    exit(1);
  }
  return (Fulgur__V1__Job *)resp;
}

static char *submit(const char *config, const char *name, char *override) {
  Fulgur__V1__SubmitJobRequest req = FULGUR__V1__SUBMIT_JOB_REQUEST__INIT;
  req.stage = FULGUR__V1__STAGE__FIT;
  req.config_yaml = (char *)config;
  req.name = (char *)name;
  if (override) {
    req.n_overrides = 1;
    req.overrides = &override;
  }
  Fulgur__V1__Job *j = call(FG_RPC_METHOD("SubmitJob"), &req.base, false);
  char *id = strdup(j->id);
  protobuf_c_message_free_unpacked(&j->base, NULL);
  return id;
}

int main(int argc, char **argv) {
  const char *server = NULL, *config_path = NULL;
  int n = 50;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--server") == 0) server = argv[i + 1];
    else if (strcmp(argv[i], "--config") == 0) config_path = argv[i + 1];
    else if (strcmp(argv[i], "--submits") == 0) n = atoi(argv[i + 1]);
  }
  char *config = config_path ? read_file(config_path) : NULL;
  if (!server || !config || n < 1) {
    fprintf(stderr, "usage: bench_submit_latency --server ADDR --config FILE [--submits N]\n");
    return 2;
  }
  char *details = NULL;
  fg_rpc_client_opts o = {.target = server};
  if (fg_rpc_client_create(&o, &client, &details)) {
    fprintf(stderr, "bench_submit_latency: connect: %s\n", details ? details : "");
    return 1;
  }
  char **ids = calloc((size_t)n + 1, sizeof *ids);
  /* Long enough to train through every submit, however slow they are;
   * cancelled at the end. */
  ids[0] = submit(config, "training", "--trainer.max_steps=100000000");
  for (;;) {
    Fulgur__V1__GetJobRequest g = FULGUR__V1__GET_JOB_REQUEST__INIT;
    g.id = ids[0];
    Fulgur__V1__Job *j = call(FG_RPC_METHOD("GetJob"), &g.base, false);
    Fulgur__V1__JobState s = j->state;
    int64_t step = j->progress ? j->progress->global_step : 0;
    protobuf_c_message_free_unpacked(&j->base, NULL);
    if (s == FULGUR__V1__JOB_STATE__RUNNING && step > 0) break;
    if (s != FULGUR__V1__JOB_STATE__QUEUED && s != FULGUR__V1__JOB_STATE__RUNNING) {
      fprintf(stderr, "bench_submit_latency: the training job ended before the submits\n");
      return 1;
    }
    struct timespec ts = {0, 20000000};
    nanosleep(&ts, NULL);
  }
  double *ms = calloc((size_t)n, sizeof *ms);
  for (int i = 0; i < n; i++) {
    double t = now_ms();
    ids[i + 1] = submit(config, "probe", NULL);
    ms[i] = now_ms() - t;
  }
  for (int i = n; i >= 0; i--) {
    Fulgur__V1__CancelJobRequest c = FULGUR__V1__CANCEL_JOB_REQUEST__INIT;
    c.id = ids[i];
    Fulgur__V1__Job *j = call(FG_RPC_METHOD("CancelJob"), &c.base, true);
    if (j) protobuf_c_message_free_unpacked(&j->base, NULL);
    free(ids[i]);
  }
  qsort(ms, (size_t)n, sizeof *ms, cmp_d);
  printf("SubmitJob while a job trains: %d calls, p50 %.2f ms, p99 %.2f ms, min %.2f ms, max %.2f ms\n",
         n, ms[n / 2], ms[(size_t)(0.99 * (n - 1) + 0.5)], ms[0], ms[n - 1]);
  free(ms);
  free(ids);
  free(config);
  fg_rpc_client_free(client);
  return 0;
}
