/* The hparams plugin's three summaries, as Lightning's TensorBoardLogger
 * writes them through torch.utils.tensorboard.summary.hparams: the
 * experiment (every hyperparameter's name and type, the metric names),
 * the session start info (the values) and the session end info.
 *
 * The hyperparameters are Lightning's flattening of a nested dict: map
 * keys joined with "/", and every value that is not a bool, int, float or
 * str turned into its Python str() (None -> "None", a list -> its repr),
 * as Lightning's _sanitize_params does. torch tests isinstance(v, int)
 * before bool, so a bool is a number (1.0 or 0.0) there, and here. */
#include "trainer/tb_hparams.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tensorboard/plugins/hparams/plugin_data.pb-c.h"
#include "util/numfmt.h"
#include "util/xalloc.h"

/* ---- Python's repr, for values that become strings ------------------------ */

typedef struct {
  char *buf;
  size_t len, cap;
} strbuf;

static void sb_add(strbuf *b, const char *s, size_t n) {
  if (b->len + n + 1 > b->cap) {
    b->cap = (b->len + n + 1) * 2;
    b->buf = fg__xrealloc(b->buf, b->cap);
  }
  memcpy(b->buf + b->len, s, n);
  b->len += n;
  b->buf[b->len] = '\0';
}
static void sb_puts(strbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

/* repr(str): single quotes unless the text has ' and no ". */
static void repr_str(strbuf *b, const char *s) {
  char q = strchr(s, '\'') && !strchr(s, '"') ? '"' : '\'';
  sb_add(b, &q, 1);
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    char esc[8];
    if (*p == '\\' || *p == (unsigned char)q) {
      esc[0] = '\\', esc[1] = (char)*p, esc[2] = '\0';
    } else if (*p == '\n') {
      strcpy(esc, "\\n");
    } else if (*p == '\r') {
      strcpy(esc, "\\r");
    } else if (*p == '\t') {
      strcpy(esc, "\\t");
    } else if (*p < 0x20 || *p == 0x7f) {
      snprintf(esc, sizeof esc, "\\x%02x", *p);
    } else {
      esc[0] = (char)*p, esc[1] = '\0'; /* UTF-8 bytes are printable text */
    }
    sb_puts(b, esc);
  }
  sb_add(b, &q, 1);
}

static void repr_node(strbuf *b, const fg_node *n) {
  char num[64];
  switch (fg_node_kind_of(n)) {
    case FG_NODE_NULL: sb_puts(b, "None"); break;
    case FG_NODE_BOOL: sb_puts(b, fg_node_bool(n) ? "True" : "False"); break;
    case FG_NODE_INT:
      snprintf(num, sizeof num, "%lld", (long long)fg_node_int(n));
      sb_puts(b, num);
      break;
    case FG_NODE_FLOAT:
      fg__py_float_repr(fg_node_float(n), num, sizeof num);
      sb_puts(b, num);
      break;
    case FG_NODE_STRING: repr_str(b, fg_node_str(n)); break;
    case FG_NODE_SEQ:
      sb_puts(b, "[");
      for (size_t i = 0; i < fg_node_len(n); i++) {
        if (i) sb_puts(b, ", ");
        repr_node(b, fg_node_at(n, i));
      }
      sb_puts(b, "]");
      break;
    case FG_NODE_MAP:
      sb_puts(b, "{");
      for (size_t i = 0; i < fg_node_len(n); i++) {
        if (i) sb_puts(b, ", ");
        repr_str(b, fg_node_key_at(n, i));
        sb_puts(b, ": ");
        repr_node(b, fg_node_value_at(n, i));
      }
      sb_puts(b, "}");
      break;
  }
}

/* ---- flattening -------------------------------------------------------------- */

typedef struct {
  size_t n, cap;
  Tensorboard__Hparams__SessionStartInfo__HparamsEntry **entries;
  Tensorboard__Hparams__HParamInfo **infos;
} flat;

