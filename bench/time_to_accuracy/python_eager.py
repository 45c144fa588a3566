"""The anchor in PyTorch eager at its defaults, as a user would write it:
MLP 784-256-128-10, Adam, batch 64, Fashion-MNIST read from Debian's IDX
files (scaled to [0, 1] and normalized like the fulgur config), a shuffled
DataLoader; after each epoch, the accuracy on the 10,000 test images. Stops
at the target. Writes "epochs E accuracy A" to OUT.

usage: python_eager.py DATA_DIR SEED TARGET MAX_EPOCHS OUT"""
import gzip
import sys

import numpy as np
import torch
import torch.nn.functional as F

data, seed, target, max_epochs, out = (sys.argv[1], int(sys.argv[2]), float(sys.argv[3]),
                                       int(sys.argv[4]), sys.argv[5])
torch.manual_seed(seed)


def load(split):
    with gzip.open(f"{data}/{split}-images-idx3-ubyte.gz") as f:
        x = np.frombuffer(f.read()[16:], np.uint8).reshape(-1, 784)
    with gzip.open(f"{data}/{split}-labels-idx1-ubyte.gz") as f:
        y = np.frombuffer(f.read()[8:], np.uint8)
    x = (torch.from_numpy(x.astype(np.float32)) / 255.0 - 0.2860) / 0.3530
    return x, torch.from_numpy(y.astype(np.int64))


x_train, y_train = load("train")
x_test, y_test = load("t10k")
model = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 128),
                            torch.nn.ReLU(), torch.nn.Linear(128, 10))
opt = torch.optim.Adam(model.parameters())
loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x_train, y_train), batch_size=64,
                                     shuffle=True)
acc = 0.0
for epoch in range(1, max_epochs + 1):
    model.train()
    for x, y in loader:
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        acc = (model(x_test).argmax(1) == y_test).double().mean().item()
    if acc >= target:
        break
with open(out, "w") as f:
    f.write(f"epochs {epoch} accuracy {acc:.4f}\n")
