/* The OpenBLAS kernel choice (blas_kernel.h says why and when). */
#include "util/blas_kernel.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "util/xalloc.h"

/* OpenBLAS's core names (dynamic.c's corename[]) by the instruction set
 * their kernels use: a set below what the CPU runs is a fallback. Names
 * not here are left alone. */
enum { TIER_SSE = 1, TIER_AVX, TIER_AVX2, TIER_AVX512, TIER_AVX512_BF16, TIER_AMX };
static const struct {
  const char *name;
  int tier;
} cores[] = {
    {"Katmai", TIER_SSE},         {"Coppermine", TIER_SSE}, {"Northwood", TIER_SSE},
    {"Prescott", TIER_SSE},       {"Banias", TIER_SSE},     {"Atom", TIER_SSE},
    {"Core2", TIER_SSE},          {"Penryn", TIER_SSE},     {"Dunnington", TIER_SSE},
    {"Nehalem", TIER_SSE},        {"Athlon", TIER_SSE},     {"Opteron", TIER_SSE},
    {"Opteron_SSE3", TIER_SSE},   {"Barcelona", TIER_SSE},  {"Nano", TIER_SSE},
    {"Bobcat", TIER_SSE},         {"Sandybridge", TIER_AVX}, {"Bulldozer", TIER_AVX},
    {"Piledriver", TIER_AVX},     {"Steamroller", TIER_AVX}, {"Excavator", TIER_AVX},
    {"Haswell", TIER_AVX2},       {"Zen", TIER_AVX2},       {"SkylakeX", TIER_AVX512},
    {"Cooperlake", TIER_AVX512_BF16}, {"SapphireRapids", TIER_AMX},
};

static int tier_of(const char *corename) {
  for (size_t i = 0; corename && i < sizeof cores / sizeof cores[0]; i++)
    if (strcasecmp(cores[i].name, corename) == 0) return cores[i].tier;
  return 0;
}

const char *fg__blas_kernel_best(const fg__cpu_features *f) {
  /* Cooperlake is SkylakeX plus the bf16 gemm (sbgemm) that needs
   * AVX512-BF16; SapphireRapids is left out: 0.3.21 does not know it, and
   * an OpenBLAS that does picks it by itself. */
  if (fg__cpu_has_avx512(f) && f->avx512_bf16) return "Cooperlake";
  if (fg__cpu_has_avx512(f)) return "SkylakeX";
  if (f->avx2 && f->fma) return "Haswell";
  if (f->avx) return "Sandybridge";
  return NULL;
}

const char *fg__blas_kernel_choose(const fg__cpu_features *f, const char *corename) {
  const char *best = fg__blas_kernel_best(f);
  int have = tier_of(corename);
  if (best == NULL || have == 0) return NULL;
  return have < tier_of(best) ? best : NULL;
}

void fg__blas_kernel_cpu(fg__cpu_features *out) {
  fg__cpu_features_detect(out);
  const char *narrow = getenv(FG_BLAS_ENV_TEST_CPU_FLAGS);
  if (narrow == NULL) return;
  fg__cpu_features keep;
  fg__cpu_features_parse(narrow, &keep);
  fg__cpu_features_and(out, &keep);
}

const char *fg__blas_kernel_set_env(const char *corename, const char *who) {
  if (getenv(FG_BLAS_ENV_CORETYPE) || getenv(FG_BLAS_ENV_FALLBACK)) return NULL;
  const char *test = getenv(FG_BLAS_ENV_TEST_CORENAME);
  const char *reported = test && *test ? test : corename;
  if (reported == NULL) return NULL;
  fg__cpu_features f;
  fg__blas_kernel_cpu(&f);
  const char *choice = fg__blas_kernel_choose(&f, reported);
  if (choice == NULL) return NULL;
  setenv(FG_BLAS_ENV_CORETYPE, choice, 1);
  setenv(FG_BLAS_ENV_FALLBACK, reported, 1);
  setenv(FG_BLAS_ENV_CHOSEN_BY, who, 1);
  return choice;
}

const char *fg__blas_kernel_prepare_env(void) {
  if (getenv(FG_BLAS_ENV_CORETYPE) || getenv(FG_BLAS_ENV_FALLBACK)) return NULL;
  /* OpenBLAS starts its thread pool as it loads; one thread is enough to
   * ask its name. */
  char *threads = getenv("OPENBLAS_NUM_THREADS");
  threads = threads ? fg__xstrdup(threads) : NULL;
  setenv("OPENBLAS_NUM_THREADS", "1", 1);
  /* Kept loaded, never dlclose'd: unloading runs OpenBLAS's teardown in a
   * process that may have threads of its own by then, for a few MB. */
  void *lib = dlopen("libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
  if (threads) setenv("OPENBLAS_NUM_THREADS", threads, 1);
  else unsetenv("OPENBLAS_NUM_THREADS");
  free(threads);
  char *(*corename)(void) = lib ? (char *(*)(void))dlsym(lib, "openblas_get_corename") : NULL;
  return fg__blas_kernel_set_env(corename ? corename() : NULL, program_invocation_short_name);
}

const char *fg__blas_kernel_running(void) {
  char *(*corename)(void) = (char *(*)(void))dlsym(RTLD_DEFAULT, "openblas_get_corename");
  return corename ? corename() : NULL;
}

void fg__blas_kernel_reexec(char **argv) {
  char *who = fg__xasprintf("%s (executed again)", program_invocation_short_name);
  const char *choice = fg__blas_kernel_set_env(fg__blas_kernel_running(), who);
  free(who);
  if (choice == NULL) return;
  execv("/proc/self/exe", argv);
  /* Still here: run on with the fallback, and say so in the report. */
  unsetenv(FG_BLAS_ENV_CORETYPE);
  unsetenv(FG_BLAS_ENV_FALLBACK);
  unsetenv(FG_BLAS_ENV_CHOSEN_BY);
}

char *fg__blas_kernel_describe(bool *warn) {
  *warn = false;
  const char *running = fg__blas_kernel_running();
  if (running == NULL) return fg__xstrdup("BLAS kernels: libtorch's BLAS is not OpenBLAS");
  const char *forced = getenv(FG_BLAS_ENV_CORETYPE);
  const char *fallback = getenv(FG_BLAS_ENV_FALLBACK);
  const char *who = getenv(FG_BLAS_ENV_CHOSEN_BY);
  fg__cpu_features f;
  fg__blas_kernel_cpu(&f);
  const char *better = fg__blas_kernel_choose(&f, running);
  if (forced && strcasecmp(forced, running) != 0) {
    *warn = true;
    return fg__xasprintf("BLAS kernels: OpenBLAS %s: it does not know OPENBLAS_CORETYPE=%s%s%s", running,
                         forced, fallback ? ", which fulgur chose" : "", fallback ? "" : " (set by the user)");
  }
  if (forced && fallback)
    return fg__xasprintf("BLAS kernels: OpenBLAS %s, chosen by %s: OpenBLAS's own choice on this CPU, %s, "
                         "is a fallback",
                         running, who ? who : "fulgur", fallback);
  if (forced) {
    *warn = better != NULL;
    return fg__xasprintf("BLAS kernels: OpenBLAS %s (OPENBLAS_CORETYPE, set by the user)%s%s%s", running,
                         better ? "; this CPU runs " : "", better ? better : "",
                         better ? ", which is faster" : "");
  }
  *warn = better != NULL;
  return fg__xasprintf("BLAS kernels: OpenBLAS %s (OpenBLAS's own choice on this CPU)%s%s", running,
                       better ? ", a fallback: fulgur could not switch to " : "", better ? better : "");
}
