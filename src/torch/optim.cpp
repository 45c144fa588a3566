// Optimizers: libtorch's SGD, Adam and AdamW, with state dicts in
// PyTorch's Python layout so checkpoints cross between the two.
#include "torch/bridge_internal.hpp"

struct fg_optimizer {
  fg_optim_kind kind;
  std::unique_ptr<torch::optim::Optimizer> opt;
};

namespace {

std::string key_of(const at::Tensor &p) { return c10::guts::to_string(p.unsafeGetTensorImpl()); }

std::unique_ptr<torch::optim::OptimizerOptions> options_for(fg_optim_kind kind,
                                                            const fg_optim_group &g) {
  switch (kind) {
    case FG_OPTIM_SGD:
      return std::make_unique<torch::optim::SGDOptions>(torch::optim::SGDOptions(g.lr)
                                                            .momentum(g.momentum)
                                                            .dampening(g.dampening)
                                                            .weight_decay(g.weight_decay)
                                                            .nesterov(g.nesterov));
    case FG_OPTIM_ADAM:
      return std::make_unique<torch::optim::AdamOptions>(torch::optim::AdamOptions(g.lr)
                                                             .betas(std::make_tuple(g.beta1, g.beta2))
                                                             .eps(g.eps)
                                                             .weight_decay(g.weight_decay)
                                                             .amsgrad(g.amsgrad));
    case FG_OPTIM_ADAMW:
      return std::make_unique<torch::optim::AdamWOptions>(torch::optim::AdamWOptions(g.lr)
                                                              .betas(std::make_tuple(g.beta1, g.beta2))
                                                              .eps(g.eps)
                                                              .weight_decay(g.weight_decay)
                                                              .amsgrad(g.amsgrad));
  }
  throw std::runtime_error("unknown optimizer kind");
}

fg_value *tensor_value(const at::Tensor &t) { return fg_value_tensor(fg::wrap(t.detach().clone())); }

void group_options(fg_optim_kind kind, torch::optim::OptimizerOptions &o, fg_value *g) {
  fg_value_dict_set(g, "lr", fg_value_double(o.get_lr()));
  if (kind == FG_OPTIM_SGD) {
    auto &s = static_cast<torch::optim::SGDOptions &>(o);
    fg_value_dict_set(g, "momentum", fg_value_double(s.momentum()));
    fg_value_dict_set(g, "dampening", fg_value_double(s.dampening()));
    fg_value_dict_set(g, "weight_decay", fg_value_double(s.weight_decay()));
    fg_value_dict_set(g, "nesterov", fg_value_bool(s.nesterov()));
    fg_value_dict_set(g, "maximize", fg_value_bool(false));
    fg_value_dict_set(g, "foreach", fg_value_none());
    fg_value_dict_set(g, "differentiable", fg_value_bool(false));
    return;
  }
  double b1, b2, eps, wd;
  bool ams;
  if (kind == FG_OPTIM_ADAM) {
    auto &a = static_cast<torch::optim::AdamOptions &>(o);
    std::tie(b1, b2) = a.betas();
    eps = a.eps(), wd = a.weight_decay(), ams = a.amsgrad();
  } else {
    auto &a = static_cast<torch::optim::AdamWOptions &>(o);
    std::tie(b1, b2) = a.betas();
    eps = a.eps(), wd = a.weight_decay(), ams = a.amsgrad();
  }
  fg_value *betas = fg_value_list();
  fg_value_list_append(betas, fg_value_double(b1));
  fg_value_list_append(betas, fg_value_double(b2));
  fg_value_dict_set(g, "betas", betas);
  fg_value_dict_set(g, "eps", fg_value_double(eps));
  fg_value_dict_set(g, "weight_decay", fg_value_double(wd));
  fg_value_dict_set(g, "amsgrad", fg_value_bool(ams));
  fg_value_dict_set(g, "maximize", fg_value_bool(false));
  fg_value_dict_set(g, "foreach", fg_value_none());
  fg_value_dict_set(g, "capturable", fg_value_bool(false));
  fg_value_dict_set(g, "differentiable", fg_value_bool(false));
  fg_value_dict_set(g, "fused", fg_value_bool(false));
}

const at::Tensor *dict_tensor(const fg_value *d, const char *key) {
  const fg_value *v = fg_value_dict_get(d, key);
  return v && fg_value_kind_of(v) == FG_VALUE_TENSOR ? &fg_value_as_tensor(v)->t : nullptr;
}

// The options of one parameter group; a group index past the last is the
// caller's error, reported like any other (the bridge's checks throw).
torch::optim::OptimizerOptions &group_at(const fg_optimizer *opt, size_t group) {
  auto &pgs = opt->opt->param_groups();
  if (group >= pgs.size())
    throw std::runtime_error("parameter group " + std::to_string(group) +
                             " is out of range: the optimizer has " + std::to_string(pgs.size()));
  return pgs[group].options();
}

}  // namespace

