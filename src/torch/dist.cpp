// torch.distributed from C: c10d's TCPStore and ProcessGroupGloo behind
// fg_dist (fulgur/dist.h). Collectives and the store only; what to reduce
// and when is the trainer's business.
#include <torch/csrc/distributed/c10d/PrefixStore.hpp>
#include <torch/csrc/distributed/c10d/ProcessGroupGloo.hpp>
#include <torch/csrc/distributed/c10d/TCPStore.hpp>

#include <chrono>
#include <thread>

#include "torch/bridge_internal.hpp"

extern "C" {
#include "fulgur/dist.h"
}

struct fg_dist {
  int rank = 0, world = 1;
  std::chrono::milliseconds timeout{0};
  c10::intrusive_ptr<c10d::TCPStore> store;
  c10::intrusive_ptr<c10d::Store> user;  // our keys, under "fulgur/"
  c10::intrusive_ptr<c10d::ProcessGroupGloo> pg;
};

namespace {

bool is_loopback(const std::string &a) {
  return a == "localhost" || a.rfind("127.", 0) == 0 || a == "::1";
}

void wait_work(const c10::intrusive_ptr<c10d::Work> &w) {
  // Gloo's own timeout (the group's Options) bounds the wait.
  w->wait();
}

// Packs tensors of one dtype into buckets of at most `cap` bytes and
// all-reduces each bucket.
void allreduce_buckets(fg_dist *d, std::vector<at::Tensor> &ts, bool avg, size_t cap) {
  size_t i = 0;
  while (i < ts.size()) {
    auto dtype = ts[i].scalar_type();
    size_t bytes = 0, j = i;
    while (j < ts.size() && ts[j].scalar_type() == dtype &&
           (j == i || bytes + (size_t)ts[j].nbytes() <= cap)) {
      bytes += (size_t)ts[j].nbytes();
      j++;
    }
    std::vector<at::Tensor> flat;
    flat.reserve(j - i);
    for (size_t k = i; k < j; k++) flat.push_back(ts[k].detach().reshape({-1}));
    std::vector<at::Tensor> bucket{at::cat(flat)};
    c10d::AllreduceOptions o;
    o.reduceOp = c10d::ReduceOp::SUM;
    wait_work(d->pg->allreduce(bucket, o));
    if (avg) bucket[0].div_(d->world);
    int64_t off = 0;
    at::NoGradGuard ng;
    for (size_t k = i; k < j; k++) {
      int64_t n = ts[k].numel();
      ts[k].copy_(bucket[0].narrow(0, off, n).view(ts[k].sizes()));
      off += n;
    }
    i = j;
  }
}

}  // namespace

