/* The remote commands: fulgur submit | jobs | status | watch | cancel |
 * pause | resume | events, as calls to fulgur.v1.JobService.
 *
 * Exit status (ARCHITECTURE.md §5): 0 success; 1 the job failed (and
 * server errors that are nobody's input: INTERNAL, UNKNOWN, ABORTED,
 * RESOURCE_EXHAUSTED, DATA_LOSS, CANCELLED); 2 usage or config error, and
 * the server's INVALID_ARGUMENT, NOT_FOUND, ALREADY_EXISTS,
 * PERMISSION_DENIED, FAILED_PRECONDITION, OUT_OF_RANGE, UNIMPLEMENTED and
 * UNAUTHENTICATED; 3 daemon unreachable (UNAVAILABLE, DEADLINE_EXCEEDED);
 * 130 the job was cancelled (or the user interrupted a watch).
 *
 * --json output follows the proto3 JSON mapping (lowerCamelCase names,
 * enums by name, NaN/Infinity as strings) with two choices of ours: every
 * field is printed, defaults included, so scripts see a fixed shape; and
 * 64-bit integers are JSON numbers, not strings (Python reads them exactly;
 * JavaScript and jq round the nanosecond times past 2^53). */
#include "remote.h"

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <grpc/support/log.h>

#include "fg_rpc.h"
#include "fg_rpc_client.h"
#include "fulgur/config.h"
#include "json.h"
#include "json_msg.h"
#include "util/assert.h"
#include "util/bytes.h"
#include "util/progress_bar.h"
#include "util/xalloc.h"

enum { EXIT_OK = 0, EXIT_FAILED = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3, EXIT_CANCELLED = 130 };

/* Deadlines. SubmitJob may have the daemon parse and check a large config
 * and write it to disk before it answers. */
enum { SUBMIT_TIMEOUT_MS = 120000, CALL_TIMEOUT_MS = 30000, REFRESH_TIMEOUT_MS = 5000 };
/* How long a watch keeps trying to get its stream back after the daemon
 * went away (a restart), counted from the last event received. */
#define RECONNECT_BUDGET_S 30.0

typedef struct {
  const char *server_arg;
  char *target; /* resolved, malloc'd */
  const char *token_file;
  const char *tls_ca;
  const char *tls_server_name;
  bool json;
  bool tls;
  const char *missing_value; /* a global option given without its value */
  char **args; /* what is left once the global options are taken out */
  int n_args;
  fg_rpc_client *client;
} rctx;

static volatile sig_atomic_t interrupted;

static void on_interrupt(int sig) {
  (void)sig;
  interrupted = 1;
  signal(SIGINT, SIG_DFL); /* a second Ctrl-C ends the process at once */
}

static double mono_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ---- usage and options ---------------------------------------------------- */

void fg__cli_remote_usage(FILE *f) {
  fprintf(f,
          "Remote commands (a fulgurd daemon runs the job):\n"
          "       fulgur submit fit|validate|test|predict --config FILE [--config FILE...]\n"
          "                [--a.b.c=VALUE ...] [--ckpt_path FILE] [--name N]\n"
          "                [--idempotency-key K] [--max-restarts N] [--watch]\n"
          "       fulgur jobs [--state S] [--limit N]\n"
          "       fulgur status ID\n"
          "       fulgur watch ID [--from SEQ]\n"
          "       fulgur events ID [--from SEQ]\n"
          "       fulgur cancel ID | pause ID | resume ID | checkpoint ID\n"
          "       fulgur fork ID [--checkpoint last|PATH] [--name N] [--a.b.c=VALUE ...] [--watch]\n"
          "Global options, anywhere on the line:\n"
          "  --server ADDR       unix:PATH or HOST:PORT (env FULGUR_SERVER; default\n"
          "                      unix:$XDG_RUNTIME_DIR/fulgur.sock, else unix:/tmp/fulgur-$UID.sock)\n"
          "  --token-file F      bearer token for the daemon (env FULGUR_TOKEN_FILE)\n"
          "  --tls-ca FILE       TLS, trusting the CA certificates in FILE (env FULGUR_TLS_CA)\n"
          "  --tls-server-name N the name the server's certificate carries, if not ADDR's host\n"
          "  --json              machine-readable output (proto3 JSON names)\n"
          "submit resolves __base__ and overrides here and sends one YAML document;\n"
          "it prints the job id. watch exits with the job's outcome: 0 succeeded or\n"
          "paused, 1 failed, 130 cancelled. Exit 3: the daemon cannot be reached.\n");
}

/* Takes "--opt VALUE" or "--opt=VALUE" at argv[*i]; true when it matched. */
static bool take_opt(int argc, char **argv, int *i, const char *opt, const char **val, bool *missing) {
  const char *s = argv[*i];
  size_t n = strlen(opt);
  if (strncmp(s, opt, n) != 0) return false;
  if (s[n] == '=') {
    *val = s + n + 1;
    return true;
  }
  if (s[n] != '\0') return false;
  if (*i + 1 >= argc) {
    *missing = true;
    return true;
  }
  *val = argv[++*i];
  return true;
}

static const char *const remote_cmds[] = {"submit", "jobs",   "status",     "watch", "cancel",
                                          "pause",  "resume", "checkpoint", "fork",  "events"};

static bool is_remote_cmd(const char *s) {
  for (size_t i = 0; i < sizeof remote_cmds / sizeof remote_cmds[0]; i++)
    if (strcmp(s, remote_cmds[i]) == 0) return true;
  return false;
}

/* Splits argv into global options and the rest. An option missing its
 * value is noted, not reported: the command may be a local one. */
static void parse_globals(int argc, char **argv, rctx *x) {
  x->args = fg__xcalloc((size_t)argc + 1, sizeof(char *));
  for (int i = 1; i < argc; i++) {
    bool missing = false;
    const char *v = NULL;
    if (take_opt(argc, argv, &i, "--server", &v, &missing)) x->server_arg = v;
    else if (take_opt(argc, argv, &i, "--token-file", &v, &missing)) x->token_file = v;
    else if (take_opt(argc, argv, &i, "--tls-ca", &v, &missing)) x->tls_ca = v;
    else if (take_opt(argc, argv, &i, "--tls-server-name", &v, &missing)) x->tls_server_name = v;
    else if (strcmp(argv[i], "--json") == 0) x->json = true;
    else x->args[x->n_args++] = argv[i];
    if (missing && x->missing_value == NULL) x->missing_value = argv[i];
  }
}

static char *resolve_target(const char *arg) {
  char *t = NULL;
  if (arg == NULL || arg[0] == '\0') arg = getenv("FULGUR_SERVER");
  if (arg && arg[0] == '/') { /* a bare socket path */
    t = fg__xasprintf("unix:%s", arg);
  } else if (arg && arg[0]) {
    t = fg__xstrdup(arg);
  } else {
    const char *rt = getenv("XDG_RUNTIME_DIR");
    t = rt && rt[0] ? fg__xasprintf("unix:%s/fulgur.sock", rt)
                    : fg__xasprintf("unix:/tmp/fulgur-%u.sock", (unsigned)getuid());
  }
  return t;
}

