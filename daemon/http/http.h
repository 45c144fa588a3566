/* fulgurd's HTTP API (--http HOST:PORT): /healthz, Prometheus /metrics,
 * REST under /v1/ as gRPC transcoding maps JobService, Server-Sent Events
 * of a job's events, and the dashboard's static files.
 *
 * libmicrohttpd runs in its external-polling (epoll) mode, driven from the
 * libuv loop: its epoll descriptor is one uv_poll handle, so every handler
 * runs on the loop thread, as the gRPC handlers do, and reaches the
 * daemon's state without locks. A handler that must wait (a submit's
 * config check) suspends its connection and resumes it when answered; the
 * loop never blocks. */
#ifndef FGD_HTTP_H
#define FGD_HTTP_H

#include <stddef.h>
#include <stdint.h>

typedef struct fgd fgd;
typedef struct fgd_http fgd_http;

typedef struct {
  const char *listen;               /* HOST:PORT; port 0 picks a free one */
  const char *tls_cert, *tls_key;   /* PEM files, both or neither */
  const char *token;                /* NULL: no authentication */
  size_t max_request_bytes;         /* larger bodies are 413 */
  int64_t metrics_retain_ns;        /* finished jobs leave /metrics after it */
  const char *chartjs_path;         /* served at /assets/chart.js; NULL: none */
} fgd_http_opts;

/* Binds and starts serving on d's loop. Returns 0, or -1 with *err
 * (caller frees). */
int fgd_http_start(fgd *d, const fgd_http_opts *o, fgd_http **out, char **err);
/* The port bound (the one picked for port 0). */
int fgd_http_port(const fgd_http *h);
/* Shutdown has begun (d->shutting_down): /healthz answers 503 from now
 * on, event streams end (a reader resumes from its Last-Event-ID), new API
 * calls are 503. The server keeps answering until fgd_http_stop. */
void fgd_http_drain(fgd_http *h);
/* Stops serving, closes every connection and frees h (NULL: nothing). */
void fgd_http_stop(fgd_http *h);

/* Parses a --metrics-retain DURATION: a number with a unit s, m, h or d
 * ("90s", "15m", "1h"), or bare seconds. 0 or -1 (bad). */
int fgd_http_parse_duration(const char *s, int64_t *ns);

#endif
