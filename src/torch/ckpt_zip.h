/* The zip directory of a checkpoint, checked before libtorch reads it. */
#ifndef FG_TORCH_CKPT_ZIP_H
#define FG_TORCH_CKPT_ZIP_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Walks the central directory of the zip archive buf[0, len) and checks
 * that every record lies inside the file and claims no more bytes than the
 * file can hold: a stored record no more than its bytes in the file, a
 * deflated one no more than deflate's maximum expansion of them; and that
 * the archive has its records in one folder and a version record between
 * versions[0] and versions[1] (libtorch's supported range, from its C++
 * header). Returns 0, or FG_EDATA with *err (the caller frees) naming the
 * record. */
int fg__ckpt_zip_check(const char *buf, size_t len, const uint64_t versions[2], char **err);

#ifdef __cplusplus
}
#endif

#endif
