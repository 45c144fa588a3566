/* Whole-file reads, shared by the layers that load files written by Python
 * (checkpoints in trainer/, torch.save'd datasets in data/). */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fulgur/error.h"
#include "util/file.h"

int fg__read_file(const char *path, char **data, size_t *len, char **err) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return fg_err_set(err, errno == ENOENT ? FG_ENOENT : FG_EIO, "cannot read %s: %s", path,
                      strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return fg_err_set(err, FG_EIO, "cannot read %s: not a regular file", path);
  }
  char *buf = malloc((size_t)st.st_size + 1);
  if (buf == NULL) {
    close(fd);
    return fg_err_set(err, FG_ENOMEM, "cannot read %s: out of memory", path);
  }
  size_t got = 0;
  while (got < (size_t)st.st_size) {
    ssize_t r = read(fd, buf + got, (size_t)st.st_size - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) {
      int rc = fg_err_set(err, FG_EIO, "cannot read %s: %s", path, r ? strerror(errno) : "truncated");
      free(buf);
      close(fd);
      return rc;
    }
    got += (size_t)r;
  }
  close(fd);
  buf[got] = '\0';
  *data = buf;
  *len = got;
  return 0;
}
