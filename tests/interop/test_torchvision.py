"""torchvision models, scripted in Python, train in fulgur as in PyTorch.

resnet18 (BatchNorm, residual blocks; conv1 made 1-channel) and
mobilenet_v3_small (hardswish, squeeze-excitation, BatchNorm, Dropout),
scripted with torch.jit.script, trained for a few steps by `fulgur fit` on
Fashion-MNIST images (shuffle off, sanity check and a validation on) and
by a python3-torch eager loop from the same initial state over the same
batches with the same generator:
- every step's loss and the final parameters and buffers agree to 1e-4;
- last.ckpt loads with load_state_dict(strict=True) into the eager model;
- Python's eval-mode forward equals what `fulgur predict` wrote.
"""
import csv
import gzip
import os
import subprocess
import tempfile

import numpy as np
import torch
import torch.nn.functional as F
import torchvision

from interop import FULGUR, check, finish

DATA = "/usr/share/datasets/fashion-mnist"
BATCH, STEPS, LR, SEED, MEAN, STD = 16, 3, 0.05, 11, 0.2860, 0.3530
N = BATCH * STEPS


class Images(torch.nn.Module):
    """forward(x) -> logits for a ClassificationModule: IDX batches are
    [B, 28, 28]; torchvision wants [B, C, H, W]."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x.reshape(-1, 1, 28, 28))


def resnet18():
    net = torchvision.models.resnet18(num_classes=10)
    net.conv1 = torch.nn.Conv2d(1, 64, kernel_size=7, stride=2, padding=3, bias=False)
    return Images(net)


def mobilenet_v3_small():
    net = torchvision.models.mobilenet_v3_small(num_classes=10)
    first = net.features[0][0]
    net.features[0][0] = torch.nn.Conv2d(1, first.out_channels, first.kernel_size, first.stride,
                                         first.padding, bias=False)
    return Images(net)


def read_idx(path, n):
    raw = gzip.open(path).read()
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i:8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * ndim).reshape(dims)[:n]


# fulgur.data.IDX's normalization: ((v / 255) - mean) / std in double, as float32.
lut = ((np.arange(256) / 255.0 - MEAN) / STD).astype(np.float32)
X = torch.from_numpy(lut[read_idx(f"{DATA}/train-images-idx3-ubyte.gz", N)])
Y = torch.from_numpy(read_idx(f"{DATA}/train-labels-idx1-ubyte.gz", N).astype(np.int64))


def config(work, name):
    path = os.path.join(work, name + ".yaml")
    with open(path, "w") as f:
        f.write(f"""
seed_everything: {SEED}
trainer:
  max_epochs: 1
  default_root_dir: {work}/{name}
  enable_progress_bar: false
  num_sanity_val_steps: 1
  limit_val_batches: 1
  log_every_n_steps: 1
  num_threads: 1
model:
  class_path: fulgur.ClassificationModule
  init_args:
    model: {{class_path: fulgur.models.TorchScript, init_args: {{path: {work}/{name}.pt}}}}
    predict_tasks: [logits]
    predict_path: {work}/{name}/pred
optimizer_config:
  optimizer: {{class_path: torch.optim.SGD, init_args: {{lr: {LR}, momentum: 0.9}}}}
data:
  class_path: fulgur.DataModule
  init_args:
    dataset_cfg:
      class_path: fulgur.data.IDX
      init_args:
        images: {DATA}/train-images-idx3-ubyte.gz
        labels: {DATA}/train-labels-idx1-ubyte.gz
        normalize: {{mean: {MEAN}, std: {STD}}}
        subset: [0, {N}]
    dataloader_cfg: {{batch_size: {BATCH}, shuffle: false}}
""")
    return path


def python_fit(net):
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9)
    torch.manual_seed(SEED)
    net.train()
    losses = []
    for s in range(0, N, BATCH):
        opt.zero_grad()
        loss = F.cross_entropy(net(X[s:s + BATCH]), Y[s:s + BATCH])
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


torch.set_num_threads(1)
with tempfile.TemporaryDirectory() as work:
    for name, make in (("resnet18", resnet18), ("mobilenet_v3_small", mobilenet_v3_small)):
        torch.manual_seed(0)
        eager = make()
        torch.jit.script(eager).save(os.path.join(work, name + ".pt"))
        r = subprocess.run([FULGUR, "fit", "--config", config(work, name)], capture_output=True, text=True)
        check(f"{name}: fit", r.returncode == 0, r.stderr[-2000:])
        if r.returncode != 0:
            continue
        want = python_fit(eager)
        rows = list(csv.DictReader(open(os.path.join(work, name, "version_0", "metrics.csv"))))
        got = [float(row["fit/loss"]) for row in rows if row.get("fit/loss")]
        check(f"{name}: per-step losses equal python3-torch eager's to 1e-4 ({got} vs {want})",
              len(got) == STEPS and all(abs(a - b) <= 1e-4 for a, b in zip(got, want)))
        ckpt = os.path.join(work, name, "version_0", "checkpoints", "last.ckpt")
        sd = {k[len("model."):]: v for k, v in torch.load(ckpt)["state_dict"].items()}
        ref = eager.state_dict()
        check(f"{name}: the state_dict has the eager model's keys in order "
              f"({len(ref)}: parameters and buffers)", list(sd) == list(ref),
              f"{len(sd)} keys vs {len(ref)}")
        if list(sd) == list(ref):
            diff = max((sd[k].double() - ref[k].double()).abs().max().item() for k in ref)
            check(f"{name}: final parameters and buffers equal eager's to 1e-4 (max diff {diff:.1e})",
                  diff <= 1e-4)
        fresh = make()
        res = fresh.load_state_dict(sd, strict=True)
        check(f"{name}: the checkpoint loads strictly into the eager model",
              not res.missing_keys and not res.unexpected_keys)
        r = subprocess.run([FULGUR, "predict", "--config", config(work, name), "--ckpt_path", ckpt],
                           capture_output=True, text=True)
        check(f"{name}: predict from the checkpoint", r.returncode == 0, r.stderr[-2000:])
        if r.returncode == 0:
            pred = torch.cat(torch.load(os.path.join(work, name, "pred", "logits", "predictions.pt")))
            fresh.eval()
            with torch.no_grad():
                logits = fresh(X)
            diff = (pred - logits).abs().max().item()
            check(f"{name}: Python's eval-mode forward equals fulgur predict's logits (max diff {diff:.1e})",
                  pred.shape == logits.shape and diff <= 1e-4)

finish()
