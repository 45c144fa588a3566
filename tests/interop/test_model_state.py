"""Module state is PyTorch's state_dict, and modes are Lightning's.

A small scripted net with BatchNorm, Dropout and a non-persistent buffer:
1. last.ckpt's state_dict has what the loaded ScriptModule's state_dict()
   has, in the same order (parameters and buffers: BatchNorm's running
   statistics; TorchScript 1.13 keeps persistent=False buffers too).
2. `fulgur fit` (sanity check and validation on) ends with the parameters
   and buffers of a python3-torch eager loop over the same batches: train()
   in fit with the same dropout draws, eval() in validation (which then
   changes no running statistic).
3. 4 epochs straight = 2 epochs + 2 resumed with --ckpt_path, parameters
   and buffers.
4. validate/test from the checkpoint use its buffers: fulgur's val loss
   equals the Python module's eval-mode loss with that state_dict.
5. Under ddp (devices: 2) every forward starts from rank 0's buffers, as
   torch DDP's broadcast_buffers: the checkpoint equals a Python
   emulation (gradients averaged over both shards, running statistics
   from rank 0's shard alone).
6. Bad input: a strict --ckpt_path load names missing and unexpected keys
   (first few, with counts) and shape mismatches with both shapes; a
   ckpt_path (non-strict) load warns with the missing and unexpected keys.
"""
import os
import subprocess
import tempfile

import torch
import torch.nn.functional as F

from interop import FULGUR, check, finish

N, D, C, BATCH, LR, SEED = 48, 6, 3, 8, 0.1, 7


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(D, 16)
        self.bn = torch.nn.BatchNorm1d(16)
        self.drop = torch.nn.Dropout(0.3)
        self.head = torch.nn.Linear(16, C)
        self.register_buffer("scale", torch.ones(1))
        self.register_buffer("scratch", torch.zeros(1), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.drop(F.relu(self.bn(self.lin(x))))) * self.scale + self.scratch


torch.manual_seed(1)
X = torch.randn(N, D)
Y = torch.randint(0, C, (N,))


def fulgur(*args):
    return subprocess.run([FULGUR, *args], capture_output=True, text=True)


def config(work, name, epochs, extra_trainer="", extra_model="", net="net.pt"):
    path = os.path.join(work, name + ".yaml")
    with open(path, "w") as f:
        f.write(f"""
seed_everything: {SEED}
trainer:
  max_epochs: {epochs}
  default_root_dir: {work}/{name}
  enable_progress_bar: false
  num_sanity_val_steps: 2
  num_threads: 1
{extra_trainer}
model:
  class_path: fulgur.ClassificationModule
  init_args:
    model: {{class_path: fulgur.models.TorchScript, init_args: {{path: {work}/{net}}}}}
{extra_model}
optimizer_config:
  optimizer: {{class_path: torch.optim.SGD, init_args: {{lr: {LR}, momentum: 0.9}}}}
data:
  class_path: fulgur.DataModule
  init_args:
    dataset_cfg:
      class_path: fulgur.data.CSV
      init_args: {{path: {work}/data.csv, target: label}}
    dataloader_cfg: {{batch_size: {BATCH}, shuffle: false}}
""")
    return path


def last(work, name, version=0):
    return os.path.join(work, name, f"version_{version}", "checkpoints", "last.ckpt")


def max_diff(a, b):
    """Largest difference over every key of two state dicts (inf when the
    keys differ)."""
    if list(a) != list(b):
        return float("inf")
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def strip(sd):
    return {k[len("model."):]: v for k, v in sd.items()}


def python_fit(epochs):
    """The eager reference: the same init, batches and generator draws."""
    torch.manual_seed(0)
    net = Net()
    net.load_state_dict(INIT)
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9)
    torch.manual_seed(SEED)
    for _ in range(epochs):
        net.train()
        for s in range(0, N, BATCH):
            opt.zero_grad()
            F.cross_entropy(net(X[s:s + BATCH]), Y[s:s + BATCH]).backward()
            opt.step()
    return net


