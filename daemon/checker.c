/* The warm config checker (checker.h). One child at a time; each child
 * goes through: spawned, answering (one request in flight at most), then
 * gone once it has exited *and* its answer and stderr pipes have ended, so
 * an answer it wrote just before exiting is read before its death is
 * judged. Its stderr passes through to the daemon's, and its last line is
 * kept: a check that dies (an abort when an allocation fails under the
 * memory limit) is answered with its last words. */
#include "checker.h"

#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "rlimits.h"
#include "util/xalloc.h"

/* A child that dies on its own sooner than this after it started is not
 * restarted until a request needs it: no spawn loop when it cannot run. */
#define RESTART_MIN_LIFE_MS 1000
/* How long a child may take to start (load libtorch) before its first
 * check's own timeout starts: a loaded machine must not fail a submit for
 * the start-up of a fresh child. */
#define STARTUP_MS 60000

typedef struct req {
  struct req *next;
  unsigned char *frame;
  size_t len;
  fgd_check_done done;
  void *ctx;
} req;

typedef struct proc {
  fgd_checker *ck;
  uv_process_t h;
  uv_pipe_t in, out, err;
  int open; /* handles not yet closed */
  bool exited, eof, err_eof, retiring, timed_out, gone;
  bool ready; /* it said it serves (an empty frame) */
  bool unlimited; /* its limits could not be set: killed, not restarted at once */
  int64_t status;
  int sig;
  char *buf;
  size_t len, cap;
  uint64_t start_ms;
  char errbuf[4096];
  char line[512], last[512]; /* the stderr line being read, the last whole one */
  size_t line_len;
} proc;

/* One write to a child, freed when the write completes (or fails). */
typedef struct {
  uv_write_t w;
  unsigned char *frame;
} pending_write;

struct fgd_checker {
  uv_loop_t *loop;
  char *worker, *cwd;
  unsigned timeout_ms;
  uint64_t memory_limit;
  unsigned cpu_seconds;
  req *head, *tail; /* queued; head is in flight when inflight is set */
  bool inflight;
  proc *p; /* the current child, NULL when none */
  uv_timer_t timeout, kick;
  int open_timers;
  int procs; /* children whose handles are not all closed yet */
  bool closing;
};

static void pump(fgd_checker *ck);
static void on_timeout(uv_timer_t *t);

static void put_u32(unsigned char *p, uint32_t v) {
  for (int i = 0; i < 4; i++) p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void maybe_free_checker(fgd_checker *ck) {
  if (ck->closing && ck->open_timers == 0 && ck->procs == 0) {
    free(ck->worker);
    free(ck->cwd);
    free(ck);
  }
}

/* Takes the head request off the queue and answers it. */
static void answer_head(fgd_checker *ck, int64_t status, int sig, const char *out, size_t len) {
  req *r = ck->head;
  ck->head = r->next;
  if (!ck->head) ck->tail = NULL;
  ck->inflight = false;
  uv_timer_stop(&ck->timeout);
  char *text = fg__xstrndup(out ? out : "", len);
  r->done(r->ctx, status, sig, text, len);
  free(text);
  free(r->frame);
  free(r);
}

static void proc_closed(uv_handle_t *h) {
  proc *p = h->data;
  if (--p->open > 0) return;
  fgd_checker *ck = p->ck;
  free(p->buf);
  free(p);
  ck->procs--;
  maybe_free_checker(ck);
}

/* The child has exited and its pipe has ended: judge the request it had,
 * close its handles, and start the next child. */
static void maybe_gone(proc *p) {
  if (!p->exited || !p->eof || !p->err_eof || p->gone) return;
  p->gone = true;
  fgd_checker *ck = p->ck;
  bool current = ck->p == p;
  if (current) ck->p = NULL;
  if (current && ck->inflight) {
    char *note = p->timed_out ? fg__xasprintf("the check gave no answer in %u ms", ck->timeout_ms)
                 : p->last[0] ? fg__xstrdup(p->last)
                              : NULL;
    answer_head(ck, p->status, p->sig, note, note ? strlen(note) : 0);
    free(note);
  }
  uv_close((uv_handle_t *)&p->h, proc_closed);
  uv_close((uv_handle_t *)&p->in, proc_closed);
  uv_close((uv_handle_t *)&p->out, proc_closed);
  uv_close((uv_handle_t *)&p->err, proc_closed);
  if (!current || ck->closing) return;
  /* Keep one warm: a child that retired or was killed is replaced now,
   * one that died on its own right after starting only when needed. */
  if (ck->head || p->retiring || p->timed_out || (p->sig && !p->unlimited) ||
      uv_now(ck->loop) - p->start_ms >= RESTART_MIN_LIFE_MS)
    pump(ck);
}

static void on_child_exit(uv_process_t *h, int64_t status, int sig) {
  proc *p = h->data;
  p->exited = true;
  p->status = status;
  p->sig = sig;
  maybe_gone(p);
}

static void kill_child(proc *p) {
  if (!p->exited) uv_process_kill(&p->h, SIGKILL);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  proc *p = h->data;
  if (p->cap - p->len < 65536) {
    p->cap = p->cap ? 2 * p->cap : 131072;
    p->buf = fg__xrealloc(p->buf, p->cap);
  }
  *buf = uv_buf_init(p->buf + p->len, (unsigned)(p->cap - p->len));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  proc *p = s->data;
  fgd_checker *ck = p->ck;
  if (n < 0) {
    uv_read_stop(s);
    p->eof = true;
    maybe_gone(p);
    return;
  }
  p->len += (size_t)n;
  /* Whole answers: u32 length, exit code, retire flag, text. */
  size_t at = 0;
  while (p->len - at >= 4) {
    uint32_t flen = get_u32(p->buf + at);
    if (p->len - at - 4 < flen) break;
    const char *f = p->buf + at + 4;
    at += 4 + (size_t)flen;
    if (flen == 0 && !p->ready) {
      /* Started: a check sent before now has its timeout from here. */
      p->ready = true;
      if (ck->p == p && ck->inflight) uv_timer_start(&ck->timeout, on_timeout, ck->timeout_ms, 0);
      continue;
    }
    if (flen < 2 || ck->p != p || !ck->inflight) {
      /* Not an answer to anything asked: this child cannot be trusted. */
      fprintf(stderr, "fulgurd: the config checker sent an unexpected answer; restarting it\n");
      kill_child(p);
      break;
    }
    if (f[1]) p->retiring = true;
    answer_head(ck, (unsigned char)f[0], 0, f + 2, flen - 2);
  }
  memmove(p->buf, p->buf + at, p->len - at);
  p->len -= at;
  pump(ck);
}

static void on_err_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  proc *p = h->data;
  *buf = uv_buf_init(p->errbuf, sizeof p->errbuf);
}

