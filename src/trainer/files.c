/* File helpers for run directories: mkdir -p (atomic writes are
 * util/atomic_file.c, shared with the daemon; whole-file reads util/file.c). */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fulgur/error.h"
#include "trainer/trainer.h"
#include "util/xalloc.h"

int fg__mkdirs(const char *path, char **err) {
  char *p = fg__xstrdup(path);
  int rc = 0;
  for (char *s = p + 1; ; s++) {
    if (*s != '/' && *s != '\0') continue;
    char c = *s;
    *s = '\0';
    if (mkdir(p, 0777) != 0 && errno != EEXIST) {
      rc = fg_err_set(err, FG_EIO, "cannot create folder %s: %s", p, strerror(errno));
      break;
    }
    *s = c;
    if (c == '\0') break;
  }
  free(p);
  if (rc == 0) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
      rc = fg_err_set(err, FG_EIO, "cannot create folder %s: not a folder", path);
  }
  return rc;
}

