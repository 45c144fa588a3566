/* Config trees: YAML documents loaded with libyaml, with the marks
 * (file:line:col) of every node kept so that any later error can say where
 * the offending value was written.
 *
 * This header covers the tree (fg_node), loading with `__base__`, deep
 * update, split configs, command-line overrides, YAML output and init_args
 * schemas. Semantics: ../shared/CONFIG.md is the contract.
 *
 * Ownership: fg_node trees are owned by whoever created them and freed with
 * fg_node_free (NULL is a no-op). Node constructors abort on out-of-memory.
 * Getters return borrowed pointers. Adding a node to a container transfers
 * ownership.
 */
#ifndef FULGUR_CONFIG_H
#define FULGUR_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct fg_node fg_node;

typedef enum {
  FG_NODE_NULL = 0,
  FG_NODE_BOOL,
  FG_NODE_INT,
  FG_NODE_FLOAT,
  FG_NODE_STRING,
  FG_NODE_SEQ,
  FG_NODE_MAP,
} fg_node_kind;

/* Where a node was written. `file` is the path as given (or "<override
 * --a.b=3>" for command-line values, "<string>" for parsed strings); line and
 * col are 1-based; 0 when the node was made by code. */
typedef struct {
  const char *file;
  int line;
  int col;
} fg_mark;

/* ---- the tree ----------------------------------------------------------- */

fg_node *fg_node_new_null(void);
fg_node *fg_node_new_bool(bool b);
fg_node *fg_node_new_int(int64_t i);
fg_node *fg_node_new_float(double d);
fg_node *fg_node_new_string(const char *s); /* copies */
fg_node *fg_node_new_seq(void);
fg_node *fg_node_new_map(void);
void fg_node_free(fg_node *n);
fg_node *fg_node_clone(const fg_node *n); /* marks are kept */
/* Sets the mark; file is copied (interned). */
void fg_node_set_mark(fg_node *n, const char *file, int line, int col);

fg_node_kind fg_node_kind_of(const fg_node *n);
const char *fg_node_kind_name(fg_node_kind k); /* "a mapping", "a string", ... */
fg_mark fg_node_mark(const fg_node *n);
bool fg_node_bool(const fg_node *n);
int64_t fg_node_int(const fg_node *n);
double fg_node_float(const fg_node *n); /* INT or FLOAT */
const char *fg_node_str(const fg_node *n);

size_t fg_node_len(const fg_node *n); /* items of a seq or map, else 0 */
fg_node *fg_node_at(const fg_node *seq, size_t i);
const char *fg_node_key_at(const fg_node *map, size_t i);
fg_node *fg_node_value_at(const fg_node *map, size_t i);
/* Map lookup; NULL if absent (or n is not a map). */
fg_node *fg_node_get(const fg_node *map, const char *key);
/* Follows a dotted path ("trainer.callbacks.0.init_args"); list steps are
 * indices. NULL if any step is missing. */
fg_node *fg_node_path(const fg_node *root, const char *path);

void fg_node_seq_append(fg_node *seq, fg_node *item);
void fg_node_seq_insert(fg_node *seq, size_t i, fg_node *item);
fg_node *fg_node_seq_take(fg_node *seq, size_t i); /* caller owns result */
/* Sets key (replacing in place, keeping order, or appending). */
void fg_node_map_set(fg_node *map, const char *key, fg_node *value);
/* Removes and returns; caller owns; NULL if absent. */
fg_node *fg_node_map_take(fg_node *map, const char *key);

/* ---- YAML in and out ---------------------------------------------------- */

/* Parses one YAML document (scalars as CONFIG.md "Scalars" says). `name`
 * is used in marks and messages. No `__base__` processing. */
int fg_node_parse(const char *text, size_t len, const char *name, fg_node **out,
                  char **err);
int fg_node_parse_file(const char *path, fg_node **out, char **err);
/* Emits block-style YAML that fg_node_parse reads back to an equal tree.
 * *out is malloc'd. */
int fg_node_emit(const fg_node *n, char **out, char **err);
/* Structural equality (marks ignored; 1 == 1.0 is false). */
bool fg_node_equal(const fg_node *a, const fg_node *b);

/* ---- config semantics --------------------------------------------------- */

