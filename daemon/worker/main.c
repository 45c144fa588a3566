/* fulgur-worker: runs one job for fulgurd, in a process of its own, so a
 * crash, an abort or the OOM killer takes only this job down. The daemon
 * links no libtorch; everything that needs the engine happens here.
 *
 *   fulgur-worker check --stage S --cwd DIR [--root DIR ...] [--override ARG ...]
 *                       [--job-memory-limit BYTES]
 *     The submitted YAML on stdin. Applies the overrides, checks the config
 *     for the stage and the path keys against the roots. Prints the job's
 *     top-level options (one line, util/job_opts.h) and the merged, checked
 *     config as YAML on stdout (exit 0), or the error (exit 2 for a config
 *     error, 3 for a path outside the roots, 1 otherwise).
 *
 *   fulgur-worker check --serve [--daemon-pid PID] [--check-cpu-seconds N]
 *     The same check, kept warm for fulgurd (daemon/checker.c): libtorch is
 *     loaded once, then requests are answered one at a time until stdin
 *     ends. A request on stdin is a u32 length (little-endian) and then: a
 *     u32 argument count, that many NUL-terminated arguments (the one-shot
 *     command's, after "check"), and the YAML up to the end. The answer, on
 *     fd 3, is a u32 length, the exit code the one-shot command would give,
 *     a retire byte (1: this process exits after the answer) and the text it
 *     would print. An empty answer (length 0) first says it is serving, so
 *     the daemon does not count its start-up against a check's timeout.
 *     stdout goes to stderr so that nothing but answers reaches
 *     fd 3. A config that names plugins retires the process: the classes
 *     they registered must not be seen by the next request's check.
 *     fulgurd runs it under an address-space limit; --check-cpu-seconds
 *     gives each check that much CPU time (RLIMIT_CPU, so SIGXCPU ends a
 *     check that spins). A check whose allocation fails on an error path
 *     answers "out of memory (limit N)" as a config error; one that aborts
 *     leaves its last words on stderr, which the daemon reads.
 *
 *   fulgur-worker run --stage S --config FILE [--ckpt-path F] [--run-dir D] [--fork 1]
 *                     [--events-fd N] [--daemon-pid PID]
 *     Runs the stage. Events go to fd N (default 3) as length-prefixed
 *     WorkerMessages, ending with the result. SIGTERM cancels at the next
 *     step boundary; SIGUSR1 pauses there (fit: checkpoint and exit);
 *     SIGUSR2 writes a checkpoint there and trains on (fg_run_opts). --run-dir
 *     continues the job's run directory (one run per job); --fork 1 takes
 *     the config's hyperparameters over the checkpoint's (ForkJob).
 *     Dies with the daemon (parent-death signal). Exit 0 when the result
 *     was delivered, whatever it was.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <unistd.h>

#include "fulgur/config.h"
#include "fulgur/error.h"
#include "fulgur/run.h"
#include "pipe_sink.h"
#include "roots.h"
#include "util/blas_kernel.h"
#include "util/bytes.h"
#include "util/oom.h"
#include "util/job_opts.h"
#include "util/xalloc.h"

static volatile sig_atomic_t cancel_flag, pause_flag, checkpoint_flag;

static void on_term(int sig) { cancel_flag = 1; }
static void on_usr1(int sig) { pause_flag = 1; }
static void on_usr2(int sig) { checkpoint_flag = 1; }

/* The loop whose position is a stage's percentage: fit, val, test, predict
 * (the stages and the splits are in the same order). */
static const char *stage_split(fg_stage st) { return fg_split_names[st - FG_STAGE_FIT]; }

static char *read_all(FILE *f, size_t *len) {
  size_t cap = 1 << 16, n = 0;
  char *buf = fg__xmalloc(cap);
  size_t r;
  while ((r = fread(buf + n, 1, cap - n, f)) > 0) {
    n += r;
    if (n == cap) buf = fg__xrealloc(buf, cap *= 2);
  }
  buf[n] = '\0';
  *len = n;
  return buf;
}

