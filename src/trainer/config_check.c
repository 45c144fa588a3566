/* The config check: every key of a merged config, as one run of a stage
 * needs it, with no side effects (plugins are loaded by the step before,
 * fg_config_load_plugins). */
#include <stdlib.h>
#include <string.h>

#include "fulgur/error.h"
#include "fulgur/optim.h"
#include "fulgur/plugin.h"
#include "fulgur/registry.h"
#include "fulgur/run.h"
#include "trainer/trainer.h"
#include "util/bytes.h"
#include "util/job_opts.h"
#include "util/xalloc.h"

/* Plugins load before anything else is checked: the classes they add are
 * what the rest of the config names. Only a list of strings is loaded; any
 * other shape is left to fg_config_check, which names it. */
int fg_config_load_plugins(const fg_node *config, char **err) {
  const fg_node *v = fg_node_kind_of(config) == FG_NODE_MAP ? fg_node_get(config, "plugins") : NULL;
  if (fg_node_kind_of(v) != FG_NODE_SEQ) return 0;
  for (size_t i = 0; i < fg_node_len(v); i++)
    if (fg_node_kind_of(fg_node_at(v, i)) != FG_NODE_STRING) return 0;
  for (size_t i = 0; i < fg_node_len(v); i++) {
    const fg_node *p = fg_node_at(v, i);
    char *e = NULL;
    int rc = fg_plugin_load(fg_node_str(p), &e);
    if (rc) {
      char *k = fg__xasprintf("plugins.%zu", i);
      fg_config_error(err, p, k, "%s", e ? e : fg_strerror(rc));
      free(k);
      free(e);
      return FG_ECONFIG;
    }
  }
  return 0;
}

/* Read by fulgurd, not by the run: what becomes of a job that was running
 * when the daemon died. Local runs accept it so one config serves both. */
static int check_restart_policy(const fg_node *v, const char *keypath, char **err) {
  const char *s = fg_node_str(v);
  fg_restart_policy p;
  if (fg__restart_policy_parse(s, &p)) return 0;
  return fg_config_error(err, v, keypath, "expected fail or resume, got '%s'", s ? s : "");
}

/* Read by fulgurd: how many times a failed attempt is retried in place. */
static int check_max_restarts(const fg_node *v, const char *keypath, char **err) {
  int64_t n = fg_node_int(v);
  if (n >= 0 && n <= FG_MAX_RESTARTS_LIMIT) return 0;
  return fg_config_error(err, v, keypath, "expected an integer from 0 to %d, got %lld",
                         FG_MAX_RESTARTS_LIMIT, (long long)n);
}

/* Read by fulgurd: the worker's address-space limit, which may lower the
 * daemon's --job-memory-limit but not raise it (that check needs the
 * daemon's value: worker/main.c). Local runs accept it and ignore it. */
static int check_memory_limit(const fg_node *v, const char *keypath, char **err) {
  uint64_t b;
  if (fg_node_kind_of(v) == FG_NODE_NULL) return 0;
  if (fg_node_kind_of(v) == FG_NODE_INT && fg_node_int(v) > 0) return 0;
  if (fg_node_kind_of(v) == FG_NODE_STRING && fg__bytes_parse(fg_node_str(v), &b) == 0) return 0;
  return fg_config_error(err, v, keypath, "expected a size in bytes such as 2147483648 or 2G, got %s",
                         fg_node_kind_of(v) == FG_NODE_STRING ? fg_node_str(v)
                                                              : fg_node_kind_name(fg_node_kind_of(v)));
}

static const fg_param top_params[] = {
    {"seed_everything", FG_T_BOOL | FG_T_INT, "true", "seed (true: pick one at random; false: do not seed)", NULL, 0},
    {"trainer", FG_T_MAP, "{}", "Trainer options", NULL, 0},
    {"model", FG_T_MAP, NULL, "the LightningModule", NULL, 0},
    {"data", FG_T_MAP, NULL, "the DataModule", NULL, 0},
    {"optimizer_config", FG_T_NULL | FG_T_MAP | FG_T_SEQ, "null", "optimizers (needed for fit)", NULL, 0},
    {"plugins", FG_T_NULL | FG_T_SEQ, "null", "shared objects that register classes (fulgur/plugin.h)", NULL, FG_T_STRING},
    {"ckpt_path", FG_T_NULL | FG_T_STRING, "null", "checkpoint to resume (fit) or evaluate (validate, test)", NULL, 0},
    {"restart_policy", FG_T_STRING, "fail", "fulgurd: a job running when the daemon died fails, or resumes from its last checkpoint", check_restart_policy, 0},
    {"max_restarts", FG_T_INT, "0", "fulgurd: retries of a failed attempt, in place from the job's newest checkpoint", check_max_restarts, 0},
    {"memory_limit", FG_T_NULL | FG_T_INT | FG_T_STRING, "null", "fulgurd: the worker's memory limit (bytes, or 512M, 2G), at most --job-memory-limit", check_memory_limit, 0},
};

int fg_config_check(fg_node *config, bool fill, char **err) {
  if (config == NULL || fg_node_kind_of(config) != FG_NODE_MAP)
    return fg_config_error(err, config, "(top level)", "expected a mapping, got %s",
                           config ? fg_node_kind_name(fg_node_kind_of(config)) : "nothing");
  int rc = fg_schema_check(top_params, sizeof top_params / sizeof top_params[0], config, "", fill, err);
  if (rc) return rc;
  fg_node *tr = fg_node_get(config, "trainer");
  if (tr == NULL) {
    tr = fg_node_new_map();
    fg_node_map_set(config, "trainer", tr);
  }
  if ((rc = fg__trainer_config_check(tr, fill, err))) return rc;
  if ((rc = fg_registry_check(fg_node_get(config, "model"), "model", FG_KIND_MODULE, fill, err)))
    return rc;
  if ((rc = fg_registry_check(fg_node_get(config, "data"), "data", FG_KIND_DATAMODULE, fill, err)))
    return rc;
  fg_node *oc = fg_node_get(config, "optimizer_config");
  if (oc && fg_node_kind_of(oc) != FG_NODE_NULL &&
      (rc = fg_optim_config_check(oc, "optimizer_config", fill, err)))
    return rc;
  return 0;
}

int fg_config_check_stage(fg_node *config, fg_stage stage, bool fill, char **err) {
  int rc = fg_config_check(config, fill, err);
  if (rc) return rc;
  const fg_node *oc = fg_node_get(config, "optimizer_config");
  if (stage == FG_STAGE_FIT && (oc == NULL || fg_node_kind_of(oc) == FG_NODE_NULL))
    return fg_config_error(err, config, "optimizer_config", "fit needs an optimizer_config");
  return 0;
}
