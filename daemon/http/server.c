/* See http.h: the libmicrohttpd daemon on the libuv loop, authentication,
 * request bodies and their limit, and the routes that need no job
 * (/healthz, /metrics, the dashboard's files). */
#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "assets.h"
#include "internal.h"
#include "json.h"
#include "util/xalloc.h"

#define HEARTBEAT_MS 5000

/* ---- answers ---- */

unsigned fgd_http_status_of(grpc_status_code code) {
  /* google.api.http's mapping (google/rpc/code.proto), except that
   * FAILED_PRECONDITION is 409 here: a state conflict, which clients retry
   * differently from a malformed request. */
  switch (code) {
    case GRPC_STATUS_OK: return 200;
    case GRPC_STATUS_CANCELLED: return 499;
    case GRPC_STATUS_INVALID_ARGUMENT: return 400;
    case GRPC_STATUS_DEADLINE_EXCEEDED: return 504;
    case GRPC_STATUS_NOT_FOUND: return 404;
    case GRPC_STATUS_ALREADY_EXISTS: return 409;
    case GRPC_STATUS_PERMISSION_DENIED: return 403;
    case GRPC_STATUS_UNAUTHENTICATED: return 401;
    case GRPC_STATUS_RESOURCE_EXHAUSTED: return 429;
    case GRPC_STATUS_FAILED_PRECONDITION: return 409;
    case GRPC_STATUS_ABORTED: return 409;
    case GRPC_STATUS_OUT_OF_RANGE: return 400;
    case GRPC_STATUS_UNIMPLEMENTED: return 501;
    case GRPC_STATUS_UNAVAILABLE: return 503;
    default: return 500;
  }
}

char *fgd_http_error_body(grpc_status_code code, const char *msg, size_t *len) {
  char *buf = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&buf, &n);
  fg_json_writer w;
  fg__json_init(&w, f);
  fg__json_begin_object(&w);
  fg__json_key(&w, "code"), fg__json_int(&w, (int)code);
  fg__json_key(&w, "message"), fg__json_string(&w, msg);
  fg__json_end_object(&w);
  fputc('\n', f);
  fclose(f);
  *len = n;
  return buf;
}

static struct MHD_Response *make_response(const char *ctype, const char *body, size_t len) {
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(len, (void *)body, MHD_RESPMEM_MUST_COPY);
  if (resp && ctype) MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, ctype);
  if (resp) MHD_add_response_header(resp, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
  return resp;
}

enum MHD_Result fgd_http_send(http_req *r, unsigned status, const char *ctype, const char *body,
                              size_t len) {
  struct MHD_Response *resp = make_response(ctype, body, len);
  if (!resp) return MHD_NO;
  if (status == 401) MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer");
  enum MHD_Result rc = MHD_queue_response(r->conn, status, resp);
  MHD_destroy_response(resp);
  return rc;
}

enum MHD_Result fgd_http_fail(http_req *r, grpc_status_code code, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  char *msg = NULL;
  if (vasprintf(&msg, fmt, ap) < 0) msg = NULL;
  va_end(ap);
  size_t len;
  char *body = fgd_http_error_body(code, msg ? msg : "", &len);
  enum MHD_Result rc = fgd_http_send(r, fgd_http_status_of(code), "application/json", body, len);
  free(body);
  free(msg);
  return rc;
}

void fgd_http_suspend(http_req *r) {
  fgd_http *h = r->h;
  r->suspended = true;
  r->next = h->suspended;
  if (h->suspended) h->suspended->prev = r;
  h->suspended = r;
  MHD_suspend_connection(r->conn);
}

static void unlink_suspended(http_req *r) {
  fgd_http *h = r->h;
  if (!r->suspended) return;
  if (r->prev) r->prev->next = r->next;
  else h->suspended = r->next;
  if (r->next) r->next->prev = r->prev;
  r->prev = r->next = NULL;
  r->suspended = false;
}