with tempfile.TemporaryDirectory() as work:
    with open(os.path.join(work, "data.csv"), "w") as f:
        f.write(",".join(f"f{i}" for i in range(D)) + ",label\n")
        for x, y in zip(X.tolist(), Y.tolist()):
            f.write(",".join(repr(v) for v in x) + f",{y}\n")
    X = X.float()
    torch.manual_seed(0)
    eager = Net()
    INIT = {k: v.clone() for k, v in eager.state_dict().items()}
    torch.jit.script(eager).save(os.path.join(work, "net.pt"))
    eager.drop.p = 0.0  # for ddp: each rank draws dropout from its own generator
    torch.jit.script(eager).save(os.path.join(work, "nodrop.pt"))
    scripted_keys = list(torch.jit.load(os.path.join(work, "net.pt")).state_dict())

    # 1, 2: the state_dict and the modes.
    r = fulgur("fit", "--config", config(work, "fit4", 4))
    check("fit a BatchNorm + Dropout model", r.returncode == 0, r.stderr[-2000:])
    if r.returncode == 0:
        sd = torch.load(last(work, "fit4"))["state_dict"]
        check("the state_dict has the ScriptModule's keys, in order, buffers included",
              list(sd) == ["model." + k for k in scripted_keys], f"{list(sd)} vs {scripted_keys}")
        check("running statistics and num_batches_tracked are saved",
              sd["model.bn.num_batches_tracked"].item() == 4 * (N // BATCH) and
              sd["model.bn.num_batches_tracked"].dtype == torch.int64 and
              not torch.equal(sd["model.bn.running_mean"], torch.zeros(16)),
              str(sd.get("model.bn.num_batches_tracked")))
        ref = python_fit(4)
        got = strip(sd)
        got.pop("scratch")  # non-persistent: eager's state_dict leaves it out
        diff = max_diff(got, ref.state_dict())
        check(f"parameters and buffers equal an eager python3-torch loop (train() in fit, "
              f"eval() in sanity check and validation; max diff {diff:.1e})", diff <= 1e-5)
        strict = ref.load_state_dict(got, strict=True)
        check("the checkpoint (without the non-persistent buffer) loads strictly into the eager module",
              not strict.missing_keys and not strict.unexpected_keys, str(strict))

        # 4: validate from the checkpoint runs eval() with its buffers.
        r = fulgur("validate", "--config", config(work, "val", 1), "--ckpt_path", last(work, "fit4"), "--json")
        ref.eval()
        with torch.no_grad():
            want = F.cross_entropy(ref(X), Y).item()
        got_loss = None
        for line in r.stdout.splitlines():
            if '"val/loss"' in line:
                import json
                ev = json.loads(line)
                got_loss = (ev.get("values") or ev).get("val/loss", got_loss)
        check(f"validate from the checkpoint: eval-mode loss with its running statistics "
              f"(fulgur {got_loss}, python {want:.6f})",
              r.returncode == 0 and got_loss is not None and abs(got_loss - want) < 1e-5,
              r.stderr[-1000:] + r.stdout[-1000:])

    # 3: resume exactness.
    r1 = fulgur("fit", "--config", config(work, "half", 2))
    r2 = fulgur("fit", "--config", config(work, "half", 4), "--ckpt_path", last(work, "half"))
    if r1.returncode == 0 and r2.returncode == 0 and os.path.exists(last(work, "fit4")):
        diff = max_diff(torch.load(last(work, "half", 1))["state_dict"],
                        torch.load(last(work, "fit4"))["state_dict"])
        check(f"2 epochs + 2 resumed = 4 straight, parameters and buffers (max diff {diff:.1e})",
              diff <= 1e-6)
    else:
        check("2 epochs + 2 resumed", False, r1.stderr[-1000:] + r2.stderr[-1000:])

    # 5: ddp's broadcast_buffers.
    r = fulgur("fit", "--config", config(work, "ddp", 1, "  strategy: ddp\n  devices: 2", net="nodrop.pt"))
    check("fit under ddp (devices: 2)", r.returncode == 0, r.stderr[-2000:])
    if r.returncode == 0:
        torch.manual_seed(0)
        net = Net()
        net.load_state_dict(INIT)
        net.drop.p = 0.0
        opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9)
        # DistributedSampler without shuffle: rank r takes rows r, r+2, ...
        shards = [list(range(r, N, 2)) for r in range(2)]
        for s in range(0, N // 2, BATCH):
            grads = []
            start = {k: v.clone() for k, v in net.state_dict().items()}
            for rank in (1, 0):  # rank 0 last: its running statistics stay
                net.load_state_dict(start)
                opt.zero_grad()
                idx = shards[rank][s:s + BATCH]
                F.cross_entropy(net(X[idx]), Y[idx]).backward()
                grads.append([p.grad.clone() for p in net.parameters()])
            for p, g1, g0 in zip(net.parameters(), *grads):
                p.grad = (g0 + g1) / 2
            opt.step()
        got = strip(torch.load(last(work, "ddp"))["state_dict"])
        got.pop("scratch")
        diff = max_diff(got, net.state_dict())
        check(f"ddp: averaged gradients and rank 0's running statistics, as torch DDP's "
              f"broadcast_buffers (max diff {diff:.1e})", diff <= 1e-5)
        # Each rank validates its half in eval() with the buffers it has: the
        # whole split's loss is the Python module's only when rank 1 has
        # rank 0's running statistics too.
        import csv
        rows = list(csv.DictReader(open(os.path.join(work, "ddp", "version_0", "metrics.csv"))))
        val = [float(row["val/loss"]) for row in rows if row.get("val/loss")]
        net.eval()
        with torch.no_grad():
            want = F.cross_entropy(net(X), Y).item()
        check(f"ddp: both ranks validate with rank 0's buffers (val/loss {val[-1] if val else None}, "
              f"python {want:.6f})", bool(val) and abs(val[-1] - want) < 1e-5, str(rows[-3:]))

    # 6: bad input.
    good = torch.load(last(work, "fit4")) if os.path.exists(last(work, "fit4")) else None
    if good is not None:
        sd = good["state_dict"]
        bad = dict(sd)
        for k in ["model.bn.running_mean", "model.bn.running_var", "model.bn.num_batches_tracked",
                  "model.lin.bias", "model.head.bias", "model.bn.weight", "model.bn.bias"]:
            del bad[k]
        bad["model.extra"] = torch.ones(2)
        bad["model.head.weight"] = torch.zeros(5, 16)
        torch.save({**good, "state_dict": bad}, os.path.join(work, "bad.ckpt"))
        r = fulgur("validate", "--config", config(work, "bad", 1), "--ckpt_path", os.path.join(work, "bad.ckpt"))
        check("a strict load of a checkpoint that does not fit fails without a crash",
              r.returncode == 1, f"rc {r.returncode} {r.stderr[-1000:]}")
        check("it names the missing keys (first five, and the count)",
              "missing keys (7): model.lin.bias, model.bn.weight, model.bn.bias, model.bn.running_mean, "
              "model.bn.running_var and 2 more" in r.stderr, r.stderr[-1000:])
        check("it names the unexpected keys", "unexpected keys (1): model.extra" in r.stderr, r.stderr[-1000:])
        check("it names a shape mismatch with both shapes",
              "'model.head.weight' has shape [5, 16] in the checkpoint, [3, 16] in the model" in r.stderr,
              r.stderr[-1000:])
        del bad["model.head.weight"]
        torch.save({"state_dict": bad}, os.path.join(work, "partial.ckpt"))
        r = fulgur("fit", "--config", config(work, "warm", 1, extra_model=f"    ckpt_path: {work}/partial.ckpt"))
        check("a non-strict ckpt_path load trains and warns with the same facts",
              r.returncode == 0 and "missing keys (8): model.lin.bias" in r.stderr and
              "unexpected keys (1): model.extra" in r.stderr, r.stderr[-1000:])

finish()
