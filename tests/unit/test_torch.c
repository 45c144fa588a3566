/* The torch bridge: operations, autograd, errors as values, optimizer
 * state dicts, and checkpoint files that Python's torch reads and writes. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fulgur/error.h"
#include "fulgur/jit.h"
#include "fulgur/torch.h"
#include "fulgur/value.h"

static fg_tensor *mat(const float *v, int64_t r, int64_t c) {
  fg_tensor *t = NULL;
  int64_t shape[2] = {r, c};
  cr_assert_eq(fg_tensor_from_data(v, FG_FLOAT32, shape, 2, &t, NULL), 0);
  return t;
}

static double item(const fg_tensor *t) {
  double d;
  cr_assert_eq(fg_tensor_item(t, &d, NULL), 0);
  return d;
}

Test(ops, linear_relu_values) {
  const float xv[] = {1, 2}, wv[] = {1, -1, 0.5f, 0.5f}, bv[] = {0, 1};
  fg_tensor *x = mat(xv, 1, 2), *w = mat(wv, 2, 2), *b = NULL, *y = NULL, *r = NULL;
  int64_t n = 2;
  cr_assert_eq(fg_tensor_from_data(bv, FG_FLOAT32, &n, 1, &b, NULL), 0);
  cr_assert_eq(fg_op_linear(x, w, b, &y, NULL), 0);
  float out[2];
  cr_assert_eq(fg_tensor_copy_out(y, FG_FLOAT32, out, sizeof out, NULL), 0);
  cr_assert_float_eq(out[0], -1.0f, 1e-6); /* 1 - 2 + 0 */
  cr_assert_float_eq(out[1], 2.5f, 1e-6);  /* 0.5 + 1 + 1 */
  cr_assert_eq(fg_op_relu(y, &r, NULL), 0);
  cr_assert_eq(fg_tensor_copy_out(r, FG_FLOAT32, out, sizeof out, NULL), 0);
  cr_assert_float_eq(out[0], 0.0f, 1e-6);
  fg_tensor_free(x); fg_tensor_free(w); fg_tensor_free(b); fg_tensor_free(y); fg_tensor_free(r);
}

/* The global generator's state, saved and put back, replays dropout. */
Test(torch, rng_state_round_trip_replays_dropout) {
  fg_torch_manual_seed(3);
  const float ones[64] = {1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                          1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
                          1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1};
  fg_tensor *x = mat(ones, 8, 8), *st = NULL, *a = NULL, *b = NULL, *c = NULL;
  cr_assert_eq(fg_torch_get_rng_state(&st, NULL), 0);
  cr_assert_eq(fg_tensor_dtype(st), FG_UINT8);
  cr_assert_eq(fg_op_dropout(x, 0.5, true, &a, NULL), 0);
  cr_assert_eq(fg_op_dropout(x, 0.5, true, &c, NULL), 0);
  cr_assert_eq(fg_torch_set_rng_state(st, NULL), 0);
  cr_assert_eq(fg_op_dropout(x, 0.5, true, &b, NULL), 0);
  float va[64], vb[64], vc[64];
  cr_assert_eq(fg_tensor_copy_out(a, FG_FLOAT32, va, sizeof va, NULL), 0);
  cr_assert_eq(fg_tensor_copy_out(b, FG_FLOAT32, vb, sizeof vb, NULL), 0);
  cr_assert_eq(fg_tensor_copy_out(c, FG_FLOAT32, vc, sizeof vc, NULL), 0);
  cr_assert_arr_eq(va, vb, sizeof va, "the restored state draws the same mask");
  cr_assert(memcmp(va, vc, sizeof va) != 0, "a second draw differs");
  char *err = NULL;
  cr_assert_eq(fg_torch_set_rng_state(x, &err), FG_ETORCH, "a float tensor is no state");
  cr_assert_not_null(err);
  free(err);
  fg_tensor_free(x); fg_tensor_free(st); fg_tensor_free(a); fg_tensor_free(b); fg_tensor_free(c);
}

