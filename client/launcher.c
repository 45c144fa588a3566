/* fulgur: the command a user types. The remote commands (submit, jobs,
 * status, watch, events, cancel, pause, resume, checkpoint, fork) run here, in a process
 * that links neither libfulgur nor libtorch, so they start in
 * milliseconds. Everything else (fit, validate, test, predict,
 * print-config, help, version, and every mistake) is the engine's: this
 * process becomes `fulgur-local` (client/main.c, installed beside it) with
 * the same arguments. exec, not fork: the engine keeps this pid, so
 * Ctrl-C, SIGTERM, the exit status and the terminal are the user's with
 * the engine directly, exactly as when one binary did both. */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "remote.h"
#include "util/blas_kernel.h"
#include "util/xalloc.h"

#define ENGINE_NAME "fulgur-local"

/* The engine's environment, prepared here and only here: whatever must be
 * set before the engine's libraries initialise is set by this function,
 * just before the exec. The OpenBLAS kernel choice is read when
 * libopenblas loads: asked here (a few milliseconds, without libtorch), it
 * spares the engine executing itself again to apply it. */
static void prepare_engine_environment(void) { fg__blas_kernel_prepare_env(); }

/* The engine beside this executable (after symlinks, as fulgur-rank is
 * found beside the engine); caller frees. */
static char *engine_path(void) {
  char self[PATH_MAX];
  ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
  if (n <= 0) return fg__xstrdup(ENGINE_NAME);
  self[n] = '\0';
  char *slash = strrchr(self, '/');
  if (slash) *slash = '\0';
  return fg__xasprintf("%s/%s", self, ENGINE_NAME);
}

int main(int argc, char **argv) {
  if (argc >= 2) {
    int remote = fg__cli_remote_main(argc, argv);
    if (remote >= 0) return remote;
  }
  char *engine = engine_path();
  prepare_engine_environment();
  execv(engine, argv);
  fprintf(stderr, "fulgur: cannot run the engine '%s': %s (it is installed beside fulgur)\n", engine,
          strerror(errno));
  free(engine);
  return 1;
}
