/* bench_http_load: fulgurd's HTTP side (see ../README.md), against a
 * running daemon started with --http:
 *   1. GET /v1/jobs/{id} over one keep-alive connection against GetJob
 *      over gRPC (one channel), in interleaved windows, while a job trains;
 *      requests per second and the daemon's CPU per request;
 *   2. SSE delivery latency: worker stamp (JobEvent.time_ns) to the reader;
 *   3. GET /metrics with --jobs jobs known (submitted here first).
 * The HTTP client is a few lines over a socket (HTTP/1.1, Content-Length
 * or chunked bodies), so the client costs the same on both sides. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "fg_rpc.h"
#include "fg_rpc_client.h"
#include "proc_util.h"

static fg_rpc_client *client;
static int http_port;

static double median(double *v, int n) {
  qsort(v, (size_t)n, sizeof *v, cmp_d);
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static double pctl(double *v, size_t n, double p) {
  qsort(v, n, sizeof *v, cmp_d);
  return v[(size_t)(p * (double)(n - 1) + 0.5)];
}

static void die(const char *what) {
  fprintf(stderr, "bench_http_load: %s\n", what);
  exit(1);
}

/* ---- a minimal HTTP/1.1 client ---- */

typedef struct {
  int fd;
  char buf[1 << 16];
  size_t off, len;
} conn;

static void conn_open(conn *c) {
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)http_port)};
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(c->fd, (struct sockaddr *)&a, sizeof a) != 0) die("cannot connect to --http-port");
  int one = 1;
  setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  c->off = c->len = 0;
}

static int conn_byte(conn *c) {
  if (c->off == c->len) {
    ssize_t n = read(c->fd, c->buf, sizeof c->buf);
    if (n <= 0) return -1;
    c->off = 0;
    c->len = (size_t)n;
  }
  return (unsigned char)c->buf[c->off++];
}

/* One line without its CRLF into out (cap bytes); its length or -1. */
static long conn_line(conn *c, char *out, size_t cap) {
  size_t n = 0;
  for (;;) {
    int b = conn_byte(c);
    if (b < 0) return -1;
    if (b == '\n') break;
    if (n + 1 < cap) out[n++] = (char)b;
  }
  if (n && out[n - 1] == '\r') n--;
  out[n] = '\0';
  return (long)n;
}

static void conn_send(conn *c, const char *path, const char *accept) {
  char req[512];
  int n = snprintf(req, sizeof req, "GET %s HTTP/1.1\r\nHost: bench\r\nAccept: %s\r\n\r\n", path, accept);
  if (write(c->fd, req, (size_t)n) != n) die("write");
}

/* One response: its status; the body is read and dropped (*body_len). */
static int conn_response(conn *c, size_t *body_len) {
  char line[8192];
  if (conn_line(c, line, sizeof line) < 0) die("the connection closed");
  int status = atoi(line + 9);
  long cl = -1;
  while (conn_line(c, line, sizeof line) > 0)
    if (strncasecmp(line, "Content-Length:", 15) == 0) cl = atol(line + 15);
  if (cl < 0) die("a response without Content-Length");
  for (long i = 0; i < cl; i++)
    if (conn_byte(c) < 0) die("short body");
  *body_len = (size_t)cl;
  return status;
}

/* ---- gRPC ---- */

static char *submit(const char *config, const char *name) {
  Fulgur__V1__SubmitJobRequest req = FULGUR__V1__SUBMIT_JOB_REQUEST__INIT;
  req.stage = FULGUR__V1__STAGE__FIT;
  req.config_yaml = (char *)config;
  req.name = (char *)name;
  ProtobufCMessage *resp = NULL;
  char *details = NULL;
  if (fg_rpc_call(client, FG_RPC_METHOD("SubmitJob"), &req.base, &fulgur__v1__job__descriptor, 60000, &resp,
                  &details))
    die(details ? details : "SubmitJob failed");
  char *id = strdup(((Fulgur__V1__Job *)resp)->id);
  protobuf_c_message_free_unpacked(resp, NULL);
  return id;
}