/* The child's stderr: passed on, and its last non-empty line kept. */
static void on_err_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  proc *p = s->data;
  if (n < 0) {
    uv_read_stop(s);
    p->err_eof = true;
    maybe_gone(p);
    return;
  }
  fwrite(buf->base, 1, (size_t)n, stderr);
  for (ssize_t i = 0; i < n; i++) {
    char c = buf->base[i];
    if (c == '\n') {
      if (p->line_len) {
        memcpy(p->last, p->line, p->line_len);
        p->last[p->line_len] = '\0';
      }
      p->line_len = 0;
    } else if (p->line_len < sizeof p->line - 1) {
      p->line[p->line_len++] = c;
    }
  }
}

static void on_written(uv_write_t *w, int status) {
  pending_write *pw = (pending_write *)w;
  /* A failed write needs nothing here: the child's exit answers. */
  free(pw->frame);
  free(pw);
}

static void on_timeout(uv_timer_t *t) {
  fgd_checker *ck = t->data;
  if (ck->p && ck->inflight) {
    fprintf(stderr, "fulgurd: a config check took over %u ms; killing the checker\n", ck->timeout_ms);
    ck->p->timed_out = true;
    kill_child(ck->p);
  }
}

static int spawn(fgd_checker *ck) {
  proc *p = fg__xcalloc(1, sizeof *p);
  p->ck = ck;
  ck->procs++;
  p->start_ms = uv_now(ck->loop);
  uv_pipe_init(ck->loop, &p->in, 0);
  uv_pipe_init(ck->loop, &p->out, 0);
  uv_pipe_init(ck->loop, &p->err, 0);
  p->h.data = p->in.data = p->out.data = p->err.data = p;
  uv_stdio_container_t stdio[4];
  stdio[0].flags = UV_CREATE_PIPE | UV_READABLE_PIPE;
  stdio[0].data.stream = (uv_stream_t *)&p->in;
  /* stdout as stderr (it prints nothing but diagnostics); one pipe. */
  stdio[1].flags = UV_INHERIT_FD;
  stdio[1].data.fd = 2;
  stdio[2].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[2].data.stream = (uv_stream_t *)&p->err;
  stdio[3].flags = UV_CREATE_PIPE | UV_WRITABLE_PIPE;
  stdio[3].data.stream = (uv_stream_t *)&p->out;
  char daemon_pid[24]; /* as for a job's worker (worker.c) */
  snprintf(daemon_pid, sizeof daemon_pid, "%d", (int)getpid());
  char cpu[24];
  snprintf(cpu, sizeof cpu, "%u", ck->cpu_seconds);
  char *args[] = {ck->worker, "check",  "--serve", "--daemon-pid", daemon_pid, "--check-cpu-seconds",
                  cpu,        NULL};
  uv_process_options_t po = {0};
  po.exit_cb = on_child_exit;
  po.file = ck->worker;
  po.args = args;
  po.cwd = ck->cwd;
  po.stdio = stdio;
  po.stdio_count = 4;
  int e = uv_spawn(ck->loop, &p->h, &po);
  p->open = 4;
  if (e) {
    p->gone = true;
    uv_close((uv_handle_t *)&p->h, proc_closed);
    uv_close((uv_handle_t *)&p->in, proc_closed);
    uv_close((uv_handle_t *)&p->out, proc_closed);
    uv_close((uv_handle_t *)&p->err, proc_closed);
    return e;
  }
  uv_read_start((uv_stream_t *)&p->out, on_alloc, on_read);
  uv_read_start((uv_stream_t *)&p->err, on_err_alloc, on_err_read);
  ck->p = p;
  char *why = NULL;
  if (fgd_limit_process(p->h.pid, ck->memory_limit, &why)) {
    /* Never a check without its limits: this child goes, the next tries. */
    fprintf(stderr, "fulgurd: %s; restarting the config checker\n", why);
    free(why);
    p->unlimited = true;
    kill_child(p);
  }
  return 0;
}

