/* GET /metrics: the Prometheus text exposition format (version 0.0.4),
 * built from the loop's own state at each scrape (no counters kept on the
 * side that could drift from it). Per-job series stay bounded: a finished
 * job leaves them --metrics-retain after it ended. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "fg_rpc.h"
#include "internal.h"
#include "util/numfmt.h"

/* A label value with \, " and newlines escaped, as the format asks. */
static void label(FILE *f, const char *v) {
  fputc('"', f);
  for (const char *p = v ? v : ""; *p; p++) {
    if (*p == '\\') fputs("\\\\", f);
    else if (*p == '"') fputs("\\\"", f);
    else if (*p == '\n') fputs("\\n", f);
    else fputc(*p, f);
  }
  fputc('"', f);
}

/* A sample value: Go's float syntax, which Prometheus parses. */
static void value(FILE *f, double v) {
  if (v != v) {
    fputs(" NaN\n", f);
  } else if (v > 1.7976931348623157e308 || v < -1.7976931348623157e308) {
    fputs(v > 0 ? " +Inf\n" : " -Inf\n", f);
  } else {
    char buf[40];
    fg__shortest_double(v, buf, sizeof buf);
    fprintf(f, " %s\n", buf);
  }
}

static void head(FILE *f, const char *name, const char *type, const char *help) {
  fprintf(f, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static const Fulgur__V1__JobState states[] = {
    FULGUR__V1__JOB_STATE__QUEUED,    FULGUR__V1__JOB_STATE__RUNNING, FULGUR__V1__JOB_STATE__PAUSED,
    FULGUR__V1__JOB_STATE__SUCCEEDED, FULGUR__V1__JOB_STATE__FAILED,  FULGUR__V1__JOB_STATE__CANCELLED,
};

/* Whether a job's own series are still shown. */
static bool retained(const fgd_http *h, const fgd_job *j, int64_t now) {
  if (!fgd_state_terminal(j->state) || j->end_ns <= 0) return true;
  return now - j->end_ns <= h->o.metrics_retain_ns;
}

char *fgd_http_metrics(fgd_http *h, size_t *len) {
  fgd *d = h->d;
  char *out = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&out, &n);
  int64_t now = fg_rpc_now_ns();

  size_t count[sizeof states / sizeof *states] = {0};
  uint64_t events = 0;
  for (size_t i = 0; i < d->n_jobs; i++) {
    const fgd_job *j = d->jobs[i];
    for (size_t s = 0; s < sizeof states / sizeof *states; s++)
      if (j->state == states[s]) count[s]++;
    events += j->stored_seq;
  }
  head(f, "fulgur_jobs", "gauge", "Jobs the daemon knows, by state.");
  for (size_t s = 0; s < sizeof states / sizeof *states; s++) {
    const ProtobufCEnumValue *ev =
        protobuf_c_enum_descriptor_get_value(&fulgur__v1__job_state__descriptor, (int)states[s]);
    fputs("fulgur_jobs{state=", f);
    label(f, ev ? ev->name : "?");
    fputc('}', f);
    value(f, (double)count[s]);
  }
  head(f, "fulgur_queue_length", "gauge", "Jobs waiting for a free slot (--max-jobs).");
  fputs("fulgur_queue_length", f);
  value(f, d->queued);
  head(f, "fulgur_running_jobs", "gauge", "Jobs with a worker process running.");
  fputs("fulgur_running_jobs", f);
  value(f, d->running);
  head(f, "fulgur_watchers", "gauge", "Open event streams (WatchJob and Server-Sent Events).");
  fputs("fulgur_watchers", f);
  value(f, (double)d->n_watchers);
  head(f, "fulgur_events_total", "counter", "Job events stored, over every job in the state store.");
  fputs("fulgur_events_total", f);
  value(f, (double)events);
  head(f, "fulgur_store_bytes", "gauge", "Size of the job store's database (SQLite pages in use).");
  fputs("fulgur_store_bytes", f);
  value(f, (double)fgd_store_bytes(d->store));

  head(f, "fulgur_job_metric", "gauge",
       "Latest value of each scalar a job logged (key as logged: fit/loss, val/Accuracy).");
  for (size_t i = 0; i < d->n_jobs; i++) {
    const fgd_job *j = d->jobs[i];
    if (!retained(h, j, now)) continue;
    for (size_t m = 0; m < j->n_metrics; m++) {
      fputs("fulgur_job_metric{job_id=", f);
      label(f, j->id);
      fputs(",job_name=", f);
      label(f, j->name);
      fputs(",key=", f);
      label(f, j->metrics[m].key);
      fputc('}', f);
      value(f, j->metrics[m].value);
    }
  }
  head(f, "fulgur_job_progress_ratio", "gauge", "How far a job's current loop has gone, 0 to 1.");
  for (size_t i = 0; i < d->n_jobs; i++) {
    const fgd_job *j = d->jobs[i];
    if (!retained(h, j, now)) continue;
    fputs("fulgur_job_progress_ratio{job_id=", f);
    label(f, j->id);
    fputc('}', f);
    value(f, j->state == FULGUR__V1__JOB_STATE__SUCCEEDED ? 1.0 : j->percent / 100.0);
  }

  /* The process collector's names (client_golang, client_python). */
  struct rusage ru;
  getrusage(RUSAGE_SELF, &ru);
  double cpu = (double)ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + (double)ru.ru_stime.tv_sec +
               ru.ru_stime.tv_usec / 1e6;
  head(f, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
  fputs("process_cpu_seconds_total", f);
  value(f, cpu);
  long rss_pages = 0, size_pages = 0;
  FILE *statm = fopen("/proc/self/statm", "r");
  if (statm) {
    if (fscanf(statm, "%ld %ld", &size_pages, &rss_pages) != 2) rss_pages = size_pages = 0;
    fclose(statm);
  }
  long page = sysconf(_SC_PAGESIZE);
  head(f, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
  fputs("process_resident_memory_bytes", f);
  value(f, (double)rss_pages * (double)page);
  head(f, "process_virtual_memory_bytes", "gauge", "Virtual memory size in bytes.");
  fputs("process_virtual_memory_bytes", f);
  value(f, (double)size_pages * (double)page);
  fclose(f);
  *len = n;
  return out;
}
