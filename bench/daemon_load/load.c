/* bench_daemon_load: what a busy control plane costs a training job.
 *
 *   bench_daemon_load --server unix:PATH --config FILE [--seconds 10] [--watchers 100]
 *                     [--getjob-threads 4]
 *
 * Two runs of the same fit job on a running fulgurd:
 *   1. alone: no client but this one waiting for the end;
 *   2. loaded: 100 WatchJob streams open on it, and GetJob called back to
 *      back for --seconds by 4 threads pinned together on one core (the
 *      "one client core": a blocking call leaves its core idle while it
 *      waits, so one thread alone measures latency, not the rate).
 * Training speed of each run is read from the job's own step events (their
 * time stamps are the worker's), over the same window of global steps, so
 * start-up and shutdown cancel out. Printed: GetJob calls/s with p50/p99
 * latency, event delivery latency (worker's stamp -> a watcher has it)
 * p50/p99, and loaded steps/s divided by alone steps/s. */
#include <pthread.h>
#include <sched.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fg_rpc.h"
#include "fg_rpc_client.h"

static fg_rpc_client *client;

static int64_t now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static int cmp_i64(const void *a, const void *b) {
  int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
  return x < y ? -1 : x > y;
}

static double pct(int64_t *v, size_t n, double p) {
  if (n == 0) return -1;
  qsort(v, n, sizeof *v, cmp_i64);
  size_t i = (size_t)(p * (double)(n - 1) + 0.5);
  return (double)v[i] / 1e3; /* us */
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

static void die(const char *what, grpc_status_code st, char *details) {
  fprintf(stderr, "bench_daemon_load: %s: %s: %s\n", what, fg_rpc_status_name(st), details ? details : "");
  free(details);
  exit(1);
}

static Fulgur__V1__Job *get_job(const char *id) {
  Fulgur__V1__GetJobRequest req = FULGUR__V1__GET_JOB_REQUEST__INIT;
  req.id = (char *)id;
  ProtobufCMessage *resp = NULL;
  char *details = NULL;
  grpc_status_code st = fg_rpc_call(client, FG_RPC_METHOD("GetJob"), &req.base,
                                    &fulgur__v1__job__descriptor, 0, &resp, &details);
  if (st) die("GetJob", st, details);
  return (Fulgur__V1__Job *)resp;
}

static char *submit(const char *config) {
  Fulgur__V1__SubmitJobRequest req = FULGUR__V1__SUBMIT_JOB_REQUEST__INIT;
  req.stage = FULGUR__V1__STAGE__FIT;
  req.config_yaml = (char *)config;
  req.name = "bench";
  ProtobufCMessage *resp = NULL;
  char *details = NULL;
  grpc_status_code st = fg_rpc_call(client, FG_RPC_METHOD("SubmitJob"), &req.base,
                                    &fulgur__v1__job__descriptor, 60000, &resp, &details);
  if (st) die("SubmitJob", st, details);
  char *id = strdup(((Fulgur__V1__Job *)resp)->id);
  protobuf_c_message_free_unpacked(resp, NULL);
  return id;
}

static Fulgur__V1__JobState wait_state(const char *id, bool (*done)(Fulgur__V1__JobState)) {
  for (;;) {
    Fulgur__V1__Job *j = get_job(id);
    Fulgur__V1__JobState s = j->state;
    protobuf_c_message_free_unpacked(&j->base, NULL);
    if (done(s)) return s;
    struct timespec ts = {0, 20000000};
    nanosleep(&ts, NULL);
  }
}

static bool is_running(Fulgur__V1__JobState s) { return s != FULGUR__V1__JOB_STATE__QUEUED; }
static bool is_final(Fulgur__V1__JobState s) {
  return s == FULGUR__V1__JOB_STATE__SUCCEEDED || s == FULGUR__V1__JOB_STATE__FAILED ||
         s == FULGUR__V1__JOB_STATE__CANCELLED;
}

/* (global_step, worker time) of every step event, in order. */
typedef struct {
  int64_t *step, *t;
  size_t n;
} steps;

static steps step_events(const char *id) {
  steps s = {0};
  size_t cap = 0;
  uint64_t after = 0;
  for (;;) {
    Fulgur__V1__ListJobEventsRequest req = FULGUR__V1__LIST_JOB_EVENTS_REQUEST__INIT;
    req.id = (char *)id;
    req.after_seq = after;
    req.page_size = 5000;
    ProtobufCMessage *resp = NULL;
    char *details = NULL;
    grpc_status_code st = fg_rpc_call(client, FG_RPC_METHOD("ListJobEvents"), &req.base,
                                      &fulgur__v1__list_job_events_response__descriptor, 0, &resp,
                                      &details);
    if (st) die("ListJobEvents", st, details);
    Fulgur__V1__ListJobEventsResponse *r = (Fulgur__V1__ListJobEventsResponse *)resp;
    for (size_t i = 0; i < r->n_events; i++) {
      Fulgur__V1__JobEvent *e = r->events[i];
      if (e->kind_case != FULGUR__V1__JOB_EVENT__KIND_STEP) continue;
      if (s.n == cap) {
        cap = cap ? 2 * cap : 1024;
        s.step = realloc(s.step, cap * sizeof *s.step);
        s.t = realloc(s.t, cap * sizeof *s.t);
      }
      s.step[s.n] = e->step->global_step;
      s.t[s.n++] = e->time_ns;
    }
    after = r->last_seq;
    bool more = r->more;
    protobuf_c_message_free_unpacked(resp, NULL);
    if (!more) break;
  }
  return s;
}

/* Steps per second between the first event at or after step a and the
 * first at or after step b. */
static double rate(const steps *s, int64_t a, int64_t b) {
  size_t i = 0, k;
  while (i < s->n && s->step[i] < a) i++;
  for (k = i; k < s->n && s->step[k] < b; k++) {
  }
  if (i >= s->n || k >= s->n || k == i) return -1;
  return (double)(s->step[k] - s->step[i]) / ((double)(s->t[k] - s->t[i]) / 1e9);
}

typedef struct {
  const char *id;
  int64_t *lat;
  size_t n, cap;
  int64_t first_step, last_step;
  grpc_status_code status;
} watcher;

static void *watch_main(void *arg) {
  watcher *w = arg;
  Fulgur__V1__WatchJobRequest req = FULGUR__V1__WATCH_JOB_REQUEST__INIT;
  req.id = (char *)w->id;
  fg_rpc_stream *s = NULL;
  char *details = NULL;
  grpc_status_code st = fg_rpc_stream_open(client, FG_RPC_METHOD("WatchJob"), &req.base,
                                           &fulgur__v1__job_event__descriptor, 0, &s, &details);
  if (st) die("WatchJob", st, details);
  ProtobufCMessage *m;
  while (fg_rpc_stream_read(s, -1, &m) == FG_RPC_READ_MESSAGE) {
    Fulgur__V1__JobEvent *e = (Fulgur__V1__JobEvent *)m;
    if (e->kind_case == FULGUR__V1__JOB_EVENT__KIND_STEP) {
      /* Only live events measure delivery: the replay of old ones at
       * connect time is not what a watcher waits for. */
      int64_t lat = now_ns() - e->time_ns;
      if (w->n == w->cap) {
        w->cap = w->cap ? 2 * w->cap : 1024;
        w->lat = realloc(w->lat, w->cap * sizeof *w->lat);
      }
      if (w->first_step) w->lat[w->n++] = lat;
      else w->first_step = e->step->global_step;
      w->last_step = e->step->global_step;
    }
    protobuf_c_message_free_unpacked(m, NULL);
  }
  w->status = fg_rpc_stream_status(s, NULL);
  fg_rpc_stream_free(s);
  return NULL;
}

typedef struct {
  const char *id;
  int64_t t_end;
  int64_t *lat;
  size_t n, cap;
  int64_t last_step;
  int cpu;
} getter;

static void *get_main(void *arg) {
  getter *g = arg;
  cpu_set_t set;
  CPU_ZERO(&set);
  CPU_SET(g->cpu, &set);
  pthread_setaffinity_np(pthread_self(), sizeof set, &set);
  int64_t t;
  while ((t = now_ns()) < g->t_end) {
    Fulgur__V1__Job *j = get_job(g->id);
    int64_t dt = now_ns() - t;
    g->last_step = j->progress->global_step;
    protobuf_c_message_free_unpacked(&j->base, NULL);
    if (g->n == g->cap) {
      g->cap = g->cap ? 2 * g->cap : 1 << 16;
      g->lat = realloc(g->lat, g->cap * sizeof *g->lat);
    }
    g->lat[g->n++] = dt;
  }
  return NULL;
}

int main(int argc, char **argv) {
  const char *server = NULL, *config_path = NULL;
  double seconds = 10;
  int n_watchers = 100, n_getters = 4;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--server") == 0) server = argv[i + 1];
    else if (strcmp(argv[i], "--config") == 0) config_path = argv[i + 1];
    else if (strcmp(argv[i], "--seconds") == 0) seconds = atof(argv[i + 1]);
    else if (strcmp(argv[i], "--watchers") == 0) n_watchers = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--getjob-threads") == 0) n_getters = atoi(argv[i + 1]);
  }
  char *config = config_path ? read_file(config_path) : NULL;
  if (!server || !config) {
    fprintf(stderr, "usage: bench_daemon_load --server ADDR --config FILE [--seconds S] [--watchers N]\n");
    return 2;
  }
  char *details = NULL;
  fg_rpc_client_opts o = {.target = server};
  grpc_status_code st = fg_rpc_client_create(&o, &client, &details);
  if (st) die("connect", st, details);

  /* 1. Alone. */
  char *alone = submit(config);
  wait_state(alone, is_final);
  steps sa = step_events(alone);

  /* 2. Loaded. */
  char *loaded = submit(config);
  wait_state(loaded, is_running);
  watcher *ws = calloc((size_t)n_watchers, sizeof *ws);
  pthread_t *th = calloc((size_t)n_watchers, sizeof *th);
  for (int i = 0; i < n_watchers; i++) {
    ws[i].id = loaded;
    pthread_create(&th[i], NULL, watch_main, &ws[i]);
  }
  Fulgur__V1__Job *j0 = get_job(loaded);
  int64_t step0 = j0->progress->global_step;
  protobuf_c_message_free_unpacked(&j0->base, NULL);
  int64_t t_start = now_ns();
  /* The last core: the job's worker usually runs on another. */
  int cpu = (int)sysconf(_SC_NPROCESSORS_ONLN) - 1;
  getter *gs = calloc((size_t)n_getters, sizeof *gs);
  pthread_t *gth = calloc((size_t)n_getters, sizeof *gth);
  for (int i = 0; i < n_getters; i++) {
    gs[i] = (getter){.id = loaded, .t_end = t_start + (int64_t)(seconds * 1e9), .cpu = cpu};
    pthread_create(&gth[i], NULL, get_main, &gs[i]);
  }
  size_t n = 0;
  int64_t step1 = step0;
  for (int i = 0; i < n_getters; i++) {
    pthread_join(gth[i], NULL);
    n += gs[i].n;
    if (gs[i].last_step > step1) step1 = gs[i].last_step;
  }
  int64_t *lat = malloc((n + 1) * sizeof *lat);
  for (int i = 0, k = 0; i < n_getters; i++) {
    memcpy(lat + k, gs[i].lat, gs[i].n * sizeof *lat);
    k += (int)gs[i].n;
    free(gs[i].lat);
  }
  free(gs);
  free(gth);
  double elapsed = (double)(now_ns() - t_start) / 1e9;
  Fulgur__V1__JobState end = wait_state(loaded, is_final);
  for (int i = 0; i < n_watchers; i++) pthread_join(th[i], NULL);
  steps sl = step_events(loaded);

  size_t total = 0, bad = 0;
  for (int i = 0; i < n_watchers; i++) {
    total += ws[i].n;
    if (ws[i].status != GRPC_STATUS_OK) bad++;
  }
  int64_t *all = malloc((total + 1) * sizeof *all);
  size_t k = 0;
  for (int i = 0; i < n_watchers; i++) {
    memcpy(all + k, ws[i].lat, ws[i].n * sizeof *all);
    k += ws[i].n;
    free(ws[i].lat);
  }
  double r_alone = rate(&sa, step0, step1), r_loaded = rate(&sl, step0, step1);
  printf("GetJob over %s, %d client threads on one core, %.1f s: %zu calls, %.0f calls/s, "
         "p50 %.0f us, p99 %.0f us\n",
         server, n_getters, elapsed, n, (double)n / elapsed, pct(lat, n, 0.5), pct(lat, n, 0.99));
  printf("watchers: %d streams, %zu live step events delivered, %zu streams ended non-OK; "
         "delivery p50 %.1f ms, p99 %.1f ms (worker stamp -> watcher)\n",
         n_watchers, total, bad, pct(all, total, 0.5) / 1e3, pct(all, total, 0.99) / 1e3);
  printf("training over steps %lld..%lld: alone %.0f steps/s, under load %.0f steps/s, ratio %.3f (job %s)\n",
         (long long)step0, (long long)step1, r_alone, r_loaded, r_loaded / r_alone,
         fg_rpc_state_name(end));
  free(all);
  free(lat);
  free(ws);
  free(th);
  free(sa.step);
  free(sa.t);
  free(sl.step);
  free(sl.t);
  free(alone);
  free(loaded);
  free(config);
  fg_rpc_client_free(client);
  return end == FULGUR__V1__JOB_STATE__SUCCEEDED ? 0 : 1;
}
