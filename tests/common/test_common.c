/* fulgur_common: the torch-free facts the engine, the daemon, the worker
 * and the CLI share (stage names, run outcomes, atomic writes). */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fulgur/error.h"
#include "fulgur/outcome.h"
#include "fulgur/stage.h"
#include "util/atomic_file.h"
#include "util/bytes.h"
#include "util/job_opts.h"

Test(stage, names_round_trip) {
  const char *names[] = {"fit", "validate", "test", "predict"};
  for (fg_stage s = FG_STAGE_FIT; s <= FG_STAGE_PREDICT; s++) {
    cr_assert_str_eq(fg_stage_name(s), names[s - FG_STAGE_FIT]);
    cr_assert_eq(fg_stage_parse(names[s - FG_STAGE_FIT]), s);
  }
  cr_assert_eq(fg_stage_parse("train"), 0);
  cr_assert_eq(fg_stage_parse("FIT"), 0); /* the CLI's commands are lower case */
  cr_assert_eq(fg_stage_parse(""), 0);
  cr_assert_eq(fg_stage_parse(NULL), 0);
  cr_assert_str_eq(fg_stage_name((fg_stage)9), "unknown");
}

Test(outcome, from_return_codes) {
  cr_assert_eq(fg_outcome_of(0), FG_OUTCOME_SUCCEEDED);
  cr_assert_eq(fg_outcome_of(FG_ECANCELED), FG_OUTCOME_CANCELLED);
  cr_assert_eq(fg_outcome_of(FG_EPAUSED), FG_OUTCOME_PAUSED);
  cr_assert_eq(fg_outcome_of(FG_ECONFIG), FG_OUTCOME_FAILED);
  cr_assert_eq(fg_outcome_of(FG_EIO), FG_OUTCOME_FAILED);
  cr_assert_str_eq(fg_outcome_name(FG_OUTCOME_PAUSED), "paused");
}

Test(atomic_file, replaces_whole_and_reports_where) {
  char dir[] = "/tmp/fg_common_XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  char path[128];
  snprintf(path, sizeof path, "%s/f.txt", dir);
  char *err = NULL;
  cr_assert_eq(fg__write_file_atomic(path, "first", 5, &err), 0, "%s", err);
  cr_assert_eq(fg__write_file_atomic(path, "second\n", 7, &err), 0, "%s", err);
  FILE *f = fopen(path, "r");
  char buf[32] = {0};
  cr_assert_eq(fread(buf, 1, sizeof buf - 1, f), 7);
  fclose(f);
  cr_assert_str_eq(buf, "second\n");
  /* No temporary file is left beside it. */
  char ls[256];
  snprintf(ls, sizeof ls, "ls -A %s | wc -l", dir);
  FILE *p = popen(ls, "r");
  int n = 0;
  cr_assert_eq(fscanf(p, "%d", &n), 1);
  pclose(p);
  cr_assert_eq(n, 1);
  char bad[160];
  snprintf(bad, sizeof bad, "%s/missing/f.txt", dir);
  cr_assert_eq(fg__write_file_atomic(bad, "x", 1, &err), FG_EIO);
  cr_assert(strstr(err, bad) != NULL, "%s", err);
  free(err);
  unlink(path);
  rmdir(dir);
}

/* A writer killed before its rename leaves "<name>.tmp.<pid>"; the next
 * write of that path removes it, and keeps a live writer's and other
 * names' temporaries. */
