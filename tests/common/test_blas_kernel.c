/* The OpenBLAS kernel choice (util/blas_kernel.c) over CPU feature sets
 * and OpenBLAS core names, and the CPU feature reader against what Linux
 * reports in /proc/cpuinfo. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "util/blas_kernel.h"
#include "util/cpu_features.h"

/* /proc/cpuinfo flag lines of real CPUs (cut to the flags that matter and
 * some that must not be mistaken for them). */
#define SSE_ONLY "fpu sse sse2 pni ssse3 sse4_1 sse4_2 popcnt"
#define SANDYBRIDGE SSE_ONLY " avx xsave aes"
#define ZEN2 SANDYBRIDGE " fma avx2 bmi2 sse4a"
#define KNIGHTS_LANDING ZEN2 " avx512f avx512cd avx512er avx512pf"
#define SKYLAKE_SP ZEN2 " avx512f avx512dq avx512cd avx512bw avx512vl"
#define ZEN4 SKYLAKE_SP " avx512_bf16 avx512ifma avx512vbmi avx512_vnni"
#define SAPPHIRE_RAPIDS ZEN4 " amx_bf16 amx_tile amx_int8 avx512_fp16"

static const char *choose(const char *flags, const char *corename) {
  fg__cpu_features f;
  fg__cpu_features_parse(flags, &f);
  return fg__blas_kernel_choose(&f, corename);
}

static void expect_choice(const char *flags, const char *corename, const char *want) {
  const char *got = choose(flags, corename);
  if (want == NULL)
    cr_expect_null(got, "%s on [%s]: expected no change, got %s", corename, flags, got);
  else
    cr_expect(got && strcmp(got, want) == 0, "%s on [%s]: expected %s, got %s", corename, flags, want,
              got ? got : "NULL");
}

Test(blas_kernel, fallbacks_are_replaced_by_the_best_set_the_cpu_runs) {
  /* The machine: Sapphire Rapids, which 0.3.21 runs as Prescott. */
  expect_choice(SAPPHIRE_RAPIDS, "Prescott", "Cooperlake");
  expect_choice(ZEN4, "Prescott", "Cooperlake");
  expect_choice(ZEN4, "Haswell", "Cooperlake");
  expect_choice(SKYLAKE_SP, "Prescott", "SkylakeX");
  expect_choice(SKYLAKE_SP, "Nehalem", "SkylakeX");
  expect_choice(SKYLAKE_SP, "Zen", "SkylakeX");
  expect_choice(ZEN2, "Prescott", "Haswell");
  expect_choice(ZEN2, "Sandybridge", "Haswell");
  expect_choice(SANDYBRIDGE, "Prescott", "Sandybridge");
  expect_choice(SANDYBRIDGE, "Core2", "Sandybridge");
  /* OpenBLAS's names are matched as it matches them, ignoring case. */
  expect_choice(SKYLAKE_SP, "prescott", "SkylakeX");
}

Test(blas_kernel, good_choices_are_kept) {
  expect_choice(ZEN4, "Cooperlake", NULL);
  expect_choice(SKYLAKE_SP, "SkylakeX", NULL);
  expect_choice(ZEN2, "Zen", NULL);
  expect_choice(ZEN2, "Haswell", NULL);
  expect_choice(SANDYBRIDGE, "Sandybridge", NULL);
  /* Better than our best: a newer OpenBLAS that knows the CPU. */
  expect_choice(SAPPHIRE_RAPIDS, "SapphireRapids", NULL);
  /* A name this table does not know is not second-guessed. */
  expect_choice(SAPPHIRE_RAPIDS, "Emeraldrapids", NULL);
  expect_choice(SAPPHIRE_RAPIDS, "", NULL);
  expect_choice(SAPPHIRE_RAPIDS, NULL, NULL);
  /* Nothing better exists for a CPU without AVX. */
  expect_choice(SSE_ONLY, "Prescott", NULL);
}

Test(blas_kernel, a_set_needs_all_of_its_instructions) {
  /* AVX-512F alone (Knights Landing has no BW/VL/DQ) is not SkylakeX. */
  expect_choice(KNIGHTS_LANDING, "Prescott", "Haswell");
  /* AVX512-BF16 without the rest of AVX-512 is not Cooperlake. */
  expect_choice(ZEN2 " avx512_bf16", "Prescott", "Haswell");
  /* AVX2 without FMA is not Haswell. */
  expect_choice(SANDYBRIDGE " avx2", "Prescott", "Sandybridge");
}

Test(cpu_features, parses_linux_flag_names_exactly) {
  fg__cpu_features f;
  fg__cpu_features_parse("avx512 avx2x xavx avx512_bf16x pni\tfma\n", &f);
  cr_expect(!f.avx && !f.avx2 && !f.avx512f && !f.avx512_bf16, "prefixes and suffixes are not flags");
  cr_expect(f.sse3 && f.fma);
  fg__cpu_features_parse(SAPPHIRE_RAPIDS, &f);
  cr_expect(fg__cpu_has_avx512(&f) && fg__cpu_has_bf16(&f) && f.amx_tile && f.amx_int8);
  fg__cpu_features_parse(SKYLAKE_SP, &f);
  cr_expect(fg__cpu_has_avx512(&f) && !fg__cpu_has_bf16(&f));
  char buf[256];
  fg__cpu_features_format(&f, buf, sizeof buf);
  cr_expect_str_eq(buf, "pni avx fma avx2 avx512f avx512dq avx512cd avx512bw avx512vl");
  fg__cpu_features_parse(NULL, &f);
  fg__cpu_features_format(&f, buf, sizeof buf);
  cr_expect_str_eq(buf, "");
}

