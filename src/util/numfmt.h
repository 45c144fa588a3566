/* Number formatting shared by every writer of numbers users read back
 * (YAML, CSV, JSON). */
#ifndef FG_UTIL_NUMFMT_H
#define FG_UTIL_NUMFMT_H

#include <stddef.h>

/* The shortest "%.*g" text that reads back as exactly v (the digits of
 * Python's repr); callers add their own ".0", inf and nan spellings. */
void fg__shortest_double(double v, char *buf, size_t len);
/* Python's repr of a float: the shortest digits, ".0" on integral values,
 * "inf", "-inf", "nan". */
void fg__py_float_repr(double v, char *buf, size_t len);

#endif
