"""fulgur.data.TensorDict end to end: data saved by python3-torch's
torch.save, a scripted model reading batch["data"] and batch["label"].

- `fulgur fit` on two torch.save'd files (concatenated), shuffle off, one
  process: the final weights equal a python3-torch loop over the same
  batches (max abs diff <= 1e-5).
- `trainer.devices: 2` (DDP), shuffle on: the final weights equal a
  python3-torch loop in which each step averages the losses of the two
  batches torch.utils.data.DistributedSampler hands ranks 0 and 1 (seed =
  seed_everything, set_epoch(epoch)): each rank read exactly PyTorch's
  shard, so every sample is seen once per epoch across the ranks.
- `fulgur predict` under devices: 2 with index_key: the task returning
  batch["index"] writes predictions.pt (rank 0) and predictions_1.pt (rank
  1); together they hold every dataset index exactly once, and the labels
  the task returns beside them are the labels of those indices.
- split_info: one dataset_cfg whose path is `$split`-substituted per split
  (fit, val, and `fulgur test`).
"""
import collections
import os
import subprocess
import tempfile
from typing import Dict

import torch
import torch.nn.functional as F
from torch.utils.data import DistributedSampler

from interop import FULGUR, check, finish


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.body = torch.nn.Sequential(torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))

    def forward(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        logits = self.body(batch["data"].flatten(1))
        return {"loss": F.cross_entropy(logits, batch["label"])}

    @torch.jit.export
    def predict_seen(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        return torch.stack([batch["index"], batch["label"]], 1)


torch.manual_seed(5)
N, B, EPOCHS, SEED, LR = 64, 8, 2, 7, 0.1
X = torch.randn(N, 2, 3)
Y = torch.randint(0, 3, (N,))
CUT = 40  # part0.pt holds rows 0..39, part1.pt rows 40..63


def config(work, name, devices, shuffle, extra_data=""):
    path = os.path.join(work, name + ".yaml")
    with open(path, "w") as f:
        f.write(f"""
seed_everything: {SEED}
trainer:
  max_epochs: {EPOCHS}
  default_root_dir: {work}/runs_{name}
  enable_progress_bar: false
  num_sanity_val_steps: 0
  num_threads: 1
  devices: {devices}
  ddp_timeout: 60
model:
  class_path: fulgur.LightningModule
  init_args:
    model: {{class_path: fulgur.models.TorchScript, init_args: {{path: {work}/net.pt}}}}
    predict_tasks: [seen]
    predict_path: {work}/out_{name}
optimizer_config:
  optimizer: {{class_path: torch.optim.SGD, init_args: {{lr: {LR}}}}}
data:
  class_path: fulgur.DataModule
  init_args:
    dataset_cfg:
      class_path: fulgur.data.TensorDict
      init_args:
        path: [{work}/part0.pt, {work}/part1.pt]
        index_key: index
{extra_data}    dataloader_cfg:
      fit: {{batch_size: {B}, shuffle: {str(shuffle).lower()}}}
      predict: {{batch_size: 5, shuffle: false}}
""")
    return path, os.path.join(work, "runs_" + name)


def run(args):
    e = dict(os.environ)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "NODE_RANK"):
        e.pop(k, None)
    return subprocess.run([FULGUR] + args, capture_output=True, text=True, env=e, timeout=300)


def last(root):
    return torch.load(os.path.join(root, "version_0", "checkpoints", "last.ckpt"))


def max_diff(got, ref):
    return max((got["model." + k] - v).abs().max().item() for k, v in ref.items())


def python_fit(work, shards_of_epoch):
    """SGD steps over the batches shards_of_epoch(epoch) lists per rank; a
    step's loss is the mean over the ranks' batches (DDP's averaged
    gradients)."""
    net = torch.jit.load(os.path.join(work, "net.pt"))
    opt = torch.optim.SGD(net.parameters(), lr=LR)
    for epoch in range(EPOCHS):
        shards = shards_of_epoch(epoch)
        for b in range(0, len(shards[0]), B):
            opt.zero_grad()
            losses = [net({"data": X[sh[b:b + B]], "label": Y[sh[b:b + B]]})["loss"] for sh in shards]
            (sum(losses) / len(losses)).backward()
            opt.step()
    return {k: v.detach() for k, v in net.state_dict().items()}


def ddp_shards(epoch):
    out = []
    for r in range(2):
        s = DistributedSampler(range(N), num_replicas=2, rank=r, shuffle=True, seed=SEED)
        s.set_epoch(epoch)
        out.append(list(s))
    return out


with tempfile.TemporaryDirectory() as work:
    # Two files, and an OrderedDict in one of them, as Python users write them.
    torch.save({"data": X[:CUT], "label": Y[:CUT]}, os.path.join(work, "part0.pt"))
    torch.save(collections.OrderedDict(data=X[CUT:], label=Y[CUT:]), os.path.join(work, "part1.pt"))
    torch.manual_seed(0)
    torch.jit.script(Net()).save(os.path.join(work, "net.pt"))

    # 1. One process, shuffle off: the batches in file order.
    one, one_root = config(work, "one", 1, False)
    r = run(["fit", "--config", one])
    check("fit on TensorDict data (two files), one process", r.returncode == 0, r.stderr[-2000:])
    if r.returncode == 0:
        ref = python_fit(work, lambda epoch: [list(range(N))])
        d = max_diff(last(one_root)["state_dict"], ref)
        check(f"one process: weights equal python3-torch over the same batches (max abs diff {d:.2e})",
              d <= 1e-5)

    # 2. DDP, shuffle on: each rank reads DistributedSampler's shard.
    two, two_root = config(work, "two", 2, True)
    r = run(["fit", "--config", two])
    check("fit on TensorDict data under trainer.devices: 2", r.returncode == 0, r.stderr[-2000:])
    if r.returncode == 0:
        ck = last(two_root)
        ref = python_fit(work, ddp_shards)
        d = max_diff(ck["state_dict"], ref)
        check(f"devices 2: weights equal the DistributedSampler reference (max abs diff {d:.2e})",
              d <= 1e-5 and ck["global_step"] == EPOCHS * N // 2 // B, f"step {ck['global_step']}")
        shards = ddp_shards(0)
        check("the reference shards hold every sample once per epoch",
              sorted(shards[0] + shards[1]) == list(range(N)))

    # 3. Predict under DDP: every index once, with its own label.
    r = run(["predict", "--config", two])
    check("predict on TensorDict data under trainer.devices: 2", r.returncode == 0, r.stderr[-2000:])
    if r.returncode == 0:
        out = os.path.join(work, "out_two", "seen")
        p0 = torch.cat(torch.load(os.path.join(out, "predictions.pt")))
        p1 = torch.cat(torch.load(os.path.join(out, "predictions_1.pt")))
        both = torch.cat([p0, p1])
        check("predict: the two ranks' index_key values hold every sample exactly once",
              sorted(both[:, 0].tolist()) == list(range(N)), str(both[:, 0].tolist()))
        check("predict: rank 0 has samples 0, 2, 4 ..., rank 1 has 1, 3, 5 ...",
              p0[:, 0].tolist() == list(range(0, N, 2)) and p1[:, 0].tolist() == list(range(1, N, 2)))
        check("predict: each batch row's label is the label of its index",
              torch.equal(both[:, 1], Y[both[:, 0]]))

    # 4. split_info: the file of each split named through $split.
    torch.save({"data": X[:10], "label": Y[:10]}, os.path.join(work, "fit.pt"))
    torch.save({"data": X[10:16], "label": Y[10:16]}, os.path.join(work, "val.pt"))
    path = os.path.join(work, "split.yaml")
    with open(path, "w") as f:
        f.write(f"""
seed_everything: {SEED}
trainer:
  max_epochs: 1
  default_root_dir: {work}/runs_split
  enable_progress_bar: false
  num_sanity_val_steps: 0
  num_threads: 1
model:
  class_path: fulgur.LightningModule
  init_args:
    model: {{class_path: fulgur.models.TorchScript, init_args: {{path: {work}/net.pt}}}}
optimizer_config:
  optimizer: {{class_path: torch.optim.SGD, init_args: {{lr: {LR}}}}}
data:
  class_path: fulgur.DataModule
  init_args:
    dataset_cfg:
      split_info:
        split_format_to: path
        split_name_map: {{fit: fit, val: val, test: val, predict: val}}
      fit:
        class_path: fulgur.data.TensorDict
        init_args: {{path: {work}/$split.pt}}
      val: {{}}
    dataloader_cfg: {{batch_size: 4}}
""")
    r = run(["fit", "--config", path])
    check("split_info substitutes the TensorDict path per split", r.returncode == 0, r.stderr[-2000:])
    if r.returncode == 0:
        ck = last(os.path.join(work, "runs_split"))
        check("split_info: the fit split read fit.pt (10 samples, batch 4: 3 steps)",
              ck["global_step"] == 3, str(ck["global_step"]))
        metrics = open(os.path.join(work, "runs_split", "version_0", "metrics.csv")).read()
        check("split_info: the val split ran (val.pt)", "val/loss" in metrics, metrics[:300])
        r = run(["test", "--config", path, "--json", "--ckpt_path",
                 os.path.join(work, "runs_split", "version_0", "checkpoints", "last.ckpt")])
        check("the test split reads its TensorDict too", r.returncode == 0 and "test/loss" in r.stdout,
              r.stdout + r.stderr[-1500:])

finish()
