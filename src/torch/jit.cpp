// TorchScript modules: loaded from files Python wrote with
// torch.jit.script(m).save(path), called by method name. Values cross as
// fg_value; dicts of tensors become typed Dict[str, Tensor] so that
// TorchScript signatures like forward(batch: Dict[str, Tensor]) accept
// them. The last IValue each method returned is kept, so passing a
// forward's output back into loss_step keeps its exact TorchScript type.
#include <torch/script.h>

#include "torch/bridge_internal.hpp"

extern "C" {
#include "fulgur/jit.h"
}

struct fg_jit_module {
  torch::jit::Module m;
  std::vector<std::string> names;
  std::vector<at::Tensor> params;
  // state_dict() entries in Python's order; is_param tells parameters
  // from buffers.
  std::vector<std::string> state_names;
  std::vector<at::Tensor> state;
  std::vector<bool> state_is_param;
  // The last outputs handed out, by the fg_value they became.
  std::vector<std::pair<const fg_value *, c10::IValue>> outputs;
};

namespace fg {

fg_value *from_ivalue(const c10::IValue &v) {
  if (v.isTensor()) return fg_value_tensor(wrap(v.toTensor()));
  if (v.isNone()) return fg_value_none();
  if (v.isBool()) return fg_value_bool(v.toBool());
  if (v.isInt()) return fg_value_int(v.toInt());
  if (v.isDouble()) return fg_value_double(v.toDouble());
  if (v.isString()) return fg_value_string(v.toStringRef().c_str());
  if (v.isList() || v.isTuple()) {
    fg_value *l = fg_value_list();
    auto items = v.isList() ? v.toListRef().vec() : v.toTupleRef().elements().vec();
    for (const auto &x : items) {
      fg_value *e = from_ivalue(x);
      if (e == nullptr) {
        fg_value_free(l);
        return nullptr;
      }
      fg_value_list_append(l, e);
    }
    return l;
  }
  if (v.isGenericDict()) {
    fg_value *d = fg_value_dict();
    for (const auto &e : v.toGenericDict()) {
      std::string key = e.key().isString() ? e.key().toStringRef()
                        : e.key().isInt()  ? std::to_string(e.key().toInt())
                                           : std::string();
      fg_value *x = key.empty() ? nullptr : from_ivalue(e.value());
      if (x == nullptr) {
        fg_value_free(d);
        return nullptr;
      }
      fg_value_dict_set(d, key.c_str(), x);
    }
    return d;
  }
  return nullptr;
}

}  // namespace fg

