/* Atomic file writes: a reader never sees a half-written file (a
 * checkpoint, a CSV log, predictions, a job's config). The one helper for
 * it, in fulgur_common so the daemon (no libtorch) uses it too. */
#include "util/atomic_file.h"

#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fulgur/error.h"
#include "util/xalloc.h"

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
  char *dir = fg__xstrdup(path);
  int dfd = open(dirname(dir), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd >= 0) {
    fsync(dfd);
    close(dfd);
  }
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