/* A restored gradient is a copy, and backward adds to it. */
Test(torch, set_grad_then_backward_accumulates) {
  const float wv[] = {1, 2}, gv[] = {0.5f, -1};
  fg_tensor *w = mat(wv, 1, 2), *g = mat(gv, 1, 2), *s = NULL, *got = NULL;
  cr_assert_eq(fg_tensor_set_requires_grad(w, true, NULL), 0);
  cr_assert_eq(fg_tensor_set_grad(w, g, NULL), 0);
  cr_assert_eq(fg_op_sum(w, &s, NULL), 0);
  cr_assert_eq(fg_tensor_backward(s, NULL), 0);
  cr_assert_eq(fg_tensor_grad(w, &got, NULL), 0);
  float out[2], orig[2];
  cr_assert_eq(fg_tensor_copy_out(got, FG_FLOAT32, out, sizeof out, NULL), 0);
  cr_assert_eq(fg_tensor_copy_out(g, FG_FLOAT32, orig, sizeof orig, NULL), 0);
  cr_assert_float_eq(out[0], 1.5f, 1e-6);
  cr_assert_float_eq(out[1], 0.0f, 1e-6);
  cr_assert_float_eq(orig[0], 0.5f, 1e-6, "the source is not modified");
  fg_tensor *bad = mat(wv, 2, 1);
  char *err = NULL;
  cr_assert_eq(fg_tensor_set_grad(w, bad, &err), FG_ETORCH);
  cr_assert(strstr(err, "gradient of shape [2, 1] for a tensor of shape [1, 2]"), "%s", err);
  free(err);
  fg_tensor_free(got);
  cr_assert_eq(fg_tensor_set_grad(w, NULL, NULL), 0);
  cr_assert_eq(fg_tensor_grad(w, &got, NULL), 0);
  cr_assert_null(got, "NULL clears the gradient");
  fg_tensor_free(w); fg_tensor_free(g); fg_tensor_free(s); fg_tensor_free(bad);
}

Test(ops, cross_entropy_and_backward) {
  const float lv[] = {0, 0, 0, 0};
  fg_tensor *logits = mat(lv, 2, 2), *target = NULL, *loss = NULL, *g = NULL;
  const int64_t tv[] = {0, 1};
  int64_t n = 2;
  cr_assert_eq(fg_tensor_from_data(tv, FG_INT64, &n, 1, &target, NULL), 0);
  cr_assert_eq(fg_tensor_set_requires_grad(logits, true, NULL), 0);
  cr_assert_eq(fg_op_cross_entropy(logits, target, &loss, NULL), 0);
  cr_assert_float_eq(item(loss), 0.69314718, 1e-6); /* log 2 */
  cr_assert_eq(fg_tensor_backward(loss, NULL), 0);
  cr_assert_eq(fg_tensor_grad(logits, &g, NULL), 0);
  cr_assert_not_null(g);
  float gv[4];
  cr_assert_eq(fg_tensor_copy_out(g, FG_FLOAT32, gv, sizeof gv, NULL), 0);
  cr_assert_float_eq(gv[0], -0.25f, 1e-6); /* (softmax - onehot) / N */
  cr_assert_float_eq(gv[1], 0.25f, 1e-6);
  fg_tensor_free(logits); fg_tensor_free(target); fg_tensor_free(loss); fg_tensor_free(g);
}

Test(ops, errors_are_values) {
  const float v[] = {1, 2, 3, 4, 5, 6};
  fg_tensor *x = mat(v, 2, 3), *w = mat(v, 3, 2), *y = NULL;
  char *err = NULL;
  cr_assert_eq(fg_op_linear(x, w, NULL, &y, &err), FG_ETORCH);
  cr_assert_null(y);
  cr_assert(err && strlen(err) > 0 && strstr(err, "Error") == NULL, "message without C++ backtrace: %s", err);
  free(err);
  fg_tensor_free(x); fg_tensor_free(w);
}