/* The token in a file: its first line, surrounding blanks trimmed. */
static int read_token(const char *path, char **out) {
  FILE *f = fopen(path, "r");
  if (f == NULL) {
    fprintf(stderr, "fulgur: cannot open token file %s: %s\n", path, strerror(errno));
    return -1;
  }
  char *line = NULL;
  size_t cap = 0;
  ssize_t n = getline(&line, &cap, f);
  fclose(f);
  if (n < 0) n = 0, line = line ? line : fg__xstrdup("");
  size_t a = 0, b = (size_t)n;
  while (a < b && (line[a] == ' ' || line[a] == '\t')) a++;
  while (b > a && strchr(" \t\r\n", line[b - 1])) b--;
  if (a == b) {
    fprintf(stderr, "fulgur: token file %s: no token in its first line\n", path);
    free(line);
    return -1;
  }
  memmove(line, line + a, b - a);
  line[b - a] = '\0';
  *out = line;
  return 0;
}

static void drop_log(gpr_log_func_args *args) { (void)args; }

static int connect_daemon(rctx *x) {
  x->target = resolve_target(x->server_arg);
  const char *tf = x->token_file ? x->token_file : getenv("FULGUR_TOKEN_FILE");
  const char *ca = x->tls_ca ? x->tls_ca : getenv("FULGUR_TLS_CA");
  char *token = NULL;
  if (tf && tf[0] && read_token(tf, &token)) return EXIT_USAGE;
  fg_rpc_client_opts o = {.target = x->target,
                          .token = token,
                          .tls_ca_file = ca && ca[0] ? ca : NULL,
                          .tls_server_name = x->tls_server_name,
                          .default_timeout_ms = CALL_TIMEOUT_MS};
  x->tls = o.tls_ca_file != NULL;
  /* gRPC logs its own view of failures to stderr; the status message says
   * what matters. GRPC_VERBOSITY or GRPC_TRACE in the environment keep
   * gRPC's logging as it is, for debugging. */
  if (getenv("GRPC_VERBOSITY") == NULL && getenv("GRPC_TRACE") == NULL) gpr_set_log_function(drop_log);
  char *details = NULL;
  grpc_status_code st = fg_rpc_client_create(&o, &x->client, &details);
  if (token) {
    memset(token, 0, strlen(token));
    free(token);
  }
  if (st) {
    fprintf(stderr, "fulgur: %s\n", details);
    free(details);
    return EXIT_USAGE;
  }
  return 0;
}

/* ---- statuses -> exit codes ------------------------------------------------ */

static int exit_for_status(grpc_status_code st) {
  switch (st) {
  case GRPC_STATUS_OK: return EXIT_OK;
  case GRPC_STATUS_UNAVAILABLE:
  case GRPC_STATUS_DEADLINE_EXCEEDED: return EXIT_UNREACHABLE;
  case GRPC_STATUS_INVALID_ARGUMENT:
  case GRPC_STATUS_NOT_FOUND:
  case GRPC_STATUS_ALREADY_EXISTS:
  case GRPC_STATUS_PERMISSION_DENIED:
  case GRPC_STATUS_FAILED_PRECONDITION:
  case GRPC_STATUS_OUT_OF_RANGE:
  case GRPC_STATUS_UNIMPLEMENTED:
  case GRPC_STATUS_UNAUTHENTICATED: return EXIT_USAGE;
  default: return EXIT_FAILED;
  }
}

/* Prints `fulgur: STATUS_NAME: message` (and a hint for the two statuses
 * whose cure is on this side) and returns the exit code. */
static int report_status(const rctx *x, grpc_status_code st, const char *details) {
  fprintf(stderr, "fulgur: %s: %s\n", fg_rpc_status_name(st),
          details && details[0] ? details : "(no message)");
  if (st == GRPC_STATUS_UNAVAILABLE || st == GRPC_STATUS_DEADLINE_EXCEEDED)
    fprintf(stderr,
            "fulgur: cannot reach the daemon at %s (is fulgurd running? set --server or "
            "FULGUR_SERVER%s)\n",
            x->target,
            x->tls                           ? ""
            : strncmp(x->target, "unix:", 5) ? "; a TLS daemon needs --tls-ca"
                                             : "");
  else if (st == GRPC_STATUS_UNAUTHENTICATED)
    fprintf(stderr,
            "fulgur: the daemon wants a valid token: give its token file with --token-file or "
            "FULGUR_TOKEN_FILE\n");
  return exit_for_status(st);
}

/* A unary call; on failure prints the status and returns the exit code. */
static int call(rctx *x, const char *method, const ProtobufCMessage *req,
                const ProtobufCMessageDescriptor *resp_type, int timeout_ms, ProtobufCMessage **resp) {
  char *details = NULL;
  grpc_status_code st = fg_rpc_call(x->client, method, req, resp_type, timeout_ms, resp, &details);
  if (st == GRPC_STATUS_OK) return 0;
  int code = report_status(x, st, details);
  free(details);
  return code;
}

static int get_job(rctx *x, const char *id, int timeout_ms, bool quiet, Fulgur__V1__Job **out) {
  Fulgur__V1__GetJobRequest req = FULGUR__V1__GET_JOB_REQUEST__INIT;
  req.id = (char *)id;
  if (quiet) {
    grpc_status_code st =
        fg_rpc_call(x->client, FG_RPC_METHOD("GetJob"), &req.base, &fulgur__v1__job__descriptor,
                    timeout_ms, (ProtobufCMessage **)out, NULL);
    return st ? exit_for_status(st) : 0;
  }
  return call(x, FG_RPC_METHOD("GetJob"), &req.base, &fulgur__v1__job__descriptor, timeout_ms,
              (ProtobufCMessage **)out);
}

static void free_msg(void *m) {
  if (m) protobuf_c_message_free_unpacked(m, NULL);
}

/* ---- JSON ------------------------------------------------------------------ */

static void print_job_json(const Fulgur__V1__Job *j) {
  fg_json_writer w;
  fg__json_init(&w, stdout);
  fg__json_message(&w, &j->base);
  fputc('\n', stdout);
  fflush(stdout);
}

static void print_event_json(const Fulgur__V1__JobEvent *e) {
  fg_json_writer w;
  fg__json_init(&w, stdout);
  fg__json_message(&w, &e->base);
  fputc('\n', stdout);
  fflush(stdout);
}

/* ---- human output ------------------------------------------------------------ */

static const char *level_name(Fulgur__V1__LogLine__Level l) {
  static const char *const names[] = {"debug", "info", "warning", "error"};
  return (unsigned)l < 4 ? names[l] : "log";
}

static void fmt_time(char *buf, size_t len, int64_t ns) {
  if (ns <= 0) {
    snprintf(buf, len, "-");
    return;
  }
  time_t t = (time_t)(ns / 1000000000);
  struct tm tm;
  localtime_r(&t, &tm);
  strftime(buf, len, "%Y-%m-%d %H:%M:%S", &tm);
}

