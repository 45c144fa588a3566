/* trainer.profiler as Lightning takes it: null, a name ("simple",
 * "pytorch", "advanced", "xla"), or a profiler object
 * ({class_path: lightning.pytorch.profilers.PyTorchProfiler, init_args,
 * dict_kwargs}, as lightning_template's default_runtime.yaml writes it).
 * The profilers are not registry classes: the trainer owns the one it
 * runs (profiler.c), so the classes are this file's table. */
#include <stdlib.h>
#include <string.h>

#include "fulgur/config.h"
#include "fulgur/error.h"
#include "trainer/trainer.h"
#include "util/xalloc.h"

typedef enum { P_SIMPLE, P_PYTORCH, P_PASSTHROUGH, P_ADVANCED, P_XLA } profiler_class;

static const struct {
  const char *name;
  profiler_class cls;
} classes[] = {
    {"SimpleProfiler", P_SIMPLE},         {"PyTorchProfiler", P_PYTORCH},
    {"PassThroughProfiler", P_PASSTHROUGH}, {"AdvancedProfiler", P_ADVANCED},
    {"XLAProfiler", P_XLA},
};
/* Where Lightning 2.x (and 1.x's pytorch_lightning.profiler) keeps them. */
static const char *const prefixes[] = {"", "lightning.pytorch.profilers.", "pytorch_lightning.profilers.",
                                       "pytorch_lightning.profiler.", "lightning.pytorch.profiler."};

static int find_class(const char *path, profiler_class *out) {
  for (size_t p = 0; p < sizeof prefixes / sizeof prefixes[0]; p++) {
    size_t n = strlen(prefixes[p]);
    if (strncmp(path, prefixes[p], n) != 0) continue;
    for (size_t c = 0; c < sizeof classes / sizeof classes[0]; c++)
      if (strcmp(path + n, classes[c].name) == 0) {
        *out = classes[c].cls;
        return 0;
      }
  }
  return -1;
}

static int check_extended(const fg_node *v, const char *k, char **err) {
  if (fg_node_bool(v)) return 0;
  return fg_config_error(err, v, k, "false (the short table) is not in this build; use extended: true");
}
static int check_chrome(const fg_node *v, const char *k, char **err) {
  if (fg_node_bool(v)) return 0;
  return fg_config_error(err, v, k,
                         "false: this build's PyTorchProfiler only writes the Chrome trace; use "
                         "profiler: simple for a table");
}
static int check_nvtx(const fg_node *v, const char *k, char **err) {
  if (!fg_node_bool(v)) return 0;
  return fg_config_error(err, v, k, "true needs CUDA (NVTX); this build's libtorch is CPU-only");
}

static const fg_param simple_params[] = {
    {"dirpath", FG_T_NULL | FG_T_STRING, "null", "folder of the report (null: the run directory)", NULL, 0},
    {"filename", FG_T_NULL | FG_T_STRING, "null", "the report is <stage>-<filename>.txt (null: profiler)", NULL, 0},
    {"extended", FG_T_BOOL, "true", "the table with Num calls and Percentage", check_extended, 0},
};
/* PyTorchProfiler's arguments beyond the trace's place, which shape
 * Lightning's summary table; this build writes the trace only. */
static const char *const pytorch_noops[] = {"group_by_input_shapes", "row_limit", "sort_by_key",
                                            "record_module_names", "table_kwargs"};
static const fg_param pytorch_params[] = {
    {"dirpath", FG_T_NULL | FG_T_STRING, "null", "folder of the trace (null: the run directory)", NULL, 0},
    {"filename", FG_T_NULL | FG_T_STRING, "null", "the trace is <stage>-<filename>.pt.trace.json", NULL, 0},
    {"export_to_chrome", FG_T_BOOL, "true", "write the Chrome trace", check_chrome, 0},
    {"emit_nvtx", FG_T_BOOL, "false", "NVTX ranges (CUDA only)", check_nvtx, 0},
    {"group_by_input_shapes", FG_T_BOOL, "false", "summary table only (no effect here)", NULL, 0},
    {"row_limit", FG_T_INT, "20", "summary table only (no effect here)", NULL, 0},
    {"sort_by_key", FG_T_NULL | FG_T_STRING, "null", "summary table only (no effect here)", NULL, 0},
    {"record_module_names", FG_T_BOOL, "true", "summary table only (no effect here)", NULL, 0},
    {"table_kwargs", FG_T_NULL | FG_T_MAP, "null", "summary table only (no effect here)", NULL, 0},
};