/* What this process's cpuid says, against what the kernel says. */
Test(cpu_features, detect_agrees_with_proc_cpuinfo) {
  FILE *fp = fopen("/proc/cpuinfo", "r");
  cr_assert_not_null(fp);
  char *line = NULL;
  size_t cap = 0;
  bool found = false;
  while (getline(&line, &cap, fp) > 0)
    if (strncmp(line, "flags", 5) == 0 && strchr(line, ':')) {
      found = true;
      break;
    }
  fclose(fp);
  cr_assert(found, "/proc/cpuinfo has no flags line");
  fg__cpu_features kernel, cpuid;
  fg__cpu_features_parse(strchr(line, ':') + 1, &kernel);
  free(line);
  fg__cpu_features_detect(&cpuid);
  char a[256], b[256];
  fg__cpu_features_format(&kernel, a, sizeof a);
  fg__cpu_features_format(&cpuid, b, sizeof b);
  cr_expect_str_eq(b, a, "cpuid [%s], /proc/cpuinfo [%s]", b, a);
}

Test(blas_kernel, test_flags_only_narrow_the_cpu) {
  fg__cpu_features real, seen;
  fg__cpu_features_detect(&real);
  setenv(FG_BLAS_ENV_TEST_CPU_FLAGS, SAPPHIRE_RAPIDS, 1);
  fg__blas_kernel_cpu(&seen);
  cr_expect(memcmp(&real, &seen, sizeof real) == 0, "listing every flag must change nothing");
  setenv(FG_BLAS_ENV_TEST_CPU_FLAGS, "pni", 1);
  fg__blas_kernel_cpu(&seen);
  cr_expect(!seen.avx && !seen.avx2 && !seen.avx512f && seen.sse3 == real.sse3);
}

static void clear_env(void) {
  unsetenv(FG_BLAS_ENV_CORETYPE);
  unsetenv(FG_BLAS_ENV_FALLBACK);
  unsetenv(FG_BLAS_ENV_CHOSEN_BY);
  unsetenv(FG_BLAS_ENV_TEST_CORENAME);
  unsetenv(FG_BLAS_ENV_TEST_CPU_FLAGS);
}

Test(blas_kernel, set_env_chooses_once_and_records_why) {
  fg__cpu_features real;
  fg__cpu_features_detect(&real);
  if (!(real.avx2 && real.fma)) cr_skip_test("this CPU has no AVX2 and FMA");
  clear_env();
  setenv(FG_BLAS_ENV_TEST_CPU_FLAGS, "pni avx avx2 fma", 1);
  cr_assert_null(fg__blas_kernel_set_env("Haswell", "t"), "a good set stays");
  cr_assert_null(getenv(FG_BLAS_ENV_CORETYPE));
  const char *c = fg__blas_kernel_set_env("Prescott", "the test");
  cr_assert(c && strcmp(c, "Haswell") == 0, "got %s", c ? c : "NULL");
  cr_expect_str_eq(getenv(FG_BLAS_ENV_CORETYPE), "Haswell");
  cr_expect_str_eq(getenv(FG_BLAS_ENV_FALLBACK), "Prescott");
  cr_expect_str_eq(getenv(FG_BLAS_ENV_CHOSEN_BY), "the test");
  /* The guard: once chosen, never again (the re-executed process). */
  unsetenv(FG_BLAS_ENV_CORETYPE);
  cr_expect_null(fg__blas_kernel_set_env("Prescott", "again"));
  cr_expect_null(getenv(FG_BLAS_ENV_CORETYPE));
}

Test(blas_kernel, the_users_coretype_wins) {
  clear_env();
  setenv(FG_BLAS_ENV_CORETYPE, "Prescott", 1);
  cr_expect_null(fg__blas_kernel_set_env("Prescott", "t"));
  cr_expect_str_eq(getenv(FG_BLAS_ENV_CORETYPE), "Prescott");
  cr_expect_null(getenv(FG_BLAS_ENV_FALLBACK));
}

Test(blas_kernel, the_test_corename_stands_in_for_openblas) {
  fg__cpu_features real;
  fg__cpu_features_detect(&real);
  if (!(real.avx2 && real.fma)) cr_skip_test("this CPU has no AVX2 and FMA");
  clear_env();
  setenv(FG_BLAS_ENV_TEST_CPU_FLAGS, "pni avx avx2 fma", 1);
  setenv(FG_BLAS_ENV_TEST_CORENAME, "Core2", 1);
  const char *c = fg__blas_kernel_set_env("Haswell", "t");
  cr_assert(c && strcmp(c, "Haswell") == 0);
  cr_expect_str_eq(getenv(FG_BLAS_ENV_FALLBACK), "Core2");
}

Test(blas_kernel, describe_without_openblas) {
  /* This test links no OpenBLAS. */
  bool warn = true;
  char *s = fg__blas_kernel_describe(&warn);
  cr_expect_str_eq(s, "BLAS kernels: libtorch's BLAS is not OpenBLAS");
  cr_expect(!warn);
  free(s);
}
