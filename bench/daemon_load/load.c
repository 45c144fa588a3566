/* bench_daemon_load: what a busy control plane costs a training job, and
 * what fulgurd adds over gRPC itself.
 *
 *   bench_daemon_load --server unix:PATH --config FILE --echo unix:PATH --daemon-pid PID
 *                     [--seconds 3] [--rounds 3] [--watchers 100] [--getjob-threads 4]
 *                     [--max-steps 40000]
 *
 * Two runs of the same fit job on a running fulgurd:
 *   1. alone: no client but this one waiting for the end;
 *   2. loaded: 100 WatchJob streams open on it, and for --rounds rounds,
 *      three windows of --seconds each, in an order that alternates from
 *      round to round: watchers only; GetJob called back to back by 4
 *      threads pinned together on one core (the "one client core": a
 *      blocking call leaves its core idle while it waits, so one thread
 *      alone measures latency, not the rate); and the same threads, the
 *      same client code, calling a bare gRPC C-core echo server
 *      (bench_echo_server, echo.c) instead.
 * Per round: GetJob calls/s as a ratio to the echo server's (target >=
 * 0.8); the daemon's CPU time (user+sys, /proc/PID/stat) per delivered
 * event (watchers-only window) and per GetJob (its window, less the
 * watchers' share at the watchers-only rate). Training speed is read from
 * the job's own step events (the worker's time stamps) over each GetJob
 * window's global steps, against the alone run over the same steps.
 * Printed: each round, then the median and spread (min..max) of each. */
#include <pthread.h>
#include <sched.h>
#include <unistd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "fg_rpc.h"
#include "fg_rpc_client.h"
#include "proc_util.h"

static fg_rpc_client *client, *echo_client;
static volatile long delivered; /* live step events received by all watchers */

/* "median M (spread lo..hi)" of v[0..n). */
static void print_spread(const char *what, double *v, int n, const char *unit) {
  qsort(v, (size_t)n, sizeof *v, cmp_d);
  double med = n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
  printf("  %-34s median %10.3f %s (spread %.3f..%.3f over %d rounds)\n", what, med, unit, v[0],
         v[n - 1], n);
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

/* GetJob, or the same request to the echo server (its bytes come back and
 * read as a Job whose id is the request's). */
static Fulgur__V1__Job *get_job_via(fg_rpc_client *cl, const char *method, const char *id) {
  Fulgur__V1__GetJobRequest req = FULGUR__V1__GET_JOB_REQUEST__INIT;
  req.id = (char *)id;
  ProtobufCMessage *resp = NULL;
  char *details = NULL;
  grpc_status_code st = fg_rpc_call(cl, method, &req.base, &fulgur__v1__job__descriptor, 0, &resp,
                                    &details);
  if (st) die(method, st, details);
  return (Fulgur__V1__Job *)resp;
}

static Fulgur__V1__Job *get_job(const char *id) {
  return get_job_via(client, FG_RPC_METHOD("GetJob"), id);
}

static char *submit(const char *config, char *override) {
  Fulgur__V1__SubmitJobRequest req = FULGUR__V1__SUBMIT_JOB_REQUEST__INIT;
  req.stage = FULGUR__V1__STAGE__FIT;
  req.config_yaml = (char *)config;
  req.name = "bench";
  req.n_overrides = 1;
  req.overrides = &override;
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
      if (w->first_step) {
        w->lat[w->n++] = lat;
        __atomic_add_fetch(&delivered, 1, __ATOMIC_RELAXED);
      } else {
        w->first_step = e->step->global_step;
      }
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
  fg_rpc_client *cl;
  const char *method;
  int64_t t_end;
  int64_t *lat;
  size_t n, cap;
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
    Fulgur__V1__Job *j = get_job_via(g->cl, g->method, g->id);
    int64_t dt = now_ns() - t;
    protobuf_c_message_free_unpacked(&j->base, NULL);
    if (g->n == g->cap) {
      g->cap = g->cap ? 2 * g->cap : 1 << 16;
      g->lat = realloc(g->lat, g->cap * sizeof *g->lat);
    }
    g->lat[g->n++] = dt;
  }
  return NULL;
}

static int64_t job_step(const char *id) {
  Fulgur__V1__Job *j = get_job(id);
  int64_t step = j->progress ? j->progress->global_step : 0;
  protobuf_c_message_free_unpacked(&j->base, NULL);
  return step;
}

/* One window of n_getters threads calling method on cl for seconds; the
 * latencies (ns) in *lat (caller frees), the count returned. */
