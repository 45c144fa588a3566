#!/usr/bin/env bash
# usage: run.sh BUILD_DIR — the data_path benchmark (see ../README.md).
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
build=$(cd "$1" && pwd)
here=$(cd "$(dirname "$0")" && pwd)
rounds=${BENCH_ROUNDS:-9}
n=${BENCH_BATCHES:-200}
fm=/usr/share/datasets/fashion-mnist
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# The same 60,000 Fashion-MNIST images as a torch.save'd dict for TensorDict.
/usr/bin/python3 - "$fm" "$tmp/fm.pt" <<'PY'
import gzip, sys, numpy as np, torch
d, out = sys.argv[1:]
x = np.frombuffer(gzip.open(f"{d}/train-images-idx3-ubyte.gz").read()[16:], np.uint8).reshape(-1, 784)
y = np.frombuffer(gzip.open(f"{d}/train-labels-idx1-ubyte.gz").read()[8:], np.uint8)
torch.save({"x": (torch.from_numpy(x.astype(np.float32)) / 255 - 0.286) / 0.353,
            "y": torch.from_numpy(y.astype(np.int64))}, out)
PY

data() {
  cat "$here/mlp.yaml"
  printf 'data:\n  class_path: fulgur.DataModule\n  init_args:\n    dataset_cfg:\n      fit: %s\n    dataloader_cfg: {batch_size: 64, num_workers: 0}\n' "$1"
}
data "{class_path: fulgur.data.IDX, init_args: {images: $fm/train-images-idx3-ubyte.gz, labels: $fm/train-labels-idx1-ubyte.gz, normalize: {mean: 0.2860, std: 0.3530}}}" >"$tmp/idx.yaml"
data "{class_path: fulgur.data.TensorDict, init_args: {path: $tmp/fm.pt}}" >"$tmp/tensordict.yaml"
data "{class_path: fulgur.data.Synthetic, init_args: {num_samples: 60000, shape: [784], num_classes: 10, seed: 1}}" >"$tmp/synthetic.yaml"
for ds in idx tensordict synthetic; do
  echo "$ds (shuffled fit loader, one intra-op thread):"
  OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 "$build/bench_data_path" "$tmp/$ds.yaml" "$rounds" "$n"
done
