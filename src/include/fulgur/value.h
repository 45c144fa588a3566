/* fg_value: the C picture of what a forward returns and what checkpoints
 * hold: none, bool, int, double, string, tensor, list, or a dict with
 * string keys kept in insertion order.
 *
 * Ownership: a container owns its items. Constructors return a new value
 * the caller frees with fg_value_free() (NULL is a no-op); they abort on
 * out-of-memory, like every small allocation in fulgur, so they never return
 * NULL. Adding an item to a container transfers ownership of the item.
 * Getters return borrowed pointers valid while the container lives.
 */
#ifndef FULGUR_VALUE_H
#define FULGUR_VALUE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "fulgur/torch.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
  FG_VALUE_NONE = 0,
  FG_VALUE_BOOL,
  FG_VALUE_INT,
  FG_VALUE_DOUBLE,
  FG_VALUE_STRING,
  FG_VALUE_TENSOR,
  FG_VALUE_LIST,
  FG_VALUE_DICT,
} fg_value_kind;

fg_value *fg_value_none(void);
fg_value *fg_value_bool(bool b);
fg_value *fg_value_int(int64_t i);
fg_value *fg_value_double(double d);
fg_value *fg_value_string(const char *s); /* copies s */
fg_value *fg_value_tensor(fg_tensor *t);  /* takes ownership of t */
fg_value *fg_value_list(void);
fg_value *fg_value_dict(void);
void fg_value_free(fg_value *v);
/* Deep copy of the structure; tensors are shared (fg_tensor_ref). */
fg_value *fg_value_copy(const fg_value *v);

fg_value_kind fg_value_kind_of(const fg_value *v);
const char *fg_value_kind_name(fg_value_kind k);
bool fg_value_as_bool(const fg_value *v);      /* asserts the kind */
int64_t fg_value_as_int(const fg_value *v);    /* asserts the kind */
double fg_value_as_double(const fg_value *v);  /* INT or DOUBLE */
const char *fg_value_as_string(const fg_value *v);
fg_tensor *fg_value_as_tensor(const fg_value *v); /* borrowed */

/* Lists and dicts. */
size_t fg_value_len(const fg_value *v);
void fg_value_list_append(fg_value *list, fg_value *item);
fg_value *fg_value_list_at(const fg_value *list, size_t i);
/* Replaces an existing key in place (keeping its position). */
void fg_value_dict_set(fg_value *dict, const char *key, fg_value *item);
fg_value *fg_value_dict_get(const fg_value *dict, const char *key);
const char *fg_value_dict_key_at(const fg_value *dict, size_t i);
fg_value *fg_value_dict_value_at(const fg_value *dict, size_t i);
/* Removes and returns an item (the caller owns it); NULL if absent. */
fg_value *fg_value_dict_take(fg_value *dict, const char *key);
/* Sums n dicts entry by entry (tensors with torch's add, ints as ints,
 * other numbers as doubles), in the first dict's key order plus keys only
 * later dicts have: how ranks add up metric states and loss sums. *out is
 * the caller's; on error nothing is returned. */
int fg_value_dicts_sum(fg_value *const *dicts, int n, fg_value **out, char **err);

#ifdef __cplusplus
}
#endif
#endif
