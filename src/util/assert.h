/* FG_ASSERT: an invariant check that stays on in every build.
 *
 * assert() vanishes under NDEBUG, and the default build (RelWithDebInfo)
 * defines it, so a broken invariant would run on with corrupt state. A
 * long-running process (fulgurd, a training run) must stop loudly instead,
 * saying where: FG_ASSERT prints "file:line: function: assertion failed:
 * expr" to stderr and aborts, like Redis's serverAssert.
 *
 * Only for programming errors (a wrong kind passed to an accessor, a
 * duplicate built-in name). Bad input from users is an FG_E* error value,
 * never an assertion. The check costs one branch; the expression is always
 * evaluated, but keep it free of side effects all the same so it reads as a
 * check.
 *
 * Header-only (a static function, no symbol of libfulgur): fulgurd, the
 * client, the RPC helpers and the tests use it without linking the engine. */
#ifndef FG_UTIL_ASSERT_H
#define FG_UTIL_ASSERT_H

#include <stdio.h>
#include <stdlib.h>

#ifdef __cplusplus
#define FG__NORETURN [[noreturn]]
#else
#define FG__NORETURN _Noreturn
#endif

FG__NORETURN static inline void fg__assert_fail(const char *expr, const char *file, int line,
                                                const char *func) {
  fprintf(stderr, "fulgur: %s:%d: %s: assertion failed: %s\n", file, line, func, expr);
  fflush(stderr);
  abort();
}

#define FG_ASSERT(expr) \
  ((expr) ? (void)0 : fg__assert_fail(#expr, __FILE__, __LINE__, __func__))

#endif
