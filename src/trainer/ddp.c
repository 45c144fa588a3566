/* strategy: ddp — distributed data-parallel training on torch.distributed
 * (c10d's TCPStore and Gloo group, through fulgur/dist.h).
 *
 * Who is which rank. With torchrun's environment (WORLD_SIZE, RANK,
 * MASTER_ADDR, MASTER_PORT, optionally LOCAL_RANK and NODE_RANK) the
 * process joins as that rank; that is how torchrun, a Kubeflow PyTorchJob
 * or Slurm start fulgur, one `fulgur fit` per rank. Without it, and with
 * devices: N > 1, the process that called fg_run becomes rank 0 and starts
 * ranks 1..N-1 itself: each is the small `fulgur-rank` executable (built
 * from src/rank/), given the checked config in a temporary file and
 * torchrun's variables, so the spawned ranks take exactly the torchrun
 * path. A dedicated executable, rather than re-running /proc/self/exe,
 * because fg_run is called from different programs (the fulgur command,
 * the daemon's worker, Python through ctypes) and none of them should have
 * to know how to be a rank. It is looked up as $FULGUR_RANK_EXE, then next
 * to the running program, then next to libfulgur.so and in
 * <libdir>/../libexec/fulgur/. Children are forked and exec'd at once (no
 * libtorch work between fork and exec), die with rank 0
 * (PR_SET_PDEATHSIG), and their stderr reaches rank 0's stderr line by
 * line with a "[rank R] " prefix; the last lines are kept for the error
 * message when a child fails.
 *
 * Rendezvous (before the Gloo group is built, so that a wrong start fails
 * at once with a clear message instead of a Gloo timeout): every rank
 * claims its RANK (a second process with the same RANK is refused) and
 * posts its WORLD_SIZE and a hash of its checked config; rank 0 compares
 * every rank's post with its own and posts a verdict (with its seed: all
 * ranks use rank 0's seed, also when seed_everything picked one at
 * random), which the others wait for.
 *
 * Failures. Every wait is bounded by trainer.ddp_timeout. A rank that fails
 * posts "error/<rank>" in the store; a rank whose collective fails (a peer
 * died: its sockets closed) looks for the culprit for a few seconds: the
 * error a rank posted, a child's exit status (rank 0 of a spawned job),
 * or, failing those, which ranks do not answer a roll call in the store.
 * Messages start with "rank R: ".
 */
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <math.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "fulgur/dist.h"
#include "fulgur/error.h"
#include "trainer/trainer.h"
#include "util/xalloc.h"

extern char **environ;

typedef struct {
  int rank;
  pid_t pid;
  int err_fd; /* read end of the child's stderr */
  pthread_t reader;
  bool reader_started;
  atomic_bool exited;
  int status; /* waitpid status, valid once exited */
  char tail[1024];
  size_t tail_len;
} child;

struct fg__ddp {
  int rank, world, local_rank, local_world;
  double timeout;
  fg_dist *dist;
  bool comm_failed; /* a collective failed: a peer is probably gone */
  /* rendezvous inputs */
  uint64_t hash;
  const char *stage_name;
  char *config_yaml;
  uint64_t seed;
  /* rank 0 of a spawned job */
  bool spawner;
  char *cfg_path;
  child *children;
  int n_children;
  pthread_mutex_t mu; /* guards children[].tail */
};

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* FNV-1a: the config hash compared at rendezvous (equal configs, equal
 * text: every rank emits its checked config the same way). */
static uint64_t fnv1a(const char *s) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (; *s; s++) h = (h ^ (unsigned char)*s) * 0x100000001b3ULL;
  return h;
}

/* "rank R: " before a message, unless it already names a rank. */
static int prefix_rank(int rank, int rc, char **err) {
  if (err && *err && strncmp(*err, "rank ", 5) == 0) return rc;
  return fg_err_prefix(err, rc, "rank %d", rank);
}

static int env_int(const char *name, int *out, bool *present, char **err) {
  const char *v = getenv(name);
  *present = v != NULL && *v != '\0';
  if (!*present) return 0;
  char *end;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (errno || *end != '\0' || x < 0 || x > INT_MAX)
    return fg_err_set(err, FG_ECONFIG, "environment: %s=%s is not a non-negative integer", name, v);
  *out = (int)x;
  return 0;
}

/* ---- children (rank 0 of a spawned job) ------------------------------------ */

