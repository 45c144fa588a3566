"""Checkpoints cross between fulgur and Python's torch both ways.

1. A checkpoint fulgur writes is read by torch.load, has Lightning's keys,
   and its state_dict loads into the equivalent torch.nn MLP; that module's
   loss on a CSV dataset equals fulgur's test loss on the same file.
2. A Lightning-style checkpoint written by torch.save in Python (state_dict
   an OrderedDict, as every state_dict() is) is evaluated by `fulgur test`,
   and fulgur's loss and accuracy equal Python's.
"""
import collections
import json
import os
import subprocess
import sys
import tempfile

import torch

from interop import FULGUR, check, finish


def mlp():
    return torch.nn.Sequential(
        torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))


def python_eval(model, x, y):
    with torch.no_grad():
        logits = model(x)
        loss = torch.nn.functional.cross_entropy(logits, y).item()
        acc = (logits.argmax(1) == y).float().mean().item()
    return loss, acc


def fulgur(*args):
    return subprocess.run([FULGUR, *args], capture_output=True, text=True)


with tempfile.TemporaryDirectory() as tmp:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(90, 6, generator=g)
    y = (x[:, 0] > 0).long() + (x[:, 1] > 0.5).long()
    csv = os.path.join(tmp, "data.csv")
    with open(csv, "w") as f:
        f.write("f0,f1,f2,f3,f4,f5,label\n")
        for row, label in zip(x.tolist(), y.tolist()):
            f.write(",".join(repr(v) for v in row) + f",{label}\n")
    # The CSV holds float64 text; fulgur reads float32, as Python does below.
    x = x.float()
    cfg = os.path.join(tmp, "run.yaml")
    with open(cfg, "w") as f:
        f.write(f"""
seed_everything: 3
trainer:
  max_epochs: 3
  default_root_dir: {tmp}/runs
  enable_progress_bar: false
  num_sanity_val_steps: 0
  num_threads: 1
model:
  class_path: fulgur.ClassificationModule
  init_args:
    model:
      class_path: fulgur.models.MLP
      init_args: {{in_features: 6, hidden: [8], out_features: 3}}
    evaluator_cfg:
      class_path: fulgur.metrics.Accuracy
      init_args: {{task: multiclass, num_classes: 3}}
optimizer_config:
  optimizer: {{class_path: torch.optim.Adam, init_args: {{lr: 0.01}}}}
data:
  class_path: fulgur.DataModule
  init_args:
    dataset_cfg:
      class_path: fulgur.data.CSV
      init_args: {{path: {csv}, target: label}}
    dataloader_cfg: {{batch_size: 16}}
""")

    # ---- 1. fulgur -> Python ----
    r = fulgur("fit", "--config", cfg)
    check("fulgur fit succeeds", r.returncode == 0, r.stderr)
    last = os.path.join(tmp, "runs", "version_0", "checkpoints", "last.ckpt")
    ck = torch.load(last)
    for key in ["epoch", "global_step", "state_dict", "optimizer_states",
                "lr_schedulers", "callbacks", "fulgur_version"]:
        check(f"checkpoint has '{key}'", key in ck, str(list(ck)))
    check("epoch and global_step", ck["epoch"] == 2 and ck["global_step"] == 18,
          f"{ck['epoch']} {ck['global_step']}")
    sd = {k[len("model."):]: v for k, v in ck["state_dict"].items()}
    check("state_dict names are PyTorch's",
          sorted(sd) == ["layers.0.bias", "layers.0.weight", "layers.2.bias", "layers.2.weight"],
          str(sorted(sd)))
    net = torch.nn.Module()
    net.layers = mlp()
    net.load_state_dict(sd)
    opt = torch.optim.Adam(net.parameters(), lr=0.01)
    opt.load_state_dict(ck["optimizer_states"][0])
    check("optimizer state loads into torch.optim.Adam", len(opt.state) == 4)
    py_loss, py_acc = python_eval(net.layers, x, y)
    r = fulgur("test", "--config", cfg, "--ckpt_path", last, "--json")
    check("fulgur test succeeds", r.returncode == 0, r.stderr)
    m = json.loads(r.stdout) if r.returncode == 0 else {}
    check("fulgur test loss == Python loss", abs(m.get("test/loss", 1e9) - py_loss) < 1e-5,
          f"{m} vs {py_loss}")
    check("fulgur test accuracy == Python accuracy", abs(m.get("test/Accuracy", -1) - py_acc) < 1e-6,
          f"{m} vs {py_acc}")

    # ---- 2. Python -> fulgur ----
    torch.manual_seed(11)
    model = mlp()
    state = collections.OrderedDict(
        ("model.layers." + k, v) for k, v in model.state_dict().items())
    pyck = os.path.join(tmp, "python.ckpt")
    torch.save({"epoch": 5, "global_step": 50, "pytorch-lightning_version": "2.0.0",
                "state_dict": state, "optimizer_states": [], "lr_schedulers": [],
                "callbacks": {}}, pyck)
    py_loss, py_acc = python_eval(model, x, y)
    r = fulgur("test", "--config", cfg, "--ckpt_path", pyck, "--json")
    check("fulgur tests a checkpoint Python wrote", r.returncode == 0, r.stderr)
    m = json.loads(r.stdout) if r.returncode == 0 else {}
    check("Python checkpoint: same loss", abs(m.get("test/loss", 1e9) - py_loss) < 1e-5,
          f"{m} vs {py_loss}")
    check("Python checkpoint: same accuracy", abs(m.get("test/Accuracy", -1) - py_acc) < 1e-6,
          f"{m} vs {py_acc}")

finish()
