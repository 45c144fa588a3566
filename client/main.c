/* fulgur: the command-line tool. Local commands (fit, validate, test,
 * predict, print-config) run the engine in this process; remote commands
 * (submit, jobs, status, watch, events, cancel, pause, resume, checkpoint,
 * fork) talk to a fulgurd daemon and live in remote.c. Exit status:
 * 0 success, 1 the run failed, 2 usage or config error, 3 daemon
 * unreachable, 130 cancelled. */
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fulgur/config.h"
#include "fulgur/error.h"
#include "fulgur/events.h"
#include "fulgur/run.h"
#include "fulgur/value.h"
#include "json.h"
#include "remote.h"
#include "util/blas_kernel.h"

#ifndef FG_VERSION
#define FG_VERSION "0.0.0"
#endif

enum { EXIT_RUN_FAILED = 1, EXIT_USAGE = 2, EXIT_UNREACHABLE = 3, EXIT_CANCELLED = 130 };

static volatile sig_atomic_t cancel_flag;

static void on_sigint(int sig) {
  (void)sig;
  cancel_flag = 1;
  /* A second Ctrl-C ends the process the usual way. */
  signal(SIGINT, SIG_DFL);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: fulgur fit|validate|test|predict --config FILE [--config FILE...]\n"
          "                [--a.b.c=VALUE | --a.b.c VALUE ...] [--ckpt_path FILE] [--json]\n"
          "       fulgur print-config --config FILE [...] [--no-validate]\n"
          "       fulgur --version\n"
          "\n"
          "Options after the command override the merged config, LightningCLI style:\n"
          "  --trainer.max_epochs=3   --data.init_args.dataloader_cfg.batch_size 64\n"
          "Values are parsed as YAML. --ckpt_path resumes fit or evaluates a checkpoint.\n"
          "--json prints one JSON object with the final logged metrics on stdout.\n"
          "\n");
  fg__cli_remote_usage(f);
}

typedef struct {
  const char **configs;
  size_t n_configs;
  const char **overrides; /* "--k=v" or "--k", "v" tokens, in order */
  size_t n_overrides;
  bool json;
  bool no_validate;
} cli_args;

static int parse_args(int argc, char **argv, cli_args *a) {
  a->configs = calloc((size_t)argc, sizeof(char *));
  a->overrides = calloc((size_t)argc * 2, sizeof(char *));
  for (int i = 0; i < argc; i++) {
    const char *s = argv[i];
    if (strcmp(s, "--config") == 0 || strcmp(s, "-c") == 0) {
      if (i + 1 >= argc) {
        fprintf(stderr, "fulgur: %s needs a file\n", s);
        return -1;
      }
      a->configs[a->n_configs++] = argv[++i];
    } else if (strncmp(s, "--config=", 9) == 0) {
      a->configs[a->n_configs++] = s + 9;
    } else if (strcmp(s, "--json") == 0) {
      a->json = true;
    } else if (strcmp(s, "--no-validate") == 0) {
      a->no_validate = true;
    } else if (strncmp(s, "--", 2) == 0 && s[2] != '\0') {
      a->overrides[a->n_overrides++] = s;
      if (strchr(s, '=') == NULL) {
        if (i + 1 >= argc) {
          fprintf(stderr, "fulgur: %s needs a value (%s=VALUE or %s VALUE)\n", s, s, s);
          return -1;
        }
        a->overrides[a->n_overrides++] = argv[++i];
      }
    } else {
      fprintf(stderr, "fulgur: unexpected argument '%s'\n", s);
      return -1;
    }
  }
  if (a->n_configs == 0 && a->n_overrides == 0) {
    fprintf(stderr, "fulgur: no --config given\n");
    return -1;
  }
  return 0;
}

static int exit_code_for(int rc) {
  if (rc == FG_ECONFIG || rc == FG_ENOENT) return EXIT_USAGE;
  if (rc == FG_ECANCELED) return EXIT_CANCELLED;
  return EXIT_RUN_FAILED;
}

static int load_config(const cli_args *a, fg_node **out) {
  char *err = NULL;
  int rc = fg_config_load(a->configs, a->n_configs, a->overrides, a->n_overrides, out, &err);
  if (rc) {
    fprintf(stderr, "fulgur: %s\n", err ? err : fg_strerror(rc));
    free(err);
  }
  return rc;
}

