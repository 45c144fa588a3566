/* The CSV reader (data/csv_read.c) on arbitrary files. The first byte
 * picks the options (header or not, integer or float target, which column
 * is the target); the rest is the file. Properties: an accepted table has
 * rows x features numbers; a failure names the file. */
#include <stdlib.h>
#include <string.h>

#include "data/csv.h"
#include "fulgur/error.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  static const char *const targets[] = {"0", "1", "y", "label"};
  uint8_t opt = data[0];
  const char *path = fuzz_file(data + 1, size - 1, ".csv");
  fg_csv_opts o = {.path = path,
                   .target = targets[(opt >> 2) & 3],
                   .target_long = opt & 1,
                   .header = (opt >> 1) & 1};
  fg__csv_table t = {0};
  char *err = NULL;
  int rc = fg__csv_read(&o, &t, &err);
  if (rc == 0) {
    FUZZ_REQUIRE(t.rows > 0 && t.features > 0);
    double sum = 0;
    for (size_t i = 0; i < t.rows * t.features; i++) sum += t.x[i];
    for (size_t i = 0; i < t.rows; i++) sum += t.y[i];
    (void)sum;
    free(t.x);
    free(t.y);
  } else {
    FUZZ_REQUIRE(err && strstr(err, path));
    free(err);
  }
  unlink(path);
  return 0;
}
