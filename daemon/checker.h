/* The warm config checker: one long-lived `fulgur-worker check --serve`
 * child, so SubmitJob does not load libtorch per call. Requests queue and
 * go to it one at a time; the loop never waits on it. A check that crashes
 * or hangs the child (a timeout kills it) ends only that child: the request
 * is answered as the one-shot checker's death would be, and a fresh child
 * takes the next request. */
#ifndef FGD_CHECKER_H
#define FGD_CHECKER_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

typedef struct fgd_checker fgd_checker;

/* A check's outcome, as the one-shot `fulgur-worker check` would have
 * given it: its exit status or the signal that ended it, and what it
 * printed (out[len] is a NUL; borrowed for the call). exit_status -1: not
 * checked, the checker was closed first. */
typedef void (*fgd_check_done)(void *ctx, int64_t exit_status, int term_signal, const char *out,
                               size_t len);

/* Starts the child at once (cwd: where it runs, as the one-shot checker
 * did). timeout_ms: how long one check may take before the child is
 * killed. memory_limit: the child's address space in bytes (0: none);
 * cpu_seconds: the CPU time each check may use (0: no limit), after which
 * SIGXCPU ends the child (the request is answered with term_signal
 * SIGXCPU). */
fgd_checker *fgd_checker_create(uv_loop_t *loop, const char *worker_path, const char *cwd,
                                unsigned timeout_ms, uint64_t memory_limit, unsigned cpu_seconds);

/* Queues a check: args as the one-shot command's after "check", and the
 * YAML. done is called once, from the loop, never from inside this call. */
void fgd_checker_submit(fgd_checker *ck, const char *const *args, size_t n_args, const char *yaml,
                        fgd_check_done done, void *ctx);

/* Answers what is queued with -1, ends the child (its stdin closes) and
 * frees the checker once its handles are closed. */
void fgd_checker_close(fgd_checker *ck);

#endif
