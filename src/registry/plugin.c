/* Loading C plugins (see fulgur/plugin.h). Each path is loaded once per
 * process: the registry keeps pointers into the plugin's classes, so it is
 * never unloaded, and a daemon running many jobs with one plugin must not
 * register its classes twice. */
#include "fulgur/plugin.h"

#include <dlfcn.h>
#include <limits.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "fulgur/error.h"
#include "util/xalloc.h"

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static char **loaded;
static size_t n_loaded;

__attribute__((destructor)) static void forget_loaded(void) {
  for (size_t i = 0; i < n_loaded; i++) free(loaded[i]);
  free(loaded);
}

int fg_plugin_load(const char *path, char **err) {
  char real[PATH_MAX];
  if (realpath(path, real) == NULL)
    return fg_err_set(err, FG_ENOENT, "plugin '%s' does not exist", path);
  pthread_mutex_lock(&lock);
  int rc = 0;
  for (size_t i = 0; i < n_loaded; i++)
    if (strcmp(loaded[i], real) == 0) goto out;
  void *h = dlopen(real, RTLD_NOW | RTLD_LOCAL);
  if (h == NULL) {
    rc = fg_err_set(err, FG_EINVAL, "cannot load plugin '%s': %s", path, dlerror());
    goto out;
  }
  const int *abi = dlsym(h, "fulgur_plugin_abi");
  fg_plugin_init_fn init = (fg_plugin_init_fn)dlsym(h, "fulgur_plugin_init");
  if (abi == NULL || init == NULL) {
    rc = fg_err_set(err, FG_EINVAL,
                    "'%s' is not a fulgur plugin: it lacks %s (see fulgur/plugin.h)", path,
                    abi == NULL ? "FG_PLUGIN_DECLARE()" : "fulgur_plugin_init");
    dlclose(h);
    goto out;
  }
  if (*abi != FG_PLUGIN_ABI_VERSION) {
    rc = fg_err_set(err, FG_EINVAL,
                    "plugin '%s' was built for fulgur plugin ABI %d; this fulgur has ABI %d: "
                    "rebuild it",
                    path, *abi, FG_PLUGIN_ABI_VERSION);
    dlclose(h);
    goto out;
  }
  if ((rc = init(err)) != 0) {
    /* Classes it did register stay (the registry points into it). */
    fg_err_prefix(err, rc, "plugin '%s'", path);
    goto out;
  }
  loaded = fg__xrealloc(loaded, (n_loaded + 1) * sizeof *loaded);
  loaded[n_loaded++] = fg__xstrdup(real);
out:
  pthread_mutex_unlock(&lock);
  return rc;
}