static size_t getjob_window(fg_rpc_client *cl, const char *method, const char *id, int n_getters,
                            double seconds, int64_t **lat) {
  /* The last core: the job's worker usually runs on another. */
  int cpu = (int)sysconf(_SC_NPROCESSORS_ONLN) - 1;
  getter *gs = calloc((size_t)n_getters, sizeof *gs);
  pthread_t *gth = calloc((size_t)n_getters, sizeof *gth);
  int64_t t_end = now_ns() + (int64_t)(seconds * 1e9);
  for (int i = 0; i < n_getters; i++) {
    gs[i] = (getter){.id = id, .cl = cl, .method = method, .t_end = t_end, .cpu = cpu};
    pthread_create(&gth[i], NULL, get_main, &gs[i]);
  }
  size_t n = 0;
  for (int i = 0; i < n_getters; i++) {
    pthread_join(gth[i], NULL);
    n += gs[i].n;
  }
  *lat = malloc((n + 1) * sizeof **lat);
  for (int i = 0, k = 0; i < n_getters; i++) {
    memcpy(*lat + k, gs[i].lat, gs[i].n * sizeof **lat);
    k += (int)gs[i].n;
    free(gs[i].lat);
  }
  free(gs);
  free(gth);
  return n;
}

int main(int argc, char **argv) {
  const char *server = NULL, *config_path = NULL, *echo = NULL;
  double seconds = 3;
  int n_watchers = 100, n_getters = 4, rounds = 3, daemon_pid = 0;
  long max_steps = 40000;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--server") == 0) server = argv[i + 1];
    else if (strcmp(argv[i], "--config") == 0) config_path = argv[i + 1];
    else if (strcmp(argv[i], "--echo") == 0) echo = argv[i + 1];
    else if (strcmp(argv[i], "--daemon-pid") == 0) daemon_pid = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--seconds") == 0) seconds = atof(argv[i + 1]);
    else if (strcmp(argv[i], "--rounds") == 0) rounds = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--watchers") == 0) n_watchers = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--getjob-threads") == 0) n_getters = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--max-steps") == 0) max_steps = atol(argv[i + 1]);
  }
  char *config = config_path ? read_file(config_path) : NULL;
  if (!server || !config || !echo || daemon_pid <= 0 || rounds < 1) {
    fprintf(stderr, "usage: bench_daemon_load --server ADDR --config FILE --echo ADDR --daemon-pid PID "
                    "[--seconds S] [--rounds R] [--watchers N] [--getjob-threads N] [--max-steps N]\n");
    return 2;
  }
  char *details = NULL;
  fg_rpc_client_opts o = {.target = server};
  grpc_status_code st = fg_rpc_client_create(&o, &client, &details);
  if (st) die("connect", st, details);
  fg_rpc_client_opts eo = {.target = echo};
  st = fg_rpc_client_create(&eo, &echo_client, &details);
  if (st) die("connect to the echo server", st, details);
  char *steps_arg = malloc(64);
  snprintf(steps_arg, 64, "--trainer.max_steps=%ld", max_steps);

  /* 1. Alone. */
  char *alone = submit(config, steps_arg);
  wait_state(alone, is_final);
  steps sa = step_events(alone);

  /* 2. Loaded. */
  char *loaded = submit(config, steps_arg);
  wait_state(loaded, is_running);
  watcher *ws = calloc((size_t)n_watchers, sizeof *ws);
  pthread_t *th = calloc((size_t)n_watchers, sizeof *th);
  for (int i = 0; i < n_watchers; i++) {
    ws[i].id = loaded;
    pthread_create(&th[i], NULL, watch_main, &ws[i]);
  }
  /* Let the watchers connect and replay before anything is measured. */
  sleep(1);
  double *ratio = calloc((size_t)rounds, sizeof *ratio), *d_rate = calloc((size_t)rounds, sizeof *d_rate),
         *e_rate = calloc((size_t)rounds, sizeof *e_rate), *cpu_get = calloc((size_t)rounds, sizeof *cpu_get),
         *cpu_ev = calloc((size_t)rounds, sizeof *cpu_ev), *d_p50 = calloc((size_t)rounds, sizeof *d_p50),
         *e_p50 = calloc((size_t)rounds, sizeof *e_p50), *train = calloc((size_t)rounds, sizeof *train);
  int64_t *win_a = calloc((size_t)rounds, sizeof *win_a), *win_b = calloc((size_t)rounds, sizeof *win_b);
  for (int r = 0; r < rounds; r++) {
    double w_cpu = 0, w_s = 0, g_cpu = 0, g_s = 0;
    long w_ev = 0;
    size_t g_n = 0, e_n = 0;
    /* The order of the three windows turns each round. */
    for (int k = 0; k < 3; k++) {
      int which = (k + r) % 3; /* 0 watchers only, 1 GetJob, 2 echo */
      long ev0 = __atomic_load_n(&delivered, __ATOMIC_RELAXED);
      double c0 = cpu_seconds(daemon_pid);
      int64_t t0 = now_ns(), s0 = which == 1 ? job_step(loaded) : 0;
      int64_t *lat = NULL;
      size_t n = 0;
      if (which == 0) {
        struct timespec ts = {(time_t)seconds, (long)((seconds - (double)(time_t)seconds) * 1e9)};
        nanosleep(&ts, NULL);
      } else {
        n = getjob_window(which == 1 ? client : echo_client,
                          which == 1 ? FG_RPC_METHOD("GetJob") : "/fulgur.bench.Echo/Echo", loaded,
                          n_getters, seconds, &lat);
      }
      double dt = (double)(now_ns() - t0) / 1e9, dc = cpu_seconds(daemon_pid) - c0;
      if (which == 0) {
        w_cpu = dc;
        w_s = dt;
        w_ev = __atomic_load_n(&delivered, __ATOMIC_RELAXED) - ev0;
      } else if (which == 1) {
        g_cpu = dc;
        g_s = dt;
        g_n = n;
        d_rate[r] = (double)n / dt;
        d_p50[r] = pct(lat, n, 0.5);
        win_a[r] = s0;
        win_b[r] = job_step(loaded);
      } else {
        e_n = n;
        e_rate[r] = (double)n / dt;
        e_p50[r] = pct(lat, n, 0.5);
      }
      free(lat);
    }
    ratio[r] = d_rate[r] / e_rate[r];
    cpu_ev[r] = w_ev ? w_cpu / (double)w_ev * 1e6 : -1;
    cpu_get[r] = g_n ? (g_cpu - (w_s > 0 ? w_cpu / w_s * g_s : 0)) / (double)g_n * 1e6 : -1;
    (void)e_n;
    printf("round %d: GetJob %.0f calls/s (p50 %.0f us), echo %.0f calls/s (p50 %.0f us), ratio %.3f; "
           "daemon CPU %.1f us per GetJob, %.1f us per delivered event (%ld events in %.1f s)\n",
           r + 1, d_rate[r], d_p50[r], e_rate[r], e_p50[r], ratio[r], cpu_get[r], cpu_ev[r], w_ev, w_s);
    fflush(stdout);
  }
  /* The measured windows are done: the job need not train to its end. */
  Fulgur__V1__CancelJobRequest creq = FULGUR__V1__CANCEL_JOB_REQUEST__INIT;
  creq.id = loaded;
  ProtobufCMessage *cresp = NULL;
  if (fg_rpc_call(client, FG_RPC_METHOD("CancelJob"), &creq.base, &fulgur__v1__job__descriptor, 0,
                  &cresp, &details) == GRPC_STATUS_OK)
    protobuf_c_message_free_unpacked(cresp, NULL);
  free(details);
  details = NULL;
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
  int n_train = 0;
  for (int r = 0; r < rounds; r++) {
    double ra = rate(&sa, win_a[r], win_b[r]), rl = rate(&sl, win_a[r], win_b[r]);
    if (ra > 0 && rl > 0) train[n_train++] = rl / ra;
  }
  printf("GetJob over %s and the echo server over %s, %d client threads on one core, %.1f s windows:\n",
         server, echo, n_getters, seconds);
  print_spread("GetJob calls/s", d_rate, rounds, "/s");
  print_spread("echo calls/s", e_rate, rounds, "/s");
  print_spread("GetJob / echo (target >= 0.8)", ratio, rounds, "x");
  print_spread("GetJob p50 latency", d_p50, rounds, "us");
  print_spread("echo p50 latency", e_p50, rounds, "us");
  print_spread("daemon CPU per GetJob", cpu_get, rounds, "us");
  print_spread("daemon CPU per delivered event", cpu_ev, rounds, "us");
  printf("watchers: %d streams, %zu live step events delivered, %zu streams ended non-OK; "
         "delivery p50 %.1f ms, p99 %.1f ms (worker stamp -> watcher)\n",
         n_watchers, total, bad, pct(all, total, 0.5) / 1e3, pct(all, total, 0.99) / 1e3);
  if (n_train) print_spread("training under GetJob load / alone", train, n_train, "x");
  free(all);
  free(ws);
  free(th);
  free(ratio);
  free(d_rate);
  free(e_rate);
  free(cpu_get);
  free(cpu_ev);
  free(d_p50);
  free(e_p50);
  free(train);
  free(win_a);
  free(win_b);
  free(sa.step);
  free(sa.t);
  free(sl.step);
  free(sl.t);
  free(alone);
  free(loaded);
  free(config);
  free(steps_arg);
  fg_rpc_client_free(client);
  fg_rpc_client_free(echo_client);
  return end == FULGUR__V1__JOB_STATE__CANCELLED || end == FULGUR__V1__JOB_STATE__SUCCEEDED ? 0 : 1;
}
