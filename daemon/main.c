/* fulgurd: the fulgur daemon. Takes jobs over gRPC (fulgur.v1.JobService),
 * keeps them and their events in SQLite under --state-dir, runs each in a
 * worker process, and serves health and reflection on the same port.
 * No libtorch in this process: the engine runs in fulgur-worker. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include "checker.h"
#include "daemon.h"
#include "http/http.h"
#include "rlimits.h"
#include "util/blas_kernel.h"
#include "util/bytes.h"
#include "util/xalloc.h"

#ifndef FG_VERSION
#define FG_VERSION "0.0.0"
#endif

static void usage(FILE *f) {
  fprintf(f,
          "usage: fulgurd [--state-dir DIR] [--listen unix:PATH | --listen HOST:PORT ...]\n"
          "               [--max-jobs N] [--max-queue N] [--root DIR ...] [--token-file F]\n"
          "               [--tls-cert F --tls-key F] [--kill-grace-ms MS] [--check-timeout-ms MS]\n"
          "               [--max-request-bytes N] [--state-max-bytes N] [--worker PATH]\n"
          "               [--http HOST:PORT] [--metrics-retain DURATION]\n"
          "               [--job-memory-limit BYTES] [--check-memory-limit BYTES]\n"
          "               [--check-cpu-seconds S]\n"
          "\n"
          "  --state-dir      jobs and events (SQLite); default $XDG_STATE_HOME/fulgur\n"
          "                   or ~/.local/state/fulgur\n"
          "  --listen         default unix:$XDG_RUNTIME_DIR/fulgur.sock, else\n"
          "                   unix:/tmp/fulgur-$UID.sock (mode 0600); TCP only when given\n"
          "  --max-jobs       jobs running at once (default 1); the rest wait in order\n"
          "  --max-queue      jobs waiting at most (default 1000): RESOURCE_EXHAUSTED beyond\n"
          "  --root           folders a job's files must lie in (repeatable; default the\n"
          "                   working directory); the state dir's jobs/ is always allowed\n"
          "  --token-file     every RPC but health needs 'authorization: Bearer <token>'\n"
          "  --kill-grace-ms  after a cancel, how long a worker may take to stop (10000)\n"
          "  --check-timeout-ms  how long SubmitJob's config check may take before the\n"
          "                   checker is killed and the submit fails (60000)\n"
          "  --http           also serve HTTP there: /healthz, /metrics, REST under /v1/,\n"
          "                   Server-Sent Events, the dashboard at /; TLS, token and\n"
          "                   limits as for gRPC (port 0 picks a free port)\n"
          "  --metrics-retain how long a finished job stays in /metrics (1h; 90s, 15m, 2d)\n"
          "  --job-memory-limit  each job's worker address space (4096, 512M, 2G; default\n"
          "                   none); a job's memory_limit key may lower it, not raise it\n"
          "  --check-memory-limit  the config checker's address space (default 4G)\n"
          "  --check-cpu-seconds  CPU time one config check may use (default 30)\n");
}

static char *default_state_dir(void) {
  const char *x = getenv("XDG_STATE_HOME");
  if (x && x[0]) return fg__xasprintf("%s/fulgur", x);
  const char *h = getenv("HOME");
  return fg__xasprintf("%s/.local/state/fulgur", h && h[0] ? h : "/tmp");
}

static char *default_listen(void) {
  const char *x = getenv("XDG_RUNTIME_DIR");
  if (x && x[0]) return fg__xasprintf("unix:%s/fulgur.sock", x);
  return fg__xasprintf("unix:/tmp/fulgur-%u.sock", (unsigned)getuid());
}

static int mkdir_p(const char *path) {
  char *p = fg__xstrdup(path);
  for (char *s = p + 1; *s; s++)
    if (*s == '/') {
      *s = '\0';
      if (mkdir(p, 0700) != 0 && errno != EEXIST) {
        free(p);
        return -1;
      }
      *s = '/';
    }
  int rc = mkdir(p, 0700) != 0 && errno != EEXIST ? -1 : 0;
  free(p);
  return rc;
}

static char *read_token(const char *path, char **err) {
  FILE *f = fopen(path, "r");
  if (!f) {
    *err = fg__xasprintf("--token-file '%s': %s", path, strerror(errno));
    return NULL;
  }
  char buf[4096];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  while (n && (buf[n - 1] == '\n' || buf[n - 1] == '\r' || buf[n - 1] == ' ')) buf[--n] = '\0';
  if (n == 0) {
    *err = fg__xasprintf("--token-file '%s' is empty", path);
    return NULL;
  }
  return fg__xstrdup(buf);
}

static char *self_dir(void) {
  char buf[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  if (n <= 0) return fg__xstrdup(".");
  buf[n] = '\0';
  char *slash = strrchr(buf, '/');
  if (slash) *slash = '\0';
  return fg__xstrdup(buf);
}

static uv_signal_t sig_term, sig_int;

static void on_server_down(void *ctx) {
  fgd *d = ctx;
  fgd_worker_kill_all(d);
  if (d->checker) fgd_checker_close(d->checker);
  d->checker = NULL;
  fgd_flush(d);
  fgd_http_stop(d->http);
  d->http = NULL;
  uv_close((uv_handle_t *)&d->flush_timer, NULL);
  /* The signal handles stay open to the end, only unreferenced: closing a
   * signal's last handle gives it back its default action, and one more
   * SIGTERM (a second Ctrl-C, an impatient supervisor) would then kill the
   * daemon half way through its exit. on_signal ignores it. */
  uv_unref((uv_handle_t *)&sig_term);
  uv_unref((uv_handle_t *)&sig_int);
}