void fgd_http_resume_with(http_req *r, unsigned status, const char *ctype, const char *body,
                          size_t len) {
  r->answer = make_response(ctype, body, len);
  r->answer_status = status;
  unlink_suspended(r);
  MHD_resume_connection(r->conn);
  fgd_http_kick(r->h);
}

/* ---- authentication, bodies, routes ---- */

static bool authorized(fgd_http *h, struct MHD_Connection *conn) {
  if (!h->token_header) return true;
  const char *v = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
  if (!v) return false;
  size_t n = strlen(v), m = strlen(h->token_header);
  if (n != m) return false;
  /* Constant time: the comparison must not tell how much matched. */
  unsigned char diff = 0;
  for (size_t k = 0; k < n; k++) diff |= (unsigned char)(v[k] ^ h->token_header[k]);
  return diff == 0;
}

static enum MHD_Result serve_asset(http_req *r, const char *name) {
  fgd_http *h = r->h;
  if (strcmp(name, "chart.js") == 0 && h->chartjs) {
    struct MHD_Response *resp = MHD_create_response_from_buffer(h->chartjs_len, h->chartjs,
                                                                MHD_RESPMEM_PERSISTENT);
    MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, "text/javascript; charset=utf-8");
    enum MHD_Result rc = MHD_queue_response(r->conn, 200, resp);
    MHD_destroy_response(resp);
    return rc;
  }
  const fgd_asset *a = fgd_asset_find(name);
  if (!a) return fgd_http_fail(r, GRPC_STATUS_NOT_FOUND, "no asset '%s'", name);
  struct MHD_Response *resp =
      MHD_create_response_from_buffer(a->len, (void *)a->data, MHD_RESPMEM_PERSISTENT);
  MHD_add_response_header(resp, MHD_HTTP_HEADER_CONTENT_TYPE, a->content_type);
  enum MHD_Result rc = MHD_queue_response(r->conn, 200, resp);
  MHD_destroy_response(resp);
  return rc;
}

static enum MHD_Result route(http_req *r, const char *method, const char *url) {
  fgd_http *h = r->h;
  bool get = strcmp(method, "GET") == 0 || strcmp(method, "HEAD") == 0;
  if (strcmp(url, "/healthz") == 0) {
    if (!get) return fgd_http_fail(r, GRPC_STATUS_UNIMPLEMENTED, "%s /healthz: only GET", method);
    bool up = !h->d->shutting_down && !h->draining;
    return fgd_http_send(r, up ? 200 : 503, "text/plain; charset=utf-8", up ? "ok\n" : "shutting down\n",
                         up ? 3 : 14);
  }
  /* The dashboard page and its files hold no job data: a browser loads
   * them before it has the token (it reads it from the URL fragment). */
  if (strcmp(url, "/") == 0 || strncmp(url, "/assets/", 8) == 0) {
    if (!get) return fgd_http_fail(r, GRPC_STATUS_UNIMPLEMENTED, "%s %s: only GET", method, url);
    return serve_asset(r, url[1] ? url + 8 : "index.html");
  }
  if (!authorized(h, r->conn))
    return fgd_http_fail(r, GRPC_STATUS_UNAUTHENTICATED,
                         "missing or wrong 'Authorization: Bearer <token>' header");
  if (strcmp(url, "/metrics") == 0) {
    if (!get) return fgd_http_fail(r, GRPC_STATUS_UNIMPLEMENTED, "%s /metrics: only GET", method);
    size_t len;
    char *text = fgd_http_metrics(h, &len);
    enum MHD_Result rc = fgd_http_send(r, 200, "text/plain; version=0.0.4; charset=utf-8", text, len);
    free(text);
    return rc;
  }
  if (strncmp(url, "/v1/", 4) == 0) {
    if (h->d->shutting_down || h->draining)
      return fgd_http_fail(r, GRPC_STATUS_UNAVAILABLE, "fulgurd is shutting down");
    return fgd_http_rest(r, method, url);
  }
  return fgd_http_fail(r, GRPC_STATUS_NOT_FOUND, "no route for %s %s", method, url);
}