/* The address-space limit this process runs under, 0 for none. */
static uint64_t memory_limit(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_AS, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY) return 0;
  return (uint64_t)rl.rlim_cur;
}

/* "out of memory (limit 2G): <why>" when an error is an allocation that
 * failed under a limit (caller frees), else NULL. */
static char *oom_message(int rc, const char *why) {
  uint64_t lim = memory_limit();
  if (lim == 0 || (rc != FG_ENOMEM && !fg__oom_text(why))) return NULL;
  char b[32];
  fg__bytes_format(lim, b, sizeof b);
  return fg__xasprintf("out of memory (limit %s)%s%s", b, why && why[0] ? ": " : "", why ? why : "");
}

/* The job's memory_limit from the checked tree (bytes; 0 = not set), held
 * to the daemon's: a job may lower fulgurd's --job-memory-limit, never
 * raise it. */
static int job_memory_limit(const fg_node *cfg, uint64_t daemon_limit, uint64_t *out, char **err) {
  const fg_node *v = fg_node_get(cfg, "memory_limit");
  *out = 0;
  if (fg_node_kind_of(v) == FG_NODE_INT) *out = (uint64_t)fg_node_int(v);
  else if (fg_node_kind_of(v) == FG_NODE_STRING) (void)fg__bytes_parse(fg_node_str(v), out);
  if (daemon_limit == 0 || *out <= daemon_limit) return 0;
  char a[32], b[32];
  fg__bytes_format(*out, a, sizeof a);
  fg__bytes_format(daemon_limit, b, sizeof b);
  return fg_config_error(err, v, "memory_limit",
                         "%s is above fulgurd's --job-memory-limit %s: a job may lower the limit, "
                         "not raise it", a, b);
}

/* One check: argv as in `check --stage ...`, the YAML in text. Returns the
 * exit code and the text to print (*out, caller frees); *plugins is set
 * when the config names plugins (loaded into this process by the check). */
static int check_one(int argc, char **argv, char *text, size_t len, char **out, bool *plugins) {
  const char *stage = NULL, *cwd = ".";
  uint64_t daemon_mem = 0;
  const char **roots = fg__xcalloc((size_t)argc + 1, sizeof *roots);
  const char **overrides = fg__xcalloc((size_t)argc + 1, sizeof *overrides);
  size_t n_roots = 0, n_over = 0;
  for (int i = 0; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--stage") == 0) stage = argv[i + 1];
    else if (strcmp(argv[i], "--cwd") == 0) cwd = argv[i + 1];
    else if (strcmp(argv[i], "--root") == 0) roots[n_roots++] = argv[i + 1];
    else if (strcmp(argv[i], "--override") == 0) overrides[n_over++] = argv[i + 1];
    else if (strcmp(argv[i], "--job-memory-limit") == 0 && fg__bytes_parse(argv[i + 1], &daemon_mem))
      daemon_mem = 0;
  }
  fg_node *cfg = NULL;
  char *err = NULL, *yaml = NULL;
  fg_stage st = fg_stage_parse(stage);
  int rc = st == 0 ? fg_err_set(&err, FG_EINVAL, "unknown stage '%s'", stage ? stage : "")
                  : fg_node_parse(text, len, "config.yaml", &cfg, &err);
  if (rc == 0 && fg_node_kind_of(cfg) != FG_NODE_MAP)
    rc = fg_config_error(&err, cfg, "(top level)", "expected a mapping");
  for (size_t i = 0; i < n_over && rc == 0; i++) {
    /* "--k=v" as one token (the RPC's overrides are whole arguments). */
    rc = fg_config_apply_override(&cfg, overrides[i], NULL, &err);
  }
  if (rc == 0) {
    const fg_node *pl = fg_node_get(cfg, "plugins");
    *plugins = pl != NULL && fg_node_kind_of(pl) != FG_NODE_NULL;
    rc = fg_config_load_plugins(cfg, &err);
  }
  if (rc == 0) rc = fg_config_check_stage(cfg, st, true, &err);
  if (rc == 0) rc = fg_roots_check(cfg, cwd, roots, n_roots, &err);
  /* The job's own options, from the checked tree (job_opts.h): the daemon
   * cannot parse YAML, and must not guess at its text. */
  fg_job_opts jo = {0};
  if (rc == 0 &&
      !fg__restart_policy_parse(fg_node_str(fg_node_get(cfg, "restart_policy")), &jo.restart_policy))
    rc = fg_config_error(&err, cfg, "restart_policy", "expected fail or resume");
  if (rc == 0) jo.max_restarts = (unsigned)fg_node_int(fg_node_get(cfg, "max_restarts"));
  if (rc == 0) rc = job_memory_limit(cfg, daemon_mem, &jo.memory_limit, &err);
  if (rc == 0) rc = fg_node_emit(cfg, &yaml, &err);
  if (rc == 0) {
    char *line = fg__job_opts_line(&jo);
    *out = fg__xasprintf("%s%s", line, yaml);
    free(line);
  } else {
    char *oom = oom_message(rc, err ? err : fg_strerror(rc));
    if (oom) rc = FG_ECONFIG; /* the config asked for more than the check may use */
    *out = fg__xasprintf("%s\n", oom ? oom : err ? err : fg_strerror(rc));
    free(oom);
  }
  free(yaml);
  free(err);
  fg_node_free(cfg);
  free(roots);
  free(overrides);
  return rc == 0 ? 0 : rc == FG_EPERM ? 3 : rc == FG_ECONFIG || rc == FG_EINVAL ? 2 : 1;
}

