/* fulgur-rank: one rank of a `devices: N` run that fg_run started itself
 * (src/trainer/ddp.c). Usage: fulgur-rank fit|validate|test|predict CONFIG.yaml,
 * with torchrun's variables (RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT,
 * LOCAL_RANK) in the environment: it is the torchrun path of fg_run, run
 * by a helper small enough to sit beside every program that embeds the
 * engine. FULGUR_FORK=1 makes its fit a fork (fg_run_opts.fork), as
 * rank 0's. It reports nothing but its error (on stderr, which rank 0
 * forwards with a rank prefix) and its exit status: 0 success, 1 the run
 * failed, 2 usage. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fulgur/config.h"
#include "fulgur/error.h"
#include "fulgur/run.h"

int main(int argc, char **argv) {
  if (argc != 3) {
    fprintf(stderr, "usage: fulgur-rank fit|validate|test|predict CONFIG.yaml (started by fulgur itself)\n");
    return 2;
  }
  /* FULGUR_FORK=1: rank 0 runs a fork (fg_run_opts.fork; set by
   * fulgur-worker), and every rank must load the checkpoint as it does. */
  const char *fork = getenv("FULGUR_FORK");
  fg_run_opts ro = {.stage = fg_stage_parse(argv[1]), .fork = fork && strcmp(fork, "1") == 0};
  if (ro.stage == 0) {
    fprintf(stderr, "fulgur-rank: unknown stage '%s'\n", argv[1]);
    return 2;
  }
  fg_node *config = NULL;
  char *err = NULL;
  int rc = fg_node_parse_file(argv[2], &config, &err);
  if (rc == 0) rc = fg_run(config, &ro, NULL, &err);
  if (rc) fprintf(stderr, "%s\n", err ? err : fg_strerror(rc));
  free(err);
  fg_node_free(config);
  return rc ? 1 : 0;
}
