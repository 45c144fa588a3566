#include "util/numfmt.h"

#include <stdio.h>
#include <stdlib.h>

void fg__shortest_double(double v, char *buf, size_t len) {
  for (int prec = 1; prec <= 17; prec++) {
    snprintf(buf, len, "%.*g", prec, v);
    if (strtod(buf, NULL) == v) return;
  }
}
