/* Which OpenBLAS kernel set runs, and a better one when OpenBLAS falls
 * back on a CPU it does not know.
 *
 * OpenBLAS (DYNAMIC_ARCH) picks its kernels by CPU model when it loads. A
 * release older than the CPU does not know the model and falls back to a
 * generic set (Debian 12's 0.3.21 runs Prescott, SSE3, on an AVX-512
 * Sapphire Rapids: half the speed). The kernel set is fixed by
 * OPENBLAS_CORETYPE, read once as the library initialises, so it has to be
 * in the environment before the process starts:
 *
 * - fulgur-local and fulgur-worker ask the OpenBLAS they run
 *   (openblas_get_corename, through libtorch) and, when it is a fallback,
 *   execute themselves again once with OPENBLAS_CORETYPE set
 *   (fg__blas_kernel_reexec);
 * - the `fulgur` launcher and fulgurd, which do not load libtorch, ask
 *   libopenblas.so.0 directly and set the variable for the engine they
 *   exec or the workers they spawn (fg__blas_kernel_prepare_env), so the
 *   engine starts with the right kernels and need not re-execute.
 *
 * A user's OPENBLAS_CORETYPE always wins. The environment also carries the
 * report: FULGUR_BLAS_FALLBACK names the set OpenBLAS had picked itself
 * when fulgur replaced it (and is the guard against executing again).
 *
 * (FULGUR_BLAS_CHOSEN_BY, which program chose).
 *
 * Two variables are for tests only, so a test can play "an unknown CPU"
 * on any machine: FULGUR_TEST_BLAS_CORENAME stands in for what OpenBLAS
 * reports before fulgur chooses, and FULGUR_TEST_CPU_FLAGS (Linux flag
 * names) narrows the CPU's features to those listed, never widening them,
 * so the choice stays one the CPU runs. Neither changes the kernels by
 * itself; only OPENBLAS_CORETYPE does. */
#ifndef FG_UTIL_BLAS_KERNEL_H
#define FG_UTIL_BLAS_KERNEL_H

#include <stdbool.h>

#include "util/cpu_features.h"

#define FG_BLAS_ENV_CORETYPE "OPENBLAS_CORETYPE"
#define FG_BLAS_ENV_FALLBACK "FULGUR_BLAS_FALLBACK"
#define FG_BLAS_ENV_CHOSEN_BY "FULGUR_BLAS_CHOSEN_BY"
#define FG_BLAS_ENV_TEST_CORENAME "FULGUR_TEST_BLAS_CORENAME"
#define FG_BLAS_ENV_TEST_CPU_FLAGS "FULGUR_TEST_CPU_FLAGS"

/* The best kernel set that is correct on a CPU with these features, as
 * OPENBLAS_CORETYPE spells it ("Cooperlake", "SkylakeX", "Haswell",
 * "Sandybridge"), or NULL when it has none of them (plain SSE). */
const char *fg__blas_kernel_best(const fg__cpu_features *f);

/* The kernel set to force instead of `corename` (what OpenBLAS runs), or
 * NULL to keep it: it is not a fallback for this CPU, or it is a name this
 * table does not know (a newer OpenBLAS knows better than we do). */
const char *fg__blas_kernel_choose(const fg__cpu_features *f, const char *corename);

/* Returns the kernel set to force in the process about to start, given
 * what OpenBLAS reports here (NULL: no OpenBLAS), and sets
 * OPENBLAS_CORETYPE and FULGUR_BLAS_FALLBACK in this process's
 * environment when there is one. NULL, changing nothing, when
 * OPENBLAS_CORETYPE or FULGUR_BLAS_FALLBACK is already set. */
const char *fg__blas_kernel_set_env(const char *corename, const char *who);

/* For programs that do not load libtorch: asks libopenblas.so.0 itself
 * (loaded for this, with one thread) and sets the environment as
 * fg__blas_kernel_set_env. Returns the set chosen or NULL. */
const char *fg__blas_kernel_prepare_env(void);

/* For the engine's programs, first thing in main: if the OpenBLAS this
 * process runs is a fallback, sets the environment and executes
 * /proc/self/exe again with argv; returns only when it does not (nothing
 * to change, already chosen, or exec failed, in which case the process
 * carries on with the fallback and the environment as it was). */
void fg__blas_kernel_reexec(char **argv);

/* This CPU's features as the choice sees them: detected, narrowed by
 * FULGUR_TEST_CPU_FLAGS when set. */
void fg__blas_kernel_cpu(fg__cpu_features *out);

/* The name of the kernel set OpenBLAS runs in this process (NULL: this
 * process has no OpenBLAS); looked up, not loaded. */
const char *fg__blas_kernel_running(void);

/* One sentence for the run's log: the kernel set, who chose it and why,
 * e.g. "BLAS kernels: OpenBLAS Cooperlake (chosen by fulgur: OpenBLAS's
 * own choice, Prescott, is a fallback on this CPU)". *warn is set when the
 * kernels are slower than this CPU allows or OpenBLAS ignored the choice.
 * Caller frees. */
char *fg__blas_kernel_describe(bool *warn);

#endif