namespace {

// Whether v (alive) holds exactly what iv holds: the same tensors (not
// copies) and equal scalars, recursively. A cached output is matched by
// address, and an address can be reused once the value it named is freed;
// this check makes a match mean the same object, not the same address.
bool same_object(const fg_value *v, const c10::IValue &iv) {
  switch (fg_value_kind_of(v)) {
    case FG_VALUE_NONE:
      return iv.isNone();
    case FG_VALUE_BOOL:
      return iv.isBool() && iv.toBool() == fg_value_as_bool(v);
    case FG_VALUE_INT:
      return iv.isInt() && iv.toInt() == fg_value_as_int(v);
    case FG_VALUE_DOUBLE:
      return iv.isDouble() && iv.toDouble() == fg_value_as_double(v);
    case FG_VALUE_STRING:
      return iv.isString() && iv.toStringRef() == fg_value_as_string(v);
    case FG_VALUE_TENSOR:
      return iv.isTensor() &&
             iv.toTensor().unsafeGetTensorImpl() == fg_value_as_tensor(v)->t.unsafeGetTensorImpl();
    case FG_VALUE_LIST: {
      if (!iv.isList() || iv.toListRef().size() != fg_value_len(v)) return false;
      const auto &items = iv.toListRef();
      for (size_t i = 0; i < items.size(); i++)
        if (!same_object(fg_value_list_at(v, i), items[i])) return false;
      return true;
    }
    case FG_VALUE_DICT: {
      if (!iv.isGenericDict() || iv.toGenericDict().size() != fg_value_len(v)) return false;
      auto d = iv.toGenericDict();
      for (size_t i = 0; i < fg_value_len(v); i++) {
        c10::IValue key(std::string(fg_value_dict_key_at(v, i)));
        if (!d.contains(key) || !same_object(fg_value_dict_value_at(v, i), d.at(key))) return false;
      }
      return true;
    }
  }
  return false;
}

c10::IValue to_call_ivalue(const fg_jit_module *jm, const fg_value *v) {
  for (const auto &o : jm->outputs)
    if (o.first == v && same_object(v, o.second)) return o.second;
  if (fg_value_kind_of(v) == FG_VALUE_TENSOR) return fg_value_as_tensor(v)->t;
  if (fg_value_kind_of(v) == FG_VALUE_DICT) {
    bool tensors = true;
    for (size_t i = 0; i < fg_value_len(v) && tensors; i++)
      tensors = fg_value_kind_of(fg_value_dict_value_at(v, i)) == FG_VALUE_TENSOR;
    if (tensors) {
      c10::Dict<std::string, at::Tensor> d;
      for (size_t i = 0; i < fg_value_len(v); i++)
        d.insert(fg_value_dict_key_at(v, i), fg_value_as_tensor(fg_value_dict_value_at(v, i))->t);
      return d;
    }
  }
  return fg::to_ivalue(v, nullptr);
}

// A value as a method's parameter type asks for it: dicts and lists built
// with the element types of the signature (Dict[str, Dict[str, Tensor]],
// List[Tensor], Optional[...]), which TorchScript's argument check accepts
// where the untyped conversion's Dict[str, Any] or List[Any] fails. Other
// types (and values that do not fit) convert as to_call_ivalue does; a
// mismatch is then TorchScript's own error naming the parameter.
c10::IValue to_typed_ivalue(const fg_jit_module *jm, const fg_value *v, const c10::TypePtr &type) {
  for (const auto &o : jm->outputs)
    if (o.first == v && same_object(v, o.second)) return o.second;
  c10::TypePtr want = type;
  if (auto opt = want->cast<c10::OptionalType>()) {
    if (fg_value_kind_of(v) == FG_VALUE_NONE) return c10::IValue();
    want = opt->getElementType();
  }
  if (fg_value_kind_of(v) == FG_VALUE_DICT) {
    auto dt = want->cast<c10::DictType>();
    if (dt && dt->getKeyType()->kind() == c10::TypeKind::StringType) {
      c10::impl::GenericDict d(dt->getKeyType(), dt->getValueType());
      for (size_t i = 0; i < fg_value_len(v); i++)
        d.insert(c10::IValue(std::string(fg_value_dict_key_at(v, i))),
                 to_typed_ivalue(jm, fg_value_dict_value_at(v, i), dt->getValueType()));
      return d;
    }
  }
  if (fg_value_kind_of(v) == FG_VALUE_LIST) {
    if (auto lt = want->cast<c10::ListType>()) {
      c10::impl::GenericList l(lt->getElementType());
      for (size_t i = 0; i < fg_value_len(v); i++)
        l.push_back(to_typed_ivalue(jm, fg_value_list_at(v, i), lt->getElementType()));
      return l;
    }
  }
  return to_call_ivalue(jm, v);
}

// Python's Module.state_dict() order: a module's own parameters, then its
// own buffers (each in attribute order, which torch.jit.script keeps from
// _parameters and _buffers), then each child under "<child>.". Attributes
// holding None (a conv without bias) are skipped, as state_dict skips them.
// TorchScript 1.13 drops persistent=False when it scripts a module (it
// ignores _non_persistent_buffers_set), so every buffer of the loaded
// module is in state_dict(), in Python too: this lists what
// torch.jit.load(path).state_dict() lists.
void collect_state(const torch::jit::Module &m, const std::string &prefix, fg_jit_module *jm) {
  const auto &type = m.type();
  for (int pass = 0; pass < 2; pass++)
    for (size_t i = 0; i < type->numAttributes(); i++) {
      bool want = pass == 0 ? type->is_parameter(i) : type->is_buffer(i);
      if (!want) continue;
      c10::IValue v = m._ivalue()->getSlot(i);
      if (!v.isTensor() || !v.toTensor().defined()) continue;
      jm->state_names.push_back(prefix + type->getAttributeName(i));
      jm->state.push_back(v.toTensor());
      jm->state_is_param.push_back(pass == 0);
    }
  for (const auto &child : m.named_children()) collect_state(child.value, prefix + child.name + ".", jm);
}

void collect(fg_jit_module *jm) {
  for (const auto &p : jm->m.named_parameters(/*recurse=*/true)) {
    jm->names.push_back(p.name);
    jm->params.push_back(p.value);
  }
  collect_state(jm->m, "", jm);
}

}  // namespace

int fg_jit_load(const char *path, fg_jit_module **out, char **err) {
  FG_GUARD_BEGIN
  auto jm = std::make_unique<fg_jit_module>();
  jm->m = torch::jit::load(path);
  collect(jm.get());
  if (!jm->m.find_method("forward")) throw std::runtime_error("the module has no forward method");
  *out = jm.release();
  return 0;
  FG_GUARD_END
}

