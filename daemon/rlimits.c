/* Resource limits on fulgurd's children (rlimits.h). */
#include "rlimits.h"

#include <errno.h>
#include <string.h>
#include <sys/resource.h>

#include "util/xalloc.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define FGD_SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define FGD_SANITIZED 1
#endif
#endif

bool fgd_address_space_limits_work(void) {
#ifdef FGD_SANITIZED
  return false;
#else
  return true;
#endif
}

int fgd_limit_process(pid_t pid, uint64_t as_bytes, char **err) {
  struct rlimit core = {0, 0};
  if (prlimit(pid, RLIMIT_CORE, &core, NULL) != 0) {
    *err = fg__xasprintf("cannot turn off core dumps of process %d: %s", (int)pid, strerror(errno));
    return -1;
  }
  if (as_bytes == 0 || !fgd_address_space_limits_work()) return 0;
  struct rlimit as = {(rlim_t)as_bytes, (rlim_t)as_bytes};
  if (prlimit(pid, RLIMIT_AS, &as, NULL) != 0) {
    *err = fg__xasprintf("cannot limit the memory of process %d to %llu bytes: %s", (int)pid,
                         (unsigned long long)as_bytes, strerror(errno));
    return -1;
  }
  return 0;
}
