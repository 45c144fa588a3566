"""toy_project's ToyDataset (src/project/datasets/toy_dataset.py) written as
fulgur.data.TensorDict files: one torch.save'd dict per subset, with the
tensors ToyDataset draws, {"data": float32 [N, dim] ~ N(0, 1), "label":
int64 [N] in {0, 1}}, N = ToyDataset.SAMPLE_NUM[subset].

Usage: make_data.py DIR [--dim 16] [--seed 0]

Writes DIR/train.pt, DIR/valid.pt and DIR/test.pt: the subset names the
dataset config's split_info maps the splits to (fit -> train, val -> valid,
test and predict -> test). ToyDataset's third key, "index", is the sample's
position: TensorDict adds it to each batch with index_key: index.
"""
import argparse
import os

import torch

SAMPLE_NUM = {"train": 1000, "valid": 200, "test": 100}  # ToyDataset.SAMPLE_NUM


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dir")
    ap.add_argument("--dim", type=int, default=16)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    os.makedirs(a.dir, exist_ok=True)
    # ToyDataset draws from the global generator; a seed makes the files
    # reproducible.
    torch.manual_seed(a.seed)
    for subset, n in SAMPLE_NUM.items():
        tensors = {"data": torch.randn(n, a.dim), "label": torch.randint(0, 2, (n,))}
        torch.save(tensors, os.path.join(a.dir, f"{subset}.pt"))


if __name__ == "__main__":
    main()
