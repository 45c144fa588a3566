/* Resource limits on the processes fulgurd starts (the config checker and
 * the job workers). libuv's spawn has no hook between fork and exec, so the
 * daemon sets them on the child right after it has started (prlimit):
 * before the child has read a request, and with the hard limit equal to
 * the soft one, so the child cannot lift them. A job worker's children
 * (ddp ranks) inherit them. */
#ifndef FGD_RLIMITS_H
#define FGD_RLIMITS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

/* Limits pid's address space to as_bytes (0: leaves it as it is) and
 * turns core dumps off (a child killed by a limit must not write a core
 * of gigabytes into its job's folder). 0, or -1 with *err (caller frees). */
int fgd_limit_process(pid_t pid, uint64_t as_bytes, char **err);

/* Whether this build can limit address space at all. A build under
 * AddressSanitizer or ThreadSanitizer cannot: each process reserves
 * terabytes of shadow memory as it starts, which any limit refuses
 * ("ReserveShadowMemoryRange failed"), so fgd_limit_process leaves the
 * address space alone there and fulgurd says so at start. */
bool fgd_address_space_limits_work(void);

#endif
