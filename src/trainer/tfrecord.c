/* TFRecord framing: each record is
 *   uint64 length | uint32 masked_crc32c(length) | data | uint32 masked_crc32c(data)
 * all little-endian, the mask being TensorFlow's rotate-and-add that keeps
 * a CRC of data containing CRCs from looking like one.
 *
 * The CRC32C comes from Intel's ISA-L (libisal, crc32_iscsi: the iSCSI
 * polynomial is Castagnoli's), the Debian library that exports it: zlib
 * has only CRC32 (another polynomial), and the others that compute CRC32C
 * (leveldb, rocksdb, snappy) keep it out of their public headers.
 * crc32_iscsi neither inverts its input nor its output, so the standard
 * value is ~crc32_iscsi(data, len, ~0). */
#include "trainer/tfrecord.h"

#include <isa-l/crc.h>
#include <limits.h>

static uint32_t crc32c(const void *data, size_t len) {
  uint32_t crc = 0xffffffffu;
  const unsigned char *p = data;
  /* crc32_iscsi takes an int length. */
  while (len > 0) {
    int n = len > (size_t)INT_MAX ? INT_MAX : (int)len;
    crc = crc32_iscsi((unsigned char *)p, n, crc);
    p += n;
    len -= (size_t)n;
  }
  return ~crc;
}

uint32_t fg__tfrecord_masked_crc(const void *data, size_t len) {
  uint32_t crc = crc32c(data, len);
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

static void put_le(unsigned char *out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; i++) out[i] = (unsigned char)(v >> (8 * i));
}

int fg__tfrecord_write(FILE *f, const void *data, size_t len) {
  unsigned char head[12], tail[4];
  put_le(head, (uint64_t)len, 8);
  put_le(head + 8, fg__tfrecord_masked_crc(head, 8), 4);
  put_le(tail, fg__tfrecord_masked_crc(data, len), 4);
  if (fwrite(head, 1, sizeof head, f) != sizeof head) return -1;
  if (len && fwrite(data, 1, len, f) != len) return -1;
  if (fwrite(tail, 1, sizeof tail, f) != sizeof tail) return -1;
  return 0;
}