/* A body over the limit: RESOURCE_EXHAUSTED as gRPC says it, with HTTP's
 * own status for it (413, not the 429 of a full queue). */
static enum MHD_Result too_large(http_req *r, const char *msg) {
  size_t len;
  char *body = fgd_http_error_body(GRPC_STATUS_RESOURCE_EXHAUSTED, msg, &len);
  enum MHD_Result rc = fgd_http_send(r, 413, "application/json", body, len);
  free(body);
  return rc;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls) {
  (void)version;
  fgd_http *h = cls;
  http_req *r = *con_cls;
  if (!r) {
    r = fg__xcalloc(1, sizeof *r);
    r->h = h;
    r->conn = conn;
    *con_cls = r;
    /* A declared length over the limit is refused before any byte of it
     * is read. */
    const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
    if (cl && strtoull(cl, NULL, 10) > h->o.max_request_bytes) {
      r->routed = true;
      char *msg = fg__xasprintf("the request body is %s bytes (the limit is %zu bytes; --max-request-bytes)",
                                cl, h->o.max_request_bytes);
      enum MHD_Result rc = too_large(r, msg);
      free(msg);
      return rc;
    }
    return MHD_YES;
  }
  if (*upload_size) {
    /* A chunked body has no declared length: counted as it comes. */
    if (!r->too_big && r->len + *upload_size > h->o.max_request_bytes) {
      r->too_big = true;
      free(r->body);
      r->body = NULL;
      r->len = r->cap = 0;
    }
    if (!r->too_big) {
      if (r->len + *upload_size + 1 > r->cap) {
        r->cap = (r->len + *upload_size + 1) * 2;
        r->body = fg__xrealloc(r->body, r->cap);
      }
      memcpy(r->body + r->len, upload, *upload_size);
      r->len += *upload_size;
      r->body[r->len] = '\0';
    }
    *upload_size = 0;
    return MHD_YES;
  }
  if (r->answer) {
    /* Resumed: the waiting call has answered. */
    enum MHD_Result rc = MHD_queue_response(conn, r->answer_status, r->answer);
    MHD_destroy_response(r->answer);
    r->answer = NULL;
    return rc;
  }
  if (r->routed) return MHD_YES; /* a stream or an answer already queued */
  r->routed = true;
  if (r->too_big) {
    char *msg = fg__xasprintf("the request body is over %zu bytes (--max-request-bytes)", h->o.max_request_bytes);
    enum MHD_Result rc = too_large(r, msg);
    free(msg);
    return rc;
  }
  return route(r, method, url);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe) {
  (void)cls, (void)conn, (void)toe;
  http_req *r = *con_cls;
  if (!r) return;
  unlink_suspended(r);
  if (r->wait) r->wait->req = NULL; /* the call's answer finds no one */
  if (r->answer) MHD_destroy_response(r->answer);
  free(r->body);
  free(r);
  *con_cls = NULL;
}

/* ---- the loop ---- */

static void on_timer(uv_timer_t *t);

/* One pass of MHD's event processing (never blocks), then the timer for
 * what it wants to do next (0: connections with data still buffered). */
static void run(fgd_http *h) {
  h->kicked = false;
  MHD_run(h->mhd);
  MHD_UNSIGNED_LONG_LONG ms = 0;
  if (h->kicked)
    uv_timer_start(&h->timer, on_timer, 0, 0);
  else if (MHD_get_timeout(h->mhd, &ms) == MHD_YES)
    uv_timer_start(&h->timer, on_timer, ms > 60000 ? 60000 : ms, 0);
  else
    uv_timer_stop(&h->timer);
}

static void on_timer(uv_timer_t *t) { run(t->data); }

void fgd_http_kick(fgd_http *h) {
  /* A resumed connection is not always announced on MHD's epoll
   * descriptor (its wake-up pipe may still be set from an earlier resume,
   * and edges do not repeat): the next turn of the loop runs MHD anyway. */
  h->kicked = true;
  if (h->mhd) uv_timer_start(&h->timer, on_timer, 0, 0);
}