static int cmd_check(int argc, char **argv) {
  size_t len;
  char *text = read_all(stdin, &len);
  char *out = NULL;
  bool plugins = false;
  int code = check_one(argc, argv, text, len, &out, &plugins);
  fputs(out, stdout);
  free(out);
  free(text);
  return code;
}

/* Reads exactly n bytes; 0, or -1 at the end of input or on an error. */
static int read_exact(int fd, void *buf, size_t n) {
  for (size_t got = 0; got < n;) {
    ssize_t r = read(fd, (char *)buf + got, n - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) return -1;
    got += (size_t)r;
  }
  return 0;
}

static int write_all(int fd, const void *buf, size_t n) {
  for (size_t done = 0; done < n;) {
    ssize_t w = write(fd, (const char *)buf + done, n - done);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    done += (size_t)w;
  }
  return 0;
}

static uint32_t get_u32(const unsigned char *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void put_u32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

/* Splits a request into its arguments (pointers into frame) and the YAML;
 * -1 when it is not a well-formed request. */
static int parse_request(char *frame, size_t len, char ***argv, int *argc, char **text,
                         size_t *text_len) {
  if (len < 4) return -1;
  uint32_t n = get_u32((unsigned char *)frame);
  if (n > len) return -1;
  char **av = fg__xcalloc((size_t)n + 1, sizeof *av);
  size_t at = 4;
  for (uint32_t i = 0; i < n; i++) {
    char *nul = at < len ? memchr(frame + at, '\0', len - at) : NULL;
    if (!nul) {
      free(av);
      return -1;
    }
    av[i] = frame + at;
    at = (size_t)(nul - frame) + 1;
  }
  *argv = av;
  *argc = (int)n;
  *text = frame + at;
  *text_len = len - at;
  return 0;
}

/* Each check gets cpu_seconds of CPU from now: RLIMIT_CPU counts the
 * process's whole life, so the soft limit moves up before every check. */
static void limit_cpu(unsigned cpu_seconds) {
  struct rusage ru;
  struct rlimit rl;
  if (cpu_seconds == 0 || getrusage(RUSAGE_SELF, &ru) != 0 || getrlimit(RLIMIT_CPU, &rl) != 0) return;
  rlim_t used = (rlim_t)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + 1;
  rlim_t want = used + cpu_seconds;
  rl.rlim_cur = rl.rlim_max != RLIM_INFINITY && want > rl.rlim_max ? rl.rlim_max : want;
  setrlimit(RLIMIT_CPU, &rl);
}

static int cmd_check_serve(int argc, char **argv) {
  unsigned cpu_seconds = 0;
  for (int i = 0; i + 1 < argc; i += 2)
    if (strcmp(argv[i], "--check-cpu-seconds") == 0) cpu_seconds = (unsigned)atoi(argv[i + 1]);
  /* The answers' fd, then stdout onto stderr: a stray print from the
   * engine must not be read as an answer. */
  int answers = dup(3);
  if (answers < 0 || dup2(2, 1) < 0 || (close(3), 0)) {
    fprintf(stderr, "fulgur-worker: check --serve needs fd 3 for its answers\n");
    return 2;
  }

  unsigned char ready[4] = {0, 0, 0, 0};
  if (write_all(answers, ready, 4)) return 0;
  for (;;) {
    unsigned char hdr[4];
    if (read_exact(0, hdr, 4)) return 0; /* the daemon closed the pipe */
    uint32_t len = get_u32(hdr);
    /* One more byte, so the YAML (the frame's tail) is NUL-terminated. */
    char *frame = fg__xmalloc((size_t)len + 1);
    if (read_exact(0, frame, len)) {
      free(frame);
      return 0;
    }
    frame[len] = '\0';
    char **av = NULL, *text = NULL, *out = NULL;
    int ac = 0, code;
    size_t text_len = 0;
    bool plugins = false;
    limit_cpu(cpu_seconds);
    if (parse_request(frame, len, &av, &ac, &text, &text_len) == 0) {
      code = check_one(ac, av, text, text_len, &out, &plugins);
    } else {
      code = 1;
      out = fg__xstrdup("fulgur-worker: malformed check request\n");
    }
    size_t out_len = strlen(out);
    unsigned char *ans = fg__xmalloc(4 + 2 + out_len);
    put_u32(ans, (uint32_t)(2 + out_len));
    ans[4] = (unsigned char)code;
    ans[5] = plugins;
    memcpy(ans + 6, out, out_len);
    int werr = write_all(answers, ans, 6 + out_len);
    free(ans);
    free(out);
    free(av);
    free(frame);
    if (werr || plugins) return 0;
  }
}

static int cmd_run(int argc, char **argv) {
  const char *stage = NULL, *config = NULL, *ckpt = NULL, *run_dir = NULL;
  bool fork = false;
  int fd = 3;
  for (int i = 0; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--stage") == 0) stage = argv[i + 1];
    else if (strcmp(argv[i], "--config") == 0) config = argv[i + 1];
    else if (strcmp(argv[i], "--ckpt-path") == 0) ckpt = argv[i + 1];
    else if (strcmp(argv[i], "--run-dir") == 0) run_dir = argv[i + 1];
    else if (strcmp(argv[i], "--fork") == 0) fork = strcmp(argv[i + 1], "1") == 0;
    else if (strcmp(argv[i], "--events-fd") == 0) fd = atoi(argv[i + 1]);
  }
  fg_stage st = fg_stage_parse(stage);
  if (st == 0 || config == NULL) {
    fprintf(stderr, "fulgur-worker: run needs --stage and --config\n");
    return 2;
  }
  fg_pipe_sink *ps = fg_pipe_sink_create(fd, stage_split(st));
  if (ps == NULL) {
    fprintf(stderr, "fulgur-worker: cannot start the event writer: %s\n", strerror(errno));
    return 1;
  }
  fg_events *bus = fg_events_create();
  fg_events_add_sink(bus, fg_pipe_sink_as_sink(ps));
  const char *over[2];
  size_t n_over = 0;
  char *ck_arg = NULL;
  if (ckpt && ckpt[0]) {
    ck_arg = fg__xasprintf("--ckpt_path=%s", ckpt);
    over[n_over++] = ck_arg;
  }
  /* Under ddp the other ranks (fulgur-rank, started by this process) must
   * fork too, or their optimizers would step with the checkpoint's lr:
   * they inherit the environment. */
  if (fork) setenv("FULGUR_FORK", "1", 1);
  fg_node *cfg = NULL;
  char *err = NULL;
  int rc = fg_config_load(&config, 1, over, n_over, &cfg, &err);
  if (rc == 0) {
    fg_run_opts ro = {.stage = st, .events = bus, .cancel = &cancel_flag,
                      .pause = &pause_flag, .checkpoint = &checkpoint_flag,
                      .run_dir = run_dir && run_dir[0] ? run_dir : NULL, .fork = fork};
    rc = fg_run(cfg, &ro, NULL, &err);
  }
  int frc = fg_events_free(bus, rc ? NULL : &err);
  if (rc == 0 && frc) rc = frc;
  /* Under fulgurd's memory limit, a failed allocation is the job's
   * limit, and its error says so. */
  char *oom = rc ? oom_message(rc, err ? err : fg_strerror(rc)) : NULL;
  int prc = fg_pipe_sink_free(ps, fg_outcome_of(rc),
                              oom ? oom : rc ? (err ? err : fg_strerror(rc)) : "", rc == FG_ECONFIG);
  free(oom);
  free(err);
  free(ck_arg);
  fg_node_free(cfg);
  return prc == 0 ? 0 : 1;
}

/* Die with the daemon: a worker left running after it would train for no
 * one. The daemon may be gone already (killed while this process was still
 * loading libtorch): its pid, given as --daemon-pid, tells, since the
 * parent is then someone else. Without the option, the parent at this
 * point is taken as the daemon. Returns -1 when it is gone. */
static int die_with_daemon(int argc, char **argv) {
  pid_t parent = getppid();
  for (int i = 0; i + 1 < argc; i += 2)
    if (strcmp(argv[i], "--daemon-pid") == 0) parent = (pid_t)atoi(argv[i + 1]);
  prctl(PR_SET_PDEATHSIG, SIGKILL);
  return getppid() == parent ? 0 : -1;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: fulgur-worker check|run ... (started by fulgurd)\n");
    return 2;
  }
  /* fulgurd has set OPENBLAS_CORETYPE when it needs setting; this catches
   * a worker started otherwise (util/blas_kernel.h). */
  fg__blas_kernel_reexec(argv);
  if (strcmp(argv[1], "check") == 0 && argc >= 3 && strcmp(argv[2], "--serve") == 0) {
    /* A warm checker lives as long as the daemon that asks it, and leaves
     * Ctrl-C to it: the daemon ends it by closing its stdin. */
    if (die_with_daemon(argc - 3, argv + 3)) return 1;
    signal(SIGINT, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    return cmd_check_serve(argc - 3, argv + 3);
  }
  if (strcmp(argv[1], "check") == 0) return cmd_check(argc - 2, argv + 2);
  if (strcmp(argv[1], "run") == 0) {
    if (die_with_daemon(argc - 2, argv + 2)) return 1;
    struct sigaction sa = {0};
    sa.sa_handler = on_term;
    sigaction(SIGTERM, &sa, NULL);
    sa.sa_handler = on_usr1;
    sigaction(SIGUSR1, &sa, NULL);
    sa.sa_handler = on_usr2;
    sigaction(SIGUSR2, &sa, NULL);
    signal(SIGINT, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    return cmd_run(argc - 2, argv + 2);
  }
  fprintf(stderr, "fulgur-worker: unknown command '%s'\n", argv[1]);
  return 2;
}