int fg__profiler_config_check(fg_node *v, bool fill, char **err) {
  static const char *const kp = "trainer.profiler";
  if (v == NULL || fg_node_kind_of(v) != FG_NODE_MAP) return 0; /* the schema checked the rest */
  for (size_t i = 0; i < fg_node_len(v); i++) {
    const char *k = fg_node_key_at(v, i);
    if (strcmp(k, "class_path") && strcmp(k, "init_args") && strcmp(k, "dict_kwargs")) {
      char *p = fg__xasprintf("%s.%s", kp, k);
      int rc = fg_config_error(err, fg_node_value_at(v, i), p,
                               "unknown key '%s' in a profiler (expected class_path, init_args, dict_kwargs)", k);
      free(p);
      return rc;
    }
  }
  const fg_node *cp = fg_node_get(v, "class_path");
  profiler_class cls;
  if (cp == NULL || fg_node_kind_of(cp) != FG_NODE_STRING || find_class(fg_node_str(cp), &cls) != 0)
    return fg_config_error(err, cp ? cp : v, "trainer.profiler.class_path",
                           "expected SimpleProfiler, PyTorchProfiler or PassThroughProfiler "
                           "(lightning.pytorch.profilers.*)%s%s%s",
                           cp && fg_node_kind_of(cp) == FG_NODE_STRING ? ", got '" : "",
                           cp && fg_node_kind_of(cp) == FG_NODE_STRING ? fg_node_str(cp) : "",
                           cp && fg_node_kind_of(cp) == FG_NODE_STRING ? "'" : "");
  if (cls == P_ADVANCED || cls == P_XLA)
    return fg_config_error(err, cp, "trainer.profiler.class_path",
                           "'%s' profiles Python (cProfile) or XLA, neither of which runs here; use "
                           "SimpleProfiler or PyTorchProfiler", fg_node_str(cp));
  fg_node *ia = fg_node_get(v, "init_args");
  if (ia == NULL && fill && cls != P_PASSTHROUGH) {
    ia = fg_node_new_map();
    fg_mark m = fg_node_mark(v);
    if (m.file) fg_node_set_mark(ia, m.file, m.line, m.col);
    fg_node_map_set(v, "init_args", ia);
  }
  int rc = 0;
  if (cls == P_SIMPLE)
    rc = fg_schema_check(simple_params, sizeof simple_params / sizeof simple_params[0], ia,
                         "trainer.profiler.init_args", fill, err);
  else if (cls == P_PYTORCH)
    rc = fg_schema_check(pytorch_params, sizeof pytorch_params / sizeof pytorch_params[0], ia,
                         "trainer.profiler.init_args", fill, err);
  else if (ia && fg_node_len(ia) > 0)
    rc = fg_config_error(err, ia, "trainer.profiler.init_args", "PassThroughProfiler takes no arguments");
  if (rc) return rc;
  const fg_node *dk = fg_node_get(v, "dict_kwargs");
  if (dk && fg_node_kind_of(dk) != FG_NODE_NULL) {
    if (cls != P_PYTORCH)
      return fg_config_error(err, dk, "trainer.profiler.dict_kwargs",
                             "only PyTorchProfiler takes extra keyword arguments (torch.profiler's)");
    if (fg_node_kind_of(dk) != FG_NODE_MAP)
      return fg_config_error(err, dk, "trainer.profiler.dict_kwargs", "expected a mapping of torch.profiler arguments");
  }
  return 0;
}

static char *opt_str(const fg_node *args, const char *k) {
  const fg_node *v = fg_node_get(args, k);
  return v && fg_node_kind_of(v) == FG_NODE_STRING ? fg__xstrdup(fg_node_str(v)) : NULL;
}

void fg__profiler_opts_parse(const fg_node *v, fg_trainer_opts *o) {
  o->profiler = FG_PROFILER_NONE;
  if (v == NULL || fg_node_kind_of(v) == FG_NODE_NULL) return;
  if (fg_node_kind_of(v) == FG_NODE_STRING) {
    o->profiler = strcmp(fg_node_str(v), "simple") == 0 ? FG_PROFILER_SIMPLE : FG_PROFILER_PYTORCH;
    return;
  }
  profiler_class cls = P_PASSTHROUGH;
  find_class(fg_node_str(fg_node_get(v, "class_path")), &cls);
  if (cls == P_PASSTHROUGH) return;
  o->profiler = cls == P_SIMPLE ? FG_PROFILER_SIMPLE : FG_PROFILER_PYTORCH;
  const fg_node *ia = fg_node_get(v, "init_args");
  o->profiler_dirpath = opt_str(ia, "dirpath");
  o->profiler_filename = opt_str(ia, "filename");
  if (cls != P_PYTORCH) return;
  /* What shapes Lightning's summary table or torch.profiler's extra
   * recording, written away from its default: one warning each. */
  for (size_t i = 0; i < sizeof pytorch_noops / sizeof pytorch_noops[0]; i++) {
    const fg_node *x = fg_node_get(ia, pytorch_noops[i]);
    fg_mark a = fg_node_mark(ia), b = fg_node_mark(x);
    if (x == NULL || !b.file || (a.file && a.line == b.line && a.col == b.col)) continue;
    char *key = fg__xasprintf("profiler.init_args.%s", pytorch_noops[i]);
    fg__trainer_opts_add_warning(o, x, key,
                                 "has no effect: it shapes Lightning's profiler summary table, and this "
                                 "build writes the Chrome trace only");
    free(key);
  }
  const fg_node *dk = fg_node_get(v, "dict_kwargs");
  for (size_t i = 0; dk && fg_node_kind_of(dk) == FG_NODE_MAP && i < fg_node_len(dk); i++) {
    char *key = fg__xasprintf("profiler.dict_kwargs.%s", fg_node_key_at(dk, i));
    fg__trainer_opts_add_warning(o, fg_node_value_at(dk, i), key,
                                 strcmp(fg_node_key_at(dk, i), "use_cuda") == 0
                                     ? "has no effect: this build's libtorch is CPU-only"
                                     : "has no effect: this libtorch's profiler (no Kineto) records each "
                                       "op's name and time only");
    free(key);
  }
}
