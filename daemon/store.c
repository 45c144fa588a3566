/* See store.h. Statements are prepared once; SQLite does the rest. */
#include "store.h"

#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/xalloc.h"

enum {
  S_BEGIN,
  S_COMMIT,
  S_ROLLBACK,
  S_INSERT_JOB,
  S_UPDATE_JOB,
  S_PUT_EVENT,
  S_LOAD_JOBS,
  S_MAX_SEQ,
  S_EVENTS,
  S_PAGE_COUNT,
  S_MAX_ROW,
  S_COUNT
};

static const char *const sql[S_COUNT] = {
    [S_BEGIN] = "BEGIN IMMEDIATE",
    [S_COMMIT] = "COMMIT",
    [S_ROLLBACK] = "ROLLBACK",
    [S_INSERT_JOB] = "INSERT INTO jobs(id, idempotency_key, config, resume_ckpt, restart_resume, job)"
                     " VALUES (?, ?, ?, ?, ?, ?)",
    [S_UPDATE_JOB] = "UPDATE jobs SET job = ?, resume_ckpt = ? WHERE rowid = ?",
    [S_PUT_EVENT] = "INSERT INTO events(job, seq, data) VALUES (?, ?, ?)",
    [S_LOAD_JOBS] = "SELECT rowid, id, idempotency_key, config, resume_ckpt, restart_resume, job"
                    " FROM jobs ORDER BY rowid",
    [S_MAX_SEQ] = "SELECT COALESCE(MAX(seq), 0) FROM events WHERE job = ?",
    [S_EVENTS] = "SELECT seq, data FROM events WHERE job = ? AND seq > ? ORDER BY seq LIMIT ?",
    [S_PAGE_COUNT] = "PRAGMA page_count",
    [S_MAX_ROW] = "SELECT max(length(config) + length(job) + coalesce(length(resume_ckpt), 0)) FROM jobs",
};

struct fgd_store {
  int64_t max_pages; /* 0: no cap */
  int64_t page_size; /* the database's, fixed once it exists */
  sqlite3 *db;
  sqlite3_stmt *st[S_COUNT];
};

static const char schema[] =
    "CREATE TABLE IF NOT EXISTS jobs("
    "  rowid INTEGER PRIMARY KEY,"
    "  id TEXT NOT NULL UNIQUE,"
    "  idempotency_key TEXT,"
    "  config TEXT NOT NULL,"
    "  resume_ckpt TEXT,"
    "  restart_resume INTEGER NOT NULL DEFAULT 0,"
    "  job BLOB NOT NULL);"
    "CREATE UNIQUE INDEX IF NOT EXISTS jobs_idempotency ON jobs(idempotency_key)"
    "  WHERE idempotency_key IS NOT NULL;"
    "CREATE TABLE IF NOT EXISTS events("
    "  job INTEGER NOT NULL,"
    "  seq INTEGER NOT NULL,"
    "  data BLOB NOT NULL,"
    "  PRIMARY KEY(job, seq)) WITHOUT ROWID;";

static int fail(fgd_store *s, int rc, int *full, char **err, const char *what) {
  if (full) *full = rc == SQLITE_FULL || rc == SQLITE_IOERR || (rc & 0xff) == SQLITE_FULL;
  if (err) *err = fg__xasprintf("state store: %s: %s", what, sqlite3_errmsg(s->db));
  return -1;
}

