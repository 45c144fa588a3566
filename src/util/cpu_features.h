/* The instruction sets this CPU runs, as the kernels that use them need
 * them: reported by the CPU (cpuid) and enabled by the kernel (the
 * register state XGETBV reports), so AVX-512 on a kernel that does not
 * save its registers counts as absent. The BLAS kernel choice
 * (blas_kernel.c) and the bf16 precision warning read it. */
#ifndef FG_UTIL_CPU_FEATURES_H
#define FG_UTIL_CPU_FEATURES_H

#include <stdbool.h>
#include <stddef.h>

typedef struct {
  bool sse3, avx, fma, avx2;
  bool avx512f, avx512dq, avx512cd, avx512bw, avx512vl;
  bool avx512_bf16;
  bool amx_tile, amx_bf16, amx_int8;
} fg__cpu_features;

/* This CPU's features. Cannot fail: a CPU without cpuid has none. */
void fg__cpu_features_detect(fg__cpu_features *out);

/* Features from a space-separated list of Linux's /proc/cpuinfo flag
 * names ("avx2 fma avx512f ..."; unknown names are ignored), for tests
 * and for comparing detect with what the kernel reports. */
void fg__cpu_features_parse(const char *flags, fg__cpu_features *out);

/* Keeps in *a only the features b has too. */
void fg__cpu_features_and(fg__cpu_features *a, const fg__cpu_features *b);

/* The full AVX-512 set the SkylakeX kernels use (F, DQ, CD, BW, VL). */
bool fg__cpu_has_avx512(const fg__cpu_features *f);
/* Native bf16 arithmetic (AVX512-BF16 or AMX-BF16): without it, bf16
 * matmuls are emulated and slower than fp32. */
bool fg__cpu_has_bf16(const fg__cpu_features *f);

/* "avx2 fma avx512f ..." in /proc/cpuinfo's names, of the features set
 * (for messages); writes at most len bytes, NUL-terminated. */
void fg__cpu_features_format(const fg__cpu_features *f, char *buf, size_t len);

#endif