extern "C" {

int fg_optimizer_create(fg_optim_kind kind, const fg_optim_group *groups, size_t n_groups,
                        fg_optimizer **out, char **err) {
  FG_GUARD_BEGIN
  if (n_groups == 0) throw std::runtime_error("an optimizer needs at least one parameter group");
  std::vector<torch::optim::OptimizerParamGroup> pg;
  for (size_t i = 0; i < n_groups; i++) {
    std::vector<at::Tensor> ps;
    for (size_t k = 0; k < groups[i].n_params; k++) ps.push_back(groups[i].params[k]->t);
    pg.emplace_back(ps, options_for(kind, groups[i]));
  }
  auto o = std::make_unique<fg_optimizer>();
  o->kind = kind;
  switch (kind) {
    case FG_OPTIM_SGD:
      o->opt = std::make_unique<torch::optim::SGD>(pg, torch::optim::SGDOptions(groups[0].lr));
      break;
    case FG_OPTIM_ADAM:
      o->opt = std::make_unique<torch::optim::Adam>(pg, torch::optim::AdamOptions(groups[0].lr));
      break;
    case FG_OPTIM_ADAMW:
      o->opt = std::make_unique<torch::optim::AdamW>(pg, torch::optim::AdamWOptions(groups[0].lr));
      break;
  }
  *out = o.release();
  return 0;
  FG_GUARD_END
}

void fg_optimizer_free(fg_optimizer *opt) {
  FG_GUARD_BEGIN
  delete opt;
  FG_GUARD_END_RETURN(FG_VOID)
}

int fg_optimizer_step(fg_optimizer *opt, char **err) {
  FG_GUARD_BEGIN
  opt->opt->step();
  return 0;
  FG_GUARD_END
}

int fg_optimizer_zero_grad(fg_optimizer *opt, char **err) {
  FG_GUARD_BEGIN
  // set_to_none, PyTorch 2's default: no memset of gradient buffers.
  for (auto &g : opt->opt->param_groups())
    for (auto &p : g.params()) p.mutable_grad().reset();
  return 0;
  FG_GUARD_END
}

int fg_optimizer_clip_grad_norm(fg_optimizer *opt, double max_norm, double *total_norm,
                                char **err) {
  FG_GUARD_BEGIN
  std::vector<at::Tensor> ps;
  for (auto &g : opt->opt->param_groups())
    for (auto &p : g.params())
      if (p.grad().defined()) ps.push_back(p);
  double n = ps.empty() ? 0.0 : torch::nn::utils::clip_grad_norm_(ps, max_norm, 2.0);
  if (total_norm) *total_norm = n;
  return 0;
  FG_GUARD_END
}

int fg_optimizer_clip_grad_value(fg_optimizer *opt, double clip_value, char **err) {
  FG_GUARD_BEGIN
  std::vector<at::Tensor> ps;
  for (auto &g : opt->opt->param_groups())
    for (auto &p : g.params())
      if (p.grad().defined()) ps.push_back(p);
  if (!ps.empty()) torch::nn::utils::clip_grad_value_(ps, clip_value);
  return 0;
  FG_GUARD_END
}

size_t fg_optimizer_num_groups(const fg_optimizer *opt) {
  FG_GUARD_BEGIN
  return opt->opt->param_groups().size();
  FG_GUARD_END_RETURN(0)
}

int fg_optimizer_get_lr(const fg_optimizer *opt, size_t group, double *out, char **err) {
  FG_GUARD_BEGIN
  *out = group_at(opt, group).get_lr();
  return 0;
  FG_GUARD_END
}

int fg_optimizer_set_lr(fg_optimizer *opt, size_t group, double lr, char **err) {
  FG_GUARD_BEGIN
  group_at(opt, group).set_lr(lr);
  return 0;
  FG_GUARD_END
}

int fg_optimizer_get_momentum(const fg_optimizer *opt, size_t group, double *out, char **err) {
  FG_GUARD_BEGIN
  auto &o = group_at(opt, group);
  switch (opt->kind) {
    case FG_OPTIM_SGD: *out = static_cast<torch::optim::SGDOptions &>(o).momentum(); return 0;
    case FG_OPTIM_ADAM: *out = std::get<0>(static_cast<torch::optim::AdamOptions &>(o).betas()); return 0;
    case FG_OPTIM_ADAMW: *out = std::get<0>(static_cast<torch::optim::AdamWOptions &>(o).betas()); return 0;
  }
  throw std::runtime_error("unknown optimizer kind");
  FG_GUARD_END
}

int fg_optimizer_set_momentum(fg_optimizer *opt, size_t group, double m, char **err) {
  FG_GUARD_BEGIN
  auto &o = group_at(opt, group);
  switch (opt->kind) {
    case FG_OPTIM_SGD: static_cast<torch::optim::SGDOptions &>(o).momentum(m); return 0;
    case FG_OPTIM_ADAM: {
      auto &a = static_cast<torch::optim::AdamOptions &>(o);
      a.betas(std::make_tuple(m, std::get<1>(a.betas())));
      return 0;
    }
    case FG_OPTIM_ADAMW: {
      auto &a = static_cast<torch::optim::AdamWOptions &>(o);
      a.betas(std::make_tuple(m, std::get<1>(a.betas())));
      return 0;
    }
  }
  throw std::runtime_error("unknown optimizer kind");
  FG_GUARD_END
}

int fg_optimizer_state_dict(const fg_optimizer *opt, fg_value **out, char **err) {
  fg_value *sd = fg_value_dict();
  FG_GUARD_BEGIN
  fg_value *state = fg_value_dict();
  fg_value_dict_set(sd, "state", state);
  fg_value *groups = fg_value_list();
  fg_value_dict_set(sd, "param_groups", groups);
  auto &st = opt->opt->state();
  int64_t idx = 0;
  for (auto &g : opt->opt->param_groups()) {
    fg_value *gv = fg_value_dict();
    fg_value_list_append(groups, gv);
    group_options(opt->kind, g.options(), gv);
    fg_value *ids = fg_value_list();
    for (auto &p : g.params()) {
      fg_value_list_append(ids, fg_value_int(idx));
      auto it = st.find(key_of(p));
      if (it != st.end()) {
        fg_value *ps = fg_value_dict();
        if (opt->kind == FG_OPTIM_SGD) {
          auto &s = static_cast<torch::optim::SGDParamState &>(*it->second);
          if (s.momentum_buffer().defined())
            fg_value_dict_set(ps, "momentum_buffer", tensor_value(s.momentum_buffer()));
        } else {
          at::Tensor ea, eas, mx;
          int64_t step;
          if (opt->kind == FG_OPTIM_ADAM) {
            auto &s = static_cast<torch::optim::AdamParamState &>(*it->second);
            step = s.step(), ea = s.exp_avg(), eas = s.exp_avg_sq(), mx = s.max_exp_avg_sq();
          } else {
            auto &s = static_cast<torch::optim::AdamWParamState &>(*it->second);
            step = s.step(), ea = s.exp_avg(), eas = s.exp_avg_sq(), mx = s.max_exp_avg_sq();
          }
          // PyTorch >= 1.12 keeps the step as a float tensor.
          fg_value_dict_set(ps, "step", tensor_value(torch::scalar_tensor((double)step, at::kFloat)));
          fg_value_dict_set(ps, "exp_avg", tensor_value(ea));
          fg_value_dict_set(ps, "exp_avg_sq", tensor_value(eas));
          if (mx.defined()) fg_value_dict_set(ps, "max_exp_avg_sq", tensor_value(mx));
        }
        fg_value_dict_set(state, std::to_string(idx).c_str(), ps);
      }
      idx++;
    }
    fg_value_dict_set(gv, "params", ids);
  }
  *out = sd;
  return 0;
  FG_GUARD_END_CLEANUP(fg_value_free(sd))
}

int fg_optimizer_load_state_dict(fg_optimizer *opt, const fg_value *sd, char **err) {
  FG_GUARD_BEGIN
  if (fg_value_kind_of(sd) != FG_VALUE_DICT) throw std::runtime_error("optimizer state is not a dict");
  const fg_value *state = fg_value_dict_get(sd, "state");
  const fg_value *groups = fg_value_dict_get(sd, "param_groups");
  if (!state || !groups || fg_value_kind_of(groups) != FG_VALUE_LIST ||
      fg_value_kind_of(state) != FG_VALUE_DICT)
    throw std::runtime_error("optimizer state needs 'state' and 'param_groups'");
  auto &pgs = opt->opt->param_groups();
  if (fg_value_len(groups) != pgs.size())
    throw std::runtime_error("optimizer state has " + std::to_string(fg_value_len(groups)) +
                             " parameter groups, the optimizer has " + std::to_string(pgs.size()));
  auto &st = opt->opt->state();
  int64_t idx = 0;
  for (size_t gi = 0; gi < pgs.size(); gi++) {
    const fg_value *gv = fg_value_list_at(groups, gi);
    const fg_value *lr = fg_value_dict_get(gv, "lr");
    if (lr && (fg_value_kind_of(lr) == FG_VALUE_DOUBLE || fg_value_kind_of(lr) == FG_VALUE_INT))
      pgs[gi].options().set_lr(fg_value_as_double(lr));
    const fg_value *ids = fg_value_dict_get(gv, "params");
    if (ids && fg_value_len(ids) != pgs[gi].params().size())
      throw std::runtime_error("optimizer state: parameter group " + std::to_string(gi) + " has " +
                               std::to_string(fg_value_len(ids)) + " parameters, the optimizer has " +
                               std::to_string(pgs[gi].params().size()));
    for (size_t k = 0; k < pgs[gi].params().size(); k++, idx++) {
      auto &p = pgs[gi].params()[k];
      const fg_value *id = ids ? fg_value_list_at(ids, k) : nullptr;
      int64_t sid = id && fg_value_kind_of(id) == FG_VALUE_INT ? fg_value_as_int(id) : idx;
      const fg_value *ps = fg_value_dict_get(state, std::to_string(sid).c_str());
      if (!ps) continue;
      if (opt->kind == FG_OPTIM_SGD) {
        auto s = std::make_unique<torch::optim::SGDParamState>();
        if (auto t = dict_tensor(ps, "momentum_buffer")) s->momentum_buffer(t->clone().to(p.dtype()));
        st[key_of(p)] = std::move(s);
        continue;
      }
      const fg_value *stepv = fg_value_dict_get(ps, "step");
      int64_t step = 0;
      if (stepv && fg_value_kind_of(stepv) == FG_VALUE_TENSOR)
        step = (int64_t)fg_value_as_tensor(stepv)->t.item<double>();
      else if (stepv)
        step = (int64_t)fg_value_as_double(stepv);
      auto ea = dict_tensor(ps, "exp_avg"), eas = dict_tensor(ps, "exp_avg_sq");
      auto mx = dict_tensor(ps, "max_exp_avg_sq");
      if (!ea || !eas) throw std::runtime_error("optimizer state: Adam state lacks exp_avg");
      if (opt->kind == FG_OPTIM_ADAM) {
        auto s = std::make_unique<torch::optim::AdamParamState>();
        s->step(step);
        s->exp_avg(ea->clone());
        s->exp_avg_sq(eas->clone());
        if (mx) s->max_exp_avg_sq(mx->clone());
        st[key_of(p)] = std::move(s);
      } else {
        auto s = std::make_unique<torch::optim::AdamWParamState>();
        s->step(step);
        s->exp_avg(ea->clone());
        s->exp_avg_sq(eas->clone());
        if (mx) s->max_exp_avg_sq(mx->clone());
        st[key_of(p)] = std::move(s);
      }
    }
  }
  return 0;
  FG_GUARD_END
}

}  // extern "C"
