/* A checkpoint's zip directory, checked against the file's size.
 *
 * libtorch's PyTorchStreamReader (miniz) allocates the uncompressed size a
 * record's directory entry declares before it reads the record, so a
 * 200-byte file can ask for terabytes. Written by hand because it is only
 * the directory walk (APPNOTE.TXT 4.3.12, 4.3.14-16, 4.5.3): the reading
 * itself stays libtorch's.
 *
 * It also checks what PyTorchStreamReader's constructor checks after it
 * has opened the archive (a first record inside a folder, a version record
 * with a supported number): that constructor leaks miniz's state when it
 * throws there, a few hundred bytes per rejected file. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "fulgur/error.h"
#include "torch/ckpt_zip.h"
#include "util/limits.h"

static uint64_t rd(const unsigned char *p, int n) {
  uint64_t v = 0;
  for (int i = n; i-- > 0;) v = v << 8 | p[i];
  return v;
}

/* Whether [off, off + n) lies inside a buffer of len bytes. */
static int inside(uint64_t off, uint64_t n, size_t len) {
  return off <= len && n <= len - off;
}

/* The zip64 extended information of an entry (APPNOTE 4.5.3): the 8-byte
 * values of the fields whose 4-byte copies are 0xFFFFFFFF, in order. */
static int zip64_extra(const unsigned char *x, size_t xl, uint64_t *uncomp, uint64_t *comp,
                       uint64_t *off) {
  while (xl >= 4) {
    unsigned id = (unsigned)rd(x, 2), n = (unsigned)rd(x + 2, 2);
    if (n > xl - 4) return -1;
    if (id == 1) {
      const unsigned char *p = x + 4;
      size_t left = n;
      uint64_t *want[3] = {uncomp, comp, off};
      for (int i = 0; i < 3; i++) {
        if (*want[i] != 0xFFFFFFFFu) continue;
        if (left < 8) return -1;
        *want[i] = rd(p, 8);
        p += 8;
        left -= 8;
      }
      return 0;
    }
    x += 4 + n;
    xl -= 4 + n;
  }
  return *uncomp == 0xFFFFFFFFu || *comp == 0xFFFFFFFFu || *off == 0xFFFFFFFFu ? -1 : 0;
}

/* The version record's number, when it is stored (read as libtorch reads
 * it, std::stoull: leading blanks, then digits); -1 when it is not a
 * number. Deflated records are left to libtorch. */
static int check_version(const unsigned char *b, size_t len, uint64_t off, uint64_t n,
                         unsigned method, const uint64_t versions[2], char **err) {
  if (method != 0) return 0;
  size_t nl = (size_t)rd(b + off + 26, 2), xl = (size_t)rd(b + off + 28, 2);
  uint64_t at = off + 30 + nl + xl;
  if (!inside(at, n, len))
    return fg_err_set(err, FG_EDATA, "zip archive: the version record lies outside the file");
  const unsigned char *p = b + at, *end = p + n;
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n')) p++;
  uint64_t v = 0;
  const unsigned char *digits = p;
  while (p < end && *p >= '0' && *p <= '9' && v < 1000000) v = v * 10 + (uint64_t)(*p++ - '0');
  if (p == digits || v < versions[0] || v > versions[1])
    return fg_err_set(err, FG_EDATA,
                      "zip archive: the version record is not a supported version (%llu to %llu)",
                      (unsigned long long)versions[0], (unsigned long long)versions[1]);
  return 0;
}

