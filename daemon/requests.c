/* Request checks that need no daemon state (requests.h). */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "fulgur/v1/jobs.pb-c.h"
#include "requests.h"
#include "util/job_opts.h"
#include "util/limits.h"
#include "util/xalloc.h"

const ProtobufCMessageDescriptor *fgd_request_descriptor(fgd_method m) {
  switch (m) {
    case FGD_M_SUBMIT: return &fulgur__v1__submit_job_request__descriptor;
    case FGD_M_GET: return &fulgur__v1__get_job_request__descriptor;
    case FGD_M_LIST: return &fulgur__v1__list_jobs_request__descriptor;
    case FGD_M_CANCEL: return &fulgur__v1__cancel_job_request__descriptor;
    case FGD_M_PAUSE: return &fulgur__v1__pause_job_request__descriptor;
    case FGD_M_RESUME: return &fulgur__v1__resume_job_request__descriptor;
    case FGD_M_WATCH: return &fulgur__v1__watch_job_request__descriptor;
    case FGD_M_EVENTS: return &fulgur__v1__list_job_events_request__descriptor;
    case FGD_M_CHECKPOINT: return &fulgur__v1__checkpoint_job_request__descriptor;
    case FGD_M_FORK: return &fulgur__v1__fork_job_request__descriptor;
    default: return NULL;
  }
}

int fgd_list_page_after(const char *token, long long *after) {
  *after = 0;
  if (token[0] == '\0') return 0;
  char *end = NULL;
  errno = 0;
  long long v = strtoll(token, &end, 10);
  if (*end != '\0' || v < 0 || errno == ERANGE) return -1;
  *after = v;
  return 0;
}

static char *check_submit(const Fulgur__V1__SubmitJobRequest *r) {
  if (r->stage < FULGUR__V1__STAGE__FIT || r->stage > FULGUR__V1__STAGE__PREDICT)
    return fg__xstrdup("stage must be FIT, VALIDATE, TEST or PREDICT");
  if (r->config_yaml[0] == '\0') return fg__xstrdup("config_yaml is empty");
  if (r->max_restarts > FG_MAX_RESTARTS_LIMIT)
    return fg__xasprintf("max_restarts: expected at most %d, got %u", FG_MAX_RESTARTS_LIMIT,
                         r->max_restarts);
  /* The checker would refuse it too (config/parse.c): answered here
   * without a round trip. */
  size_t n = strlen(r->config_yaml);
  if (n > FG_CONFIG_MAX_FILE_BYTES)
    return fg__xasprintf("config_yaml is %zu bytes (the limit is %u bytes)", n,
                         FG_CONFIG_MAX_FILE_BYTES);
  return NULL;
}

char *fgd_request_check(fgd_method m, const ProtobufCMessage *req) {
  switch (m) {
    case FGD_M_SUBMIT: return check_submit((const Fulgur__V1__SubmitJobRequest *)req);
    case FGD_M_LIST: {
      const char *token = ((const Fulgur__V1__ListJobsRequest *)req)->page_token;
      long long after;
      if (fgd_list_page_after(token, &after))
        return fg__xasprintf("page_token '%s' is not one this server gave", token);
      return NULL;
    }
    default: return NULL;
  }
}
