/* TFRecord framing, as TensorBoard's event files use it. */
#ifndef FG_TRAINER_TFRECORD_H
#define FG_TRAINER_TFRECORD_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* CRC32C (Castagnoli) of data, masked as TFRecord stores it. */
uint32_t fg__tfrecord_masked_crc(const void *data, size_t len);
/* Writes one record to f: the length (uint64, little-endian), its masked
 * CRC32C, data, and data's masked CRC32C. Returns 0, or -1 with errno set
 * when the write fails. */
int fg__tfrecord_write(FILE *f, const void *data, size_t len);

#endif
