/* A job's top-level options: the keys at the top of a config that tell
 * fulgurd how to run the job rather than the engine how to train
 * (restart_policy, max_restarts, memory_limit).
 *
 * The daemon has no engine and so no config parser: `fulgur-worker check`
 * parses and checks the config, and its reply starts with one line that
 * carries these options, then the checked YAML:
 *
 *   # job options: restart_policy=resume max_restarts=2 memory_limit=2G
 *   <the merged, checked config>
 *
 * The line is a YAML comment, so the reply stays a valid config; the
 * daemon stores the options with the job and the YAML after the line as
 * its config. Both sides use this file, so they cannot disagree. */
#ifndef FG_UTIL_JOB_OPTS_H
#define FG_UTIL_JOB_OPTS_H

#include <stdbool.h>
#include <stdint.h>

typedef enum {
  FG_RESTART_FAIL = 0, /* a job running when the daemon died fails */
  FG_RESTART_RESUME,   /* ... or runs again from its last checkpoint */
} fg_restart_policy;

typedef struct {
  fg_restart_policy restart_policy;
  /* Retries in place after a failed attempt (fulgurd); 0 = none. */
  unsigned max_restarts;
  /* The worker's address-space limit in bytes, lowering fulgurd's
   * --job-memory-limit for this job; 0 = the daemon's. */
  uint64_t memory_limit;
} fg_job_opts;

/* The largest max_restarts a config may ask for. */
#define FG_MAX_RESTARTS_LIMIT 1000

/* "fail" or "resume" into *out; false for anything else. */
bool fg__restart_policy_parse(const char *s, fg_restart_policy *out);
const char *fg__restart_policy_name(fg_restart_policy p);

/* The reply's first line, "# job options: ...\n" (caller frees). */
char *fg__job_opts_line(const fg_job_opts *o);
/* Reads the options line at the start of a check reply into *o and
 * points *config past it. 0, or -1 with *err (caller frees) when the
 * reply has no such line or a value is not one this build knows. */
int fg__job_opts_split(const char *reply, fg_job_opts *o, const char **config, char **err);

#endif
