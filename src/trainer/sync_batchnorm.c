/* trainer.sync_batchnorm under ddp. Lightning converts every BatchNorm
 * layer to torch.nn.SyncBatchNorm (statistics over every rank's batch).
 * fulgur's models with BatchNorm layers are TorchScript modules, whose
 * compiled forward calls its BatchNorm submodules' own forward: there is
 * no layer to swap in, so such a model is a clear error instead of a
 * silent per-rank statistic; a model without BatchNorm has nothing to
 * convert, as in Lightning. */
#include <stdlib.h>
#include <string.h>

#include "fulgur/error.h"
#include "trainer/trainer.h"
#include "util/xalloc.h"

typedef struct {
  char *first; /* "model.bn (BatchNorm1d)" of the first one found */
  size_t n;
} found;

static void on_module(void *ctx, const char *name, const char *type, bool training) {
  (void)training;
  found *f = ctx;
  if (strncmp(type, "BatchNorm", 9) != 0 && strcmp(type, "SyncBatchNorm") != 0) return;
  if (f->n++ == 0) f->first = fg__xasprintf("%s (%s)", name[0] ? name : "<root>", type);
}

int fg__sync_batchnorm_start(fg__ddp *ddp, fg_module *m, fg_events *bus, char **err) {
  (void)ddp;
  found f = {0};
  int rc = fg_model_visit_modules(fg_module_model(m), on_module, &f, err);
  if (rc) return rc;
  if (f.n == 0) {
    fg_events_log(bus, FG_LOG_INFO, "sync_batchnorm: the model has no BatchNorm layer to convert");
    return 0;
  }
  rc = fg_err_set(err, FG_ECONFIG,
                  "trainer.sync_batchnorm: cannot convert the model's %zu BatchNorm layer(s) (first: "
                  "model.%s) to SyncBatchNorm: they are compiled into the TorchScript model's forward; "
                  "write sync_batchnorm: false (under ddp every rank then normalizes with its own "
                  "batch and starts each step from rank 0's running statistics, as torch DDP's "
                  "broadcast_buffers)",
                  f.n, f.first);
  free(f.first);
  return rc;
}
