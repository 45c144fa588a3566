/* Resource limits on the processes fulgurd starts (the config checker and
 * the job workers). libuv's spawn has no hook between fork and exec, so the
 * daemon sets them on the child right after it has started (prlimit):
 * before the child has read a request, and with the hard limit equal to
 * the soft one, so the child cannot lift them. A job worker's children
 * (ddp ranks) inherit them. */
#ifndef FGD_RLIMITS_H
#define FGD_RLIMITS_H

#include <stdint.h>
#include <sys/types.h>

/* Limits pid's address space to as_bytes (0: leaves it as it is) and
 * turns core dumps off (a child killed by a limit must not write a core
 * of gigabytes into its job's folder). 0, or -1 with *err (caller frees). */
int fgd_limit_process(pid_t pid, uint64_t as_bytes, char **err);

#endif
