// Checkpoint files: fg_value <-> PyTorch's zip + pickle format.
//
// Writing uses torch::pickle_save, whose output Python's torch.load reads.
// Reading is done by a small pickle machine of our own: libtorch 1.13's
// unpickler turns collections.OrderedDict (what every Python state_dict()
// is) into None and then fails, and it rejects classes it does not know
// (Lightning's AttributeDict in hyper_parameters). This reader understands
// the opcodes torch.save emits (protocols 2 to 4), rebuilds tensors from
// the archive's storages, reads OrderedDict as a dict, and keeps unknown
// objects as their state (dicts) or None instead of failing.
#include <sys/types.h>

#include <caffe2/serialize/in_memory_adapter.h>
#include <caffe2/serialize/inline_container.h>
#include <torch/serialize.h>

#include <map>
#include <memory>
#include <unordered_map>
#include <variant>

#include "torch/bridge_internal.hpp"

namespace fg {

c10::IValue to_ivalue(const fg_value *v, const char *parent_key) {
  switch (fg_value_kind_of(v)) {
    case FG_VALUE_NONE: return c10::IValue();
    case FG_VALUE_BOOL: return c10::IValue(fg_value_as_bool(v));
    case FG_VALUE_INT: return c10::IValue(fg_value_as_int(v));
    case FG_VALUE_DOUBLE: return c10::IValue(fg_value_as_double(v));
    case FG_VALUE_STRING: return c10::IValue(std::string(fg_value_as_string(v)));
    case FG_VALUE_TENSOR: return c10::IValue(fg_value_as_tensor(v)->t.detach());
    case FG_VALUE_LIST: {
      c10::impl::GenericList l(c10::AnyType::get());
      for (size_t i = 0; i < fg_value_len(v); i++) l.push_back(to_ivalue(fg_value_list_at(v, i), nullptr));
      return c10::IValue(l);
    }
    case FG_VALUE_DICT: {
      // An optimizer's "state" is keyed by parameter index: Python's
      // optimizer.load_state_dict needs int keys there.
      bool int_keys = parent_key && std::strcmp(parent_key, "state") == 0;
      for (size_t i = 0; int_keys && i < fg_value_len(v); i++) {
        const char *k = fg_value_dict_key_at(v, i);
        int_keys = *k && std::strspn(k, "0123456789") == std::strlen(k);
      }
      if (int_keys) {
        c10::impl::GenericDict d(c10::IntType::get(), c10::AnyType::get());
        for (size_t i = 0; i < fg_value_len(v); i++)
          d.insert(c10::IValue(static_cast<int64_t>(std::stoll(fg_value_dict_key_at(v, i)))),
                   to_ivalue(fg_value_dict_value_at(v, i), fg_value_dict_key_at(v, i)));
        return c10::IValue(d);
      }
      c10::impl::GenericDict d(c10::StringType::get(), c10::AnyType::get());
      for (size_t i = 0; i < fg_value_len(v); i++)
        d.insert(c10::IValue(std::string(fg_value_dict_key_at(v, i))),
                 to_ivalue(fg_value_dict_value_at(v, i), fg_value_dict_key_at(v, i)));
      return c10::IValue(d);
    }
  }
  return c10::IValue();
}

}  // namespace fg

namespace {

struct PObj;
using P = std::shared_ptr<PObj>;

// One value on the pickle machine's stack.
struct PObj {
  enum Kind { NONE, BOOL, INT, FLOAT, STR, BYTES, TENSOR, LIST, TUPLE, DICT, GLOBAL, STORAGE, OPAQUE, MARK } kind;
  bool b = false;
  int64_t i = 0;
  double d = 0;
  std::string s;                          // STR, BYTES, GLOBAL name, STORAGE key
  at::Tensor t;                           // TENSOR, STORAGE (flat)
  std::vector<P> items;                   // LIST, TUPLE
  std::vector<std::pair<P, P>> entries;   // DICT
  explicit PObj(Kind k) : kind(k) {}
};

P make(PObj::Kind k) { return std::make_shared<PObj>(k); }

at::ScalarType storage_dtype(const std::string &name) {
  static const std::map<std::string, at::ScalarType> m = {
      {"FloatStorage", at::kFloat}, {"DoubleStorage", at::kDouble}, {"LongStorage", at::kLong},
      {"IntStorage", at::kInt},     {"ShortStorage", at::kShort},   {"CharStorage", at::kChar},
      {"ByteStorage", at::kByte},   {"BoolStorage", at::kBool},     {"HalfStorage", at::kHalf},
      {"BFloat16Storage", at::kBFloat16}};
  auto dot = name.rfind('.');
  auto it = m.find(dot == std::string::npos ? name : name.substr(dot + 1));
  if (it == m.end()) throw std::runtime_error("unsupported storage type " + name);
  return it->second;
}

class Reader {
 public:
  Reader(const char *data, size_t len, caffe2::serialize::PyTorchStreamReader *zip)
      : p_(data), end_(data + len), zip_(zip) {}

