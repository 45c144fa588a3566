/* Internals shared by the files of src/config/. */
#ifndef FG_CONFIG_NODE_INTERNAL_H
#define FG_CONFIG_NODE_INTERNAL_H

#include "fulgur/config.h"
#include "fulgur/error.h"

struct fg_node {
  fg_node_kind kind;
  fg_mark mark;
  union {
    bool b;
    int64_t i;
    double d;
    char *s;
  } u;
  /* SEQ and MAP: items (values); MAP also keys, same length. */
  fg_node **items;
  char **keys;
  size_t len, cap;
  /* A registry object check with defaults filled passed on this map
   * (config/checked.h). Cleared when the map itself changes; copied by
   * clone. */
  bool checked;
};

/* A copy of name owned by a process-wide table (marks outlive files). */
const char *fg__config_intern(const char *name);
/* Moves src's content into dst (dst's old content is freed) and frees the
 * src struct: lets a node be replaced where only a pointer to it is held. */
void fg__node_replace(fg_node *dst, fg_node *src);
/* Whether a plain scalar reads back as a string (emit quotes the others). */
bool fg__config_plain_is_string(const char *s);
/* Parses "12" / "-1" as a list index. */
bool fg__parse_index(const char *s, size_t len, long *out);
/* "a.b" + "c" -> "a.b.c"; "" + "c" -> "c". malloc'd. */
char *fg__keypath_join(const char *path, const char *key);
char *fg__keypath_index(const char *path, long i);
/* Whether a mapping holds a list keyword (__delete__, change_item, ...). */
bool fg__has_list_keyword(const fg_node *map);
/* Deep update that knows where it is, for messages. */
int fg__deep_update_at(fg_node **source, const fg_node *override,
                       const char *keypath, char **err);

#endif