Test(atomic_file, sweeps_dead_writers_temps) {
  char dir[] = "/tmp/fg_common_XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  pid_t child = fork();
  if (child == 0) _exit(0);
  cr_assert_eq(waitpid(child, NULL, 0), child); /* now a pid nobody has */
  char dead[160], live[160], other[160], path[128];
  snprintf(path, sizeof path, "%s/last.ckpt", dir);
  snprintf(dead, sizeof dead, "%s.tmp.%ld", path, (long)child);
  snprintf(live, sizeof live, "%s.tmp.%ld", path, (long)getppid());
  snprintf(other, sizeof other, "%s/epoch=1.ckpt.tmp.%ld", dir, (long)child);
  const char *made[] = {dead, live, other};
  for (int i = 0; i < 3; i++) {
    FILE *f = fopen(made[i], "w");
    cr_assert_not_null(f);
    fclose(f);
  }
  char *err = NULL;
  cr_assert_eq(fg__write_file_atomic(path, "x", 1, &err), 0, "%s", err);
  cr_assert_neq(access(dead, F_OK), 0, "a dead writer's temporary is left");
  cr_assert_eq(access(live, F_OK), 0, "a live writer's temporary was removed");
  cr_assert_eq(access(other, F_OK), 0, "another file's temporary was removed");
  unlink(live);
  unlink(other);
  unlink(path);
  rmdir(dir);
}

/* The check reply's options line: what the worker writes, the daemon reads
 * back, max_restarts included; a value out of range is the reply's error,
 * never a silently different job. */
Test(job_opts, line_round_trip) {
  fg_job_opts o = {.restart_policy = FG_RESTART_RESUME, .max_restarts = 3,
                   .memory_limit = 3ull << 30};
  char *line = fg__job_opts_line(&o);
  cr_assert_str_eq(line, "# job options: restart_policy=resume max_restarts=3 memory_limit=3G\n");
  char *reply = NULL;
  cr_assert_gt(asprintf(&reply, "%sseed_everything: 1\n", line), 0);
  fg_job_opts back;
  const char *config = NULL;
  char *err = NULL;
  cr_assert_eq(fg__job_opts_split(reply, &back, &config, &err), 0, "%s", err ? err : "");
  cr_assert_eq(back.restart_policy, FG_RESTART_RESUME);
  cr_assert_eq(back.max_restarts, 3);
  cr_assert_eq(back.memory_limit, 3ull << 30);
  cr_assert_str_eq(config, "seed_everything: 1\n");
  const char *bad[] = {"# job options: max_restarts=-1\n", "# job options: max_restarts=\n",
                       "# job options: max_restarts=1001\n", "# job options: max_restarts=2x\n"};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    cr_assert_neq(fg__job_opts_split(bad[i], &back, &config, &err), 0, "%s", bad[i]);
    cr_assert_not_null(strstr(err, "max_restarts"), "%s", err);
    free(err);
    err = NULL;
  }
  cr_assert_neq(fg__job_opts_split("# job options: memory_limit=lots\n", &back, &config, &err), 0);
  cr_assert_not_null(strstr(err, "memory_limit=lots"), "%s", err);
  free(err);
  free(reply);
  free(line);
}

/* Sizes as --job-memory-limit and memory_limit take them, and as the
 * out-of-memory message prints them back. */
Test(bytes, parse_and_format) {
  struct { const char *s; uint64_t v; } ok[] = {
      {"4096", 4096}, {"2G", 2ull << 30}, {"512m", 512ull << 20}, {"1KiB", 1024},
      {"3GB", 3ull << 30}, {"1T", 1ull << 40}, {"7b", 7}};
  for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
    uint64_t v = 0;
    cr_assert_eq(fg__bytes_parse(ok[i].s, &v), 0, "%s", ok[i].s);
    cr_assert_eq(v, ok[i].v, "%s: %llu", ok[i].s, (unsigned long long)v);
  }
  const char *bad[] = {"", "0", "0G", "-1", "2 G", "2X", "G", "99999999999999999999",
                       "20000000000000000T", "1.5G", NULL};
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    uint64_t v = 0;
    cr_assert_eq(fg__bytes_parse(bad[i], &v), -1, "%s", bad[i] ? bad[i] : "NULL");
  }
  char buf[32];
  fg__bytes_format(2ull << 30, buf, sizeof buf);
  cr_assert_str_eq(buf, "2G");
  fg__bytes_format(1536ull << 20, buf, sizeof buf);
  cr_assert_str_eq(buf, "1536M");
  fg__bytes_format(1000, buf, sizeof buf);
  cr_assert_str_eq(buf, "1000");
}