int fgd_store_open(const char *path, int64_t max_bytes, fgd_store **out, char **err) {
  fgd_store *s = fg__xcalloc(1, sizeof *s);
  int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, NULL);
  char *emsg = NULL;
  if (rc == SQLITE_OK) rc = sqlite3_exec(s->db, "PRAGMA journal_mode=WAL", NULL, NULL, &emsg);
  if (rc == SQLITE_OK) rc = sqlite3_exec(s->db, "PRAGMA synchronous=NORMAL", NULL, NULL, &emsg);
  if (rc == SQLITE_OK) sqlite3_busy_timeout(s->db, 5000);
  if (rc == SQLITE_OK) rc = sqlite3_exec(s->db, schema, NULL, NULL, &emsg);
  if (rc == SQLITE_OK && max_bytes > 0) {
    char pragma[64];
    int64_t pages = max_bytes / 4096;
    s->max_pages = pages < 8 ? 8 : pages;
    snprintf(pragma, sizeof pragma, "PRAGMA max_page_count=%lld", (long long)s->max_pages);
    rc = sqlite3_exec(s->db, pragma, NULL, NULL, &emsg);
  }
  for (int i = 0; rc == SQLITE_OK && i < S_COUNT; i++)
    rc = sqlite3_prepare_v3(s->db, sql[i], -1, SQLITE_PREPARE_PERSISTENT, &s->st[i], NULL);
  if (rc == SQLITE_OK) {
    sqlite3_stmt *st = NULL;
    rc = sqlite3_prepare_v2(s->db, "PRAGMA page_size", -1, &st, NULL);
    if (rc == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW) s->page_size = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
  }
  if (rc != SQLITE_OK) {
    *err = fg__xasprintf("cannot open the state store '%s': %s", path,
                         emsg ? emsg : sqlite3_errmsg(s->db));
    sqlite3_free(emsg);
    fgd_store_close(s);
    return -1;
  }
  *out = s;
  return 0;
}

void fgd_store_close(fgd_store *s) {
  if (s == NULL) return;
  for (int i = 0; i < S_COUNT; i++) sqlite3_finalize(s->st[i]);
  sqlite3_close(s->db);
  free(s);
}

static int step_done(fgd_store *s, sqlite3_stmt *st, int *full, char **err, const char *what) {
  int rc = sqlite3_step(st);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (rc != SQLITE_DONE) return fail(s, rc, full, err, what);
  return 0;
}

int fgd_store_begin(fgd_store *s, char **err) {
  return step_done(s, s->st[S_BEGIN], NULL, err, "begin");
}

int fgd_store_commit(fgd_store *s, int *full, char **err) {
  return step_done(s, s->st[S_COMMIT], full, err, "commit");
}

void fgd_store_rollback(fgd_store *s) {
  if (!sqlite3_get_autocommit(s->db)) step_done(s, s->st[S_ROLLBACK], NULL, NULL, "rollback");
}

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *v) {
  if (v && v[0]) sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
  else sqlite3_bind_null(st, i);
}

int fgd_store_insert_job(fgd_store *s, fgd_store_job *j, int *full, char **err) {
  sqlite3_stmt *st = s->st[S_INSERT_JOB];
  sqlite3_bind_text(st, 1, j->id, -1, SQLITE_STATIC);
  bind_text_or_null(st, 2, j->idempotency_key);
  sqlite3_bind_text(st, 3, j->config, -1, SQLITE_STATIC);
  bind_text_or_null(st, 4, j->resume_ckpt);
  sqlite3_bind_int(st, 5, j->restart_resume);
  sqlite3_bind_blob(st, 6, j->job, (int)j->job_len, SQLITE_STATIC);
  if (step_done(s, st, full, err, "insert job")) return -1;
  j->rowid = sqlite3_last_insert_rowid(s->db);
  return 0;
}

int fgd_store_update_job(fgd_store *s, int64_t rowid, const void *job, size_t len,
                         const char *resume_ckpt, int *full, char **err) {
  sqlite3_stmt *st = s->st[S_UPDATE_JOB];
  sqlite3_bind_blob(st, 1, job, (int)len, SQLITE_STATIC);
  bind_text_or_null(st, 2, resume_ckpt);
  sqlite3_bind_int64(st, 3, rowid);
  return step_done(s, st, full, err, "update job");
}