static const char *signal_name(int sig) {
  switch (sig) {
    case SIGKILL: return "SIGKILL";
    case SIGTERM: return "SIGTERM";
    case SIGSEGV: return "SIGSEGV";
    case SIGABRT: return "SIGABRT";
    case SIGBUS: return "SIGBUS";
    case SIGINT: return "SIGINT";
    default: return "a signal";
  }
}

/* Forwards a child's stderr, line by line with its rank, keeping the last
 * lines; reaps the child when its stderr closes. */
static void *reader_main(void *arg) {
  void **a = arg;
  fg__ddp *d = a[0];
  child *c = a[1];
  free(a);
  char buf[4096], line[8192];
  size_t ll = 0;
  ssize_t n;
  while ((n = read(c->err_fd, buf, sizeof buf)) != 0) {
    if (n < 0) {
      if (errno == EINTR) continue;
      break;
    }
    for (ssize_t i = 0; i < n; i++) {
      if (ll < sizeof line - 1) line[ll++] = buf[i];
      if (buf[i] != '\n' && ll < sizeof line - 1) continue;
      if (line[ll - 1] != '\n') line[ll++] = '\n';
      char pre[32];
      int pl = snprintf(pre, sizeof pre, "[rank %d] ", c->rank);
      /* One write per line so lines of several ranks do not interleave. */
      char out[sizeof pre + sizeof line];
      memcpy(out, pre, (size_t)pl);
      memcpy(out + pl, line, ll);
      ssize_t w = write(STDERR_FILENO, out, (size_t)pl + ll);
      (void)w;
      pthread_mutex_lock(&d->mu);
      if (ll >= sizeof c->tail) {
        memcpy(c->tail, line + ll - (sizeof c->tail - 1), sizeof c->tail - 1);
        c->tail_len = sizeof c->tail - 1;
      } else {
        if (c->tail_len + ll >= sizeof c->tail) {
          size_t drop = c->tail_len + ll - (sizeof c->tail - 1);
          memmove(c->tail, c->tail + drop, c->tail_len - drop);
          c->tail_len -= drop;
        }
        memcpy(c->tail + c->tail_len, line, ll);
        c->tail_len += ll;
      }
      c->tail[c->tail_len] = '\0';
      pthread_mutex_unlock(&d->mu);
      ll = 0;
    }
  }
  close(c->err_fd);
  c->err_fd = -1;
  int st = 0;
  while (waitpid(c->pid, &st, 0) < 0 && errno == EINTR) {
  }
  c->status = st;
  atomic_store(&c->exited, true);
  return NULL;
}

static bool is_exe(const char *p) { return access(p, X_OK) == 0; }

/* fulgur-rank: $FULGUR_RANK_EXE, beside the running program, beside
 * libfulgur.so, or in <libdir>/../libexec/fulgur/. */
static int find_rank_exe(char **out, char **err) {
  const char *env = getenv("FULGUR_RANK_EXE");
  if (env && *env) {
    if (!is_exe(env))
      return fg_err_set(err, FG_ENOENT, "FULGUR_RANK_EXE=%s is not an executable", env);
    *out = fg__xstrdup(env);
    return 0;
  }
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  char *tried = NULL;
  if (n > 0) {
    self[n] = '\0';
    char *slash = strrchr(self, '/');
    if (slash) {
      *slash = '\0';
      char *p = fg__xasprintf("%s/fulgur-rank", self);
      if (is_exe(p)) {
        *out = p;
        return 0;
      }
      tried = p;
    }
  }
  Dl_info info;
  if (dladdr((void *)fg__ddp_start, &info) && info.dli_fname) {
    char *lib = fg__xstrdup(info.dli_fname);
    char *slash = strrchr(lib, '/');
    if (slash) {
      *slash = '\0';
      const char *const fmts[] = {"%s/fulgur-rank", "%s/../libexec/fulgur/fulgur-rank"};
      for (size_t i = 0; i < 2; i++) {
        char *p = fg__xasprintf(fmts[i], lib);
        if (is_exe(p)) {
          free(lib);
          free(tried);
          *out = p;
          return 0;
        }
        free(p);
      }
    }
    free(lib);
  }
  int rc = fg_err_set(err, FG_ENOENT,
                      "devices > 1: cannot find the fulgur-rank executable that runs ranks 1..N-1 "
                      "(looked beside the program%s%s and beside libfulgur); set FULGUR_RANK_EXE",
                      tried ? ", " : "", tried ? tried : "");
  free(tried);
  return rc;
}

