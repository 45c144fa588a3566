"""The step_overhead training loop in Python with Debian's python3-torch.

The same MLP, optimizer, data and per-step loss read-back as raw_loop.cpp,
written the way a PyTorch user would write it by hand (no DataLoader object,
but the same shuffled index_select per batch that one would perform).

usage: python_loop.py STEPS [BATCH [THREADS]]
Prints the final loss, nothing else; the harness times the whole process.
"""
import sys

import torch
from torch import nn

SAMPLES, FEATURES, HIDDEN, CLASSES = 6400, 784, 256, 10


def main(argv):
    if not 2 <= len(argv) <= 4:
        sys.exit("usage: python_loop.py STEPS [BATCH [THREADS]]")
    steps = int(argv[1])
    batch = int(argv[2]) if len(argv) > 2 else 64
    threads = int(argv[3]) if len(argv) > 3 else 1
    if steps <= 0 or batch <= 0 or threads <= 0 or batch > SAMPLES:
        sys.exit("python_loop.py: bad arguments")

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    features = torch.randn(SAMPLES, FEATURES)
    labels = torch.randint(CLASSES, (SAMPLES,))

    model = nn.Sequential(nn.Linear(FEATURES, HIDDEN), nn.ReLU(),
                          nn.Linear(HIDDEN, CLASSES))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    loss_fn = nn.CrossEntropyLoss()

    per_epoch = SAMPLES // batch  # last partial batch dropped
    order = None
    loss_value = 0.0
    for step in range(steps):
        i = step % per_epoch
        if i == 0:
            order = torch.randperm(SAMPLES)
        idx = order[i * batch:(i + 1) * batch]
        x = features.index_select(0, idx)
        y = labels.index_select(0, idx)

        loss = loss_fn(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        loss_value = loss.item()
    print(f"{loss_value:.6f}")


if __name__ == "__main__":
    main(sys.argv)