static void print_values(FILE *f, Fulgur__V1__Scalars__ValuesEntry **v, size_t n) {
  for (size_t i = 0; i < n; i++) fprintf(f, "%s%s=%.6g", i ? " " : "", v[i]->key, v[i]->value);
}

/* The length of s without its trailing newlines (a log line's own). */
static int trimmed_len(const char *s) {
  size_t n = s ? strlen(s) : 0;
  while (n > 0 && (s[n - 1] == '\n' || s[n - 1] == '\r')) n--;
  return (int)n;
}

/* One line per event: `seq  kind  details`. */
static void print_event_line(const Fulgur__V1__JobEvent *e) {
  printf("%" PRIu64 "  ", e->seq);
  const Fulgur__V1__Scalars *s = NULL;
  switch (e->kind_case) {
  case FULGUR__V1__JOB_EVENT__KIND_STATE:
    printf("%-8s  %s", "state", fg_rpc_state_name(e->state->state));
    if (e->state->message && e->state->message[0]) printf("  %s", e->state->message);
    break;
  case FULGUR__V1__JOB_EVENT__KIND_STEP:
  case FULGUR__V1__JOB_EVENT__KIND_EPOCH:
    s = e->kind_case == FULGUR__V1__JOB_EVENT__KIND_STEP ? e->step : e->epoch;
    printf("%-8s  %s epoch=%" PRId64 " step=%" PRId64,
           e->kind_case == FULGUR__V1__JOB_EVENT__KIND_STEP ? "step" : "epoch",
           s->split && s->split[0] ? s->split : "-", s->epoch, s->global_step);
    if (e->kind_case == FULGUR__V1__JOB_EVENT__KIND_STEP) printf(" batch=%" PRId64, s->batch_idx);
    if (s->n_values) fputs("  ", stdout);
    print_values(stdout, s->values, s->n_values);
    break;
  case FULGUR__V1__JOB_EVENT__KIND_LOG:
    printf("%-8s  %s  %.*s", "log", level_name(e->log->level), trimmed_len(e->log->text), e->log->text);
    break;
  case FULGUR__V1__JOB_EVENT__KIND_ARTIFACT:
    printf("%-8s  %s  %s", "artifact", e->artifact->kind, e->artifact->path);
    break;
  default: fputs("unknown", stdout); break;
  }
  putchar('\n');
  fflush(stdout);
}

static int cmp_entry(const void *a, const void *b) {
  return strcmp((*(Fulgur__V1__Job__MetricsEntry *const *)a)->key,
                (*(Fulgur__V1__Job__MetricsEntry *const *)b)->key);
}

/* The job's metrics sorted by name, for people (JSON keeps the server's
 * order). The caller frees the array, not the entries. */
static Fulgur__V1__Job__MetricsEntry **sorted_metrics(const Fulgur__V1__Job *j) {
  Fulgur__V1__Job__MetricsEntry **m = fg__xcalloc(j->n_metrics + 1, sizeof *m);
  if (j->n_metrics) memcpy(m, j->metrics, j->n_metrics * sizeof *m);
  qsort(m, j->n_metrics, sizeof *m, cmp_entry);
  return m;
}

static void fmt_progress(char *buf, size_t len, const Fulgur__V1__Job *j) {
  const Fulgur__V1__Progress *p = j->progress;
  if (j->state == FULGUR__V1__JOB_STATE__SUCCEEDED) snprintf(buf, len, "100%%");
  else if (p == NULL) snprintf(buf, len, "-");
  else if (p->total_steps > 0) snprintf(buf, len, "%.1f%%", p->percent);
  else if (p->max_epochs > 0) snprintf(buf, len, "epoch %" PRId64 "/%" PRId64, p->epoch + 1, p->max_epochs);
  else if (p->global_step > 0) snprintf(buf, len, "step %" PRId64, p->global_step);
  else snprintf(buf, len, "-");
}

static char *fmt_metrics(const Fulgur__V1__Job *j) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  FG_ASSERT(f != NULL); /* out of memory */
  Fulgur__V1__Job__MetricsEntry **m = sorted_metrics(j);
  for (size_t i = 0; i < j->n_metrics; i++) fprintf(f, "%s%s=%.4g", i ? " " : "", m[i]->key, m[i]->value);
  free(m);
  fclose(f);
  return buf;
}

static void print_job_human(const Fulgur__V1__Job *j) {
  char buf[64], buf2[32];
  printf("id:          %s\n", j->id);
  if (j->name && j->name[0]) printf("name:        %s\n", j->name);
  printf("stage:       %s\n", fg_rpc_stage_name(j->stage));
  printf("state:       %s\n", fg_rpc_state_name(j->state));
  if (j->error && j->error[0]) printf("error:       %s\n", j->error);
  const Fulgur__V1__Progress *p = j->progress;
  if (p) {
    printf("progress:    epoch %" PRId64, p->epoch + 1);
    if (p->max_epochs > 0) printf("/%" PRId64, p->max_epochs);
    printf("  step %" PRId64, p->global_step);
    if (p->total_steps > 0) printf("/%" PRId64 " (%.1f%%)", p->total_steps, p->percent);
    if (p->eta_seconds >= 0 && j->state == FULGUR__V1__JOB_STATE__RUNNING) {
      fg__fmt_duration(buf2, sizeof buf2, p->eta_seconds);
      printf("  ETA %s", buf2);
    }
    if (p->split && p->split[0] && j->state == FULGUR__V1__JOB_STATE__RUNNING) {
      printf("  [%s batch %" PRId64, p->split, p->batch_idx + 1);
      if (p->num_batches > 0) printf("/%" PRId64, p->num_batches);
      putchar(']');
    }
    putchar('\n');
  }
  if (j->n_metrics) {
    printf("metrics:\n");
    Fulgur__V1__Job__MetricsEntry **m = sorted_metrics(j);
    for (size_t i = 0; i < j->n_metrics; i++) printf("  %-26s %.6g\n", m[i]->key, m[i]->value);
    free(m);
  }
  fmt_time(buf, sizeof buf, j->create_time_ns);
  printf("created:     %s\n", buf);
  if (j->start_time_ns > 0) {
    fmt_time(buf, sizeof buf, j->start_time_ns);
    int64_t end = j->end_time_ns > 0 ? j->end_time_ns : fg_rpc_now_ns();
    fg__fmt_duration(buf2, sizeof buf2, (double)(end - j->start_time_ns) * 1e-9);
    printf("started:     %s (%s %s)\n", buf, j->end_time_ns > 0 ? "ran" : "running for", buf2);
  }
  if (j->end_time_ns > 0) {
    fmt_time(buf, sizeof buf, j->end_time_ns);
    printf("ended:       %s\n", buf);
  }
  if (j->run_dir && j->run_dir[0]) printf("run dir:     %s\n", j->run_dir);
  if (j->last_checkpoint && j->last_checkpoint[0]) printf("checkpoint:  %s\n", j->last_checkpoint);
  if (j->attempts > 1) printf("attempts:    %u\n", j->attempts);
  if (j->max_restarts) printf("restarts:    %zu of %u used\n", j->n_failures < j->max_restarts ? j->n_failures : j->max_restarts, j->max_restarts);
  for (size_t i = 0; i < j->n_failures; i++)
    printf("failure:     attempt %u: %s\n", j->failures[i]->attempt, j->failures[i]->reason);
  if (j->parent_id && j->parent_id[0]) printf("forked from: %s at %s\n", j->parent_id, j->parent_checkpoint);
  if (j->memory_limit) {
    fg__bytes_format(j->memory_limit, buf, sizeof buf);
    printf("memory:      limit %s (the config's memory_limit)\n", buf);
  }
  if (j->exit_signal && j->exit_signal[0]) printf("exit:        killed by %s\n", j->exit_signal);
  else if (j->exit_code) printf("exit:        code %d\n", j->exit_code);
  if (j->idempotency_key && j->idempotency_key[0]) printf("idempotency: %s\n", j->idempotency_key);
  printf("last seq:    %" PRIu64 "\n", j->last_seq);
}