static bool is_dist_var(const char *kv) {
  static const char *const names[] = {"RANK=", "WORLD_SIZE=", "LOCAL_RANK=", "LOCAL_WORLD_SIZE=",
                                      "NODE_RANK=", "GROUP_RANK=", "MASTER_ADDR=", "MASTER_PORT=",
                                      NULL};
  for (size_t i = 0; names[i]; i++)
    if (strncmp(kv, names[i], strlen(names[i])) == 0) return true;
  return false;
}

/* Starts ranks 1..world-1 against rank 0's store at `port`. */
static int spawn_children(fg__ddp *d, int port, char **err) {
  char *exe = NULL;
  int rc = find_rank_exe(&exe, err);
  if (rc) return rc;
  const char *tmp = getenv("TMPDIR");
  d->cfg_path = fg__xasprintf("%s/fulgur-ddp-XXXXXX.yaml", tmp && *tmp ? tmp : "/tmp");
  int fd = mkstemps(d->cfg_path, 5);
  if (fd < 0) {
    rc = fg_err_set(err, FG_EIO, "cannot create %s: %s", d->cfg_path, strerror(errno));
    free(d->cfg_path);
    d->cfg_path = NULL;
    free(exe);
    return rc;
  }
  size_t len = strlen(d->config_yaml);
  bool ok = write(fd, d->config_yaml, len) == (ssize_t)len;
  close(fd);
  if (!ok) {
    free(exe);
    return fg_err_set(err, FG_EIO, "cannot write %s", d->cfg_path);
  }
  size_t n_env = 0;
  while (environ[n_env]) n_env++;
  d->children = fg__xcalloc((size_t)d->world, sizeof *d->children);
  pid_t parent = getpid();
  for (int r = 1; r < d->world && rc == 0; r++) {
    /* Everything the child needs is built before fork: after it, only
     * async-signal-safe calls until exec. */
    char **envp = fg__xcalloc(n_env + 8, sizeof *envp);
    size_t k = 0;
    for (size_t i = 0; i < n_env; i++)
      if (!is_dist_var(environ[i])) envp[k++] = environ[i];
    char *own[7] = {fg__xasprintf("RANK=%d", r), fg__xasprintf("LOCAL_RANK=%d", r),
                    fg__xasprintf("WORLD_SIZE=%d", d->world),
                    fg__xasprintf("LOCAL_WORLD_SIZE=%d", d->world), fg__xstrdup("NODE_RANK=0"),
                    fg__xstrdup("MASTER_ADDR=127.0.0.1"), fg__xasprintf("MASTER_PORT=%d", port)};
    for (size_t i = 0; i < 7; i++) envp[k++] = own[i];
    char *argv[] = {exe, (char *)d->stage_name, d->cfg_path, NULL};
    int pfd[2];
    if (pipe2(pfd, O_CLOEXEC) != 0) {
      rc = fg_err_set(err, FG_EIO, "pipe: %s", strerror(errno));
    } else {
      pid_t pid = fork();
      if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        if (getppid() != parent) _exit(127);
        dup2(pfd[1], STDERR_FILENO);
        /* The caller's descriptors (a daemon worker's event pipe) stay
         * with the caller. */
        syscall(SYS_close_range, 3, ~0U, 0);
        execve(exe, argv, envp);
        static const char msg[] = "cannot execute fulgur-rank\n";
        ssize_t w = write(STDERR_FILENO, msg, sizeof msg - 1);
        (void)w;
        _exit(127);
      }
      close(pfd[1]);
      if (pid < 0) {
        close(pfd[0]);
        rc = fg_err_set(err, FG_EIO, "fork: %s", strerror(errno));
      } else {
        child *c = &d->children[d->n_children++];
        c->rank = r;
        c->pid = pid;
        c->err_fd = pfd[0];
        atomic_init(&c->exited, false);
        void **arg = fg__xmalloc(2 * sizeof *arg);
        arg[0] = d;
        arg[1] = c;
        if (pthread_create(&c->reader, NULL, reader_main, arg) == 0) {
          c->reader_started = true;
        } else {
          free(arg);
          rc = fg_err_set(err, FG_ENOMEM, "cannot start a thread for rank %d", r);
        }
      }
    }
    for (size_t i = 0; i < 7; i++) free(own[i]);
    free(envp);
  }
  free(exe);
  return rc;
}

/* "rank R: exited with status S: <last line>" for a child that failed,
 * else NULL. */