static Fulgur__V1__Job *get_job(const char *id) {
  Fulgur__V1__GetJobRequest req = FULGUR__V1__GET_JOB_REQUEST__INIT;
  req.id = (char *)id;
  ProtobufCMessage *resp = NULL;
  char *details = NULL;
  if (fg_rpc_call(client, FG_RPC_METHOD("GetJob"), &req.base, &fulgur__v1__job__descriptor, 0, &resp, &details))
    die(details ? details : "GetJob failed");
  return (Fulgur__V1__Job *)resp;
}

static char *read_file(const char *path) {
  FILE *f = fopen(path, "rb");
  if (!f) die("cannot read --config");
  fseek(f, 0, SEEK_END);
  long n = ftell(f);
  rewind(f);
  char *buf = malloc((size_t)n + 1);
  if (fread(buf, 1, (size_t)n, f) != (size_t)n) n = 0;
  buf[n] = '\0';
  fclose(f);
  return buf;
}

/* ---- 1. GET /v1/jobs/{id} against GetJob ---- */

static void get_rates(const char *id, int pid, double seconds, int rounds) {
  double http_rate[64], grpc_rate[64], http_cpu[64], grpc_cpu[64];
  char path[128];
  snprintf(path, sizeof path, "/v1/jobs/%s", id);
  conn c;
  conn_open(&c);
  for (int r = 0; r < rounds; r++) {
    /* Interleaved: each round measures both, the order alternating. */
    for (int k = 0; k < 2; k++) {
      bool http = (k + r) % 2 == 0;
      double cpu0 = cpu_seconds(pid);
      int64_t t0 = now_ns(), end = t0 + (int64_t)(seconds * 1e9);
      long n = 0;
      while (now_ns() < end) {
        if (http) {
          size_t len;
          conn_send(&c, path, "application/json");
          if (conn_response(&c, &len) != 200) die("GET /v1/jobs/{id} was not 200");
        } else {
          Fulgur__V1__Job *j = get_job(id);
          protobuf_c_message_free_unpacked(&j->base, NULL);
        }
        n++;
      }
      double wall = (double)(now_ns() - t0) / 1e9, cpu = cpu_seconds(pid) - cpu0;
      (http ? http_rate : grpc_rate)[r] = (double)n / wall;
      (http ? http_cpu : grpc_cpu)[r] = cpu / (double)n * 1e6;
    }
  }
  close(c.fd);
  double hr = median(http_rate, rounds), gr = median(grpc_rate, rounds);
  double hc = median(http_cpu, rounds), gc = median(grpc_cpu, rounds);
  printf("GET /v1/jobs/{id} vs GetJob (one client each, sequential, %d rounds of %.1f s, interleaved)\n", rounds,
         seconds);
  printf("  HTTP  median %8.0f req/s (spread %.0f..%.0f)  daemon CPU %6.1f us/req\n", hr, http_rate[0],
         http_rate[rounds - 1], hc);
  printf("  gRPC  median %8.0f req/s (spread %.0f..%.0f)  daemon CPU %6.1f us/req\n", gr, grpc_rate[0],
         grpc_rate[rounds - 1], gc);
  printf("  ratio HTTP/gRPC: rate %.2fx, daemon CPU per request %.2fx\n", hr / gr, hc / gc);
}

/* ---- 2. SSE delivery latency ---- */

static void sse_latency(const char *id, double seconds) {
  conn c;
  conn_open(&c);
  char path[160], line[1 << 16];
  Fulgur__V1__Job *j = get_job(id);
  snprintf(path, sizeof path, "/v1/jobs/%s/events?after_seq=%llu", id, (unsigned long long)j->last_seq);
  protobuf_c_message_free_unpacked(&j->base, NULL);
  conn_send(&c, path, "text/event-stream");
  /* Headers, then chunked data: chunk-size lines and data lines both come
   * as lines; only "data:" lines of step events are timed. */
  while (conn_line(&c, line, sizeof line) > 0) {
  }
  size_t cap = 1 << 16, n = 0;
  double *lat = malloc(cap * sizeof *lat);
  int64_t end = now_ns() + (int64_t)(seconds * 1e9);
  bool step = false;
  while (now_ns() < end && n < cap) {
    if (conn_line(&c, line, sizeof line) < 0) break;
    int64_t t = now_ns();
    if (strcmp(line, "event: step") == 0) step = true;
    if (step && strncmp(line, "data: ", 6) == 0) {
      step = false;
      const char *p = strstr(line, "\"timeNs\":\"");
      if (p) lat[n++] = (double)(t - atoll(p + 10)) / 1e6;
    }
  }
  close(c.fd);
  if (n == 0) die("no step events over SSE");
  double p50 = pctl(lat, n, 0.5), p99 = pctl(lat, n, 0.99), mx = lat[n - 1];
  printf("SSE delivery, worker stamp -> reader (%zu step events over %.1f s)\n", n, seconds);
  printf("  p50 %.2f ms  p99 %.2f ms  max %.2f ms  (target p99 < 50 ms: %s)\n", p50, p99, mx,
         p99 < 50 ? "met" : "MISSED");
  free(lat);
}