Test(ops, randperm_is_seeded) {
  fg_tensor *a = NULL, *b = NULL, *c = NULL;
  cr_assert_eq(fg_tensor_randperm(100, 7, &a, NULL), 0);
  cr_assert_eq(fg_tensor_randperm(100, 7, &b, NULL), 0);
  cr_assert_eq(fg_tensor_randperm(100, 8, &c, NULL), 0);
  bool same_ab, same_ac;
  cr_assert_eq(fg_op_allclose(a, b, 0, 0, &same_ab, NULL), 0);
  cr_assert_eq(fg_op_allclose(a, c, 0, 0, &same_ac, NULL), 0);
  cr_assert(same_ab && !same_ac);
  fg_tensor_free(a); fg_tensor_free(b); fg_tensor_free(c);
}

Test(threads, set_num_threads) {
  cr_assert_eq(fg_torch_set_num_threads(1, NULL), 0);
  cr_assert_eq(fg_torch_get_num_threads(), 1);
  char *err = NULL;
  cr_assert_eq(fg_torch_set_num_threads(0, &err), FG_ETORCH);
  free(err);
}

/* A parameter group past the last throws inside libtorch (.at()); the
 * bridge turns it into an error value, not a terminate, and changes
 * nothing. */
Test(optimizer, group_out_of_range_is_an_error) {
  const float wv[] = {0.5f, -0.3f};
  fg_tensor *w = mat(wv, 1, 2);
  fg_tensor *ps[] = {w};
  fg_optim_group g = {.params = ps, .n_params = 1, .lr = 0.1, .momentum = 0.9};
  fg_optimizer *o = NULL;
  cr_assert_eq(fg_optimizer_create(FG_OPTIM_SGD, &g, 1, &o, NULL), 0);
  cr_assert_eq(fg_optimizer_num_groups(o), 1);
  double v = -1;
  char *err = NULL;
  cr_assert_eq(fg_optimizer_get_lr(o, 1, &v, &err), FG_ETORCH);
  cr_assert_str_eq(err, "parameter group 1 is out of range: the optimizer has 1");
  cr_assert_eq(v, -1, "the out-param is untouched on error");
  free(err), err = NULL;
  cr_assert_eq(fg_optimizer_set_lr(o, 3, 1.0, &err), FG_ETORCH);
  cr_assert_str_eq(err, "parameter group 3 is out of range: the optimizer has 1");
  free(err), err = NULL;
  cr_assert_eq(fg_optimizer_get_momentum(o, 2, &v, &err), FG_ETORCH);
  cr_assert(err && strstr(err, "parameter group 2"), "%s", err);
  free(err), err = NULL;
  cr_assert_eq(fg_optimizer_set_momentum(o, (size_t)-1, 0.5, &err), FG_ETORCH);
  cr_assert(err && strstr(err, "out of range"), "%s", err);
  free(err), err = NULL;
  /* Group 0 is untouched by the failed calls and still reads and writes. */
  cr_assert_eq(fg_optimizer_get_lr(o, 0, &v, NULL), 0);
  cr_assert_float_eq(v, 0.1, 1e-12);
  cr_assert_eq(fg_optimizer_get_momentum(o, 0, &v, NULL), 0);
  cr_assert_float_eq(v, 0.9, 1e-12);
  cr_assert_eq(fg_optimizer_set_lr(o, 0, 0.25, NULL), 0);
  cr_assert_eq(fg_optimizer_set_momentum(o, 0, 0.5, NULL), 0);
  cr_assert_eq(fg_optimizer_get_lr(o, 0, &v, NULL), 0);
  cr_assert_float_eq(v, 0.25, 1e-12);
  cr_assert_eq(fg_optimizer_get_momentum(o, 0, &v, NULL), 0);
  cr_assert_float_eq(v, 0.5, 1e-12);
  fg_optimizer_free(o);
  fg_tensor_free(w);
}