/* Counts the loop's handles other than the signal handles. */
static void count_open(uv_handle_t *h, void *arg) {
  if (h != (uv_handle_t *)&sig_term && h != (uv_handle_t *)&sig_int && !uv_is_closing(h)) ++*(int *)arg;
}

static void on_signal(uv_signal_t *s, int signum) {
  fgd *d = s->data;
  if (d->shutting_down) return;
  fprintf(stderr, "fulgurd: %s: shutting down\n", strsignal(signum));
  d->shutting_down = true;
  fgd_flush(d);
  /* Submits still waiting for their config check are answered now
   * (UNAVAILABLE), while their calls can be: once the gRPC server is down
   * its completion queue is gone, and answering one then aborts in gRPC. */
  fgd_checker_close(d->checker);
  d->checker = NULL;
  fgd_http_drain(d->http);
  fgd_server_shutdown(d->server, 2000, on_server_down, d);
}

int main(int argc, char **argv) {
  fgd d = {0};
  fgd_opts *o = &d.opts;
  o->max_jobs = 1;
  o->max_queue = 1000;
  o->kill_grace_ms = 10000;
  o->check_timeout_ms = 60000;
  o->max_request_bytes = 4u << 20;
  o->metrics_retain_ns = 3600 * 1000000000LL;
  o->check_memory_limit = FGD_CHECK_MEMORY_LIMIT;
  o->check_cpu_seconds = FGD_CHECK_CPU_SECONDS;
  o->listen = fg__xcalloc((size_t)argc + 1, sizeof *o->listen);
  const char **roots_arg = fg__xcalloc((size_t)argc + 1, sizeof *roots_arg);
  size_t n_roots_arg = 0;
  char *state_default = NULL, *listen_default = NULL, *worker_default = NULL;
  int arg_code = -1; /* >= 0: exit with it once the arguments are read */
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--help") == 0 || strcmp(a, "-h") == 0) {
      usage(stdout);
      arg_code = 0;
      break;
    }
    if (strcmp(a, "--version") == 0) {
      printf("fulgurd %s\n", FG_VERSION);
      arg_code = 0;
      break;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "fulgurd: %s needs a value\n", a);
      usage(stderr);
      arg_code = 2;
      break;
    }
    const char *v = argv[++i];
    char *end = NULL;
    long long num = strtoll(v, &end, 10);
    bool is_num = end && *end == '\0' && end != v && num >= 0;
    uint64_t bytes = 0;
    bool is_bytes = fg__bytes_parse(v, &bytes) == 0;
    if (strcmp(a, "--state-dir") == 0) o->state_dir = v;
    else if (strcmp(a, "--listen") == 0) o->listen[o->n_listen++] = v;
    else if (strcmp(a, "--root") == 0) roots_arg[n_roots_arg++] = v;
    else if (strcmp(a, "--token-file") == 0) o->token_file = v;
    else if (strcmp(a, "--tls-cert") == 0) o->tls_cert = v;
    else if (strcmp(a, "--tls-key") == 0) o->tls_key = v;
    else if (strcmp(a, "--worker") == 0) o->worker_path = v;
    else if (strcmp(a, "--http") == 0) o->http = v;
    else if (strcmp(a, "--metrics-retain") == 0 && fgd_http_parse_duration(v, &o->metrics_retain_ns) == 0) {
    }
    else if (is_num && num >= 1 && num <= 256 && strcmp(a, "--max-jobs") == 0) o->max_jobs = (int)num;
    else if (is_num && num >= 1 && num <= 1000000 && strcmp(a, "--max-queue") == 0) o->max_queue = (int)num;
    else if (is_num && num <= 3600000 && strcmp(a, "--kill-grace-ms") == 0) o->kill_grace_ms = (unsigned)num;
    else if (is_num && num >= 100 && num <= 3600000 && strcmp(a, "--check-timeout-ms") == 0)
      o->check_timeout_ms = (unsigned)num;
    else if (is_num && num >= 1024 && num <= (1ll << 30) && strcmp(a, "--max-request-bytes") == 0)
      o->max_request_bytes = (size_t)num;
    else if (is_num && strcmp(a, "--state-max-bytes") == 0) o->state_max_bytes = num;
    else if (is_bytes && strcmp(a, "--job-memory-limit") == 0) o->job_memory_limit = bytes;
    else if (is_bytes && strcmp(a, "--check-memory-limit") == 0) o->check_memory_limit = bytes;
    else if (is_num && num >= 1 && num <= 86400 && strcmp(a, "--check-cpu-seconds") == 0)
      o->check_cpu_seconds = (unsigned)num;
    else {
      fprintf(stderr, "fulgurd: bad option or value: %s %s\n", a, v);
      usage(stderr);
      arg_code = 2;
      break;
    }
  }
  if (arg_code < 0 && !o->tls_cert != !o->tls_key) {
    fprintf(stderr, "fulgurd: --tls-cert and --tls-key go together\n");
    arg_code = 2;
  }
  if (arg_code >= 0) {
    free(o->listen);
    free(roots_arg);
    return arg_code;
  }
  if (!o->state_dir) o->state_dir = state_default = default_state_dir();
  if (o->n_listen == 0) o->listen[o->n_listen++] = listen_default = default_listen();
  char *exe_dir = self_dir();
  if (!o->worker_path) o->worker_path = worker_default = fg__xasprintf("%s/fulgur-worker", exe_dir);
  free(exe_dir);

  /* The workers and the checker inherit this environment: an OpenBLAS
   * kernel choice made here is theirs from their first instruction, and
   * none of them has to execute itself again (util/blas_kernel.h). */
  fg__blas_kernel_prepare_env();

  int code = 1;
  char *err = NULL;
  int lock_fd = -1;
  char *lock_path = NULL, *db_path = NULL;
  char **roots = fg__xcalloc(n_roots_arg + 2, sizeof *roots);
  size_t n_roots = 0;
  uv_loop_t *loop = uv_default_loop();
  d.loop = loop;
  d.by_id = fgd_map_create();
  d.by_key = fgd_map_create();
  signal(SIGPIPE, SIG_IGN);

  if (mkdir_p(o->state_dir) != 0) {
    fprintf(stderr, "fulgurd: cannot create --state-dir '%s': %s\n", o->state_dir, strerror(errno));
    goto done;
  }
  d.jobs_dir = fg__xasprintf("%s/jobs", o->state_dir);
  if (mkdir_p(d.jobs_dir) != 0) {
    fprintf(stderr, "fulgurd: cannot create '%s': %s\n", d.jobs_dir, strerror(errno));
    goto done;
  }
  /* One daemon per state dir: two would hand out the same seqs. */
  lock_path = fg__xasprintf("%s/fulgurd.lock", o->state_dir);
  lock_fd = open(lock_path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0 || flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    fprintf(stderr, "fulgurd: another fulgurd is using --state-dir '%s'\n", o->state_dir);
    goto done;
  }
  /* Roots as real paths, so a symlink cannot dress one folder as another. */
  char *jobs_real = realpath(d.jobs_dir, NULL);
  free(d.jobs_dir);
  d.jobs_dir = jobs_real;
  roots[n_roots++] = fg__xstrdup(jobs_real);
  if (n_roots_arg == 0) roots_arg[n_roots_arg++] = ".";
  for (size_t i = 0; i < n_roots_arg; i++) {
    char *r = realpath(roots_arg[i], NULL);
    if (!r) {
      fprintf(stderr, "fulgurd: --root '%s': %s\n", roots_arg[i], strerror(errno));
      goto done;
    }
    roots[n_roots++] = r;
  }
  o->roots = (const char **)roots;
  o->n_roots = n_roots;
  if (access(o->worker_path, X_OK) != 0) {
    fprintf(stderr, "fulgurd: the worker '%s' is not executable: %s\n", o->worker_path, strerror(errno));
    goto done;
  }
  if (o->token_file && !(d.token = read_token(o->token_file, &err))) {
    fprintf(stderr, "fulgurd: %s\n", err);
    goto done;
  }
  db_path = fg__xasprintf("%s/fulgurd.db", o->state_dir);
  if (fgd_store_open(db_path, o->state_max_bytes, &d.store, &err)) {
    fprintf(stderr, "fulgurd: %s\n", err);
    goto done;
  }
  uv_timer_init(loop, &d.flush_timer);
  d.flush_timer.data = &d;
  if (fgd_recover(&d, &err)) {
    fprintf(stderr, "fulgurd: %s\n", err);
    uv_close((uv_handle_t *)&d.flush_timer, NULL);
    goto done;
  }
  /* Before the gRPC server, so a failure here has nothing else to take
   * down; no handler runs before the loop does. */
  if (o->http) {
    fgd_http_opts ho = {.listen = o->http,
                        .tls_cert = o->tls_cert,
                        .tls_key = o->tls_key,
                        .token = d.token,
                        .max_request_bytes = o->max_request_bytes,
                        .metrics_retain_ns = o->metrics_retain_ns,
#ifdef FGD_CHARTJS_PATH
                        .chartjs_path = FGD_CHARTJS_PATH
#endif
    };
    if (fgd_http_start(&d, &ho, &d.http, &err)) {
      fprintf(stderr, "fulgurd: %s\n", err);
      uv_close((uv_handle_t *)&d.flush_timer, NULL);
      goto done;
    }
  }
  fgd_server_opts so = {.listen = o->listen,
                        .n_listen = o->n_listen,
                        .tls_cert_file = o->tls_cert,
                        .tls_key_file = o->tls_key,
                        .token = d.token,
                        .max_request_bytes = o->max_request_bytes};
  /* The threads gRPC and the call queue start here inherit this mask, so
   * SIGTERM, SIGINT and SIGCHLD (libuv's child watcher) land on the loop's
   * thread. Landing on a gRPC thread parked in a futex (absl, not
   * instrumented), ThreadSanitizer holds a signal until that thread wakes:
   * a SIGTERM waited there for good (test_daemon_limits under make
   * tsan-test). */
  sigset_t loop_only, mask;
  sigemptyset(&loop_only);
  sigaddset(&loop_only, SIGTERM);
  sigaddset(&loop_only, SIGINT);
  sigaddset(&loop_only, SIGCHLD);
  pthread_sigmask(SIG_BLOCK, &loop_only, &mask);
  int started = fgd_server_start(loop, &so, fgd_rpc_on_call, &d, &d.server, &err);
  pthread_sigmask(SIG_SETMASK, &mask, NULL);
  if (started) {
    fprintf(stderr, "fulgurd: %s\n", err);
    fgd_http_stop(d.http);
    d.http = NULL;
    uv_close((uv_handle_t *)&d.flush_timer, NULL);
    goto done;
  }
  /* Warm before the first SubmitJob: the checker loads libtorch once. */
  d.checker = fgd_checker_create(loop, o->worker_path, d.jobs_dir, o->check_timeout_ms,
                                 o->check_memory_limit, o->check_cpu_seconds);
  uv_signal_init(loop, &sig_term);
  uv_signal_init(loop, &sig_int);
  sig_term.data = sig_int.data = &d;
  uv_signal_start(&sig_term, on_signal, SIGTERM);
  uv_signal_start(&sig_int, on_signal, SIGINT);
  for (size_t i = 0; i < o->n_listen; i++) fprintf(stderr, "fulgurd: serving on %s\n", o->listen[i]);
  if (d.http) fprintf(stderr, "fulgurd: serving HTTP%s on port %d\n", o->tls_cert ? "S" : "", fgd_http_port(d.http));
  if (!fgd_address_space_limits_work() && (o->job_memory_limit || o->check_memory_limit))
    fprintf(stderr, "fulgurd: warning: built with a sanitizer, which reserves terabytes of address space per "
                    "process: --job-memory-limit and --check-memory-limit are not applied\n");
  fprintf(stderr, "fulgurd: state in %s, %zu jobs known, up to %d at once\n", o->state_dir, d.n_jobs,
          o->max_jobs);
  fgd_schedule(&d);
  uv_run(loop, UV_RUN_DEFAULT);
  code = 0;
done:
  uv_run(loop, UV_RUN_DEFAULT); /* lets closing handles finish */
  /* The loop is not closed: the signal handles stay open to the end (see
   * on_server_down). Anything else still open is a leak. */
  int left = 0;
  uv_walk(loop, count_open, &left);
  if (left) fprintf(stderr, "fulgurd: warning: handles left open at exit\n");
  fgd_store_close(d.store);
  fgd_jobs_free(&d);
  free(d.token);
  free(d.jobs_dir);
  for (size_t i = 0; i < n_roots; i++) free(roots[i]);
  free(roots);
  free(roots_arg);
  free(o->listen);
  free(state_default);
  free(listen_default);
  free(worker_default);
  free(lock_path);
  free(db_path);
  free(err);
  if (lock_fd >= 0) close(lock_fd);
  return code;
}