/* ---- argument helpers --------------------------------------------------------- */

static int parse_u64(const char *opt, const char *s, uint64_t *out) {
  char *end = NULL;
  errno = 0;
  unsigned long long v = s && s[0] != '-' ? strtoull(s, &end, 10) : 0;
  if (s == NULL || s[0] == '\0' || s[0] == '-' || *end != '\0' || errno) {
    fprintf(stderr, "fulgur: %s: expected a non-negative integer, got '%s'\n", opt, s ? s : "");
    return -1;
  }
  *out = v;
  return 0;
}

static bool wants_help(const rctx *x) {
  for (int i = 1; i < x->n_args; i++)
    if (strcmp(x->args[i], "--help") == 0 || strcmp(x->args[i], "-h") == 0) return true;
  return false;
}

/* For commands of the form `cmd ID [--from SEQ]`: the id and the options. */
static int parse_id_args(const rctx *x, const char **id, uint64_t *from, bool allow_from) {
  *id = NULL;
  for (int i = 1; i < x->n_args; i++) {
    const char *v = NULL;
    bool missing = false;
    if (allow_from && take_opt(x->n_args, x->args, &i, "--from", &v, &missing)) {
      if (missing) {
        fprintf(stderr, "fulgur: --from needs a sequence number\n");
        return -1;
      }
      if (parse_u64("--from", v, from)) return -1;
    } else if (x->args[i][0] == '-' && x->args[i][1] != '\0') {
      fprintf(stderr, "fulgur: %s: unknown option '%s'\n", x->args[0], x->args[i]);
      return -1;
    } else if (*id == NULL) {
      *id = x->args[i];
    } else {
      fprintf(stderr, "fulgur: %s: unexpected argument '%s'\n", x->args[0], x->args[i]);
      return -1;
    }
  }
  if (*id == NULL || (*id)[0] == '\0') {
    fprintf(stderr, "fulgur: %s needs a job id\n", x->args[0]);
    return -1;
  }
  return 0;
}

/* ---- watching a job ------------------------------------------------------------ */

typedef enum {
  WATCH_EVENTS, /* `watch`: every event, one line (or JSON object) each */
  WATCH_FOLLOW, /* `submit --watch`: a progress bar or plain progress lines */
} watch_mode;

typedef struct {
  rctx *x;
  const char *id;
  watch_mode mode;
  bool bar; /* follow mode on a terminal: one live line on stdout */
  uint64_t last_seq;
  Fulgur__V1__JobState state; /* from the latest state event */
  char *state_msg;
  /* progress bar */
  Fulgur__V1__Job *job; /* the latest GetJob, for totals and ETA */
  double last_refresh, last_draw, last_plain;
  bool drawn;
  bool have_step;
  int64_t epoch, global_step, batch_idx;
  char split[16];
  char loss_key[64];
  double loss;
  bool have_loss;
} watcher;

static bool is_terminal(Fulgur__V1__JobState s) {
  return s == FULGUR__V1__JOB_STATE__SUCCEEDED || s == FULGUR__V1__JOB_STATE__FAILED ||
         s == FULGUR__V1__JOB_STATE__CANCELLED || s == FULGUR__V1__JOB_STATE__PAUSED;
}

static void bar_clear(watcher *w) {
  if (!w->drawn) return;
  fputs("\r\033[K", stdout);
  fflush(stdout);
  w->drawn = false;
}

/* The one bar renderer (util/progress_bar.h) on what the daemon holds:
 * the engine's percent and ETA for the stage's own loop, as the worker
 * forwarded them; positions and the loss from the newest step event when
 * it is ahead of the last GetJob. */
static void bar_draw(watcher *w) {
  const Fulgur__V1__Progress *p = w->job ? w->job->progress : NULL;
  int64_t epoch = w->have_step ? w->epoch : p ? p->epoch : 0;
  int64_t step = w->have_step ? w->global_step : p ? p->global_step : 0;
  if (p && p->global_step > step) step = p->global_step, epoch = p->epoch;
  const char *split = w->have_step ? w->split : p && p->split ? p->split : "";
  bool fit = split[0] == '\0' || strcmp(split, "fit") == 0;
  fg_progress_line pl = {.split = split, .epoch = epoch, .max_epochs = p ? p->max_epochs : -1,
                         .percent = p ? p->percent : -1, .eta_seconds = p ? p->eta_seconds : -1,
                         .loss_key = w->have_loss ? w->loss_key : NULL, .loss = w->loss};
  if (fit) {
    pl.step = step;
    pl.total_steps = p ? p->total_steps : 0;
  } else {
    pl.step = (w->have_step ? w->batch_idx : p ? p->batch_idx : 0) + 1;
    if (p && p->num_batches > 0 && p->split && strcmp(p->split, split) == 0) pl.total_steps = p->num_batches;
  }
  char line[512];
  fg__progress_format(&pl, line, sizeof line);
  printf("\r%s\033[K", line);
  fflush(stdout);
  w->drawn = true;
  w->last_draw = mono_now();
}

/* The latest Job, for the bar's totals; failures are ignored (the bar
 * just keeps what it had). */
static void refresh_job(watcher *w) {
  Fulgur__V1__Job *j = NULL;
  w->last_refresh = mono_now();
  if (get_job(w->x, w->id, REFRESH_TIMEOUT_MS, true, &j)) return;
  free_msg(w->job);
  w->job = j;
}

static void take_step(watcher *w, const Fulgur__V1__Scalars *s) {
  w->have_step = true;
  w->epoch = s->epoch;
  w->global_step = s->global_step;
  w->batch_idx = s->batch_idx;
  snprintf(w->split, sizeof w->split, "%s", s->split ? s->split : "");
  /* The loss to show: a logged name ending in "loss", else the first. */
  const Fulgur__V1__Scalars__ValuesEntry *pick = NULL;
  for (size_t i = 0; i < s->n_values && pick == NULL; i++) {
    size_t n = strlen(s->values[i]->key);
    if (n >= 4 && strcmp(s->values[i]->key + n - 4, "loss") == 0) pick = s->values[i];
  }
  if (pick == NULL && s->n_values) pick = s->values[0];
  if (pick) {
    snprintf(w->loss_key, sizeof w->loss_key, "%s", pick->key);
    w->loss = pick->value;
    w->have_loss = true;
  }
}