/* Adam's "momentum" is beta1, what OneCycleLR cycles. */
Test(optimizer, adam_momentum_is_beta1) {
  const float wv[] = {0.5f, -0.3f};
  fg_tensor *w = mat(wv, 1, 2);
  fg_tensor *ps[] = {w};
  fg_optim_group g = {.params = ps, .n_params = 1, .lr = 0.1, .beta1 = 0.8, .beta2 = 0.99, .eps = 1e-8};
  fg_optimizer *o = NULL;
  cr_assert_eq(fg_optimizer_create(FG_OPTIM_ADAM, &g, 1, &o, NULL), 0);
  double v = 0;
  cr_assert_eq(fg_optimizer_get_momentum(o, 0, &v, NULL), 0);
  cr_assert_float_eq(v, 0.8, 1e-12);
  cr_assert_eq(fg_optimizer_set_momentum(o, 0, 0.95, NULL), 0);
  fg_value *sd = NULL;
  cr_assert_eq(fg_optimizer_state_dict(o, &sd, NULL), 0);
  const fg_value *betas = fg_value_dict_get(fg_value_list_at(fg_value_dict_get(sd, "param_groups"), 0), "betas");
  cr_assert_float_eq(fg_value_as_double(fg_value_list_at(betas, 0)), 0.95, 1e-12);
  cr_assert_float_eq(fg_value_as_double(fg_value_list_at(betas, 1)), 0.99, 1e-12);
  fg_value_free(sd);
  fg_optimizer_free(o);
  fg_tensor_free(w);
}

/* Exports without an err report a documented fallback when libtorch
 * throws: a TorchScript module's parameter past the last is NULL (the
 * index goes through .at(), which throws std::out_of_range). */
Test(jit, param_out_of_range_is_null) {
  const char *src = "def forward(self, x):\n  return x @ self.w\n";
  const char *names[] = {"w"};
  const int64_t shape[] = {2, 2};
  const int64_t *shapes[] = {shape};
  const int nd[] = {2};
  fg_jit_module *jm = NULL;
  char *err = NULL;
  cr_assert_eq(fg_jit_compile(src, names, shapes, nd, 1, &jm, &err), 0, "%s", err ? err : "");
  cr_assert_eq(fg_jit_num_params(jm), 1);
  cr_assert_str_eq(fg_jit_param_name(jm, 0), "w");
  fg_tensor *p = fg_jit_param(jm, 0);
  cr_assert_not_null(p);
  cr_assert_eq(fg_tensor_numel(p), 4);
  fg_tensor_free(p);
  cr_assert_null(fg_jit_param_name(jm, 1));
  cr_assert_null(fg_jit_param(jm, 7));
  cr_assert_eq(fg_jit_num_args(jm, "forward"), 1);
  cr_assert_eq(fg_jit_num_args(jm, "no_such_method"), -1);
  cr_assert(!fg_jit_has_method(jm, "no_such_method"));
  fg_jit_free(jm);
}

/* Three steps, save the state, a fresh optimizer loads it, one more step on
 * both: identical parameters. */