static void on_poll(uv_poll_t *p, int status, int events) {
  (void)status, (void)events;
  run(p->data);
}

static void on_heartbeat(uv_timer_t *t) {
  fgd_http *h = t->data;
  fgd_http_sse_heartbeat(h);
  run(h);
}

static void log_mhd(void *cls, const char *fmt, va_list ap) {
  (void)cls;
  fputs("fulgurd: http: ", stderr);
  vfprintf(stderr, fmt, ap);
}

static char *read_all(const char *path, size_t *len, char **err) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    if (err) *err = fg__xasprintf("'%s': %s", path, strerror(errno));
    return NULL;
  }
  char *buf = NULL;
  size_t n = 0, cap = 0, got;
  do {
    if (n + 65536 > cap) buf = fg__xrealloc(buf, cap = (n + 65536) * 2);
    got = fread(buf + n, 1, cap - n - 1, f);
    n += got;
  } while (got > 0);
  fclose(f);
  buf[n] = '\0';
  *len = n;
  return buf;
}

/* HOST:PORT (a [v6] host in brackets) as a socket address. */
static int parse_listen(const char *listen, struct sockaddr_storage *ss, char **err) {
  const char *colon = strrchr(listen, ':');
  if (!colon || colon == listen || !colon[1]) {
    *err = fg__xasprintf("--http '%s': expected HOST:PORT", listen);
    return -1;
  }
  char *host = fg__xstrndup(listen, (size_t)(colon - listen));
  if (host[0] == '[' && host[strlen(host) - 1] == ']') {
    memmove(host, host + 1, strlen(host));
    host[strlen(host) - 1] = '\0';
  }
  char *end = NULL;
  long port = strtol(colon + 1, &end, 10);
  if (*end || port < 0 || port > 65535) {
    *err = fg__xasprintf("--http '%s': the port must be a number from 0 to 65535", listen);
    free(host);
    return -1;
  }
  struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
  struct addrinfo *ai = NULL;
  int rc = getaddrinfo(host, colon + 1, &hints, &ai);
  if (rc != 0) {
    *err = fg__xasprintf("--http '%s': %s", listen, gai_strerror(rc));
    free(host);
    return -1;
  }
  memset(ss, 0, sizeof *ss);
  memcpy(ss, ai->ai_addr, ai->ai_addrlen);
  freeaddrinfo(ai);
  free(host);
  return 0;
}

static void free_http(fgd_http *h) {
  free(h->token_header);
  free(h->chartjs);
  free(h->cert_pem);
  free(h->key_pem);
  free(h);
}

