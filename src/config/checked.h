/* "This object was checked": lets creating objects from a checked config
 * skip checking them again (a metric inside a module was checked three
 * times: by the config check, by the module's create, by the metric's).
 *
 * fg_registry_check sets the flag on an object map once its check with
 * defaults filled has passed; fg_registry_check and fg_registry_create skip
 * a map that has it. Any change to the map itself (set, insert, take)
 * clears it; fg_node_clone copies it. Changing a node *below* a checked
 * object does not clear the object's flag (nodes have no parent link): code
 * that edits init_args after the check must not rely on a second check. */
#ifndef FG_CONFIG_CHECKED_H
#define FG_CONFIG_CHECKED_H

#include <stdbool.h>

#include "fulgur/config.h"

bool fg__node_checked(const fg_node *n); /* false for NULL */
void fg__node_set_checked(fg_node *n);   /* NULL is a no-op */

#endif
