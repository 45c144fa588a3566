#include "util/numfmt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void fg__shortest_double(double v, char *buf, size_t len) {
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(buf, len, "%.*g", prec, v);
    if (strtod(buf, NULL) == v) return;
  }
}

void fg__py_float_repr(double v, char *buf, size_t len) {
  fg__shortest_double(v, buf, len);
  if (strpbrk(buf, ".eni") == NULL) strncat(buf, ".0", len - strlen(buf) - 1);
}