int fgd_http_start(fgd *d, const fgd_http_opts *o, fgd_http **out, char **err) {
  fgd_http *h = fg__xcalloc(1, sizeof *h);
  h->d = d;
  h->o = *o;
  if (o->token) h->token_header = fg__xasprintf("Bearer %s", o->token);
  struct sockaddr_storage ss;
  if (parse_listen(o->listen, &ss, err)) goto fail;
  if (o->chartjs_path) {
    h->chartjs = read_all(o->chartjs_path, &h->chartjs_len, NULL);
    if (!h->chartjs)
      fprintf(stderr, "fulgurd: warning: %s is missing (libjs-chart.js): /assets/chart.js is 404\n",
              o->chartjs_path);
  }
  unsigned flags = MHD_USE_EPOLL | MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ERROR_LOG;
  if (ss.ss_family == AF_INET6) flags |= MHD_USE_IPv6;
  if (o->tls_cert) {
    size_t n;
    char *e2 = NULL;
    if (!(h->cert_pem = read_all(o->tls_cert, &n, &e2)) || !(h->key_pem = read_all(o->tls_key, &n, &e2))) {
      *err = fg__xasprintf("--http TLS: %s", e2);
      free(e2);
      goto fail;
    }
    flags |= MHD_USE_TLS;
  }
  struct MHD_OptionItem tls_opts[] = {
      {MHD_OPTION_HTTPS_MEM_CERT, 0, h->cert_pem},
      {MHD_OPTION_HTTPS_MEM_KEY, 0, h->key_pem},
      {MHD_OPTION_END, 0, NULL},
  };
  h->mhd = MHD_start_daemon(flags, 0, NULL, NULL, on_request, h,
                            MHD_OPTION_EXTERNAL_LOGGER, log_mhd, h, /* first, so it gets every message */
                            MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&ss,
                            MHD_OPTION_NOTIFY_COMPLETED, on_completed, h,
                            /* Headers beyond this are refused (431): the
                             * same order of size as gRPC's metadata limit. */
                            MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)64 * 1024,
                            MHD_OPTION_ARRAY, o->tls_cert ? tls_opts : tls_opts + 2,
                            MHD_OPTION_END);
  if (!h->mhd) {
    *err = fg__xasprintf("--http '%s': cannot serve there (%s)", o->listen,
                         errno ? strerror(errno) : "libmicrohttpd refused the options");
    goto fail;
  }
  const union MHD_DaemonInfo *port = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_BIND_PORT);
  h->port = port ? port->port : 0;
  const union MHD_DaemonInfo *ep = MHD_get_daemon_info(h->mhd, MHD_DAEMON_INFO_EPOLL_FD);
  uv_poll_init(d->loop, &h->poll, ep->epoll_fd);
  uv_timer_init(d->loop, &h->timer);
  uv_timer_init(d->loop, &h->heartbeat);
  h->poll.data = h->timer.data = h->heartbeat.data = h;
  uv_poll_start(&h->poll, UV_READABLE, on_poll);
  uv_timer_start(&h->heartbeat, on_heartbeat, HEARTBEAT_MS, HEARTBEAT_MS);
  *out = h;
  return 0;
fail:
  free_http(h);
  return -1;
}

int fgd_http_port(const fgd_http *h) { return h->port; }

void fgd_http_drain(fgd_http *h) {
  if (!h || h->draining) return;
  h->draining = true;
  fgd_http_sse_end_all(h);
  run(h);
}

static void on_handle_closed(uv_handle_t *hd) {
  fgd_http *h = hd->data;
  if (--h->open_handles == 0) free_http(h);
}

void fgd_http_stop(fgd_http *h) {
  if (!h) return;
  fgd_http_sse_end_all(h);
  /* MHD must not stop with connections suspended: each is resumed with
   * the answer it would have had. */
  while (h->suspended) {
    size_t len;
    char *body = fgd_http_error_body(GRPC_STATUS_UNAVAILABLE, "fulgurd is shutting down", &len);
    fgd_http_resume_with(h->suspended, 503, "application/json", body, len);
    free(body);
  }
  MHD_run(h->mhd);
  uv_poll_stop(&h->poll);
  MHD_stop_daemon(h->mhd);
  h->mhd = NULL;
  h->open_handles = 3;
  uv_close((uv_handle_t *)&h->poll, on_handle_closed);
  uv_close((uv_handle_t *)&h->timer, on_handle_closed);
  uv_close((uv_handle_t *)&h->heartbeat, on_handle_closed);
}

int fgd_http_parse_duration(const char *s, int64_t *ns) {
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end);
  if (end == s || errno || v < 0 || v > 1e7 * 86400) return -1;
  double unit = 1;
  if (strcmp(end, "") == 0 || strcmp(end, "s") == 0) unit = 1;
  else if (strcmp(end, "ms") == 0) unit = 1e-3;
  else if (strcmp(end, "m") == 0) unit = 60;
  else if (strcmp(end, "h") == 0) unit = 3600;
  else if (strcmp(end, "d") == 0) unit = 86400;
  else return -1;
  *ns = (int64_t)(v * unit * 1e9);
  return 0;
}
