/* A job's top-level options and the check reply's line (job_opts.h). */
#include "util/job_opts.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/bytes.h"
#include "util/xalloc.h"

#define PREFIX "# job options:"

static const char *const policies[] = {[FG_RESTART_FAIL] = "fail", [FG_RESTART_RESUME] = "resume"};

bool fg__restart_policy_parse(const char *s, fg_restart_policy *out) {
  for (int i = 0; s && i < (int)(sizeof policies / sizeof policies[0]); i++)
    if (strcmp(s, policies[i]) == 0) {
      *out = (fg_restart_policy)i;
      return true;
    }
  return false;
}

const char *fg__restart_policy_name(fg_restart_policy p) {
  return p == FG_RESTART_RESUME ? policies[FG_RESTART_RESUME] : policies[FG_RESTART_FAIL];
}

char *fg__job_opts_line(const fg_job_opts *o) {
  char mem[32] = "0";
  if (o->memory_limit) fg__bytes_format(o->memory_limit, mem, sizeof mem);
  return fg__xasprintf(PREFIX " restart_policy=%s max_restarts=%u memory_limit=%s\n",
                       fg__restart_policy_name(o->restart_policy), o->max_restarts, mem);
}

int fg__job_opts_split(const char *reply, fg_job_opts *o, const char **config, char **err) {
  *o = (fg_job_opts){0};
  size_t np = strlen(PREFIX);
  if (reply == NULL || strncmp(reply, PREFIX, np) != 0) {
    *err = fg__xstrdup("the config check's reply has no job options line");
    return -1;
  }
  const char *nl = strchr(reply, '\n');
  char *line = fg__xstrndup(reply + np, nl ? (size_t)(nl - reply) - np : strlen(reply + np));
  int rc = 0;
  char *save = NULL;
  for (char *tok = strtok_r(line, " ", &save); tok && rc == 0; tok = strtok_r(NULL, " ", &save)) {
    char *eq = strchr(tok, '=');
    if (eq) *eq = '\0';
    if (eq && strcmp(tok, "restart_policy") == 0 &&
        fg__restart_policy_parse(eq + 1, &o->restart_policy))
      continue;
    if (eq && strcmp(tok, "max_restarts") == 0) {
      char *end = NULL;
      unsigned long v = strtoul(eq + 1, &end, 10);
      if (eq[1] != '\0' && *end == '\0' && v <= FG_MAX_RESTARTS_LIMIT) {
        o->max_restarts = (unsigned)v;
        continue;
      }
    }
    if (eq && strcmp(tok, "memory_limit") == 0 &&
        (strcmp(eq + 1, "0") == 0 || fg__bytes_parse(eq + 1, &o->memory_limit) == 0))
      continue;
    *err = fg__xasprintf("the config check's reply has an unknown job option '%s%s%s'", tok,
                         eq ? "=" : "", eq ? eq + 1 : "");
    rc = -1;
  }
  free(line);
  *config = nl ? nl + 1 : reply + strlen(reply);
  return rc;
}
