/* The job store: SQLite in WAL mode under --state-dir.
 *
 * jobs:   one row per accepted job, in submission order (rowid): its id,
 *         idempotency key, checked config, and the Job message as packed
 *         protobuf (state, metrics, progress, times).
 * events: (job rowid, seq) -> packed JobEvent, seq 1, 2, 3 ... per job.
 *
 * WAL with synchronous=NORMAL: a commit survives the daemon being killed
 * (the log is in the OS's hands once written); only a power loss can drop
 * the last commits. Every function runs on the loop thread. */
#ifndef FGD_STORE_H
#define FGD_STORE_H

#include <stddef.h>
#include <stdint.h>

typedef struct fgd_store fgd_store;

typedef struct {
  int64_t rowid;
  const char *id;
  const char *idempotency_key; /* NULL: none */
  const char *config;
  const char *resume_ckpt; /* NULL: none */
  int restart_resume;
  const void *job;
  size_t job_len;
} fgd_store_job;

/* Opens (creating) path. max_bytes > 0 caps the database's size (SQLite's
 * max_page_count): writes beyond it fail as a full disk would. Returns 0 or
 * -1 with *err (caller frees). */
int fgd_store_open(const char *path, int64_t max_bytes, fgd_store **out, char **err);
void fgd_store_close(fgd_store *s);

/* Transactions. The put functions must run inside one. Each returns 0, or
 * -1 with *err; *full is set when the failure is a full disk/database. */
int fgd_store_begin(fgd_store *s, char **err);
int fgd_store_commit(fgd_store *s, int *full, char **err);
void fgd_store_rollback(fgd_store *s);
/* Inserts a new job; sets j->rowid. */
int fgd_store_insert_job(fgd_store *s, fgd_store_job *j, int *full, char **err);
/* Rewrites the job blob and resume checkpoint of row rowid. */
int fgd_store_update_job(fgd_store *s, int64_t rowid, const void *job, size_t len,
                         const char *resume_ckpt, int *full, char **err);
int fgd_store_put_event(fgd_store *s, int64_t job, uint64_t seq, const void *data, size_t len,
                        int *full, char **err);

/* True when a size cap is set and less than its reserve is left (a tenth
 * of the cap, or room to rewrite the largest job row twice over if that is
 * more): new jobs are refused then, so the jobs already accepted keep room
 * for their events and state changes. */
int fgd_store_nearly_full(fgd_store *s);
/* The database's size in bytes (pages in use times the page size). */
int64_t fgd_store_bytes(fgd_store *s);
/* Calls cb for every job, in submission order. */
int fgd_store_load_jobs(fgd_store *s, void (*cb)(void *ctx, const fgd_store_job *j), void *ctx,
                        char **err);
/* The highest stored seq of a job (0: none). */
uint64_t fgd_store_max_seq(fgd_store *s, int64_t job);
/* Events of a job with after_seq < seq, ascending, at most limit; cb gets
 * each (data valid during the call). Returns the number given, or -1. */
int fgd_store_events(fgd_store *s, int64_t job, uint64_t after_seq, int limit,
                     void (*cb)(void *ctx, uint64_t seq, const void *data, size_t len), void *ctx,
                     char **err);

#endif