static void follow_event(watcher *w, const Fulgur__V1__JobEvent *e) {
  double now = mono_now();
  switch (e->kind_case) {
  case FULGUR__V1__JOB_EVENT__KIND_STATE:
    bar_clear(w);
    printf("job %s: %s", w->id, fg_rpc_state_name(e->state->state));
    if (e->state->message && e->state->message[0]) printf(": %s", e->state->message);
    putchar('\n');
    fflush(stdout);
    break;
  case FULGUR__V1__JOB_EVENT__KIND_STEP:
    take_step(w, e->step);
    if (w->bar) {
      if (now - w->last_draw >= 0.1) bar_draw(w);
    } else if (w->last_plain == 0 || now - w->last_plain >= 10) {
      w->last_plain = now;
      printf("%s epoch %" PRId64 " step %" PRId64 ": ", e->step->split, e->step->epoch,
             e->step->global_step);
      print_values(stdout, e->step->values, e->step->n_values);
      putchar('\n');
      fflush(stdout);
    }
    break;
  case FULGUR__V1__JOB_EVENT__KIND_EPOCH:
    bar_clear(w);
    printf("%s epoch %" PRId64 ":", e->epoch->split, e->epoch->epoch);
    for (size_t i = 0; i < e->epoch->n_values; i++)
      printf(" %s=%.4f", e->epoch->values[i]->key, e->epoch->values[i]->value);
    putchar('\n');
    fflush(stdout);
    break;
  case FULGUR__V1__JOB_EVENT__KIND_LOG:
    if (e->log->level == FULGUR__V1__LOG_LINE__LEVEL__DEBUG) break;
    bar_clear(w);
    fprintf(stderr, "fulgur: %s: %.*s\n", level_name(e->log->level), trimmed_len(e->log->text),
            e->log->text);
    break;
  case FULGUR__V1__JOB_EVENT__KIND_ARTIFACT:
    bar_clear(w);
    printf("%s: %s\n", e->artifact->kind, e->artifact->path);
    fflush(stdout);
    break;
  default: break;
  }
}

static void take_event(watcher *w, const Fulgur__V1__JobEvent *e) {
  w->last_seq = e->seq;
  if (e->kind_case == FULGUR__V1__JOB_EVENT__KIND_STATE) {
    w->state = e->state->state;
    free(w->state_msg);
    w->state_msg = fg__xstrdup(e->state->message ? e->state->message : "");
  }
  if (w->x->json) print_event_json(e);
  else if (w->mode == WATCH_EVENTS) print_event_line(e);
  else follow_event(w, e);
}

/* Reads one stream to its end. Returns its final status (*details is
 * malloc'd); GRPC_STATUS_CANCELLED with `interrupted` set after Ctrl-C. */
static grpc_status_code watch_once(watcher *w, char **details) {
  Fulgur__V1__WatchJobRequest req = FULGUR__V1__WATCH_JOB_REQUEST__INIT;
  req.id = (char *)w->id;
  req.after_seq = w->last_seq;
  fg_rpc_stream *s = NULL;
  grpc_status_code st = fg_rpc_stream_open(w->x->client, FG_RPC_METHOD("WatchJob"), &req.base,
                                           &fulgur__v1__job_event__descriptor, 0, &s, details);
  if (st) return st;
  for (;;) {
    ProtobufCMessage *m = NULL;
    /* Short waits, so Ctrl-C and the bar's refresh are noticed. */
    fg_rpc_read_result r = fg_rpc_stream_read(s, 250, &m);
    if (interrupted) {
      free_msg(m);
      fg_rpc_stream_free(s);
      *details = fg__xstrdup("interrupted");
      return GRPC_STATUS_CANCELLED;
    }
    if (r == FG_RPC_READ_END) break;
    if (r == FG_RPC_READ_MESSAGE) {
      Fulgur__V1__JobEvent *e = (Fulgur__V1__JobEvent *)m;
      /* A replay after a reconnect starts after last_seq; a server that
       * sends an event twice anyway must not show it twice. */
      if (e->seq > w->last_seq) take_event(w, e);
      free_msg(m);
    }
    if (w->bar && !is_terminal(w->state) && mono_now() - w->last_refresh >= 1.0) {
      refresh_job(w);
      bar_draw(w);
    }
  }
  const char *d = NULL;
  st = fg_rpc_stream_status(s, &d);
  *details = fg__xstrdup(d);
  fg_rpc_stream_free(s);
  return st;
}

/* Watches job `id` from after_seq until its stream ends, reconnecting
 * after a lost daemon, and returns the exit code of the job's outcome.
 * The caller has had an answer from the daemon already. */
