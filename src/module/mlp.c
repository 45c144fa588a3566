/* fulgur.models.MLP: Linear layers with an activation (and optional
 * dropout) between them. Parameter names and initialization follow
 * PyTorch's `self.layers = nn.Sequential(Linear, Act, [Dropout], Linear,
 * ...)`, so a state_dict moves between fulgur and Python unchanged. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fulgur/config.h"
#include "fulgur/error.h"
#include "fulgur/module.h"
#include "fulgur/registry.h"
#include "registry/builtins.h"
#include "util/xalloc.h"

typedef enum { ACT_RELU, ACT_GELU, ACT_TANH, ACT_SIGMOID } act_kind;

typedef struct {
  size_t n_layers; /* Linear layers */
  fg_tensor **w, **b; /* borrowed from the model's parameter list */
  act_kind act;
  double dropout;
  int64_t in_features;
} mlp;

static int apply_act(act_kind a, const fg_tensor *x, fg_tensor **out, char **err) {
  switch (a) {
    case ACT_RELU: return fg_op_relu(x, out, err);
    case ACT_GELU: return fg_op_gelu(x, out, err);
    case ACT_TANH: return fg_op_tanh(x, out, err);
    case ACT_SIGMOID: return fg_op_sigmoid(x, out, err);
  }
  return fg_err_set(err, FG_EINVAL, "unknown activation");
}

static int mlp_forward(void *self, fg_model *m, const fg_value *input,
                       bool train, fg_value **out, char **err) {
  mlp *p = self;
  if (fg_value_kind_of(input) != FG_VALUE_TENSOR)
    return fg_err_set(err, FG_EINVAL, "MLP.forward: expected a tensor input, got %s",
                      fg_value_kind_name(fg_value_kind_of(input)));
  const fg_tensor *x0 = fg_value_as_tensor(input);
  fg_tensor *x = NULL;
  int rc;
  if (fg_tensor_ndim(x0) > 2) {
    rc = fg_op_flatten(x0, 1, &x, err);
  } else {
    x = fg_tensor_ref(x0);
    rc = 0;
  }
  if (rc) return rc;
  int64_t feat = fg_tensor_size(x, -1);
  if (feat != p->in_features) {
    char shape[64];
    fg_tensor_shape_str(x0, shape, sizeof shape);
    fg_tensor_free(x);
    return fg_err_set(err, FG_EINVAL,
                      "MLP.forward: input of shape %s has %lld features, the "
                      "model expects in_features=%lld",
                      shape, (long long)feat, (long long)p->in_features);
  }
  for (size_t i = 0; i < p->n_layers; i++) {
    fg_tensor *y = NULL;
    rc = fg_op_linear(x, p->w[i], p->b[i], &y, err);
    fg_tensor_free(x);
    x = y;
    if (rc) return rc;
    if (i + 1 == p->n_layers) break;
    rc = apply_act(p->act, x, &y, err);
    fg_tensor_free(x);
    x = y;
    if (rc) return rc;
    if (p->dropout > 0 && train) {
      rc = fg_op_dropout(x, p->dropout, train, &y, err);
      fg_tensor_free(x);
      x = y;
      if (rc) return rc;
    }
  }
  *out = fg_value_tensor(x);
  return 0;
}

static void mlp_free(void *self) {
  mlp *p = self;
  free(p->w);
  free(p->b);
  free(p);
}

/* The modules PyTorch's MLP(nn.Module) with self.layers = nn.Sequential(
 * Linear, Act, [Dropout], Linear, ...) has, named and typed as Python
 * lists them. Dropout modules exist for any dropout > 0, as in Python,
 * whatever the mode. */
static int mlp_visit_modules(void *self, fg_model_module_cb cb, void *ctx, char **err) {
  (void)err;
  mlp *p = self;
  static const char *const act_types[] = {"ReLU", "GELU", "Tanh", "Sigmoid"};
  cb(ctx, "", "MLP", true);
  cb(ctx, "layers", "Sequential", true);
  int idx = 0;
  char name[64];
  for (size_t i = 0; i < p->n_layers; i++) {
    snprintf(name, sizeof name, "layers.%d", idx++);
    cb(ctx, name, "Linear", true);
    if (i + 1 == p->n_layers) break;
    snprintf(name, sizeof name, "layers.%d", idx++);
    cb(ctx, name, act_types[p->act], true);
    if (p->dropout > 0) {
      snprintf(name, sizeof name, "layers.%d", idx++);
      cb(ctx, name, "Dropout", true);
    }
  }
  return 0;
}

static const fg_model_vtable mlp_vt = {
    .forward = mlp_forward, .free = mlp_free, .visit_modules = mlp_visit_modules};

/* Builds the layers with PyTorch's nn.Linear initialization:
 * kaiming_uniform(a=sqrt(5)) for weights and U(-1/sqrt(fan_in), ...) for
 * biases, which both come to U(-1/sqrt(fan_in), 1/sqrt(fan_in)). */
