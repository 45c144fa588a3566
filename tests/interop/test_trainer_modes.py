"""The Trainer's autograd modes against python3-torch, on scripted nets:

1. detect_anomaly: a backward whose MulBackward1 gives NaN fails the fit
   naming the function, with the message torch's own anomaly mode gives
   in Python; without it the same fit runs to its end.
2. inference_mode: evaluation under torch.inference_mode (true: a net that
   zeroes inference tensors' logits has val/loss log(3)) or torch.no_grad
   (false: val/loss is the Python module's no_grad loss on the same data).
3. sync_batchnorm: in one process a warned no-op; under ddp a net with
   BatchNorm is an error naming the layer, a net without runs.
"""
import json
import math
import os
import subprocess
import tempfile

import torch
import torch.nn.functional as F

from interop import FULGUR, check, finish, write_csv

N, D, C = 32, 6, 3


class NanGrad(torch.nn.Module):
    """Finite forward; backward: sqrt'(0) is inf, times the 0.0 of h * 0.0
    is NaN in MulBackward1."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(D, 8)
        self.head = torch.nn.Linear(8, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lin(x)
        return self.head(h + torch.sqrt(h * 0.0))


class ZeroWhenInference(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(D, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.lin(x)
        if out.is_inference():
            return out * 0.0
        return out


class WithBatchNorm(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(D, 8)
        self.bn = torch.nn.BatchNorm1d(8)
        self.head = torch.nn.Linear(8, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.bn(self.lin(x)))


torch.manual_seed(3)
X = torch.randn(N, D)
Y = torch.randint(0, C, (N,))


def fulgur(*args):
    return subprocess.run([FULGUR, *args], capture_output=True, text=True)


def config(work, name, net, trainer=""):
    path = os.path.join(work, name + ".yaml")
    with open(path, "w") as f:
        f.write(f"""
seed_everything: 1
trainer:
  max_epochs: 2
  default_root_dir: {work}/{name}
  enable_progress_bar: false
  enable_model_summary: false
  num_sanity_val_steps: 0
  num_threads: 1
{trainer}
model:
  class_path: fulgur.ClassificationModule
  init_args:
    model: {{class_path: fulgur.models.TorchScript, init_args: {{path: {work}/{net}}}}}
optimizer_config:
  optimizer: {{class_path: torch.optim.SGD, init_args: {{lr: 0.1}}}}
data:
  class_path: fulgur.DataModule
  init_args:
    dataset_cfg:
      class_path: fulgur.data.CSV
      init_args: {{path: {work}/data.csv, target: label}}
    dataloader_cfg: {{batch_size: 8, shuffle: false}}
""")
    return path


with tempfile.TemporaryDirectory() as work:
    write_csv(os.path.join(work, "data.csv"), X, Y)
    # The CSV round trip is exact for float32 values printed with repr.
    torch.manual_seed(0)
    nets = {"nan.pt": NanGrad(), "inf.pt": ZeroWhenInference(), "bn.pt": WithBatchNorm()}
    for name, net in nets.items():
        torch.jit.script(net).save(os.path.join(work, name))

    # 1. detect_anomaly, and Python's message for the same backward.
    torch.autograd.set_detect_anomaly(True)
    want = None
    try:
        F.cross_entropy(torch.jit.load(os.path.join(work, "nan.pt"))(X[:8]), Y[:8]).backward()
    except RuntimeError as e:
        want = str(e).splitlines()[0]
    torch.autograd.set_detect_anomaly(False)
    check("python's anomaly mode names MulBackward1", want and "MulBackward1" in want, want)
    r = fulgur("fit", "--config", config(work, "anomaly", "nan.pt", "  detect_anomaly: true"))
    check("detect_anomaly: the fit fails", r.returncode != 0, r.stderr[-800:])
    check("detect_anomaly: the error is torch's, naming the function", want and want in r.stderr, r.stderr[-800:])
    check("detect_anomaly: at its batch", "fit epoch 0 batch 0" in r.stderr, r.stderr[-800:])
    r = fulgur("fit", "--config", config(work, "no_anomaly", "nan.pt"))
    check("without detect_anomaly the NaN fit runs on", r.returncode == 0, r.stderr[-800:])

    # 2. inference_mode, through validate (the net's saved weights).
    net = torch.jit.load(os.path.join(work, "inf.pt"))
    with torch.no_grad():
        no_grad_loss = F.cross_entropy(net(X), Y).item()
    for mode, expected in (("true", math.log(C)), ("false", no_grad_loss)):
        r = fulgur("validate", "--config", config(work, "inf_" + mode, "inf.pt", f"  inference_mode: {mode}"),
                   "--json")
        got = json.loads(r.stdout)["val/loss"] if r.returncode == 0 else None
        check(f"inference_mode {mode}: val/loss {expected:.6f}", got is not None and abs(got - expected) < 1e-5,
              f"got {got}; {r.stderr[-600:]}")

    # 3. sync_batchnorm.
    r = fulgur("fit", "--config", config(work, "sbn1", "bn.pt", "  sync_batchnorm: true"))
    check("sync_batchnorm in one process: runs", r.returncode == 0, r.stderr[-600:])
    check("sync_batchnorm in one process: warned once",
          r.stderr.count("trainer.sync_batchnorm: true has no effect in one process") == 1, r.stderr[-600:])
    r = fulgur("fit", "--config", config(work, "sbn2", "bn.pt", "  sync_batchnorm: true\n  devices: 2\n  strategy: ddp"))
    check("sync_batchnorm under ddp with BatchNorm: an error", r.returncode != 0, r.stderr[-600:])
    check("sync_batchnorm under ddp: names the layer and what to write",
          "cannot convert the model's 1 BatchNorm layer(s) (first: model.bn (BatchNorm1d))" in r.stderr
          and "write sync_batchnorm: false" in r.stderr, r.stderr[-600:])
    r = fulgur("fit", "--config", config(work, "sbn3", "inf.pt", "  sync_batchnorm: true\n  devices: 2\n  strategy: ddp"))
    check("sync_batchnorm under ddp without BatchNorm: runs", r.returncode == 0, r.stderr[-600:])
    check("sync_batchnorm under ddp without BatchNorm: says so",
          "sync_batchnorm: the model has no BatchNorm layer to convert" in r.stderr, r.stderr[-600:])

finish()