/* Loads a file and resolves every `__base__` in it (at any level, paths
 * relative to the including file, cycles are errors naming the chain). */
int fg_config_load_file(const char *path, fg_node **out, char **err);
/* Resolves `__base__` in an already parsed tree; relative paths are taken
 * relative to base_dir. Used for documents that came as strings. */
int fg_config_resolve_bases(fg_node *root, const char *base_dir, char **err);
/* Deep-updates *source with override (CONFIG.md "Deep update"), including
 * the list keywords. *source may be replaced. override is not consumed. */
int fg_config_deep_update(fg_node **source, const fg_node *override,
                          char **err);
/* Parses one command-line override: `arg` is "--a.b.c=V" (value NULL) or
 * "--a.b.c" with value the next argument. Applies it to *root as a deep
 * update at that path (missing mappings are created, list steps are
 * indices). */
int fg_config_apply_override(fg_node **root, const char *arg,
                             const char *value, char **err);
/* The whole pipeline: load each file in order (deep-updating the merge),
 * then apply the overrides ("--k=v" strings, or "--k" followed by "v").
 * *out is the merged tree. */
int fg_config_load(const char *const *files, size_t n_files,
                   const char *const *overrides, size_t n_overrides,
                   fg_node **out, char **err);

/* Split names, in inheritance order. */
#define FG_SPLIT_COUNT 4
extern const char *const fg_split_names[FG_SPLIT_COUNT]; /* fit val test predict */

/* Expands a split config (CONFIG.md "Split configs" and "Split attr set"):
 * *out is a map with exactly the keys fit, val, test, predict, each an
 * object config or a seq of them; `split_info` applied and removed.
 * keypath names the value in messages ("data.init_args.dataset_cfg"). */
int fg_config_expand_split(const fg_node *value, const char *keypath,
                           fg_node **out, char **err);

/* ---- errors -------------------------------------------------------------- */

/* Formats "file:line:col: keypath: message" into *err (when *err is NULL)
 * and returns FG_ECONFIG. A node without a mark prints as "<config>". */
int fg_config_error(char **err, const fg_node *at, const char *keypath,
                    const char *fmt, ...) __attribute__((format(printf, 4, 5)));
/* A warning about a value that is accepted but does nothing here:
 * "file:line:col: keypath: message" (the file "<config>" for a node
 * without one), for the caller to free and to log once per run. */
char *fg_config_warning(const fg_node *at, const char *keypath, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* ---- init_args schemas --------------------------------------------------- */

/* Accepted node kinds, as a bit set; FG_T_FLOAT accepts ints as well. */
enum {
  FG_T_NULL = 1 << 0,
  FG_T_BOOL = 1 << 1,
  FG_T_INT = 1 << 2,
  FG_T_FLOAT = 1 << 3,
  FG_T_STRING = 1 << 4,
  FG_T_SEQ = 1 << 5,
  FG_T_MAP = 1 << 6,
  FG_T_ANY = 0x7f,
};

typedef struct {
  const char *name;
  unsigned types;       /* FG_T_* bits */
  const char *def_yaml; /* default as YAML text ("0.1", "null", "[]"); NULL = required */
  const char *doc;      /* one line, for print-config comments and errors */
  /* Optional further check, e.g. allowed strings; returns 0 or sets *err
   * (via fg_config_error) and returns FG_ECONFIG. */
  int (*check)(const fg_node *value, const char *keypath, char **err);
  /* For FG_T_SEQ: accepted kinds of the items (0 = anything). */
  unsigned item_types;
} fg_param;

/* Checks init_args (a map, or NULL for none) against params: unknown keys
 * are errors naming the closest known key ("did you mean"), missing required
 * keys are errors, wrong kinds are errors (ints accepted for floats). When
 * fill_defaults is true, missing optional keys are added with their default
 * (so print-config shows them). keypath is the path of init_args itself. */
int fg_schema_check(const fg_param *params, size_t n_params, fg_node *init_args,
                    const char *keypath, bool fill_defaults, char **err);

/* The known name closest to `name` by edit distance, or NULL when none is
 * close enough to be a plausible typo. */
const char *fg_closest_name(const char *name, const char *const *known,
                            size_t n_known);

#ifdef __cplusplus
}
#endif
#endif