static char *child_failure(fg__ddp *d) {
  for (int i = 0; i < d->n_children; i++) {
    child *c = &d->children[i];
    if (!atomic_load(&c->exited)) continue;
    int st = c->status;
    if (WIFEXITED(st) && WEXITSTATUS(st) == 0) continue;
    pthread_mutex_lock(&d->mu);
    /* The last non-empty line the child wrote. */
    char last[512] = "";
    size_t end = c->tail_len;
    while (end > 0 && c->tail[end - 1] == '\n') end--;
    size_t start = end;
    while (start > 0 && c->tail[start - 1] != '\n') start--;
    size_t ln = end - start < sizeof last - 1 ? end - start : sizeof last - 1;
    memcpy(last, c->tail + start, ln);
    last[ln] = '\0';
    pthread_mutex_unlock(&d->mu);
    char *how = WIFSIGNALED(st)
                    ? fg__xasprintf("killed by signal %d (%s)", WTERMSIG(st), signal_name(WTERMSIG(st)))
                    : fg__xasprintf("exited with status %d", WEXITSTATUS(st));
    char *m = *last ? fg__xasprintf("rank %d: %s: %s", c->rank, how, last)
                    : fg__xasprintf("rank %d: %s", c->rank, how);
    free(how);
    return m;
  }
  return NULL;
}

/* Ends the children: SIGTERM, then SIGKILL after a grace period. */
static void stop_children(fg__ddp *d, double grace_s) {
  for (int i = 0; i < d->n_children; i++)
    if (!atomic_load(&d->children[i].exited)) kill(d->children[i].pid, SIGTERM);
  double until = now_s() + grace_s;
  for (;;) {
    bool all = true;
    for (int i = 0; i < d->n_children; i++) all = all && atomic_load(&d->children[i].exited);
    if (all) break;
    if (now_s() > until) {
      for (int i = 0; i < d->n_children; i++)
        if (!atomic_load(&d->children[i].exited)) kill(d->children[i].pid, SIGKILL);
      break;
    }
    usleep(10000);
  }
  for (int i = 0; i < d->n_children; i++)
    if (d->children[i].reader_started) {
      pthread_join(d->children[i].reader, NULL);
      d->children[i].reader_started = false;
    }
}

/* ---- rendezvous ------------------------------------------------------------ */

/* Waits for a store key up to the timeout, in slices, giving up early when
 * a spawned child has already failed. */
static int wait_key(fg__ddp *d, fg_dist *dist, const char *key, const char *what, char **data,
                    char **err) {
  double until = now_s() + d->timeout;
  for (;;) {
    bool found = false;
    int rc = fg_dist_store_try_get(dist, key, 0.2, &found, data, NULL, err);
    if (rc) return rc;
    if (found) return 0;
    char *cf = d->spawner ? child_failure(d) : NULL;
    if (cf) {
      rc = fg_err_set(err, FG_ERUN, "%s", cf);
      free(cf);
      return rc;
    }
    if (now_s() > until)
      return fg_err_set(err, FG_ERUN, "%s did not arrive within trainer.ddp_timeout (%g s)", what,
                        d->timeout);
  }
}