static void add_leaf(flat *f, const char *key, const fg_node *v) {
  if (f->n == f->cap) {
    f->cap = f->cap ? f->cap * 2 : 32;
    f->entries = fg__xrealloc(f->entries, f->cap * sizeof *f->entries);
    f->infos = fg__xrealloc(f->infos, f->cap * sizeof *f->infos);
  }
  Tensorboard__Hparams__HParamValue *val = fg__xmalloc(sizeof *val);
  tensorboard__hparams__hparam_value__init(val);
  Tensorboard__Hparams__HParamInfo *info = fg__xmalloc(sizeof *info);
  tensorboard__hparams__hparam_info__init(info);
  info->name = fg__xstrdup(key);
  fg_node_kind k = fg_node_kind_of(v);
  if (k == FG_NODE_BOOL || k == FG_NODE_INT || k == FG_NODE_FLOAT) {
    val->kind_case = TENSORBOARD__HPARAMS__HPARAM_VALUE__KIND_NUMBER_VALUE;
    val->number_value = k == FG_NODE_BOOL ? (fg_node_bool(v) ? 1.0 : 0.0) : fg_node_float(v);
    info->type = TENSORBOARD__HPARAMS__DATA_TYPE__DATA_TYPE_FLOAT64;
  } else {
    strbuf b = {0};
    if (k == FG_NODE_STRING) sb_puts(&b, fg_node_str(v));
    else repr_node(&b, v);
    val->kind_case = TENSORBOARD__HPARAMS__HPARAM_VALUE__KIND_STRING_VALUE;
    val->string_value = b.buf ? b.buf : fg__xstrdup("");
    info->type = TENSORBOARD__HPARAMS__DATA_TYPE__DATA_TYPE_STRING;
  }
  Tensorboard__Hparams__SessionStartInfo__HparamsEntry *e = fg__xmalloc(sizeof *e);
  tensorboard__hparams__session_start_info__hparams_entry__init(e);
  e->key = fg__xstrdup(key);
  e->value = val;
  f->entries[f->n] = e;
  f->infos[f->n] = info;
  f->n++;
}

static void flatten(flat *f, const char *parent, const fg_node *map) {
  for (size_t i = 0; i < fg_node_len(map); i++) {
    const char *k = fg_node_key_at(map, i);
    const fg_node *v = fg_node_value_at(map, i);
    char *key = parent ? fg__xasprintf("%s/%s", parent, k) : fg__xstrdup(k);
    if (fg_node_kind_of(v) == FG_NODE_MAP) flatten(f, key, v);
    else add_leaf(f, key, v);
    free(key);
  }
}

static void flat_free(flat *f) {
  for (size_t i = 0; i < f->n; i++) {
    Tensorboard__Hparams__HParamValue *v = f->entries[i]->value;
    if (v->kind_case == TENSORBOARD__HPARAMS__HPARAM_VALUE__KIND_STRING_VALUE) free(v->string_value);
    free(v);
    free(f->entries[i]->key);
    free(f->entries[i]);
    free(f->infos[i]->name);
    free(f->infos[i]);
  }
  free(f->entries);
  free(f->infos);
}

static void pack(const Tensorboard__Hparams__HParamsPluginData *d, fg_tb_blob *out) {
  out->len = tensorboard__hparams__hparams_plugin_data__get_packed_size(d);
  out->data = fg__xmalloc(out->len ? out->len : 1);
  tensorboard__hparams__hparams_plugin_data__pack(d, out->data);
}

void fg__tb_hparams_pack(const fg_node *params, const char *metric, fg_tb_blob out[3]) {
  flat f = {0};
  if (fg_node_kind_of(params) == FG_NODE_MAP) flatten(&f, NULL, params);

  /* The experiment: every hyperparameter's name and type, the metric. */
  Tensorboard__Hparams__MetricName mname = TENSORBOARD__HPARAMS__METRIC_NAME__INIT;
  mname.tag = (char *)metric;
  Tensorboard__Hparams__MetricInfo minfo = TENSORBOARD__HPARAMS__METRIC_INFO__INIT;
  minfo.name = &mname;
  Tensorboard__Hparams__MetricInfo *minfos[1] = {&minfo};
  Tensorboard__Hparams__Experiment exp = TENSORBOARD__HPARAMS__EXPERIMENT__INIT;
  exp.n_hparam_infos = f.n;
  exp.hparam_infos = f.infos;
  exp.n_metric_infos = 1;
  exp.metric_infos = minfos;
  Tensorboard__Hparams__HParamsPluginData d = TENSORBOARD__HPARAMS__HPARAMS_PLUGIN_DATA__INIT;
  d.data_case = TENSORBOARD__HPARAMS__HPARAMS_PLUGIN_DATA__DATA_EXPERIMENT;
  d.experiment = &exp;
  pack(&d, &out[FG_TB_HP_EXPERIMENT]);

  Tensorboard__Hparams__SessionStartInfo ssi = TENSORBOARD__HPARAMS__SESSION_START_INFO__INIT;
  ssi.n_hparams = f.n;
  ssi.hparams = f.entries;
  d.data_case = TENSORBOARD__HPARAMS__HPARAMS_PLUGIN_DATA__DATA_SESSION_START_INFO;
  d.session_start_info = &ssi;
  pack(&d, &out[FG_TB_HP_SESSION_START]);

  Tensorboard__Hparams__SessionEndInfo sei = TENSORBOARD__HPARAMS__SESSION_END_INFO__INIT;
  sei.status = TENSORBOARD__HPARAMS__STATUS__STATUS_SUCCESS;
  d.data_case = TENSORBOARD__HPARAMS__HPARAMS_PLUGIN_DATA__DATA_SESSION_END_INFO;
  d.session_end_info = &sei;
  pack(&d, &out[FG_TB_HP_SESSION_END]);
  flat_free(&f);
}
