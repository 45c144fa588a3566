/* Resource limits on fulgurd's children (rlimits.h). */
#include "rlimits.h"

#include <errno.h>
#include <string.h>
#include <sys/resource.h>

#include "util/xalloc.h"

int fgd_limit_process(pid_t pid, uint64_t as_bytes, char **err) {
  struct rlimit core = {0, 0};
  if (prlimit(pid, RLIMIT_CORE, &core, NULL) != 0) {
    *err = fg__xasprintf("cannot turn off core dumps of process %d: %s", (int)pid, strerror(errno));
    return -1;
  }
  if (as_bytes == 0) return 0;
  struct rlimit as = {(rlim_t)as_bytes, (rlim_t)as_bytes};
  if (prlimit(pid, RLIMIT_AS, &as, NULL) != 0) {
    *err = fg__xasprintf("cannot limit the memory of process %d to %llu bytes: %s", (int)pid,
                         (unsigned long long)as_bytes, strerror(errno));
    return -1;
  }
  return 0;
}