static int on_store(void *ctx, fg_dist *dist, char **err) {
  fg__ddp *d = ctx;
  int rc = 0;
  if (d->spawner && (rc = spawn_children(d, fg_dist_master_port(dist), err))) return rc;
  char key[64];
  snprintf(key, sizeof key, "claim/%d", d->rank);
  int64_t claims = 0;
  if ((rc = fg_dist_store_add(dist, key, 1, &claims, err))) return rc;
  if (claims > 1)
    return fg_err_set(err, FG_ECONFIG,
                      "RANK=%d is already taken by another process (every rank needs its own RANK)",
                      d->rank);
  char hello[64];
  snprintf(hello, sizeof hello, "%d %016llx", d->world, (unsigned long long)d->hash);
  snprintf(key, sizeof key, "hello/%d", d->rank);
  if ((rc = fg_dist_store_set(dist, key, hello, strlen(hello), err))) return rc;
  if (d->rank == 0) {
    char *verdict = NULL;
    for (int r = 1; r < d->world && verdict == NULL; r++) {
      char *got = NULL, what[64];
      snprintf(key, sizeof key, "hello/%d", r);
      snprintf(what, sizeof what, "rank %d (of WORLD_SIZE=%d)", r, d->world);
      if ((rc = wait_key(d, dist, key, what, &got, err))) {
        verdict = fg__xasprintf("error rank 0 gave up: %s", err && *err ? *err : fg_strerror(rc));
        break;
      }
      int w = 0;
      unsigned long long h = 0;
      if (sscanf(got, "%d %llx", &w, &h) != 2) w = -1;
      if (w != d->world)
        verdict = fg__xasprintf("error rank %d has WORLD_SIZE=%d, rank 0 has WORLD_SIZE=%d", r, w,
                                d->world);
      else if (h != d->hash)
        verdict = fg__xasprintf(
            "error rank %d runs a different config than rank 0 (config hash %016llx, rank 0's "
            "%016llx): every rank must run the same config",
            r, h, (unsigned long long)d->hash);
      free(got);
    }
    if (verdict == NULL) verdict = fg__xasprintf("ok %llu", (unsigned long long)d->seed);
    int src = fg_dist_store_set(dist, "verdict", verdict, strlen(verdict), rc ? NULL : err);
    if (rc == 0 && strncmp(verdict, "error ", 6) == 0)
      rc = fg_err_set(err, FG_ECONFIG, "%s", verdict + 6);
    if (rc == 0) rc = src;
    free(verdict);
    return rc;
  }
  char *got = NULL;
  if ((rc = wait_key(d, dist, "hello/0", "rank 0", &got, err))) return rc;
  int w = 0;
  unsigned long long h = 0;
  if (sscanf(got, "%d %llx", &w, &h) != 2) w = -1;
  free(got);
  if (w != d->world)
    return fg_err_set(err, FG_ECONFIG, "WORLD_SIZE=%d here, but rank 0 has WORLD_SIZE=%d",
                      d->world, w);
  if (h != d->hash)
    return fg_err_set(err, FG_ECONFIG,
                      "this rank's config differs from rank 0's (config hash %016llx, rank 0's "
                      "%016llx): every rank must run the same config",
                      (unsigned long long)d->hash, h);
  if ((rc = wait_key(d, dist, "verdict", "rank 0's verdict", &got, err))) return rc;
  unsigned long long seed = 0;
  if (strncmp(got, "ok ", 3) == 0 && sscanf(got + 3, "%llu", &seed) == 1) {
    d->seed = seed;
  } else {
    rc = fg_err_set(err, FG_ECONFIG, "%s", strncmp(got, "error ", 6) == 0 ? got + 6 : got);
  }
  free(got);
  return rc;
}

int fg__ddp_start(const fg_node *config, fg_stage stage, const fg_trainer_opts *o, uint64_t *seed,
                  fg__ddp **out, char **err) {
  *out = NULL;
  int world = o->devices * o->num_nodes;
  int env_world = 0, rank = 0, local_rank = 0, node_rank = 0, port = 0;
  bool has_world, has_rank, has_local, has_node, has_port;
  int rc = env_int("WORLD_SIZE", &env_world, &has_world, err);
  if (rc == 0) rc = env_int("RANK", &rank, &has_rank, err);
  if (rc == 0) rc = env_int("LOCAL_RANK", &local_rank, &has_local, err);
  if (rc == 0) rc = env_int("NODE_RANK", &node_rank, &has_node, err);
  if (rc == 0 && !has_node) rc = env_int("GROUP_RANK", &node_rank, &has_node, err);
  if (rc == 0) rc = env_int("MASTER_PORT", &port, &has_port, err);
  if (rc) return rc;
  if (!has_world && world == 1) return 0;
  if (has_world && env_world == 1 && world == 1) return 0;
  if (has_world && env_world != world)
    return fg_err_set(err, FG_ECONFIG,
                      "environment: WORLD_SIZE=%d, but trainer.devices x trainer.num_nodes = %d x "
                      "%d = %d",
                      env_world, o->devices, o->num_nodes, world);
  fg__ddp *d = fg__xcalloc(1, sizeof *d);
  pthread_mutex_init(&d->mu, NULL);
  d->world = world;
  d->local_world = o->devices;
  d->timeout = o->ddp_timeout;
  d->stage_name = fg_stage_name(stage);
  d->seed = *seed;
  const char *addr = "127.0.0.1";
  if (has_world) {
    if (!has_rank) {
      rc = fg_err_set(err, FG_ECONFIG, "environment: WORLD_SIZE is set but RANK is not");
      goto fail;
    }
    if (rank >= world) {
      rc = fg_err_set(err, FG_ECONFIG, "environment: RANK=%d is outside 0..WORLD_SIZE-1 (WORLD_SIZE=%d)",
                      rank, world);
      goto fail;
    }
    if (has_local && local_rank >= o->devices) {
      rc = fg_err_set(err, FG_ECONFIG, "environment: LOCAL_RANK=%d, but trainer.devices is %d",
                      local_rank, o->devices);
      goto fail;
    }
    if (has_node && node_rank >= o->num_nodes) {
      rc = fg_err_set(err, FG_ECONFIG, "environment: NODE_RANK=%d, but trainer.num_nodes is %d",
                      node_rank, o->num_nodes);
      goto fail;
    }
    if (has_local && has_node && rank != node_rank * o->devices + local_rank) {
      rc = fg_err_set(err, FG_ECONFIG,
                      "environment: RANK=%d, but NODE_RANK x devices + LOCAL_RANK = %d x %d + %d",
                      rank, node_rank, o->devices, local_rank);
      goto fail;
    }
    const char *ma = getenv("MASTER_ADDR");
    if (ma == NULL || *ma == '\0' || !has_port) {
      rc = fg_err_set(err, FG_ECONFIG, "environment: WORLD_SIZE is set, so MASTER_ADDR and MASTER_PORT must be too");
      goto fail;
    }
    addr = ma;
    d->rank = rank;
    d->local_rank = has_local ? local_rank : rank % o->devices;
  } else if (o->num_nodes > 1) {
    rc = fg_err_set(err, FG_ECONFIG,
                    "trainer.num_nodes: %d machines need torchrun's environment (MASTER_ADDR, "
                    "MASTER_PORT, WORLD_SIZE, RANK) in every process",
                    o->num_nodes);
    goto fail;
  } else {
    d->spawner = true; /* rank 0; ranks 1..N-1 are started from on_store */
    port = 0;
  }
  if ((rc = fg_node_emit(config, &d->config_yaml, err))) goto fail;
  d->hash = fnv1a(d->config_yaml);
  fg_dist_opts dopts = {.rank = d->rank, .world_size = world, .master_addr = addr,
                        .master_port = port, .timeout_s = d->timeout, .on_store = on_store, .ctx = d};
  if ((rc = fg_dist_create(&dopts, &d->dist, err))) goto fail;
  *seed = d->seed;
  *out = d;
  return 0;
fail:
  prefix_rank(d->rank, rc, err);
  fg__ddp_close(d, false, NULL);
  return rc;
}

