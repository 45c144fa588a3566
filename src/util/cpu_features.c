/* cpuid and XGETBV, read directly (GCC's <cpuid.h>): the bits are those
 * of Intel's SDM vol. 2A, table 3-8, and the names Linux gives them in
 * /proc/cpuinfo, so a test can compare the two. */
#include "util/cpu_features.h"

#include <stdio.h>
#include <string.h>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#define FG_X86 1
#endif

/* One table: the flag's Linux name and where its field lives. */
#define FEATURES(X)            \
  X(sse3, "pni")               \
  X(avx, "avx")                \
  X(fma, "fma")                \
  X(avx2, "avx2")              \
  X(avx512f, "avx512f")        \
  X(avx512dq, "avx512dq")      \
  X(avx512cd, "avx512cd")      \
  X(avx512bw, "avx512bw")      \
  X(avx512vl, "avx512vl")      \
  X(avx512_bf16, "avx512_bf16") \
  X(amx_tile, "amx_tile")      \
  X(amx_bf16, "amx_bf16")      \
  X(amx_int8, "amx_int8")

static const struct {
  const char *name;
  size_t offset;
} names[] = {
#define ENTRY(field, name) {name, offsetof(fg__cpu_features, field)},
    FEATURES(ENTRY)
#undef ENTRY
};

static bool *field(fg__cpu_features *f, size_t i) { return (bool *)((char *)f + names[i].offset); }

#ifdef FG_X86
static unsigned long long xgetbv0(void) {
  unsigned eax, edx;
  __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
  return ((unsigned long long)edx << 32) | eax;
}
#endif

void fg__cpu_features_detect(fg__cpu_features *out) {
  memset(out, 0, sizeof *out);
#ifdef FG_X86
  unsigned a, b, c, d;
  if (!__get_cpuid(1, &a, &b, &c, &d)) return;
  out->sse3 = c & (1u << 0);
  bool osxsave = c & (1u << 27);
  /* XCR0: which register files the OS saves on a context switch. SSE and
   * AVX state (bits 1, 2); opmask, ZMM0-15 upper halves, ZMM16-31 (5-7);
   * AMX tile config and data (17, 18). */
  unsigned long long xcr0 = osxsave ? xgetbv0() : 0;
  bool os_avx = (xcr0 & 0x6) == 0x6;
  bool os_avx512 = os_avx && (xcr0 & 0xe0) == 0xe0;
  bool os_amx = (xcr0 & 0x60000) == 0x60000;
  out->avx = os_avx && (c & (1u << 28));
  out->fma = os_avx && (c & (1u << 12));
  unsigned max_leaf = __get_cpuid_max(0, NULL);
  if (max_leaf < 7) return;
  __cpuid_count(7, 0, a, b, c, d);
  unsigned max_sub = a;
  out->avx2 = os_avx && (b & (1u << 5));
  out->avx512f = os_avx512 && (b & (1u << 16));
  out->avx512dq = os_avx512 && (b & (1u << 17));
  out->avx512cd = os_avx512 && (b & (1u << 28));
  out->avx512bw = os_avx512 && (b & (1u << 30));
  out->avx512vl = os_avx512 && (b & (1u << 31));
  out->amx_bf16 = os_amx && (d & (1u << 22));
  out->amx_tile = os_amx && (d & (1u << 24));
  out->amx_int8 = os_amx && (d & (1u << 25));
  if (max_sub >= 1) {
    __cpuid_count(7, 1, a, b, c, d);
    out->avx512_bf16 = os_avx512 && (a & (1u << 5));
  }
#endif
}

void fg__cpu_features_parse(const char *flags, fg__cpu_features *out) {
  memset(out, 0, sizeof *out);
  const char *p = flags ? flags : "";
  while (*p) {
    while (*p == ' ' || *p == '\t' || *p == '\n') p++;
    size_t n = strcspn(p, " \t\n");
    for (size_t i = 0; n && i < sizeof names / sizeof names[0]; i++)
      if (strlen(names[i].name) == n && strncmp(p, names[i].name, n) == 0) *field(out, i) = true;
    p += n;
  }
}

void fg__cpu_features_and(fg__cpu_features *a, const fg__cpu_features *b) {
  fg__cpu_features other = *b;
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) *field(a, i) = *field(a, i) && *field(&other, i);
}

bool fg__cpu_has_avx512(const fg__cpu_features *f) {
  return f->avx512f && f->avx512dq && f->avx512cd && f->avx512bw && f->avx512vl;
}

bool fg__cpu_has_bf16(const fg__cpu_features *f) { return f->avx512_bf16 || f->amx_bf16; }

void fg__cpu_features_format(const fg__cpu_features *f, char *buf, size_t len) {
  size_t used = 0;
  if (len) buf[0] = '\0';
  fg__cpu_features copy = *f;
  for (size_t i = 0; i < sizeof names / sizeof names[0] && len; i++) {
    if (!*field(&copy, i)) continue;
    int w = snprintf(buf + used, len - used, "%s%s", used ? " " : "", names[i].name);
    if (w < 0 || (size_t)w >= len - used) break;
    used += (size_t)w;
  }
}