  P run() {
    for (;;) {
      uint8_t op = u8();
      switch (op) {
        case 0x80: u8(); break;                        // PROTO
        case 0x95: take(8); break;                     // FRAME
        case '.': return pop();                        // STOP
        case '(': stack_.push_back(make(PObj::MARK)); break;
        case ')': stack_.push_back(make(PObj::TUPLE)); break;
        case ']': stack_.push_back(make(PObj::LIST)); break;
        case '}': stack_.push_back(make(PObj::DICT)); break;
        case 'N': stack_.push_back(make(PObj::NONE)); break;
        case 0x88: case 0x89: { auto v = make(PObj::BOOL); v->b = op == 0x88; stack_.push_back(v); break; }
        case 'J': push_int((int32_t)le(4)); break;
        case 'K': push_int((int64_t)le(1)); break;
        case 'M': push_int((int64_t)le(2)); break;
        case 0x8a: {                                   // LONG1
          size_t n = u8();
          const char *b = take(n);
          int64_t v = 0;
          for (size_t k = 0; k < n && k < 8; k++) v |= (int64_t)(uint8_t)b[k] << (8 * k);
          if (n > 0 && n < 8 && ((uint8_t)b[n - 1] & 0x80)) v -= (int64_t)1 << (8 * n);
          push_int(v);
          break;
        }
        case 'G': {                                    // BINFLOAT, big-endian
          const char *b = take(8);
          uint64_t bits = 0;
          for (int k = 0; k < 8; k++) bits = (bits << 8) | (uint8_t)b[k];
          auto v = make(PObj::FLOAT);
          std::memcpy(&v->d, &bits, 8);
          stack_.push_back(v);
          break;
        }
        case 'X': push_str(PObj::STR, le(4)); break;
        case 0x8c: push_str(PObj::STR, le(1)); break;
        case 0x8d: push_str(PObj::STR, le(8)); break;
        case 'U': case 'C': push_str(PObj::BYTES, le(1)); break;
        case 'T': case 'B': push_str(PObj::BYTES, le(4)); break;
        case 'c': {                                    // GLOBAL module\nname\n
          std::string mod = line(), name = line();
          auto g = make(PObj::GLOBAL);
          g->s = mod + "." + name;
          stack_.push_back(g);
          break;
        }
        case 0x93: {                                   // STACK_GLOBAL
          P name = pop(), mod = pop();
          auto g = make(PObj::GLOBAL);
          g->s = mod->s + "." + name->s;
          stack_.push_back(g);
          break;
        }
        case 'q': memo_[(uint32_t)le(1)] = top(); break;
        case 'r': memo_[(uint32_t)le(4)] = top(); break;
        case 0x94: memo_[(uint32_t)memo_.size()] = top(); break;
        case 'h': stack_.push_back(memo(le(1))); break;
        case 'j': stack_.push_back(memo(le(4))); break;
        case 't': { auto v = make(PObj::TUPLE); v->items = pop_mark(); stack_.push_back(v); break; }
        case 'l': { auto v = make(PObj::LIST); v->items = pop_mark(); stack_.push_back(v); break; }
        case 'd': {
          auto items = pop_mark();
          auto v = make(PObj::DICT);
          for (size_t k = 0; k + 1 < items.size(); k += 2) v->entries.emplace_back(items[k], items[k + 1]);
          stack_.push_back(v);
          break;
        }
        case 0x85: case 0x86: case 0x87: {
          size_t n = op - 0x84;
          auto v = make(PObj::TUPLE);
          if (stack_.size() < n) throw std::runtime_error("pickle: stack underflow");
          v->items.assign(stack_.end() - (long)n, stack_.end());
          stack_.resize(stack_.size() - n);
          stack_.push_back(v);
          break;
        }
        case 'a': { P x = pop(); top()->items.push_back(x); break; }
        case 'e': { auto xs = pop_mark(); auto l = top(); l->items.insert(l->items.end(), xs.begin(), xs.end()); break; }
        case 's': { P v = pop(), k = pop(); set_items(top(), {k, v}); break; }
        case 'u': { auto xs = pop_mark(); set_items(top(), xs); break; }
        case '0': pop(); break;
        case '1': pop_mark(); break;
        case '2': stack_.push_back(top()); break;
        case 'Q': stack_.push_back(persistent(pop())); break;
        case 'R': { P args = pop(), fn = pop(); stack_.push_back(reduce(fn, args)); break; }
        case 0x81: { pop(); pop(); stack_.push_back(make(PObj::OPAQUE)); break; }  // NEWOBJ
        case 'b': {                                    // BUILD: obj.__setstate__(state)
          P state = pop();
          P obj = top();
          if ((obj->kind == PObj::OPAQUE || obj->kind == PObj::DICT) && state->kind == PObj::DICT) {
            obj->kind = PObj::DICT;
            obj->entries.insert(obj->entries.end(), state->entries.begin(), state->entries.end());
          }
          break;
        }
        default: {
          char buf[64];
          snprintf(buf, sizeof buf, "pickle: unsupported opcode 0x%02x", op);
          throw std::runtime_error(buf);
        }
      }
    }
  }