int fg__ddp_rank(const fg__ddp *d) { return d ? d->rank : 0; }
int fg__ddp_world(const fg__ddp *d) { return d ? d->world : 1; }
int fg__ddp_local_world(const fg__ddp *d) { return d ? d->local_world : 1; }

/* ---- collectives for the loops ---------------------------------------------- */

static int comm(fg__ddp *d, int rc) {
  if (rc) d->comm_failed = true;
  return rc;
}

/* Broadcasts rank 0's state entries: all of them, or only the buffers. */
static int broadcast_state(fg__ddp *d, fg_module *m, bool buffers_only, char **err) {
  size_t n = fg_module_num_state(m), k = 0;
  fg_tensor **ts = fg__xmalloc((n ? n : 1) * sizeof *ts);
  for (size_t i = 0; i < n; i++)
    if (!buffers_only || !fg_module_state_is_param(m, i)) ts[k++] = fg_module_state(m, i);
  int rc = k ? comm(d, fg_dist_broadcast(d->dist, ts, k, 0, err)) : 0;
  free(ts);
  return rc;
}

int fg__ddp_broadcast_params(fg__ddp *d, fg_module *m, char **err) {
  int rc = broadcast_state(d, m, false, err);
  return rc ? fg_err_prefix(err, rc, "broadcasting rank 0's parameters and buffers") : 0;
}

int fg__ddp_broadcast_buffers(fg__ddp *d, fg_module *m, char **err) {
  int rc = broadcast_state(d, m, true, err);
  return rc ? fg_err_prefix(err, rc, "broadcasting rank 0's buffers") : 0;
}

int fg__ddp_sync_grads(fg__ddp *d, fg_module *m, char **err) {
  size_t n = fg_module_num_params(m), k = 0;
  fg_tensor **gs = fg__xmalloc((n ? n : 1) * sizeof *gs);
  int rc = 0;
  for (size_t i = 0; i < n && rc == 0; i++) {
    fg_tensor *p = fg_module_param(m, i);
    /* Frozen parameters (finetune_cfg) have nothing to sync. */
    if (!fg_tensor_requires_grad(p)) continue;
    fg_tensor *g = NULL;
    if ((rc = fg_tensor_grad(p, &g, err))) break;
    if (g == NULL) {
      /* Unused by this rank's forward: a zero gradient, so that every
       * rank's bucket holds the same tensors (DDP's unused parameters). */
      int64_t shape[FG_MAX_DIMS];
      int nd = fg_tensor_ndim(p);
      for (int j = 0; j < nd; j++) shape[j] = fg_tensor_size(p, j);
      fg_tensor *z = NULL;
      if ((rc = fg_tensor_zeros(shape, nd, fg_tensor_dtype(p), &z, err)) == 0 &&
          (rc = fg_tensor_set_grad(p, z, err)) == 0)
        rc = fg_tensor_grad(p, &g, err);
      fg_tensor_free(z);
      if (rc) break;
    }
    gs[k++] = g;
  }
  if (rc == 0) rc = comm(d, fg_dist_allreduce(d->dist, gs, k, FG_DIST_AVG, 0, err));
  for (size_t i = 0; i < k; i++) fg_tensor_free(gs[i]);
  free(gs);
  return rc ? fg_err_prefix(err, rc, "gradient allreduce") : 0;
}