extern "C" {

int fg_dist_create(const fg_dist_opts *o, fg_dist **out, char **err) {
  fg_dist *d = nullptr;
  FG_GUARD_BEGIN
  if (o->world_size < 1) throw std::runtime_error("world size must be at least 1");
  if (o->rank < 0 || o->rank >= o->world_size)
    throw std::runtime_error("rank " + std::to_string(o->rank) + " is outside 0.." +
                             std::to_string(o->world_size - 1));
  if (o->master_port < (o->rank == 0 ? 0 : 1) || o->master_port > 65535)
    throw std::runtime_error("master port " + std::to_string(o->master_port) +
                             " is outside 1..65535");
  if (!(o->timeout_s > 0)) throw std::runtime_error("timeout must be positive");
  d = new fg_dist();
  d->rank = o->rank;
  d->world = o->world_size;
  d->timeout = std::chrono::milliseconds((int64_t)(o->timeout_s * 1000.0));
  std::string addr = o->master_addr ? o->master_addr : "127.0.0.1";
  c10d::TCPStoreOptions so;
  so.port = (std::uint16_t)o->master_port;
  so.isServer = o->rank == 0;
  so.numWorkers = o->world_size;
  so.waitWorkers = false;  // the caller's on_store runs its own, clearer join
  so.timeout = d->timeout;
  try {
    d->store = c10::make_intrusive<c10d::TCPStore>(addr, so);
  } catch (const std::exception &e) {
    std::string what = fg::what(e);
    throw std::runtime_error(
        (o->rank == 0 ? "cannot start the rendezvous store on port " + std::to_string(o->master_port)
                      : "cannot reach the rendezvous store at " + addr + ":" +
                            std::to_string(o->master_port) + " within " +
                            std::to_string((long long)o->timeout_s) + " s") +
        ": " + what);
  }
  d->user = c10::make_intrusive<c10d::PrefixStore>("fulgur", d->store);
  if (o->on_store) {
    int rc = o->on_store(o->ctx, d, err);
    if (rc) {
      delete d;
      return rc;
    }
  }
  auto go = c10d::ProcessGroupGloo::Options::create(d->timeout);
  if (const char *ifname = std::getenv("GLOO_SOCKET_IFNAME"); ifname && *ifname)
    go->devices.push_back(c10d::ProcessGroupGloo::createDeviceForInterface(ifname));
  else if (is_loopback(addr))
    go->devices.push_back(c10d::ProcessGroupGloo::createDeviceForHostname("127.0.0.1"));
  else
    go->devices.push_back(c10d::ProcessGroupGloo::createDefaultDevice());
  go->threads = 1;
  auto pgstore = c10::make_intrusive<c10d::PrefixStore>("gloo", d->store);
  d->pg = c10::make_intrusive<c10d::ProcessGroupGloo>(pgstore, o->rank, o->world_size, go);
  *out = d;
  return 0;
  FG_GUARD_END_CLEANUP(delete d)
}

void fg_dist_free(fg_dist *d) {
  FG_GUARD_BEGIN
  delete d;
  FG_GUARD_END_RETURN(FG_VOID)
}

int fg_dist_rank(const fg_dist *d) {
  FG_GUARD_BEGIN
  return d->rank;
  FG_GUARD_END_RETURN(0)
}
int fg_dist_master_port(const fg_dist *d) {
  FG_GUARD_BEGIN
  return d->store ? (int)d->store->getPort() : 0;
  FG_GUARD_END_RETURN(0)
}
int fg_dist_world_size(const fg_dist *d) {
  FG_GUARD_BEGIN
  return d->world;
  FG_GUARD_END_RETURN(1)
}

int fg_dist_allreduce(fg_dist *d, fg_tensor *const *ts, size_t n, fg_dist_op op,
                      size_t bucket_bytes, char **err) {
  FG_GUARD_BEGIN
  if (d->pg == nullptr) throw std::runtime_error("the process group is not built");
  std::vector<at::Tensor> v;
  v.reserve(n);
  for (size_t i = 0; i < n; i++) v.push_back(ts[i]->t);
  allreduce_buckets(d, v, op == FG_DIST_AVG, bucket_bytes ? bucket_bytes : (size_t)25 << 20);
  return 0;
  FG_GUARD_END
}

int fg_dist_broadcast(fg_dist *d, fg_tensor *const *ts, size_t n, int root, char **err) {
  FG_GUARD_BEGIN
  if (root < 0 || root >= d->world) throw std::runtime_error("broadcast root outside the group");
  at::NoGradGuard ng;
  // One broadcast per dtype, as torch DDP coalesces its buffers: a
  // resnet's 60 BatchNorm buffers are three round trips before each
  // forward instead of sixty.
  std::vector<std::vector<size_t>> groups;
  for (size_t i = 0; i < n; i++) {
    bool placed = false;
    for (auto &g : groups)
      if (ts[g[0]]->t.scalar_type() == ts[i]->t.scalar_type()) {
        g.push_back(i);
        placed = true;
        break;
      }
    if (!placed) groups.push_back({i});
  }
  for (const auto &g : groups) {
    std::vector<at::Tensor> flat;
    for (size_t i : g) flat.push_back(ts[i]->t.detach().reshape({-1}));
    std::vector<at::Tensor> one{g.size() == 1 ? flat[0].contiguous() : torch::cat(flat)};
    c10d::BroadcastOptions o;
    o.rootRank = root;
    wait_work(d->pg->broadcast(one, o));
    if (d->rank == root) continue;
    int64_t off = 0;
    for (size_t k = 0; k < g.size(); k++) {
      at::Tensor t = ts[g[k]]->t.detach();
      int64_t len = t.numel();
      t.copy_(one[0].slice(0, off, off + len).view(t.sizes()));
      off += len;
    }
  }
  return 0;
  FG_GUARD_END
}

int fg_dist_allgather_bytes(fg_dist *d, const void *data, size_t len, char ***bufs, size_t **lens,
                            char **err) {
  FG_GUARD_BEGIN
  // Called inside trainer.inference_mode's evaluation too: the buffers
  // Gloo fills from its own thread (which has no inference mode) must be
  // normal tensors, not inference tensors.
  c10::InferenceMode not_inference(false);
  // Gloo gathers equal sizes: the lengths first, then every rank's bytes
  // padded to the longest.
  std::vector<at::Tensor> mine{torch::full({1}, (int64_t)len, at::kLong)};
  std::vector<std::vector<at::Tensor>> outs(1);
  for (int r = 0; r < d->world; r++) outs[0].push_back(torch::empty({1}, at::kLong));
  wait_work(d->pg->allgather(outs, mine));
  int64_t maxlen = 1;
  std::vector<int64_t> ls;
  for (auto &t : outs[0]) {
    ls.push_back(t.item<int64_t>());
    maxlen = std::max(maxlen, ls.back());
  }
  auto buf = torch::zeros({maxlen}, at::kByte);
  if (len) std::memcpy(buf.data_ptr(), data, len);
  std::vector<at::Tensor> in{buf};
  std::vector<std::vector<at::Tensor>> got(1);
  for (int r = 0; r < d->world; r++) got[0].push_back(torch::empty({maxlen}, at::kByte));
  wait_work(d->pg->allgather(got, in));
  char **b = (char **)calloc((size_t)d->world, sizeof *b);
  size_t *l = (size_t *)calloc((size_t)d->world, sizeof *l);
  if (b == nullptr || l == nullptr) {
    free(b);
    free(l);
    throw std::bad_alloc();
  }
  for (int r = 0; r < d->world; r++) {
    b[r] = (char *)malloc((size_t)ls[r] + 1);
    if (b[r] == nullptr) {
      for (int k = 0; k < r; k++) free(b[k]);
      free(b);
      free(l);
      throw std::bad_alloc();
    }
    std::memcpy(b[r], got[0][r].data_ptr(), (size_t)ls[r]);
    b[r][ls[r]] = '\0';
    l[r] = (size_t)ls[r];
  }
  *bufs = b;
  *lens = l;
  return 0;
  FG_GUARD_END
}

int fg_dist_barrier(fg_dist *d, char **err) {
  FG_GUARD_BEGIN
  // A tiny allreduce rather than Gloo's barrier: it names no device and
  // fails the same way as the training collectives when a peer is gone.
  std::vector<at::Tensor> one{torch::zeros({1}, at::kFloat)};
  wait_work(d->pg->allreduce(one));
  return 0;
  FG_GUARD_END
}

int fg_dist_store_set(fg_dist *d, const char *key, const void *data, size_t len, char **err) {
  FG_GUARD_BEGIN
  const uint8_t *p = (const uint8_t *)data;
  d->user->set(key, std::vector<uint8_t>(p, p + len));
  return 0;
  FG_GUARD_END
}

static void copy_out(const std::vector<uint8_t> &v, char **data, size_t *len) {
  char *b = (char *)malloc(v.size() + 1);
  if (b == nullptr) throw std::bad_alloc();
  if (!v.empty()) std::memcpy(b, v.data(), v.size());
  b[v.size()] = '\0';
  *data = b;
  if (len) *len = v.size();
}

int fg_dist_store_try_get(fg_dist *d, const char *key, double timeout_s, bool *found, char **data,
                          size_t *len, char **err) {
  FG_GUARD_BEGIN
  // Polled with check() so that "not there yet" and "the store is gone"
  // (which throws) stay apart.
  auto until = std::chrono::steady_clock::now() +
               std::chrono::milliseconds((int64_t)(timeout_s * 1000.0));
  *found = false;
  *data = nullptr;
  for (;;) {
    if (d->user->check({key})) {
      copy_out(d->user->get(key), data, len);
      *found = true;
      return 0;
    }
    if (std::chrono::steady_clock::now() >= until) return 0;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  FG_GUARD_END
}

int fg_dist_store_get(fg_dist *d, const char *key, char **data, size_t *len, char **err) {
  FG_GUARD_BEGIN
  bool found = false;
  int rc = fg_dist_store_try_get(d, key, (double)d->timeout.count() / 1000.0, &found, data, len, err);
  if (rc) return rc;
  if (!found)
    return fg_err_set(err, FG_ETORCH, "store key '%s' did not appear within %.0f s", key,
                      (double)d->timeout.count() / 1000.0);
  return 0;
  FG_GUARD_END
}

int fg_dist_store_add(fg_dist *d, const char *key, int64_t delta, int64_t *out, char **err) {
  FG_GUARD_BEGIN
  int64_t v = d->user->add(key, delta);
  if (out) *out = v;
  return 0;
  FG_GUARD_END
}

}  // extern "C"
