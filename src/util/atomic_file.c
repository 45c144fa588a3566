/* Atomic file writes: a reader never sees a half-written file (a
 * checkpoint, a CSV log, predictions, a job's config). The one helper for
 * it, in fulgur_common so the daemon (no libtorch) uses it too. */
#include "util/atomic_file.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fulgur/error.h"
#include "util/xalloc.h"

/* A writer killed between open and rename (SIGKILL, a memory limit, a
 * retried job's worker) leaves its "<name>.tmp.<pid>" behind, where a
 * user listing the folder would see it. The next write of the same path
 * removes those whose writer no longer exists. */
static void sweep_dead_temps(const char *dirpath, const char *name) {
  DIR *d = opendir(dirpath);
  if (d == NULL) return;
  size_t nl = strlen(name);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    const char *n = e->d_name;
    if (strncmp(n, name, nl) != 0 || strncmp(n + nl, ".tmp.", 5) != 0) continue;
    char *end = NULL;
    long pid = strtol(n + nl + 5, &end, 10);
    if (end == n + nl + 5 || *end != '\0' || pid <= 0) continue;
    if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
    char *full = fg__xasprintf("%s/%s", dirpath, n);
    unlink(full);
    free(full);
  }
  closedir(d);
}

int fg__write_file_atomic(const char *path, const void *data, size_t len, char **err) {
  char *tmp = fg__xasprintf("%s.tmp.%ld", path, (long)getpid());
  int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) {
    int rc = fg_err_set(err, FG_EIO, "cannot write %s: %s", path, strerror(errno));
    free(tmp);
    return rc;
  }
  const char *p = data;
  size_t left = len;
  while (left > 0) {
    ssize_t w = write(fd, p, left);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) goto fail;
    p += w;
    left -= (size_t)w;
  }
  if (fsync(fd) != 0) goto fail;
  if (close(fd) != 0) {
    fd = -1;
    goto fail;
  }
  fd = -1;
  if (rename(tmp, path) != 0) goto fail;
  /* Make the rename itself durable. */
  char *dir = fg__xstrdup(path), *base = fg__xstrdup(path);
  const char *dirpath = dirname(dir);
  int dfd = open(dirpath, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
  sweep_dead_temps(dirpath, basename(base));
  free(base);
  free(dir);
  free(tmp);
  return 0;
fail:;
  int rc = fg_err_set(err, FG_EIO, "cannot write %s: %s", path, strerror(errno));
  if (fd >= 0) close(fd);
  unlink(tmp);
  free(tmp);
  return rc;
}