/* Sends the head request when the child is free, starting one if none. */
static void pump(fgd_checker *ck) {
  while (!ck->closing) {
    if (ck->p && (ck->p->retiring || ck->p->exited)) return; /* its end starts the next */
    if (!ck->p) {
      int e = spawn(ck);
      if (e) {
        /* The one-shot checker's words when it could not be started. */
        if (!ck->head) return;
        char *msg = fg__xasprintf("cannot start '%s': %s", ck->worker, uv_strerror(e));
        answer_head(ck, 1, 0, msg, strlen(msg));
        free(msg);
        continue;
      }
    }
    if (ck->inflight || !ck->head) return;
    req *r = ck->head;
    pending_write *pw = fg__xcalloc(1, sizeof *pw);
    pw->frame = r->frame;
    r->frame = NULL;
    uv_buf_t b = uv_buf_init((char *)pw->frame, (unsigned)r->len);
    ck->inflight = true;
    if (uv_write(&pw->w, (uv_stream_t *)&ck->p->in, &b, 1, on_written)) {
      free(pw->frame);
      free(pw);
      kill_child(ck->p); /* its death answers */
    }
    uv_timer_start(&ck->timeout, on_timeout,
                   ck->p->ready ? ck->timeout_ms : STARTUP_MS + ck->timeout_ms, 0);
    return;
  }
}

static void on_kick(uv_timer_t *t) { pump(t->data); }

static void timer_closed(uv_handle_t *h) {
  fgd_checker *ck = h->data;
  ck->open_timers--;
  maybe_free_checker(ck);
}

fgd_checker *fgd_checker_create(uv_loop_t *loop, const char *worker_path, const char *cwd,
                                unsigned timeout_ms, uint64_t memory_limit, unsigned cpu_seconds) {
  fgd_checker *ck = fg__xcalloc(1, sizeof *ck);
  ck->loop = loop;
  ck->worker = fg__xstrdup(worker_path);
  ck->cwd = fg__xstrdup(cwd);
  ck->timeout_ms = timeout_ms;
  ck->memory_limit = memory_limit;
  ck->cpu_seconds = cpu_seconds;
  uv_timer_init(loop, &ck->timeout);
  uv_timer_init(loop, &ck->kick);
  ck->timeout.data = ck->kick.data = ck;
  ck->open_timers = 2;
  pump(ck);
  return ck;
}

void fgd_checker_submit(fgd_checker *ck, const char *const *args, size_t n_args, const char *yaml,
                        fgd_check_done done, void *ctx) {
  size_t len = 4, yl = strlen(yaml);
  for (size_t i = 0; i < n_args; i++) len += strlen(args[i]) + 1;
  len += yl;
  req *r = fg__xcalloc(1, sizeof *r);
  r->frame = fg__xmalloc(4 + len);
  r->len = 4 + len;
  r->done = done;
  r->ctx = ctx;
  put_u32(r->frame, (uint32_t)len);
  put_u32(r->frame + 4, (uint32_t)n_args);
  size_t at = 8;
  for (size_t i = 0; i < n_args; i++) {
    size_t l = strlen(args[i]) + 1;
    memcpy(r->frame + at, args[i], l);
    at += l;
  }
  memcpy(r->frame + at, yaml, yl);
  if (ck->tail) ck->tail->next = r;
  else ck->head = r;
  ck->tail = r;
  /* Sent from the loop's next turn, so done never runs inside this call. */
  uv_timer_start(&ck->kick, on_kick, 0, 0);
}

void fgd_checker_close(fgd_checker *ck) {
  ck->closing = true;
  while (ck->head) answer_head(ck, -1, 0, NULL, 0);
  if (ck->p) {
    /* Its stdin's end is its cue; the kill covers a check still running. */
    kill_child(ck->p);
  }
  uv_close((uv_handle_t *)&ck->timeout, timer_closed);
  uv_close((uv_handle_t *)&ck->kick, timer_closed);
}