/* Every rank's value (pickled), in rank order. */
static int gather_values(fg__ddp *d, const fg_value *mine, fg_value ***out, char **err) {
  char *buf = NULL;
  size_t len = 0;
  int rc = fg_value_pickle(mine, &buf, &len, err);
  if (rc) return rc;
  char **bufs = NULL;
  size_t *lens = NULL;
  rc = comm(d, fg_dist_allgather_bytes(d->dist, buf, len, &bufs, &lens, err));
  free(buf);
  if (rc) return rc;
  fg_value **vals = fg__xcalloc((size_t)d->world, sizeof *vals);
  for (int r = 0; r < d->world; r++) {
    if (rc == 0) rc = fg_value_unpickle(bufs[r], lens[r], &vals[r], err);
    free(bufs[r]);
  }
  free(bufs);
  free(lens);
  if (rc) {
    for (int r = 0; r < d->world; r++) fg_value_free(vals[r]);
    free(vals);
    return rc;
  }
  *out = vals;
  return 0;
}

int fg__ddp_gather_values(fg__ddp *d, const fg_value *mine, fg_value ***out, char **err) {
  return gather_values(d, mine, out, err);
}

int fg__ddp_barrier(fg__ddp *d, char **err) { return comm(d, fg_dist_barrier(d->dist, err)); }

static void free_values(fg__ddp *d, fg_value **vals) {
  for (int r = 0; r < d->world; r++) fg_value_free(vals[r]);
  free(vals);
}

int fg__ddp_sum_dict(fg__ddp *d, fg_value **dict, char **err) {
  fg_value **vals = NULL;
  int rc = gather_values(d, *dict, &vals, err);
  if (rc) return fg_err_prefix(err, rc, "gathering epoch sums");
  fg_value *sum = NULL;
  rc = fg_value_dicts_sum(vals, d->world, &sum, err);
  free_values(d, vals);
  if (rc) return rc;
  fg_value_free(*dict);
  *dict = sum;
  return 0;
}

int fg__ddp_reduce_evaluators(fg__ddp *d, fg_module *m, fg_split split, fg_events *bus, char **err) {
  int rc = 0;
  for (size_t i = 0; i < fg_module_num_evaluators(m, split) && rc == 0; i++) {
    fg_metric *e = fg_module_evaluator(m, split, i);
    if (!fg_metric_has_state(e)) {
      /* Still take part in the collective count-wise: every rank skips it
       * alike, since every rank has the same evaluators. */
      fg_events_log(bus, FG_LOG_WARNING,
                    "%s evaluator %s has no state to reduce across ranks; its value is rank 0's "
                    "shard only",
                    fg_split_names[split], fg_metric_name(e));
      continue;
    }
    fg_value *st = NULL, **vals = NULL, *sum = NULL;
    if ((rc = fg_metric_state_dict(e, &st, err))) break;
    rc = gather_values(d, st, &vals, err);
    fg_value_free(st);
    if (rc) break;
    /* TorchMetrics' dist_reduce_fx, per metric: counts sum, kept scores
     * (AUROC, AveragePrecision) concatenate in rank order. */
    rc = fg_metric_reduce_states(e, vals, d->world, &sum, err);
    free_values(d, vals);
    if (rc == 0) rc = fg_metric_load_state_dict(e, sum, err);
    fg_value_free(sum);
  }
  return rc ? fg_err_prefix(err, rc, "reducing %s evaluator states", fg_split_names[split]) : 0;
}