 private:
  const char *p_, *end_;
  caffe2::serialize::PyTorchStreamReader *zip_;
  std::vector<P> stack_;
  std::unordered_map<uint32_t, P> memo_;
  std::unordered_map<std::string, at::Tensor> storages_;

  const char *take(size_t n) {
    if ((size_t)(end_ - p_) < n) throw std::runtime_error("pickle: truncated data");
    const char *b = p_;
    p_ += n;
    return b;
  }
  uint8_t u8() { return (uint8_t)*take(1); }
  uint64_t le(size_t n) {
    const char *b = take(n);
    uint64_t v = 0;
    for (size_t k = 0; k < n; k++) v |= (uint64_t)(uint8_t)b[k] << (8 * k);
    return v;
  }
  std::string line() {
    const char *nl = (const char *)memchr(p_, '\n', (size_t)(end_ - p_));
    if (!nl) throw std::runtime_error("pickle: truncated data");
    std::string s(p_, nl);
    p_ = nl + 1;
    return s;
  }
  void push_int(int64_t v) { auto o = make(PObj::INT); o->i = v; stack_.push_back(o); }
  void push_str(PObj::Kind k, uint64_t n) { auto o = make(k); const char *b = take(n); o->s.assign(b, n); stack_.push_back(o); }
  P pop() {
    if (stack_.empty()) throw std::runtime_error("pickle: stack underflow");
    P v = stack_.back();
    stack_.pop_back();
    return v;
  }
  P top() {
    if (stack_.empty()) throw std::runtime_error("pickle: stack underflow");
    return stack_.back();
  }
  P memo(uint64_t k) {
    auto it = memo_.find((uint32_t)k);
    if (it == memo_.end()) throw std::runtime_error("pickle: bad memo reference");
    return it->second;
  }
  std::vector<P> pop_mark() {
    for (size_t k = stack_.size(); k-- > 0;) {
      if (stack_[k]->kind != PObj::MARK) continue;
      std::vector<P> xs(stack_.begin() + (long)k + 1, stack_.end());
      stack_.resize(k);
      return xs;
    }
    throw std::runtime_error("pickle: missing mark");
  }
  static void set_items(const P &d, const std::vector<P> &kv) {
    if (d->kind == PObj::OPAQUE) d->kind = PObj::DICT;  // a dict subclass
    if (d->kind != PObj::DICT) throw std::runtime_error("pickle: SETITEMS on a non-dict");
    for (size_t k = 0; k + 1 < kv.size(); k += 2) {
      bool replaced = false;
      for (auto &e : d->entries)
        if (same_key(e.first, kv[k])) { e.second = kv[k + 1]; replaced = true; break; }
      if (!replaced) d->entries.emplace_back(kv[k], kv[k + 1]);
    }
  }
  static bool same_key(const P &a, const P &b) {
    if (a->kind != b->kind) return false;
    if (a->kind == PObj::STR) return a->s == b->s;
    if (a->kind == PObj::INT) return a->i == b->i;
    return a.get() == b.get();
  }

  // ('storage', storage_type, key, location, numel)
  P persistent(const P &pid) {
    if (pid->kind != PObj::TUPLE || pid->items.size() < 5 || pid->items[0]->s != "storage")
      throw std::runtime_error("pickle: unsupported persistent id");
    if (!zip_) throw std::runtime_error("pickle: tensor data outside an archive");
    const std::string &key = pid->items[2]->s;
    auto dtype = storage_dtype(pid->items[1]->s);
    auto it = storages_.find(key);
    if (it == storages_.end()) {
      auto rec = zip_->getRecord("data/" + key);
      size_t bytes = std::get<1>(rec);
      int64_t n = (int64_t)(bytes / c10::elementSize(dtype));
      at::Tensor t = torch::empty({n}, at::TensorOptions().dtype(dtype));
      if (bytes) std::memcpy(t.data_ptr(), std::get<0>(rec).get(), (size_t)n * c10::elementSize(dtype));
      it = storages_.emplace(key, t).first;
    }
    auto s = make(PObj::STORAGE);
    s->t = it->second;
    return s;
  }