static void optimizer_roundtrip(fg_optim_kind kind) {
  const float wv[] = {0.5f, -0.3f, 0.8f, 0.1f};
  fg_tensor *w1 = mat(wv, 2, 2), *w2 = mat(wv, 2, 2);
  fg_tensor_set_requires_grad(w1, true, NULL);
  fg_tensor_set_requires_grad(w2, true, NULL);
  fg_optim_group g = {.lr = 0.1, .momentum = 0.9, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
  fg_tensor *p1[] = {w1}, *p2[] = {w2};
  fg_optimizer *o1 = NULL, *o2 = NULL;
  g.params = p1, g.n_params = 1;
  cr_assert_eq(fg_optimizer_create(kind, &g, 1, &o1, NULL), 0);
  g.params = p2;
  cr_assert_eq(fg_optimizer_create(kind, &g, 1, &o2, NULL), 0);
  for (int s = 0; s < 4; s++) {
    if (s == 3) {
      fg_value *sd = NULL;
      cr_assert_eq(fg_optimizer_state_dict(o1, &sd, NULL), 0);
      fg_tensor_copy_(w2, w1, NULL);
      char *err = NULL;
      cr_assert_eq(fg_optimizer_load_state_dict(o2, sd, &err), 0, "%s", err);
      fg_value_free(sd);
    }
    fg_optimizer *os[] = {o1, o2};
    fg_tensor *ws[] = {w1, w2};
    for (int k = 0; k < (s == 3 ? 2 : 1); k++) {
      fg_tensor *sq = NULL, *loss = NULL;
      fg_optimizer_zero_grad(os[k], NULL);
      cr_assert_eq(fg_op_mul(ws[k], ws[k], &sq, NULL), 0);
      cr_assert_eq(fg_op_sum(sq, &loss, NULL), 0);
      cr_assert_eq(fg_tensor_backward(loss, NULL), 0);
      cr_assert_eq(fg_optimizer_step(os[k], NULL), 0);
      fg_tensor_free(sq);
      fg_tensor_free(loss);
    }
  }
  bool same = false;
  cr_assert_eq(fg_op_allclose(w1, w2, 0, 0, &same, NULL), 0);
  cr_assert(same, "restored optimizer state continues identically");
  fg_optimizer_free(o1); fg_optimizer_free(o2); fg_tensor_free(w1); fg_tensor_free(w2);
}

Test(optimizer, sgd_state_roundtrip) { optimizer_roundtrip(FG_OPTIM_SGD); }
Test(optimizer, adamw_state_roundtrip) { optimizer_roundtrip(FG_OPTIM_ADAMW); }

static const char *python(void) {
  const char *p = getenv("FG_PYTHON");
  return p ? p : "/usr/bin/python3";
}

static int run_python(const char *dir, const char *code) {
  char path[512], cmd[1024];
  snprintf(path, sizeof path, "%s/script.py", dir);
  FILE *f = fopen(path, "w");
  cr_assert_not_null(f);
  fputs(code, f);
  fclose(f);
  snprintf(cmd, sizeof cmd, "cd '%s' && '%s' script.py", dir, python());
  return system(cmd);
}

static void write_file(const char *path, const char *buf, size_t len) {
  FILE *f = fopen(path, "wb");
  cr_assert_not_null(f);
  cr_assert_eq(fwrite(buf, 1, len, f), len);
  fclose(f);
}

Test(pickle, python_reads_what_fulgur_writes) {
  char dir[] = "/tmp/fg_pickle_XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  fg_value *ck = fg_value_dict();
  fg_value_dict_set(ck, "epoch", fg_value_int(3));
  fg_value_dict_set(ck, "lr", fg_value_double(0.5));
  fg_value_dict_set(ck, "name", fg_value_string("mlp"));
  fg_value_dict_set(ck, "none", fg_value_none());
  fg_value_dict_set(ck, "flag", fg_value_bool(true));
  const float wv[] = {1, 2, 3, 4};
  fg_value *sd = fg_value_dict();
  fg_value_dict_set(sd, "layers.0.weight", fg_value_tensor(mat(wv, 2, 2)));
  fg_value_dict_set(ck, "state_dict", sd);
  fg_value *state = fg_value_dict();
  fg_value_dict_set(state, "0", fg_value_dict());
  fg_value *opt = fg_value_dict();
  fg_value_dict_set(opt, "state", state);
  fg_value *l = fg_value_list();
  fg_value_list_append(l, opt);
  fg_value_dict_set(ck, "optimizer_states", l);
  char *buf = NULL;
  size_t len = 0;
  cr_assert_eq(fg_value_pickle(ck, &buf, &len, NULL), 0);
  char path[512];
  snprintf(path, sizeof path, "%s/c.ckpt", dir);
  write_file(path, buf, len);
  int rc = run_python(dir,
                      "import torch\n"
                      "c = torch.load('c.ckpt')\n"
                      "assert c['epoch'] == 3 and c['lr'] == 0.5 and c['name'] == 'mlp'\n"
                      "assert c['none'] is None and c['flag'] is True\n"
                      "assert torch.equal(c['state_dict']['layers.0.weight'], torch.tensor([[1., 2.], [3., 4.]]))\n"
                      "assert list(c['optimizer_states'][0]['state'].keys()) == [0]\n");
  cr_assert_eq(rc, 0, "python could not read the file");
  /* And we read our own file back. */
  fg_value *back = NULL;
  char *err = NULL;
  cr_assert_eq(fg_value_unpickle(buf, len, &back, &err), 0, "%s", err);
  cr_assert_eq(fg_value_as_int(fg_value_dict_get(back, "epoch")), 3);
  cr_assert_str_eq(fg_value_as_string(fg_value_dict_get(back, "name")), "mlp");
  const fg_value *w = fg_value_dict_get(fg_value_dict_get(back, "state_dict"), "layers.0.weight");
  float wb[4];
  cr_assert_eq(fg_tensor_copy_out(fg_value_as_tensor(w), FG_FLOAT32, wb, sizeof wb, NULL), 0);
  cr_assert_float_eq(wb[3], 4.0f, 0);
  fg_value_free(back);
  free(buf);
  fg_value_free(ck);
}

Test(pickle, fulgur_reads_python_ordereddict_checkpoints) {
  char dir[] = "/tmp/fg_pickle_XXXXXX";
  cr_assert_not_null(mkdtemp(dir));
  int rc = run_python(dir,
                      "import torch, collections\n"
                      "sd = collections.OrderedDict()\n"
                      "sd['model.w'] = torch.arange(6, dtype=torch.float32).reshape(2, 3)\n"
                      "sd['model.b'] = torch.tensor([7, 8], dtype=torch.int64)\n"
                      "sd['model.v'] = sd['model.w'][1]\n"
                      "torch.save({'epoch': 5, 'global_step': 50, 'state_dict': sd,\n"
                      "            'hp': {'lr': 1e-3, 'betas': (0.9, 0.99), 'big': 2**40, 'neg': -3}}, 'p.ckpt')\n");
  cr_assert_eq(rc, 0);
  char path[512];
  snprintf(path, sizeof path, "%s/p.ckpt", dir);
  FILE *f = fopen(path, "rb");
  cr_assert_not_null(f);
  char *buf = malloc(1 << 20);
  size_t len = fread(buf, 1, 1 << 20, f);
  fclose(f);
  fg_value *v = NULL;
  char *err = NULL;
  cr_assert_eq(fg_value_unpickle(buf, len, &v, &err), 0, "%s", err);
  cr_assert_eq(fg_value_as_int(fg_value_dict_get(v, "epoch")), 5);
  const fg_value *sd = fg_value_dict_get(v, "state_dict");
  cr_assert_eq(fg_value_kind_of(sd), FG_VALUE_DICT);
  cr_assert_str_eq(fg_value_dict_key_at(sd, 0), "model.w", "order kept");
  float w[6];
  cr_assert_eq(fg_tensor_copy_out(fg_value_as_tensor(fg_value_dict_get(sd, "model.w")), FG_FLOAT32, w, sizeof w, NULL), 0);
  cr_assert_float_eq(w[5], 5.0f, 0);
  cr_assert_eq(fg_tensor_dtype(fg_value_as_tensor(fg_value_dict_get(sd, "model.b"))), FG_INT64);
  float row[3];
  cr_assert_eq(fg_tensor_copy_out(fg_value_as_tensor(fg_value_dict_get(sd, "model.v")), FG_FLOAT32, row, sizeof row, NULL), 0);
  cr_assert_float_eq(row[0], 3.0f, 0, "views keep their offset");
  const fg_value *hp = fg_value_dict_get(v, "hp");
  cr_assert_float_eq(fg_value_as_double(fg_value_dict_get(hp, "lr")), 1e-3, 0);
  cr_assert_eq(fg_value_len(fg_value_dict_get(hp, "betas")), 2);
  cr_assert_eq(fg_value_as_int(fg_value_dict_get(hp, "big")), (int64_t)1 << 40);
  cr_assert_eq(fg_value_as_int(fg_value_dict_get(hp, "neg")), -3);
  fg_value_free(v);
  free(buf);
}

Test(pickle, garbage_is_an_error) {
  fg_value *v = NULL;
  char *err = NULL;
  cr_assert_eq(fg_value_unpickle("hello world", 11, &v, &err), FG_ETORCH);
  cr_assert(strstr(err, "not a PyTorch zip archive"), "%s", err);
  free(err);
}