int fg__ddp_any(fg__ddp *d, bool *flag, char **err) {
  float v = *flag ? 1.0f : 0.0f;
  int64_t one = 1;
  fg_tensor *t = NULL;
  int rc = fg_tensor_from_data(&v, FG_FLOAT32, &one, 1, &t, err);
  if (rc == 0) rc = comm(d, fg_dist_allreduce(d->dist, &t, 1, FG_DIST_SUM, 0, err));
  double s = 0;
  if (rc == 0) rc = fg_tensor_item(t, &s, err);
  fg_tensor_free(t);
  if (rc == 0) *flag = s > 0;
  return rc;
}

/* ---- the end ---------------------------------------------------------------- */

/* After a failed collective: who is to blame? Looks for a rank's posted
 * error, a failed child, then a roll call, for at most a few seconds.
 * Returns a malloc'd "rank R: ..." or NULL. */
static char *find_culprit(fg__ddp *d) {
  double until = now_s() + (d->timeout < 5 ? d->timeout : 5);
  char key[64];
  snprintf(key, sizeof key, "alive/%d", d->rank);
  bool store_ok = fg_dist_store_set(d->dist, key, "1", 1, NULL) == 0;
  bool *alive = fg__xcalloc((size_t)d->world, sizeof *alive);
  alive[d->rank] = true;
  char *found = NULL;
  while (found == NULL) {
    if (d->spawner) found = child_failure(d);
    for (int r = 0; r < d->world && found == NULL && store_ok; r++) {
      if (r == d->rank) continue;
      bool f = false;
      char *msg = NULL;
      snprintf(key, sizeof key, "error/%d", r);
      if (fg_dist_store_try_get(d->dist, key, 0, &f, &msg, NULL, NULL) != 0) {
        store_ok = false;
        break;
      }
      if (f) found = msg; /* already "rank R: ..." */
      snprintf(key, sizeof key, "alive/%d", r);
      if (!alive[r] && fg_dist_store_try_get(d->dist, key, 0, &f, &msg, NULL, NULL) == 0 && f) {
        alive[r] = true;
        free(msg);
      }
    }
    if (found || now_s() > until) break;
    if (!store_ok && !d->spawner) break;
    usleep(50000);
  }
  if (found == NULL && d->rank != 0 && !store_ok)
    found = fg__xstrdup("rank 0: gone (the rendezvous store it hosts does not answer)");
  for (int r = 0; r < d->world && found == NULL && store_ok; r++)
    if (!alive[r])
      found = fg__xasprintf("rank %d: stopped responding (the process died or hangs)", r);
  free(alive);
  return found;
}

int fg__ddp_fail(fg__ddp *d, int rc, char **err) {
  if (d == NULL || rc == 0 || rc == FG_ECANCELED || rc == FG_EPAUSED) return rc;
  if (d->comm_failed && d->dist) {
    char *who = find_culprit(d);
    if (who) {
      char *mine = err && *err ? *err : NULL;
      if (err) *err = NULL;
      fg_err_set(err, FG_ERUN, "%s (rank %d: %s)", who, d->rank, mine ? mine : fg_strerror(rc));
      free(mine);
      free(who);
      return FG_ERUN;
    }
  }
  prefix_rank(d->rank, rc, err);
  if (d->dist) {
    char key[64];
    snprintf(key, sizeof key, "error/%d", d->rank);
    const char *m = err && *err ? *err : fg_strerror(rc);
    fg_dist_store_set(d->dist, key, m, strlen(m), NULL);
  }
  return rc;
}

int fg__ddp_close(fg__ddp *d, bool ok, char **err) {
  if (d == NULL) return 0;
  int rc = 0;
  /* Rank 0 hosts the store: it leaves last, once every rank is done. */
  if (ok && d->dist) {
    rc = fg_dist_barrier(d->dist, err);
    if (rc) {
      d->comm_failed = true;
      rc = fg__ddp_fail(d, rc, err);
    }
  }
  if (d->spawner) {
    if (ok && rc == 0) {
      /* The children end on their own after the barrier. */
      double until = now_s() + d->timeout;
      for (int i = 0; i < d->n_children; i++)
        while (!atomic_load(&d->children[i].exited) && now_s() < until) usleep(10000);
    }
    stop_children(d, ok && rc == 0 ? 0 : 2);
    char *cf = child_failure(d);
    if (cf && ok && rc == 0) rc = fg_err_set(err, FG_ERUN, "%s", cf);
    free(cf);
  }
  fg_dist_free(d->dist);
  if (d->cfg_path) unlink(d->cfg_path);
  free(d->cfg_path);
  free(d->children);
  free(d->config_yaml);
  pthread_mutex_destroy(&d->mu);
  free(d);
  return rc;
}