static int mlp_create(const fg_class *cls, const fg_node *args,
                      const char *keypath, void **out, char **err) {
  int64_t in = fg_node_int(fg_node_get(args, "in_features"));
  int64_t outf = fg_node_int(fg_node_get(args, "out_features"));
  const fg_node *hidden = fg_node_get(args, "hidden");
  const char *act = fg_node_str(fg_node_get(args, "activation"));
  double dropout = fg_node_float(fg_node_get(args, "dropout"));
  mlp *p = fg__xcalloc(1, sizeof *p);
  p->n_layers = fg_node_len(hidden) + 1;
  p->w = fg__xcalloc(p->n_layers, sizeof *p->w);
  p->b = fg__xcalloc(p->n_layers, sizeof *p->b);
  p->dropout = dropout;
  p->in_features = in;
  p->act = strcmp(act, "gelu") == 0   ? ACT_GELU
           : strcmp(act, "tanh") == 0 ? ACT_TANH
           : strcmp(act, "sigmoid") == 0 ? ACT_SIGMOID
                                         : ACT_RELU;
  fg_model *m = fg_model_create(&mlp_vt, p);
  int64_t fan_in = in;
  int idx = 0; /* index in the nn.Sequential */
  int rc = 0;
  for (size_t i = 0; i < p->n_layers; i++) {
    int64_t fan_out = i + 1 < p->n_layers ? fg_node_int(fg_node_at(hidden, i)) : outf;
    int64_t wshape[2] = {fan_out, fan_in};
    fg_tensor *w = NULL, *b = NULL;
    double bound = 1.0 / sqrt((double)fan_in);
    if ((rc = fg_tensor_empty(wshape, 2, FG_FLOAT32, &w, err)) ||
        (rc = fg_tensor_uniform_(w, -bound, bound, err)) ||
        (rc = fg_tensor_empty(&fan_out, 1, FG_FLOAT32, &b, err)) ||
        (rc = fg_tensor_uniform_(b, -bound, bound, err))) {
      fg_tensor_free(w);
      fg_tensor_free(b);
      fg_model_free(m);
      return fg_err_prefix(err, rc, "%s: creating layer %zu", keypath, i);
    }
    char name[64];
    snprintf(name, sizeof name, "layers.%d.weight", idx);
    fg_model_add_param(m, name, w);
    snprintf(name, sizeof name, "layers.%d.bias", idx);
    fg_model_add_param(m, name, b);
    p->w[i] = w;
    p->b[i] = b;
    idx += 1 + (i + 1 < p->n_layers ? 1 + (dropout > 0) : 0);
    fan_in = fan_out;
  }
  *out = m;
  return 0;
}

static void mlp_destroy(void *obj) { fg_model_free(obj); }

static int check_positive(const fg_node *v, const char *keypath, char **err) {
  if (fg_node_int(v) <= 0)
    return fg_config_error(err, v, keypath, "expected a positive integer, got %lld",
                           (long long)fg_node_int(v));
  return 0;
}

static int check_hidden(const fg_node *v, const char *keypath, char **err) {
  for (size_t i = 0; i < fg_node_len(v); i++) {
    const fg_node *h = fg_node_at(v, i);
    if (fg_node_int(h) <= 0) {
      char *path = fg__xasprintf("%s.%zu", keypath, i);
      int rc = fg_config_error(err, h, path, "expected a positive layer width, got %lld",
                               (long long)fg_node_int(h));
      free(path);
      return rc;
    }
  }
  return 0;
}

static int check_activation(const fg_node *v, const char *keypath, char **err) {
  static const char *const acts[] = {"relu", "gelu", "tanh", "sigmoid"};
  for (size_t i = 0; i < 4; i++)
    if (strcmp(fg_node_str(v), acts[i]) == 0) return 0;
  return fg_config_error(err, v, keypath,
                         "expected one of relu, gelu, tanh, sigmoid, got '%s'",
                         fg_node_str(v));
}

static int check_dropout(const fg_node *v, const char *keypath, char **err) {
  double d = fg_node_float(v);
  if (!(d >= 0 && d < 1))
    return fg_config_error(err, v, keypath, "expected a probability in [0, 1), got %g", d);
  return 0;
}

static const fg_param mlp_params[] = {
    {"in_features", FG_T_INT, NULL, "input features (inputs are flattened from dim 1)", check_positive, 0},
    {"hidden", FG_T_SEQ, "[]", "widths of the hidden layers", check_hidden, FG_T_INT},
    {"out_features", FG_T_INT, NULL, "output features", check_positive, 0},
    {"activation", FG_T_STRING, "relu", "relu, gelu, tanh or sigmoid", check_activation, 0},
    {"dropout", FG_T_FLOAT, "0.0", "dropout after each activation", check_dropout, 0},
};

const fg_class fg__mlp_class = {
    .name = "fulgur.models.MLP",
    .kind = FG_KIND_MODEL,
    .params = mlp_params,
    .n_params = sizeof mlp_params / sizeof mlp_params[0],
    .create = mlp_create,
    .destroy = mlp_destroy,
};