int fgd_store_put_event(fgd_store *s, int64_t job, uint64_t seq, const void *data, size_t len,
                        int *full, char **err) {
  sqlite3_stmt *st = s->st[S_PUT_EVENT];
  sqlite3_bind_int64(st, 1, job);
  sqlite3_bind_int64(st, 2, (sqlite3_int64)seq);
  sqlite3_bind_blob(st, 3, data, (int)len, SQLITE_STATIC);
  return step_done(s, st, full, err, "store event");
}

int fgd_store_load_jobs(fgd_store *s, void (*cb)(void *ctx, const fgd_store_job *j), void *ctx,
                        char **err) {
  sqlite3_stmt *st = s->st[S_LOAD_JOBS];
  int rc;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    fgd_store_job j = {
        .rowid = sqlite3_column_int64(st, 0),
        .id = (const char *)sqlite3_column_text(st, 1),
        .idempotency_key = (const char *)sqlite3_column_text(st, 2),
        .config = (const char *)sqlite3_column_text(st, 3),
        .resume_ckpt = (const char *)sqlite3_column_text(st, 4),
        .restart_resume = sqlite3_column_int(st, 5),
        .job = sqlite3_column_blob(st, 6),
        .job_len = (size_t)sqlite3_column_bytes(st, 6),
    };
    cb(ctx, &j);
  }
  sqlite3_reset(st);
  if (rc != SQLITE_DONE) return fail(s, rc, NULL, err, "load jobs");
  return 0;
}

/* The one integer a prepared statement without parameters answers. */
static int64_t step_int(sqlite3_stmt *st) {
  int64_t v = 0;
  if (sqlite3_step(st) == SQLITE_ROW) v = sqlite3_column_int64(st, 0);
  sqlite3_reset(st);
  return v;
}

int fgd_store_nearly_full(fgd_store *s) {
  if (s->max_pages == 0) return 0;
  int64_t pages = step_int(s->st[S_PAGE_COUNT]);
  /* A job row larger than a page lives in overflow pages, and SQLite
   * writes an updated row's new pages before it frees the old ones: each
   * state change of the largest row needs that many pages free, with its
   * event and index pages beside. The scan is over one row per job, once
   * per submit. */
  int64_t row = step_int(s->st[S_MAX_ROW]);
  int64_t row_pages = s->page_size > 0 ? (row + s->page_size - 1) / s->page_size : 1;
  int64_t reserve = s->max_pages / 10;
  if (reserve < 2 * row_pages + 2) reserve = 2 * row_pages + 2;
  return pages + reserve >= s->max_pages;
}

int64_t fgd_store_bytes(fgd_store *s) { return step_int(s->st[S_PAGE_COUNT]) * s->page_size; }

uint64_t fgd_store_max_seq(fgd_store *s, int64_t job) {
  sqlite3_stmt *st = s->st[S_MAX_SEQ];
  sqlite3_bind_int64(st, 1, job);
  uint64_t v = 0;
  if (sqlite3_step(st) == SQLITE_ROW) v = (uint64_t)sqlite3_column_int64(st, 0);
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  return v;
}

int fgd_store_events(fgd_store *s, int64_t job, uint64_t after_seq, int limit,
                     void (*cb)(void *ctx, uint64_t seq, const void *data, size_t len), void *ctx,
                     char **err) {
  sqlite3_stmt *st = s->st[S_EVENTS];
  sqlite3_bind_int64(st, 1, job);
  sqlite3_bind_int64(st, 2, (sqlite3_int64)after_seq);
  sqlite3_bind_int(st, 3, limit);
  int rc, n = 0;
  while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
    cb(ctx, (uint64_t)sqlite3_column_int64(st, 0), sqlite3_column_blob(st, 1),
       (size_t)sqlite3_column_bytes(st, 1));
    n++;
  }
  sqlite3_reset(st);
  sqlite3_clear_bindings(st);
  if (rc != SQLITE_DONE) return fail(s, rc, NULL, err, "read events");
  return n;
}