static int cmd_print_config(const cli_args *a) {
  fg_node *cfg = NULL;
  int rc = load_config(a, &cfg);
  if (rc) return EXIT_USAGE;
  char *err = NULL;
  if (!a->no_validate) rc = fg_config_load_plugins(cfg, &err);
  if (!a->no_validate && rc == 0) rc = fg_config_check(cfg, true, &err);
  char *yaml = NULL;
  if (rc == 0) rc = fg_node_emit(cfg, &yaml, &err);
  if (rc == 0) fputs(yaml, stdout);
  else fprintf(stderr, "fulgur: %s\n", err ? err : fg_strerror(rc));
  free(yaml);
  free(err);
  fg_node_free(cfg);
  return rc ? exit_code_for(rc) : 0;
}

/* Log lines go to stderr, so stdout stays clean for --json. */
static void log_emit(void *self, const fg_event *ev) {
  (void)self;
  if (ev->kind == FG_EVENT_SUMMARY) {
    /* A table, printed as Lightning logs it: on lines of its own. */
    char *table = fg_model_summary_format(ev->summary);
    fprintf(stderr, "\n%s\n", table);
    free(table);
    return;
  }
  if (ev->kind != FG_EVENT_LOG) return;
  static const char *const levels[] = {"debug", "info", "warning", "error"};
  if (ev->level == FG_LOG_DEBUG) return;
  fprintf(stderr, "fulgur: %s: %s\n", levels[ev->level], ev->text);
}

static int cmd_run(fg_stage stage, const cli_args *a) {
  fg_node *cfg = NULL;
  if (load_config(a, &cfg)) return EXIT_USAGE;
  fg_events *bus = fg_events_create();
  fg_events_add_sink(bus, (fg_sink){log_emit, NULL, NULL});
  signal(SIGINT, on_sigint);
  signal(SIGTERM, on_sigint);
  fg_run_opts ro = {.stage = stage,
                    .events = bus,
                    .cancel = &cancel_flag,
                    .progress = !a->json && isatty(STDOUT_FILENO) ? stdout : NULL};
  fg_value *metrics = NULL;
  char *err = NULL;
  int rc = fg_run(cfg, &ro, &metrics, &err);
  fg_events_free(bus, NULL);
  fg_node_free(cfg);
  if (rc) {
    fprintf(stderr, "fulgur: %s%s\n", rc == FG_ECONFIG ? "" : "error: ", err ? err : fg_strerror(rc));
    free(err);
    return exit_code_for(rc);
  }
  if (a->json) {
    /* The remote commands' writer (json.c): shortest doubles, valid UTF-8.
     * A metric that is not finite prints as null, as it always has here. */
    fg_json_writer w;
    fg__json_init(&w, stdout);
    w.spaced = true;
    fg__json_begin_object(&w);
    for (size_t i = 0; i < fg_value_len(metrics); i++) {
      double v = fg_value_as_double(fg_value_dict_value_at(metrics, i));
      fg__json_key(&w, fg_value_dict_key_at(metrics, i));
      if (isfinite(v)) fg__json_double(&w, v);
      else fg__json_null(&w);
    }
    fg__json_end_object(&w);
    putchar('\n');
  } else if (stage != FG_STAGE_FIT) {
    /* Lightning prints a table of the evaluated metrics. */
    for (size_t i = 0; i < fg_value_len(metrics); i++)
      printf("%-28s %.6f\n", fg_value_dict_key_at(metrics, i),
             fg_value_as_double(fg_value_dict_value_at(metrics, i)));
  }
  fg_value_free(metrics);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return EXIT_USAGE;
  }
  int remote = fg__cli_remote_main(argc, argv);
  if (remote >= 0) return remote;
  /* The `fulgur` launcher has chosen the OpenBLAS kernels before the exec
   * when they needed choosing; run directly, this process does it and
   * executes itself once more (util/blas_kernel.h). */
  fg__blas_kernel_reexec(argv);
  const char *cmd = argv[1];
  if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
    usage(stdout);
    return 0;
  }
  if (strcmp(cmd, "--version") == 0) {
    printf("fulgur %s\n", FG_VERSION);
    /* The BLAS kernels this engine runs with, as a run logs them: what
     * benchmarks print beside their figures. */
    bool slow = false;
    char *blas = fg__blas_kernel_describe(&slow);
    printf("%s\n", blas);
    free(blas);
    return 0;
  }
  cli_args a = {0};
  int code = -1;
  fg_stage stage = fg_stage_parse(cmd);
  if (stage) code = parse_args(argc - 2, argv + 2, &a) ? EXIT_USAGE : cmd_run(stage, &a);
  if (code < 0 && strcmp(cmd, "print-config") == 0)
    code = parse_args(argc - 2, argv + 2, &a) ? EXIT_USAGE : cmd_print_config(&a);
  if (code < 0) {
    fprintf(stderr, "fulgur: unknown command '%s'\n", cmd);
    usage(stderr);
    code = EXIT_USAGE;
  }
  free(a.configs);
  free(a.overrides);
  return code;
}