  static std::vector<int64_t> ints(const P &tup) {
    std::vector<int64_t> v;
    for (auto &x : tup->items) v.push_back(x->i);
    return v;
  }

  P reduce(const P &fn, const P &args) {
    const std::string name = fn->kind == PObj::GLOBAL ? fn->s : "";
    auto arg = [&](size_t k) -> P {
      if (args->items.size() <= k) throw std::runtime_error("pickle: " + name + ": missing argument");
      return args->items[k];
    };
    if (name == "collections.OrderedDict" || name == "builtins.dict") {
      auto d = make(PObj::DICT);
      if (!args->items.empty() && args->items[0]->kind == PObj::LIST)
        for (auto &pair : args->items[0]->items)
          if (pair->items.size() == 2) d->entries.emplace_back(pair->items[0], pair->items[1]);
      return d;
    }
    if (name == "torch._utils._rebuild_tensor_v2" || name == "torch._utils._rebuild_tensor") {
      P st = arg(0);
      if (st->kind != PObj::STORAGE) throw std::runtime_error("pickle: tensor without storage");
      auto t = make(PObj::TENSOR);
      t->t = st->t.as_strided(ints(arg(2)), ints(arg(3)), arg(1)->i);
      return t;
    }
    if (name == "torch._utils._rebuild_parameter" || name == "torch.jit._pickle.restore_type_tag" ||
        name.rfind("torch.jit._pickle.build_", 0) == 0)
      return arg(0);
    if (name == "torch.device") {
      auto s = make(PObj::STR);
      s->s = arg(0)->s;
      return s;
    }
    // Anything else (a class we do not model): kept opaque; SETITEMS or
    // BUILD may still turn it into a dict.
    return make(PObj::OPAQUE);
  }
};

std::string key_string(const P &k) {
  switch (k->kind) {
    case PObj::STR: return k->s;
    case PObj::INT: return std::to_string(k->i);
    case PObj::FLOAT: return std::to_string(k->d);
    case PObj::BOOL: return k->b ? "True" : "False";
    default: return "?";
  }
}

fg_value *to_value(const P &o) {
  switch (o->kind) {
    case PObj::BOOL: return fg_value_bool(o->b);
    case PObj::INT: return fg_value_int(o->i);
    case PObj::FLOAT: return fg_value_double(o->d);
    case PObj::STR: return fg_value_string(o->s.c_str());
    case PObj::TENSOR: return fg_value_tensor(fg::wrap(o->t));
    case PObj::LIST:
    case PObj::TUPLE: {
      fg_value *l = fg_value_list();
      for (auto &x : o->items) fg_value_list_append(l, to_value(x));
      return l;
    }
    case PObj::DICT: {
      fg_value *d = fg_value_dict();
      for (auto &e : o->entries) fg_value_dict_set(d, key_string(e.first).c_str(), to_value(e.second));
      return d;
    }
    default: return fg_value_none();
  }
}

}  // namespace

extern "C" {

int fg_value_pickle(const fg_value *v, char **buf, size_t *len, char **err) {
  FG_GUARD_BEGIN
  std::vector<char> data = torch::pickle_save(fg::to_ivalue(v, nullptr));
  char *b = (char *)malloc(data.size() ? data.size() : 1);
  if (!b) throw std::runtime_error("out of memory");
  std::memcpy(b, data.data(), data.size());
  *buf = b;
  *len = data.size();
  return 0;
  FG_GUARD_END
}

int fg_value_unpickle(const char *buf, size_t len, fg_value **out, char **err) {
  FG_GUARD_BEGIN
  if (len < 4 || std::memcmp(buf, "PK\x03\x04", 4) != 0)
    throw std::runtime_error("not a PyTorch zip archive (files from torch.save with "
                             "_use_new_zipfile_serialization=False are not supported)");
  caffe2::serialize::PyTorchStreamReader zip(
      std::make_unique<caffe2::serialize::MemoryReadAdapter>(buf, (off_t)len));
  auto rec = zip.getRecord("data.pkl");
  Reader r((const char *)std::get<0>(rec).get(), std::get<1>(rec), &zip);
  *out = to_value(r.run());
  return 0;
  FG_GUARD_END
}

}  // extern "C"