int fg__ckpt_zip_check(const char *buf, size_t len, const uint64_t versions[2], char **err) {
  const unsigned char *b = (const unsigned char *)buf;
  /* The end-of-central-directory record: 22 bytes and a comment of at most
   * 65535, found from the end. */
  size_t eocd = (size_t)-1;
  for (size_t back = 22; back <= len && back <= 22 + 65535u; back++)
    if (rd(b + len - back, 4) == 0x06054b50u) {
      eocd = len - back;
      break;
    }
  if (eocd == (size_t)-1)
    return fg_err_set(err, FG_EDATA, "not a zip archive (no end of central directory)");
  uint64_t entries = rd(b + eocd + 10, 2), cd_size = rd(b + eocd + 12, 4),
           cd_off = rd(b + eocd + 16, 4);
  /* zip64: a locator just before the record points at the zip64 record,
   * whose numbers then count (as miniz reads them, whether or not the
   * 32-bit fields say 0xFFFF...; torch.save always writes one). */
  if (eocd >= 20 && rd(b + eocd - 20, 4) == 0x07064b50u) {
    uint64_t z = rd(b + eocd - 12, 8);
    if (!inside(z, 56, len) || rd(b + z, 4) != 0x06064b50u)
      return fg_err_set(err, FG_EDATA, "zip archive: the zip64 directory record is missing");
    entries = rd(b + z + 32, 8);
    cd_size = rd(b + z + 40, 8);
    cd_off = rd(b + z + 48, 8);
  } else if (entries == 0xFFFFu || cd_size == 0xFFFFFFFFu || cd_off == 0xFFFFFFFFu) {
    return fg_err_set(err, FG_EDATA, "zip archive: a zip64 directory without its locator");
  }
  if (!inside(cd_off, cd_size, len))
    return fg_err_set(err, FG_EDATA,
                      "zip archive: the central directory (%llu bytes at %llu) lies outside the "
                      "file of %zu bytes",
                      (unsigned long long)cd_size, (unsigned long long)cd_off, len);
  if (entries > FG_CKPT_MAX_RECORDS)
    return fg_err_set(err, FG_EDATA, "zip archive: %llu records (the limit is %u)",
                      (unsigned long long)entries, FG_CKPT_MAX_RECORDS);
  if (entries == 0) return fg_err_set(err, FG_EDATA, "zip archive: no records");
  const unsigned char *p = b + cd_off, *end = p + cd_size;
  /* The folder every record is in: the first record's up to its '/'. */
  const unsigned char *folder = NULL;
  size_t folder_len = 0;
  bool has_version = false;
  for (uint64_t i = 0; i < entries; i++) {
    if (end - p < 46 || rd(p, 4) != 0x02014b50u)
      return fg_err_set(err, FG_EDATA, "zip archive: central directory entry %llu is malformed",
                        (unsigned long long)i);
    unsigned method = (unsigned)rd(p + 10, 2);
    uint64_t comp = rd(p + 20, 4), uncomp = rd(p + 24, 4), off = rd(p + 42, 4);
    size_t nl = (size_t)rd(p + 28, 2), xl = (size_t)rd(p + 30, 2), cl = (size_t)rd(p + 32, 2);
    if ((size_t)(end - p) - 46 < nl + xl + cl)
      return fg_err_set(err, FG_EDATA, "zip archive: central directory entry %llu is malformed",
                        (unsigned long long)i);
    /* The name for messages, cut short and without control bytes. */
    char name[128];
    size_t shown = nl < sizeof name - 1 ? nl : sizeof name - 1;
    for (size_t k = 0; k < shown; k++) {
      unsigned char c = p[46 + k];
      name[k] = c < 0x20 || c == 0x7f ? '?' : (char)c;
    }
    name[shown] = '\0';
    if (zip64_extra(p + 46 + nl, xl, &uncomp, &comp, &off) != 0)
      return fg_err_set(err, FG_EDATA, "zip archive: record '%s' has a malformed zip64 field", name);
    /* The local header (30 bytes and its name and extra field) comes
     * before the data: the data is at least that far in. */
    if (!inside(off, 30, len) || !inside(off + 30, comp, len))
      return fg_err_set(err, FG_EDATA,
                        "zip archive: record '%s' (%llu bytes at %llu) lies outside the file of "
                        "%zu bytes",
                        name, (unsigned long long)comp, (unsigned long long)off, len);
    if (method == 0 && uncomp != comp)
      return fg_err_set(err, FG_EDATA,
                        "zip archive: stored record '%s' declares %llu bytes but holds %llu",
                        name, (unsigned long long)uncomp, (unsigned long long)comp);
    if (method != 0 && method != 8)
      return fg_err_set(err, FG_EDATA, "zip archive: record '%s' uses compression method %u",
                        name, method);
    if (method == 8 && uncomp / FG_DEFLATE_MAX_RATIO > comp)
      return fg_err_set(err, FG_EDATA,
                        "zip archive: record '%s' declares %llu bytes, more than its %llu "
                        "compressed bytes can hold",
                        name, (unsigned long long)uncomp, (unsigned long long)comp);
    const unsigned char *nm = p + 46;
    if (i == 0) {
      const unsigned char *slash = memchr(nm, '/', nl);
      if (slash == NULL)
        return fg_err_set(err, FG_EDATA, "zip archive: the first record '%s' is not in a folder",
                          name);
      folder = nm;
      folder_len = (size_t)(slash - nm) + 1;
    }
    /* "<folder>/version" or "<folder>/.data/version", as libtorch looks. */
    size_t rest = nl - (nl >= folder_len ? folder_len : nl);
    if (nl >= folder_len && memcmp(nm, folder, folder_len) == 0 &&
        ((rest == 7 && memcmp(nm + folder_len, "version", 7) == 0) ||
         (rest == 13 && memcmp(nm + folder_len, ".data/version", 13) == 0))) {
      has_version = true;
      int rc = check_version(b, len, off, comp, method, versions, err);
      if (rc) return rc;
    }
    p += 46 + nl + xl + cl;
  }
  if (!has_version) return fg_err_set(err, FG_EDATA, "zip archive: no version record");
  return 0;
}
