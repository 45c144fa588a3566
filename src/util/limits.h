/* The limits on outside input: every reader of bytes that fulgur did not
 * write itself (configs, checkpoints, datasets) checks them and fails with
 * an error naming where the limit was crossed, instead of allocating until
 * the machine or a memory limit stops the process. README.md ("Limits on
 * input") lists them; keep the two in step.
 *
 * Each is far above what a real file needs and low enough that the work
 * and memory to reach it stay small (tens of megabytes, well under a
 * second): the point is that a hostile 400-byte file cannot cost more than
 * a large honest one. */
#ifndef FG_UTIL_LIMITS_H
#define FG_UTIL_LIMITS_H

/* ---- configs (src/config/parse.c, load.c) ---- */
/* Bytes of one YAML document: a file, a config_yaml sent to fulgurd, or an
 * override's value. */
#define FG_CONFIG_MAX_FILE_BYTES (4u << 20)
/* Nodes (scalars, lists, mappings) one document builds, counting each
 * copy an alias makes: the YAML "billion laughs" stops here. */
#define FG_CONFIG_MAX_NODES 1000000u
/* Bytes of scalar text and keys one document builds, alias copies
 * included: an alias to a long string repeated many times stops here. */
#define FG_CONFIG_MAX_TEXT_BYTES (64u << 20)
/* Lists and mappings nested inside each other. */
#define FG_CONFIG_MAX_DEPTH 128u
/* Keys of one mapping (lookups are linear: configs have tens). */
#define FG_CONFIG_MAX_KEYS 10000u
/* Bytes of one scalar. */
#define FG_CONFIG_MAX_STRING_BYTES (1u << 20)
/* Files one load reads through __base__ (each base counts every time it
 * is named, so a chain of files naming the next twice stops here). */
#define FG_CONFIG_MAX_BASE_FILES 256u

/* ---- checkpoints and tensordicts (src/torch/pickle.cpp, ckpt_zip.c) ---- */
/* Entries of a pickle's memo. */
#define FG_PICKLE_MAX_MEMO 1000000u
/* Lists, tuples and dicts nested inside each other (also what stops a
 * pickle that puts a list inside itself). */
#define FG_PICKLE_MAX_DEPTH 200u
/* Values one pickle turns into, counting an object once per place it is
 * referenced from (a memo reference repeated in a doubling chain stops
 * here). */
#define FG_PICKLE_MAX_VALUES 4000000u
/* Records of a checkpoint's zip archive. */
#define FG_CKPT_MAX_RECORDS 100000u

/* Deflate cannot expand more than 1032:1: a deflated zip record or a .gz
 * IDX file that declares more than that many bytes per compressed byte is
 * lying about its size. */
#define FG_DEFLATE_MAX_RATIO 1032u

/* ---- datasets (src/data/idx.c, csv.c) ---- */
/* Columns of a CSV file. */
#define FG_CSV_MAX_COLUMNS 65536u
/* Bytes of one CSV line. */
#define FG_CSV_MAX_LINE_BYTES (16u << 20)

#endif