/* ---- 3. /metrics with many jobs ---- */

static void metrics_scrape(int pid, int rounds) {
  conn c;
  conn_open(&c);
  double ms[256];
  size_t len = 0;
  if (rounds > 256) rounds = 256;
  /* The daemon's CPU over every scrape: /proc counts in 10 ms ticks, too
   * coarse for one. */
  double c0 = cpu_seconds(pid);
  for (int r = 0; r < rounds; r++) {
    int64_t t0 = now_ns();
    conn_send(&c, "/metrics", "text/plain");
    if (conn_response(&c, &len) != 200) die("GET /metrics was not 200");
    ms[r] = (double)(now_ns() - t0) / 1e6;
  }
  double cpu = (cpu_seconds(pid) - c0) * 1e3 / rounds;
  close(c.fd);
  double p50 = median(ms, rounds), mx = ms[rounds - 1];
  printf("GET /metrics (%zu bytes, %d scrapes)\n", len, rounds);
  printf("  median %.2f ms (spread %.2f..%.2f)  daemon CPU %.2f ms/scrape  (target < 50 ms: %s)\n", p50, ms[0],
         mx, cpu, mx < 50 ? "met" : "MISSED");
}

int main(int argc, char **argv) {
  const char *server = NULL, *config_path = NULL, *mode = "all";
  int pid = 0, rounds = 5, jobs = 1000;
  double seconds = 2;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--server") == 0) server = argv[i + 1];
    else if (strcmp(argv[i], "--http-port") == 0) http_port = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--config") == 0) config_path = argv[i + 1];
    else if (strcmp(argv[i], "--daemon-pid") == 0) pid = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--seconds") == 0) seconds = atof(argv[i + 1]);
    else if (strcmp(argv[i], "--rounds") == 0) rounds = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--jobs") == 0) jobs = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--mode") == 0) mode = argv[i + 1];
    else die("usage: bench_http_load --server S --http-port P --config F --daemon-pid PID [--seconds S] "
             "[--rounds N] [--jobs N] [--mode rates|metrics]");
  }
  if (!server || !http_port || !config_path || !pid || rounds < 1 || rounds > 64) die("missing arguments");
  fg_rpc_client_opts o = {.target = server};
  char *details = NULL;
  if (fg_rpc_client_create(&o, &client, &details)) die(details);
  char *config = read_file(config_path);
  if (strcmp(mode, "metrics") == 0) {
    /* Jobs queued behind one that trains: every one is known to /metrics. */
    for (int i = 0; i < jobs; i++) {
      char name[32];
      snprintf(name, sizeof name, "bench-%d", i);
      free(submit(config, name));
    }
    metrics_scrape(pid, 50);
  } else {
    char *id = submit(config, "bench");
    for (;;) {
      Fulgur__V1__Job *j = get_job(id);
      bool going = j->state == FULGUR__V1__JOB_STATE__RUNNING && j->progress && j->progress->global_step > 0;
      protobuf_c_message_free_unpacked(&j->base, NULL);
      if (going) break;
      usleep(20000);
    }
    get_rates(id, pid, seconds, rounds);
    sse_latency(id, seconds * 2);
    free(id);
  }
  free(config);
  fg_rpc_client_free(client);
  return 0;
}