int fg_jit_compile(const char *source, const char *const *names, const int64_t *const *shapes,
                   const int *ndims, size_t n, fg_jit_module **out, char **err) {
  FG_GUARD_BEGIN
  auto jm = std::make_unique<fg_jit_module>();
  jm->m = torch::jit::Module("__torch__.fulgur.SourceModel");
  for (size_t i = 0; i < n; i++) {
    std::vector<int64_t> shape(shapes[i], shapes[i] + ndims[i]);
    at::Tensor t = torch::empty(shape, torch::kFloat32);
    // nn.Linear's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)).
    int64_t fan_in = 1;
    if (ndims[i] >= 2)
      for (int d = 1; d < ndims[i]; d++) fan_in *= shape[d];
    else
      fan_in = ndims[i] == 1 ? shape[0] : 1;
    double bound = 1.0 / std::sqrt(static_cast<double>(fan_in > 0 ? fan_in : 1));
    {
      torch::NoGradGuard g;
      t.uniform_(-bound, bound);
    }
    t.set_requires_grad(true);
    jm->m.register_parameter(names[i], t, /*is_buffer=*/false);
  }
  jm->m.define(source);
  collect(jm.get());
  if (!jm->m.find_method("forward")) throw std::runtime_error("the source defines no forward method");
  *out = jm.release();
  return 0;
  FG_GUARD_END
}

void fg_jit_free(fg_jit_module *jm) {
  FG_GUARD_BEGIN
  delete jm;
  FG_GUARD_END_RETURN(FG_VOID)
}

size_t fg_jit_num_params(const fg_jit_module *jm) {
  FG_GUARD_BEGIN
  return jm->params.size();
  FG_GUARD_END_RETURN(0)
}

const char *fg_jit_param_name(const fg_jit_module *jm, size_t i) {
  FG_GUARD_BEGIN
  return jm->names.at(i).c_str();
  FG_GUARD_END_RETURN(nullptr)
}

fg_tensor *fg_jit_param(const fg_jit_module *jm, size_t i) {
  FG_GUARD_BEGIN
  return fg::wrap(jm->params.at(i));
  FG_GUARD_END_RETURN(nullptr)
}

size_t fg_jit_num_state(const fg_jit_module *jm) { return jm->state.size(); }

const char *fg_jit_state_name(const fg_jit_module *jm, size_t i) {
  return jm->state_names[i].c_str();
}

fg_tensor *fg_jit_state(const fg_jit_module *jm, size_t i) { return fg::wrap(jm->state[i]); }

bool fg_jit_state_is_param(const fg_jit_module *jm, size_t i) { return jm->state_is_param[i]; }

bool fg_jit_has_method(const fg_jit_module *jm, const char *name) {
  FG_GUARD_BEGIN
  return jm->m.find_method(name).has_value();
  FG_GUARD_END_RETURN(false)
}

int fg_jit_num_args(const fg_jit_module *jm, const char *method) {
  FG_GUARD_BEGIN
  auto meth = jm->m.find_method(method);
  if (!meth) return -1;
  // The schema counts self.
  return static_cast<int>(meth->function().getSchema().arguments().size()) - 1;
  FG_GUARD_END_RETURN(-1)
}

int fg_jit_visit_modules(const fg_jit_module *jm, fg_jit_module_cb cb, void *ctx, char **err) {
  FG_GUARD_BEGIN
  for (const auto &nm : jm->m.named_modules()) {
    auto qn = nm.value.type()->name();
    std::string type = qn ? qn->name() : "Module";
    cb(ctx, nm.name.c_str(), type.c_str(), nm.value.is_training());
  }
  return 0;
  FG_GUARD_END
}

void fg_jit_train(fg_jit_module *jm, bool train) {
  FG_GUARD_BEGIN
  if (jm->m.is_training() != train) jm->m.train(train);
  FG_GUARD_END_RETURN(FG_VOID)
}

int fg_jit_call(fg_jit_module *jm, const char *method, const fg_value *const *args, size_t n,
                fg_value **out, char **err) {
  FG_GUARD_BEGIN
  auto meth = jm->m.find_method(method);
  if (!meth) throw std::runtime_error(std::string("the module has no method ") + method);
  // A forward starts a step: the previous step's output is gone (its
  // address may now hold this call's input).
  if (std::strcmp(method, "forward") == 0) jm->outputs.clear();
  std::vector<c10::IValue> in;
  const auto &params = meth->function().getSchema().arguments(); // self first
  for (size_t i = 0; i < n; i++)
    in.push_back(i + 1 < params.size() ? to_typed_ivalue(jm, args[i], params[i + 1].type())
                                       : to_call_ivalue(jm, args[i]));
  c10::IValue r = (*meth)(std::move(in));
  fg_value *v = fg::from_ivalue(r);
  if (v == nullptr) throw std::runtime_error(std::string(method) + " returned a value fulgur cannot read");
  // forward's output is passed back to loss_step and metric_step within
  // the same step, while it is alive, with its exact TorchScript type.
  if (std::strcmp(method, "forward") == 0) jm->outputs.emplace_back(v, r);
  *out = v;
  return 0;
  FG_GUARD_END
}

