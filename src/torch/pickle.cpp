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
#include <caffe2/serialize/versions.h>
#include <torch/serialize.h>

#include <map>
#include <memory>
#include <unordered_map>
#include <variant>

#include "torch/bridge_internal.hpp"
#include "torch/ckpt_zip.h"
#include "util/limits.h"

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

// The pickle machine's objects are owned by the Reader's arena and point
// at each other with plain pointers: a pickle can make cycles (a list
// appended to itself) and chains deeper than the C stack, which shared
// pointers would leak or free recursively. The arena frees them flat.
struct PObj;
using P = PObj *;

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
  // SETITEMS' index of entries[0, indexed) by key (see key_id), so a dict
  // of many keys is not built in quadratic time.
  std::unordered_map<std::string, size_t> index;
  size_t indexed = 0;
  explicit PObj(Kind k) : kind(k) {}
};

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

std::runtime_error limit(const char *what, size_t n, const char *unit) {
  return std::runtime_error(std::string("pickle: ") + what + " (the limit is " + std::to_string(n) +
                            " " + unit + ")");
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
          uint64_t v = 0;
          for (size_t k = 0; k < n && k < 8; k++) v |= (uint64_t)(uint8_t)b[k] << (8 * k);
          if (n > 0 && n < 8 && ((uint8_t)b[n - 1] & 0x80)) v -= (uint64_t)1 << (8 * n);
          push_int((int64_t)v);
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
        case 'q': memo_put((uint32_t)le(1)); break;
        case 'r': memo_put((uint32_t)le(4)); break;
        case 0x94: memo_put((uint32_t)memo_.size()); break;
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
        case 'a': { P x = pop(); slots(1); top()->items.push_back(x); break; }
        case 'e': {
          auto xs = pop_mark();
          auto l = top();
          slots(xs.size());
          l->items.insert(l->items.end(), xs.begin(), xs.end());
          break;
        }
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
            // A copy first: state may be obj itself.
            auto add = state->entries;
            slots(add.size());
            obj->entries.insert(obj->entries.end(), add.begin(), add.end());
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
  std::vector<std::unique_ptr<PObj>> arena_;
  std::vector<P> stack_;
  std::unordered_map<uint32_t, P> memo_;
  std::unordered_map<std::string, at::Tensor> storages_;
  size_t slots_ = 0;  // items and entries added to existing containers

  P make(PObj::Kind k) {
    arena_.push_back(std::make_unique<PObj>(k));
    return arena_.back().get();
  }
  // Each opcode makes at most one object, so objects are bounded by the
  // pickle's length; what copies many (EXTEND, BUILD, SETITEMS) counts
  // here, or a few bytes could double a dict until memory runs out.
  void slots(size_t n) {
    if (n > FG_PICKLE_MAX_VALUES - slots_)
      throw limit("containers hold too many items", FG_PICKLE_MAX_VALUES, "items");
    slots_ += n;
  }
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
  void push_str(PObj::Kind k, uint64_t n) {
    const char *b = take(n);  // checked against the data before allocating
    auto o = make(k);
    o->s.assign(b, n);
    stack_.push_back(o);
  }
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
  void memo_put(uint32_t k) {
    P v = top();
    if (memo_.size() >= FG_PICKLE_MAX_MEMO && memo_.find(k) == memo_.end())
      throw limit("the memo holds too many objects", FG_PICKLE_MAX_MEMO, "entries");
    memo_[k] = v;
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
  // What makes two keys the same key: equal strings or ints, else the
  // same object.
  static std::string key_id(const P &k) {
    if (k->kind == PObj::STR) return "s" + k->s;
    if (k->kind == PObj::INT) return "i" + std::to_string(k->i);
    return "p" + std::to_string((uintptr_t)k);
  }
  void set_items(const P &d, const std::vector<P> &kv) {
    if (d->kind == PObj::OPAQUE) d->kind = PObj::DICT;  // a dict subclass
    if (d->kind != PObj::DICT) throw std::runtime_error("pickle: SETITEMS on a non-dict");
    slots(kv.size() / 2);
    // Entries other opcodes added since the last SETITEMS join the index
    // (the first of equal keys is the one SETITEMS replaces).
    for (; d->indexed < d->entries.size(); d->indexed++)
      d->index.emplace(key_id(d->entries[d->indexed].first), d->indexed);
    for (size_t k = 0; k + 1 < kv.size(); k += 2) {
      auto got = d->index.emplace(key_id(kv[k]), d->entries.size());
      if (!got.second) {
        d->entries[got.first->second].second = kv[k + 1];
        continue;
      }
      d->entries.emplace_back(kv[k], kv[k + 1]);
      d->indexed++;
    }
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
      // The record's size was checked against the file's before libtorch's
      // reader was opened (fg__ckpt_zip_check), so this allocates no more
      // than the file holds.
      auto rec = zip_->getRecord("data/" + key);
      size_t bytes = std::get<1>(rec);
      int64_t n = (int64_t)(bytes / c10::elementSize(dtype));
      const P &numel = pid->items[4];
      if (numel->kind == PObj::INT && (numel->i < 0 || numel->i > n))
        throw std::runtime_error("pickle: storage '" + key + "' declares " +
                                 std::to_string(numel->i) + " elements but its record holds " +
                                 std::to_string(n));
      at::Tensor t = torch::empty({n}, at::TensorOptions().dtype(dtype));
      if (bytes) std::memcpy(t.data_ptr(), std::get<0>(rec).get(), (size_t)n * c10::elementSize(dtype));
      it = storages_.emplace(key, t).first;
    }
    auto s = make(PObj::STORAGE);
    s->t = it->second;
    return s;
  }

  static std::vector<int64_t> ints(const P &tup, const char *what) {
    if (tup->kind != PObj::TUPLE && tup->kind != PObj::LIST)
      throw std::runtime_error(std::string("pickle: a tensor's ") + what + " is not a tuple");
    std::vector<int64_t> v;
    for (auto &x : tup->items) {
      if (x->kind != PObj::INT || x->i < 0)
        throw std::runtime_error(std::string("pickle: a tensor's ") + what +
                                 " holds something other than a non-negative int");
      v.push_back(x->i);
    }
    return v;
  }

  // A tensor's view must lie inside its storage: the last element it
  // reaches (offset + sum of (size-1)*stride) and its element count are
  // checked without overflow before libtorch is asked for the view.
  static at::Tensor view(const at::Tensor &storage, const std::vector<int64_t> &sizes,
                         const std::vector<int64_t> &strides, int64_t offset) {
    if (sizes.size() != strides.size())
      throw std::runtime_error("pickle: a tensor has " + std::to_string(sizes.size()) +
                               " sizes but " + std::to_string(strides.size()) + " strides");
    if (sizes.size() > 64) throw std::runtime_error("pickle: a tensor has more than 64 dimensions");
    if (offset < 0) throw std::runtime_error("pickle: a tensor's storage offset is negative");
    uint64_t last = (uint64_t)offset, numel = 1;
    bool empty = false;
    for (size_t k = 0; k < sizes.size(); k++) {
      if (sizes[k] == 0) empty = true;
      uint64_t reach;
      if (sizes[k] > 0 && (__builtin_mul_overflow((uint64_t)(sizes[k] - 1), (uint64_t)strides[k], &reach) ||
                           __builtin_add_overflow(last, reach, &last) ||
                           __builtin_mul_overflow(numel, (uint64_t)sizes[k], &numel)))
        throw std::runtime_error("pickle: a tensor's sizes overflow");
    }
    uint64_t have = (uint64_t)storage.numel();
    if (!empty && last >= have)
      throw std::runtime_error("pickle: a tensor reaches element " + std::to_string(last) +
                               " of a storage of " + std::to_string(have));
    if (empty && (uint64_t)offset > have)
      throw std::runtime_error("pickle: a tensor's storage offset is past its storage");
    // Stride-0 views could make a file-sized storage into a tensor of any
    // size, which whoever copies it would allocate: a tensor has no more
    // elements than its storage, as everything torch.save writes from a
    // state_dict does.
    if (numel > have)
      throw std::runtime_error("pickle: a tensor of " + std::to_string(numel) +
                               " elements views a storage of " + std::to_string(have));
    return storage.as_strided(sizes, strides, offset);
  }

  P reduce(const P &fn, const P &args) {
    const std::string name = fn->kind == PObj::GLOBAL ? fn->s : "";
    auto arg = [&](size_t k) -> P {
      if (args->items.size() <= k) throw std::runtime_error("pickle: " + name + ": missing argument");
      return args->items[k];
    };
    if (name == "collections.OrderedDict" || name == "builtins.dict") {
      auto d = make(PObj::DICT);
      if (!args->items.empty() && args->items[0]->kind == PObj::LIST) {
        slots(args->items[0]->items.size());
        for (auto &pair : args->items[0]->items)
          if (pair->items.size() == 2) d->entries.emplace_back(pair->items[0], pair->items[1]);
      }
      return d;
    }
    if (name == "torch._utils._rebuild_tensor_v2" || name == "torch._utils._rebuild_tensor") {
      P st = arg(0);
      if (st->kind != PObj::STORAGE) throw std::runtime_error("pickle: tensor without storage");
      if (arg(1)->kind != PObj::INT) throw std::runtime_error("pickle: a tensor's storage offset is not an int");
      auto t = make(PObj::TENSOR);
      t->t = view(st->t, ints(arg(2), "size"), ints(arg(3), "stride"), arg(1)->i);
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

// Checks, before anything is converted, that the object tree is no deeper
// than FG_PICKLE_MAX_DEPTH (a cycle is infinitely deep) and makes no more
// than FG_PICKLE_MAX_VALUES values (an object referenced from many places
// becomes one value per place), so to_value cannot fail half-way.
void measure(const P &o, size_t depth, size_t *values) {
  if (++*values > FG_PICKLE_MAX_VALUES)
    throw limit("the data expands to too many values (an object referenced too often?)",
                FG_PICKLE_MAX_VALUES, "values");
  if (o->kind != PObj::LIST && o->kind != PObj::TUPLE && o->kind != PObj::DICT) return;
  if (depth >= FG_PICKLE_MAX_DEPTH)
    throw limit("lists and dicts nested too deep (or inside themselves)", FG_PICKLE_MAX_DEPTH,
                "levels");
  for (auto &x : o->items) measure(x, depth + 1, values);
  for (auto &e : o->entries) measure(e.second, depth + 1, values);
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
  // libtorch's reader allocates a record's declared size before reading
  // it: every record is checked against the file first.
  char *why = nullptr;
  const uint64_t versions[2] = {caffe2::serialize::kMinSupportedFileFormatVersion,
                                caffe2::serialize::kMaxSupportedFileFormatVersion};
  if (fg__ckpt_zip_check(buf, len, versions, &why) != 0) {
    std::string msg = why ? why : "not a valid zip archive";
    free(why);
    throw std::runtime_error(msg);
  }
  caffe2::serialize::PyTorchStreamReader zip(
      std::make_unique<caffe2::serialize::MemoryReadAdapter>(buf, (off_t)len));
  auto rec = zip.getRecord("data.pkl");
  Reader r((const char *)std::get<0>(rec).get(), std::get<1>(rec), &zip);
  P root = r.run();
  size_t values = 0;
  measure(root, 0, &values);
  *out = to_value(root);
  return 0;
  FG_GUARD_END
}

}  // extern "C"