static int watch_job(rctx *x, const char *id, uint64_t after_seq, watch_mode mode) {
  watcher w = {.x = x, .id = id, .mode = mode, .last_seq = after_seq};
  w.bar = mode == WATCH_FOLLOW && !x->json && isatty(STDOUT_FILENO);
  struct sigaction sa = {0}, old_int, old_term;
  sa.sa_handler = on_interrupt; /* no SA_RESTART: a read returns at once */
  sigaction(SIGINT, &sa, &old_int);
  sigaction(SIGTERM, &sa, &old_term);
  if (w.bar) {
    refresh_job(&w);
    bar_draw(&w);
  }
  int code = -1;
  double lost_since = 0; /* when the current outage began; 0 = connected */
  for (;;) {
    uint64_t seq_before = w.last_seq;
    char *details = NULL;
    grpc_status_code st = interrupted ? GRPC_STATUS_CANCELLED : watch_once(&w, &details);
    if (interrupted) {
      bar_clear(&w);
      fprintf(stderr, "fulgur: stopped watching; job %s goes on (fulgur cancel %s stops it)\n", id, id);
      free(details);
      code = EXIT_CANCELLED;
      break;
    }
    if (w.last_seq != seq_before) lost_since = 0;
    if (st == GRPC_STATUS_OK) {
      free(details);
      break;
    }
    /* UNAVAILABLE: the daemon went away (or is restarting); CANCELLED that
     * we did not ask for: the daemon cancelled its calls as it shut down.
     * Either way the stream picks up after the last event seen. (Callers
     * have reached the daemon once already, so this is not a wrong
     * address.) */
    bool lost = st == GRPC_STATUS_UNAVAILABLE || st == GRPC_STATUS_CANCELLED;
    double now = mono_now();
    if (lost && lost_since == 0) {
      lost_since = now;
      bar_clear(&w);
      fprintf(stderr, "fulgur: lost the daemon (%s: %s); reconnecting\n", fg_rpc_status_name(st), details);
    }
    if (!lost || now - lost_since > RECONNECT_BUDGET_S) {
      bar_clear(&w);
      code = report_status(x, st, details);
      free(details);
      break;
    }
    free(details);
    /* gRPC itself retries the connection with a short backoff (set in the
     * client); this only paces the calls. */
    struct timespec ts = {0, 250 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
  bar_clear(&w);
  sigaction(SIGINT, &old_int, NULL);
  sigaction(SIGTERM, &old_term, NULL);
  if (code >= 0) goto done;

  /* The stream ended normally: after the job's terminal state, or at once
   * when --from was past it. Then the job itself says how it ended. */
  Fulgur__V1__Job *job = NULL;
  bool seen = is_terminal(w.state); /* the stream showed the outcome */
  if (!is_terminal(w.state) || (mode == WATCH_FOLLOW && !x->json)) {
    if ((code = get_job(x, id, CALL_TIMEOUT_MS, false, &job))) goto done;
    if (!is_terminal(w.state)) {
      w.state = job->state;
      free(w.state_msg);
      w.state_msg = fg__xstrdup(job->error ? job->error : "");
    }
  }
  const char *why = w.state_msg && w.state_msg[0] ? w.state_msg : job && job->error ? job->error : "";
  switch (w.state) {
  case FULGUR__V1__JOB_STATE__SUCCEEDED:
    code = EXIT_OK;
    if (mode == WATCH_FOLLOW && !x->json && job) {
      if (!seen) printf("job %s: succeeded\n", id);
      Fulgur__V1__Job__MetricsEntry **m = sorted_metrics(job);
      for (size_t i = 0; i < job->n_metrics; i++) printf("%-28s %.6f\n", m[i]->key, m[i]->value);
      free(m);
    }
    break;
  case FULGUR__V1__JOB_STATE__FAILED:
    code = EXIT_FAILED;
    fprintf(stderr, "fulgur: job %s failed%s%s\n", id, why[0] ? ": " : "", why);
    break;
  case FULGUR__V1__JOB_STATE__CANCELLED:
    code = EXIT_CANCELLED;
    fprintf(stderr, "fulgur: job %s cancelled%s%s\n", id, why[0] ? ": " : "", why);
    break;
  case FULGUR__V1__JOB_STATE__PAUSED:
    code = EXIT_OK;
    fprintf(stderr, "fulgur: job %s paused; `fulgur resume %s` continues it\n", id, id);
    break;
  default:
    code = EXIT_FAILED;
    fprintf(stderr, "fulgur: the daemon ended the watch of job %s while it is %s\n", id,
            fg_rpc_state_name(w.state));
    break;
  }
  free_msg(job);
done:
  free_msg(w.job);
  free(w.state_msg);
  fflush(stdout);
  return code;
}

/* ---- commands ------------------------------------------------------------------- */

/* What submit and fork print of the job they made (its id, or --json's
 * Job), then its events with --watch. */
static int reply_new_job(rctx *x, const Fulgur__V1__Job *job, bool watch) {
  if (x->json) print_job_json(job);
  else {
    printf("%s\n", job->id);
    fflush(stdout);
  }
  return watch ? watch_job(x, job->id, 0, WATCH_FOLLOW) : 0;
}

static int cmd_submit(rctx *x) {
  const char *stage_name = x->n_args > 1 ? x->args[1] : NULL;
  Fulgur__V1__Stage stage = fg_rpc_stage_parse(stage_name);
  if (stage == FULGUR__V1__STAGE__STAGE_UNSPECIFIED) {
    fprintf(stderr, "fulgur: submit needs a stage: fit, validate, test or predict%s%s%s\n",
            stage_name ? " (got '" : "", stage_name ? stage_name : "", stage_name ? "')" : "");
    return EXIT_USAGE;
  }
  int n = x->n_args;
  const char **configs = fg__xcalloc((size_t)n, sizeof(char *));
  const char **overrides = fg__xcalloc((size_t)n * 2, sizeof(char *));
  size_t n_configs = 0, n_overrides = 0;
  const char *ckpt = NULL, *name = NULL, *key = NULL;
  uint64_t max_restarts = 0;
  bool watch = false;
  int code = EXIT_USAGE;
  fg_node *cfg = NULL;
  char *yaml = NULL, *err = NULL;
  Fulgur__V1__Job *job = NULL;
  for (int i = 2; i < n; i++) {
    const char *s = x->args[i], *v = NULL;
    bool missing = false;
    if (take_opt(n, x->args, &i, "--config", &v, &missing) ||
        take_opt(n, x->args, &i, "-c", &v, &missing)) {
      if (!missing) configs[n_configs++] = v;
    } else if (take_opt(n, x->args, &i, "--ckpt_path", &v, &missing)) {
      ckpt = v;
    } else if (take_opt(n, x->args, &i, "--name", &v, &missing)) {
      name = v;
    } else if (take_opt(n, x->args, &i, "--idempotency-key", &v, &missing)) {
      key = v;
    } else if (take_opt(n, x->args, &i, "--max-restarts", &v, &missing)) {
      if (!missing && parse_u64("--max-restarts", v, &max_restarts)) goto done;
    } else if (strcmp(s, "--watch") == 0) {
      watch = true;
    } else if (strncmp(s, "--", 2) == 0 && s[2] != '\0') {
      overrides[n_overrides++] = s;
      if (strchr(s, '=') == NULL) {
        if (i + 1 >= n) {
          fprintf(stderr, "fulgur: %s needs a value (%s=VALUE or %s VALUE)\n", s, s, s);
          goto done;
        }
        overrides[n_overrides++] = x->args[++i];
      }
    } else {
      fprintf(stderr, "fulgur: submit: unexpected argument '%s'\n", s);
      goto done;
    }
    if (missing) {
      fprintf(stderr, "fulgur: %s needs a value\n", s);
      goto done;
    }
  }
  if (n_configs == 0) {
    fprintf(stderr, "fulgur: submit: no --config given\n");
    goto done;
  }
  /* __base__ and the overrides are resolved here, where the files are: the
   * daemon gets one self-contained document. */
  if (fg_config_load(configs, n_configs, overrides, n_overrides, &cfg, &err) ||
      fg_node_emit(cfg, &yaml, &err)) {
    fprintf(stderr, "fulgur: %s\n", err ? err : "cannot load the config");
    goto done;
  }
  if ((code = connect_daemon(x))) goto done;
  Fulgur__V1__SubmitJobRequest req = FULGUR__V1__SUBMIT_JOB_REQUEST__INIT;
  req.stage = stage;
  req.config_yaml = yaml;
  req.name = (char *)(name ? name : "");
  req.idempotency_key = (char *)(key ? key : "");
  /* The daemon says what it accepts (INVALID_ARGUMENT above its limit). */
  req.max_restarts = max_restarts > UINT32_MAX ? UINT32_MAX : (uint32_t)max_restarts;
  /* A daemon on this machine (a unix socket) does not share our working
   * directory: a relative checkpoint that exists here goes as absolute. */
  char *ckpt_abs = NULL;
  if (ckpt && ckpt[0] != '/' && strncmp(x->target, "unix:", 5) == 0 && access(ckpt, F_OK) == 0)
    ckpt_abs = realpath(ckpt, NULL);
  req.ckpt_path = (char *)(ckpt_abs ? ckpt_abs : ckpt ? ckpt : "");
  if ((code = call(x, FG_RPC_METHOD("SubmitJob"), &req.base, &fulgur__v1__job__descriptor,
                   SUBMIT_TIMEOUT_MS, (ProtobufCMessage **)&job))) {
    free(ckpt_abs);
    goto done;
  }
  free(ckpt_abs);
  code = reply_new_job(x, job, watch);
done:
  free_msg(job);
  free(yaml);
  free(err);
  fg_node_free(cfg);
  free(configs);
  free(overrides);
  return code;
}

static int cmd_jobs(rctx *x) {
  Fulgur__V1__JobState state = FULGUR__V1__JOB_STATE__JOB_STATE_UNSPECIFIED;
  uint64_t limit = 0;
  for (int i = 1; i < x->n_args; i++) {
    const char *v = NULL;
    bool missing = false;
    if (take_opt(x->n_args, x->args, &i, "--state", &v, &missing)) {
      if (!missing && (state = fg_rpc_state_parse(v)) == FULGUR__V1__JOB_STATE__JOB_STATE_UNSPECIFIED) {
        fprintf(stderr,
                "fulgur: --state: unknown state '%s' (queued, running, succeeded, failed, "
                "cancelled, paused)\n",
                v);
        return EXIT_USAGE;
      }
    } else if (take_opt(x->n_args, x->args, &i, "--limit", &v, &missing)) {
      if (!missing && parse_u64("--limit", v, &limit)) return EXIT_USAGE;
    } else {
      fprintf(stderr, "fulgur: jobs: unexpected argument '%s'\n", x->args[i]);
      return EXIT_USAGE;
    }
    if (missing) {
      fprintf(stderr, "fulgur: %s needs a value\n", x->args[i]);
      return EXIT_USAGE;
    }
  }
  int code = connect_daemon(x);
  if (code) return code;

  /* Every page first: the table's columns are as wide as their widest cell. */
  Fulgur__V1__ListJobsResponse **pages = NULL;
  size_t n_pages = 0, n_jobs = 0;
  char *token = fg__xstrdup("");
  for (;;) {
    Fulgur__V1__ListJobsRequest req = FULGUR__V1__LIST_JOBS_REQUEST__INIT;
    req.state = state;
    req.page_token = token;
    if (limit) req.page_size = (uint32_t)(limit - n_jobs < 1000 ? limit - n_jobs : 1000);
    Fulgur__V1__ListJobsResponse *resp = NULL;
    if ((code = call(x, FG_RPC_METHOD("ListJobs"), &req.base,
                     &fulgur__v1__list_jobs_response__descriptor, 0, (ProtobufCMessage **)&resp)))
      break;
    pages = fg__xrealloc(pages, (n_pages + 1) * sizeof *pages);
    pages[n_pages++] = resp;
    n_jobs += resp->n_jobs;
    bool more = resp->next_page_token && resp->next_page_token[0];
    /* A server that hands back the token it was given would loop forever. */
    if (more && strcmp(resp->next_page_token, token) == 0) {
      fprintf(stderr, "fulgur: the daemon returned the same page token twice; stopping\n");
      more = false;
    }
    free(token);
    token = fg__xstrdup(more ? resp->next_page_token : "");
    if (!more || (limit && n_jobs >= limit)) break;
  }
  free(token);
  if (code == 0) {
    size_t shown = 0, total = limit && n_jobs > limit ? limit : n_jobs;
    if (x->json) {
      fg_json_writer w;
      fg__json_init(&w, stdout);
      fg__json_begin_array(&w);
      for (size_t p = 0; p < n_pages; p++)
        for (size_t i = 0; i < pages[p]->n_jobs && shown < total; i++, shown++) {
          fputc('\n', stdout);
          fg__json_message(&w, &pages[p]->jobs[i]->base);
        }
      fg__json_end_array(&w);
      fputc('\n', stdout);
    } else {
      int wid = 2, wname = 4, wstage = 5, wstate = 5, wprog = 8;
      char buf[64];
      for (size_t p = 0; p < n_pages; p++)
        for (size_t i = 0; i < pages[p]->n_jobs; i++) {
          const Fulgur__V1__Job *j = pages[p]->jobs[i];
          int l;
          if ((l = (int)strlen(j->id)) > wid) wid = l;
          if ((l = (int)strlen(j->name && j->name[0] ? j->name : "-")) > wname) wname = l;
          if ((l = (int)strlen(fg_rpc_stage_name(j->stage))) > wstage) wstage = l;
          if ((l = (int)strlen(fg_rpc_state_name(j->state))) > wstate) wstate = l;
          fmt_progress(buf, sizeof buf, j);
          if ((l = (int)strlen(buf)) > wprog) wprog = l;
        }
      printf("%-*s  %-*s  %-*s  %-*s  %-*s  %s\n", wid, "ID", wname, "NAME", wstage, "STAGE",
             wstate, "STATE", wprog, "PROGRESS", "METRICS");
      for (size_t p = 0; p < n_pages; p++)
        for (size_t i = 0; i < pages[p]->n_jobs && shown < total; i++, shown++) {
          const Fulgur__V1__Job *j = pages[p]->jobs[i];
          fmt_progress(buf, sizeof buf, j);
          char *m = fmt_metrics(j);
          printf("%-*s  %-*s  %-*s  %-*s  %-*s  %s\n", wid, j->id, wname,
                 j->name && j->name[0] ? j->name : "-", wstage, fg_rpc_stage_name(j->stage), wstate,
                 fg_rpc_state_name(j->state), wprog, buf, m);
          free(m);
        }
    }
  }
  for (size_t p = 0; p < n_pages; p++) free_msg(pages[p]);
  free(pages);
  return code;
}

static int cmd_status(rctx *x) {
  const char *id;
  uint64_t unused = 0;
  if (parse_id_args(x, &id, &unused, false)) return EXIT_USAGE;
  int code = connect_daemon(x);
  if (code) return code;
  Fulgur__V1__Job *job = NULL;
  if ((code = get_job(x, id, 0, false, &job))) return code;
  if (x->json) print_job_json(job);
  else print_job_human(job);
  free_msg(job);
  return 0;
}

/* cancel, pause, resume and checkpoint: the same request shape, the Job
 * back. */
static int cmd_control(rctx *x, const char *method) {
  const char *id;
  uint64_t unused = 0;
  if (parse_id_args(x, &id, &unused, false)) return EXIT_USAGE;
  int code = connect_daemon(x);
  if (code) return code;
  Fulgur__V1__CancelJobRequest req = FULGUR__V1__CANCEL_JOB_REQUEST__INIT;
  Fulgur__V1__PauseJobRequest preq = FULGUR__V1__PAUSE_JOB_REQUEST__INIT;
  Fulgur__V1__ResumeJobRequest rreq = FULGUR__V1__RESUME_JOB_REQUEST__INIT;
  Fulgur__V1__CheckpointJobRequest creq = FULGUR__V1__CHECKPOINT_JOB_REQUEST__INIT;
  req.id = preq.id = rreq.id = creq.id = (char *)id;
  const ProtobufCMessage *m = strcmp(method, FG_RPC_METHOD("PauseJob")) == 0        ? &preq.base
                              : strcmp(method, FG_RPC_METHOD("ResumeJob")) == 0     ? &rreq.base
                              : strcmp(method, FG_RPC_METHOD("CheckpointJob")) == 0 ? &creq.base
                                                                                    : &req.base;
  Fulgur__V1__Job *job = NULL;
  if ((code = call(x, method, m, &fulgur__v1__job__descriptor, 0, (ProtobufCMessage **)&job))) return code;
  if (x->json) print_job_json(job);
  else {
    printf("%s  %s", job->id, fg_rpc_state_name(job->state));
    if (job->error && job->error[0]) printf("  %s", job->error);
    putchar('\n');
  }
  free_msg(job);
  return 0;
}

/* fork ID [--checkpoint last|PATH] [--name N] [--watch] [--a.b=v ...]:
 * the overrides go to the daemon as they are, which applies them to the
 * source job's config and names a bad one. */
static int cmd_fork(rctx *x) {
  int n = x->n_args;
  const char *id = NULL, *ckpt = "last", *name = NULL;
  bool watch = false;
  char **overrides = fg__xcalloc((size_t)n + 1, sizeof *overrides);
  size_t n_over = 0;
  int code = EXIT_USAGE;
  Fulgur__V1__Job *job = NULL;
  for (int i = 1; i < n; i++) {
    const char *s = x->args[i], *v = NULL;
    bool missing = false;
    if (take_opt(n, x->args, &i, "--checkpoint", &v, &missing)) {
      ckpt = v;
    } else if (take_opt(n, x->args, &i, "--name", &v, &missing)) {
      name = v;
    } else if (strcmp(s, "--watch") == 0) {
      watch = true;
    } else if (strncmp(s, "--", 2) == 0 && s[2] != '\0') {
      /* One "--k=v" argument per override, as SubmitJob's. */
      if (strchr(s, '=')) {
        overrides[n_over++] = fg__xstrdup(s);
      } else if (i + 1 < n) {
        overrides[n_over++] = fg__xasprintf("%s=%s", s, x->args[++i]);
      } else {
        fprintf(stderr, "fulgur: %s needs a value (%s=VALUE or %s VALUE)\n", s, s, s);
        goto done;
      }
    } else if (id == NULL) {
      id = s;
    } else {
      fprintf(stderr, "fulgur: fork: unexpected argument '%s'\n", s);
      goto done;
    }
    if (missing) {
      fprintf(stderr, "fulgur: %s needs a value\n", s);
      goto done;
    }
  }
  if (id == NULL || id[0] == '\0') {
    fprintf(stderr, "fulgur: fork needs a job id\n");
    goto done;
  }
  if ((code = connect_daemon(x))) goto done;
  Fulgur__V1__ForkJobRequest req = FULGUR__V1__FORK_JOB_REQUEST__INIT;
  req.id = (char *)id;
  req.checkpoint = (char *)ckpt;
  req.name = (char *)(name ? name : "");
  req.overrides = overrides;
  req.n_overrides = n_over;
  if ((code = call(x, FG_RPC_METHOD("ForkJob"), &req.base, &fulgur__v1__job__descriptor,
                   SUBMIT_TIMEOUT_MS, (ProtobufCMessage **)&job)))
    goto done;
  code = reply_new_job(x, job, watch);
done:
  free_msg(job);
  for (size_t i = 0; i < n_over; i++) free(overrides[i]);
  free(overrides);
  return code;
}

static int cmd_watch(rctx *x) {
  const char *id;
  uint64_t from = 0;
  if (parse_id_args(x, &id, &from, true)) return EXIT_USAGE;
  int code = connect_daemon(x);
  if (code) return code;
  /* One GetJob first: an unknown job or an unreachable daemon is reported
   * at once, and once the daemon has answered, a stream that breaks later
   * is a daemon going away, to be waited for. */
  Fulgur__V1__Job *job = NULL;
  if ((code = get_job(x, id, 0, false, &job))) return code;
  free_msg(job);
  return watch_job(x, id, from, WATCH_EVENTS);
}

static int cmd_events(rctx *x) {
  const char *id;
  uint64_t after = 0;
  if (parse_id_args(x, &id, &after, true)) return EXIT_USAGE;
  int code = connect_daemon(x);
  if (code) return code;
  for (;;) {
    Fulgur__V1__ListJobEventsRequest req = FULGUR__V1__LIST_JOB_EVENTS_REQUEST__INIT;
    req.id = (char *)id;
    req.after_seq = after;
    Fulgur__V1__ListJobEventsResponse *resp = NULL;
    if ((code = call(x, FG_RPC_METHOD("ListJobEvents"), &req.base,
                     &fulgur__v1__list_job_events_response__descriptor, 0, (ProtobufCMessage **)&resp)))
      return code;
    for (size_t i = 0; i < resp->n_events; i++) {
      if (x->json) print_event_json(resp->events[i]);
      else print_event_line(resp->events[i]);
    }
    bool more = resp->more && resp->last_seq > after;
    if (resp->more && resp->last_seq <= after)
      fprintf(stderr,
              "fulgur: the daemon said more events follow but did not advance past %" PRIu64 "\n",
              after);
    after = resp->last_seq;
    free_msg(resp);
    if (!more) break;
  }
  return 0;
}

int fg__cli_remote_main(int argc, char **argv) {
  rctx x = {0};
  int code = -1;
  parse_globals(argc, argv, &x);
  if (x.n_args == 0 && x.missing_value) { /* `fulgur --server` */
    fprintf(stderr, "fulgur: %s needs a value\n", x.missing_value);
    code = EXIT_USAGE;
    goto done;
  }
  if (x.n_args == 0 || !is_remote_cmd(x.args[0])) goto done; /* a local command, or none */
  if (x.missing_value) {
    fprintf(stderr, "fulgur: %s needs a value\n", x.missing_value);
    code = EXIT_USAGE;
    goto done;
  }
  if (wants_help(&x)) {
    fg__cli_remote_usage(stdout);
    code = 0;
    goto done;
  }
  const char *cmd = x.args[0];
  if (strcmp(cmd, "submit") == 0) code = cmd_submit(&x);
  else if (strcmp(cmd, "jobs") == 0) code = cmd_jobs(&x);
  else if (strcmp(cmd, "status") == 0) code = cmd_status(&x);
  else if (strcmp(cmd, "watch") == 0) code = cmd_watch(&x);
  else if (strcmp(cmd, "events") == 0) code = cmd_events(&x);
  else if (strcmp(cmd, "cancel") == 0) code = cmd_control(&x, FG_RPC_METHOD("CancelJob"));
  else if (strcmp(cmd, "pause") == 0) code = cmd_control(&x, FG_RPC_METHOD("PauseJob"));
  else if (strcmp(cmd, "resume") == 0) code = cmd_control(&x, FG_RPC_METHOD("ResumeJob"));
  else if (strcmp(cmd, "checkpoint") == 0) code = cmd_control(&x, FG_RPC_METHOD("CheckpointJob"));
  else if (strcmp(cmd, "fork") == 0) code = cmd_fork(&x);
done:
  fflush(stdout);
  fg_rpc_client_free(x.client);
  free(x.target);
  free(x.args);
  return code;
}
