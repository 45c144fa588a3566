/* The IDX reader (data/idx_read.c) on arbitrary files, .gz or plain: the
 * fourth byte, the file's own dimension count, picks 1 to 3 dimensions.
 * Properties: a file it accepts holds exactly the bytes its header
 * declares; a failure has a message naming the file. */
#include <stdlib.h>
#include <string.h>

#include "data/idx.h"
#include "fulgur/error.h"
#include "fuzz_util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  int ndim = size >= 4 && data[3] >= 1 && data[3] <= 3 ? data[3] : 1;
  const char *path = fuzz_file(data, size, ".idx");
  fg__idx_file f = {0};
  char *err = NULL;
  int rc = fg__idx_read(path, ndim, &f, &err);
  if (rc == 0) {
    size_t want = 1;
    for (int d = 0; d < ndim; d++) want *= (size_t)f.dims[d];
    FUZZ_REQUIRE(f.size == want);
    /* Touch every byte: ASan checks the buffer is as long as it says. */
    unsigned sum = 0;
    for (size_t i = 0; i < f.size; i++) sum += f.data[i];
    (void)sum;
    free(f.data);
  } else {
    FUZZ_REQUIRE(err && strstr(err, path));
    free(err);
  }
  unlink(path);
  return 0;
}
