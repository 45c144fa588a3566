// The physical limit for the step_overhead benchmark: the smallest libtorch
// training loop we know how to write for the benchmark's setup (MLP
// 784-256-10 with ReLU, SGD lr 0.01 momentum 0.9, cross-entropy, synthetic
// data shuffled every epoch, the loss read back every step). fulgur runs the
// same work through its trainer; the difference is its per-step overhead.
//
// usage: bench_step_overhead_raw STEPS [BATCH [THREADS]]
// Prints the final loss, nothing else; the harness times the whole process.
#include <torch/torch.h>

#include <dlfcn.h>

#include <cstdio>
#include <cstdlib>

namespace {

constexpr int64_t kSamples = 6400;
constexpr int64_t kFeatures = 784;
constexpr int64_t kHidden = 256;
constexpr int64_t kClasses = 10;

// OpenBLAS keeps a thread pool of its own that at::set_num_threads does not
// reach; the symbol is looked up at run time because the BLAS behind libtorch
// is chosen by the system (it may not be OpenBLAS at all).
void limit_blas_threads(int threads) {
  using set_fn = void (*)(int);
  auto fn = reinterpret_cast<set_fn>(dlsym(RTLD_DEFAULT, "openblas_set_num_threads"));
  if (fn != nullptr) fn(threads);
}

long parse_arg(const char *s, const char *what) {
  char *end = nullptr;
  long v = std::strtol(s, &end, 10);
  if (end == s || *end != '\0' || v <= 0) {
    std::fprintf(stderr, "bench_step_overhead_raw: bad %s '%s'\n", what, s);
    std::exit(2);
  }
  return v;
}

}  // namespace

int main(int argc, char **argv) {
  if (argc < 2 || argc > 4) {
    std::fprintf(stderr, "usage: %s STEPS [BATCH [THREADS]]\n", argv[0]);
    return 2;
  }
  const long steps = parse_arg(argv[1], "step count");
  const int64_t batch = argc > 2 ? parse_arg(argv[2], "batch size") : 64;
  const int threads = argc > 3 ? static_cast<int>(parse_arg(argv[3], "thread count")) : 1;

  at::set_num_threads(threads);
  limit_blas_threads(threads);
  torch::manual_seed(0);

  const torch::Tensor features = torch::randn({kSamples, kFeatures});
  const torch::Tensor labels = torch::randint(kClasses, {kSamples}, torch::kLong);

  // nn::Linear only for its default initialisation; the forward pass calls
  // addmm directly, skipping the module machinery.
  torch::nn::Linear l1(kFeatures, kHidden), l2(kHidden, kClasses);
  const torch::Tensor w1 = l1->weight, b1 = l1->bias;
  const torch::Tensor w2 = l2->weight, b2 = l2->bias;
  torch::optim::SGD opt({w1, b1, w2, b2}, torch::optim::SGDOptions(0.01).momentum(0.9));

  const int64_t per_epoch = kSamples / batch;  // last partial batch dropped
  if (per_epoch == 0) {
    std::fprintf(stderr, "bench_step_overhead_raw: batch larger than the data set\n");
    return 2;
  }
  torch::Tensor order;
  double loss_value = 0.0;
  for (long step = 0; step < steps; step++) {
    const int64_t i = step % per_epoch;
    if (i == 0) order = torch::randperm(kSamples, torch::kLong);
    const torch::Tensor idx = order.slice(0, i * batch, (i + 1) * batch);
    const torch::Tensor x = features.index_select(0, idx);
    const torch::Tensor y = labels.index_select(0, idx);

    const torch::Tensor h = torch::relu(torch::addmm(b1, x, w1.t()));
    const torch::Tensor logits = torch::addmm(b2, h, w2.t());
    const torch::Tensor loss = torch::nn::functional::cross_entropy(logits, y);

    // zero_grad(set_to_none): the 1.13 C++ Optimizer::zero_grad() zeroes the
    // old gradients in place instead, which costs a kernel per parameter.
    for (const torch::Tensor &p : {w1, b1, w2, b2}) p.mutable_grad() = torch::Tensor();
    loss.backward();
    opt.step();
    loss_value = loss.item<double>();
  }
  std::printf("%.6f\n", loss_value);
  return 0;
}
