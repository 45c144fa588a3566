/* The checkpoint reader (torch/pickle.cpp and torch/ckpt_zip.c) on
 * arbitrary bytes: the zip directory check, libtorch's zip reader, the
 * pickle machine and the tensors rebuilt from storages. Properties: a
 * failure comes with a message; what it accepts is a value tree whose
 * tensors can be read end to end. */
#include <stdlib.h>
#include <string.h>

#include "fulgur/error.h"
#include "fulgur/torch.h"
#include "fulgur/value.h"
#include "fuzz_util.h"

/* libtorch 1.13's PyTorchStreamReader constructor opens the archive with
 * miniz (mz_zip_reader_init allocates its state) and then checks it
 * (records in a folder, a readable version record); when a check throws,
 * the destructor never runs and miniz's state, a few hundred bytes, leaks.
 * src/torch/ckpt_zip.c checks what it can before libtorch is called
 * (corpus/pickle/leak-*), but miniz can still fail to read a record it
 * accepted (a corrupt local header). Only allocations made inside
 * mz_zip_reader_init are suppressed: a leak of fulgur's own never has it
 * on its stack. libtorch has no frame pointers, so malloc stacks are
 * unwound the slow way for the suppression to see that frame. */
const char *__lsan_default_suppressions(void) { return "leak:mz_zip_reader_init\n"; }
const char *__asan_default_options(void) { return "fast_unwind_on_malloc=0"; }

/* Reads every tensor's every element (through a contiguous copy). */
static void walk(const fg_value *v) {
  switch (fg_value_kind_of(v)) {
    case FG_VALUE_LIST:
      for (size_t i = 0; i < fg_value_len(v); i++) walk(fg_value_list_at(v, i));
      break;
    case FG_VALUE_DICT:
      for (size_t i = 0; i < fg_value_len(v); i++) {
        FUZZ_REQUIRE(fg_value_dict_key_at(v, i) != NULL);
        walk(fg_value_dict_value_at(v, i));
      }
      break;
    case FG_VALUE_TENSOR: {
      const fg_tensor *t = fg_value_as_tensor(v);
      size_t bytes = (size_t)fg_tensor_numel(t) * sizeof(double);
      double *buf = malloc(bytes ? bytes : 1);
      char *err = NULL;
      FUZZ_REQUIRE(buf != NULL);
      if (fg_tensor_copy_out(t, FG_FLOAT64, buf, bytes, &err) != 0) free(err);
      free(buf);
      break;
    }
    default: break;
  }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  fg_value *v = NULL;
  char *err = NULL;
  int rc = fg_value_unpickle((const char *)data, size, &v, &err);
  if (rc == 0) {
    walk(v);
    fg_value_free(v);
  } else {
    FUZZ_REQUIRE(err != NULL);
    if (getenv("FUZZ_VERBOSE")) fprintf(stderr, "rejected: %s\n", err);
    free(err);
  }
  return 0;
}
