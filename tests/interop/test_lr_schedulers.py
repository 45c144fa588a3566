"""Learning-rate schedules: fulgur against python3-torch's own schedulers.

For each case fulgur fits a tiny model with LearningRateMonitor logging the
lr of every step (or epoch) to metrics.csv; the same schedulers built in
Python on a torch.optim.SGD, stepped in Lightning's order (optimizer step,
then the manual warmup scheduler when global_step % frequency == 0, then
the step-interval scheduler; epoch-interval ones at the epoch's end), must
give the same learning rates to 1e-9. The warmup reference is
lightning_template's WarmupScheduler rule, written here as a torch
_LRScheduler.

Then: a run resumed from a mid-training checkpoint ends with bit-identical
weights and learning rate to an uninterrupted one.
"""
import csv
import os
import subprocess
import sys
import tempfile

import torch

from interop import FULGUR, check, finish


class WarmupScheduler(torch.optim.lr_scheduler._LRScheduler):
    def __init__(self, optimizer, warmup_iters, warmup_ratio=0.1, warmup_mode="linear"):
        self.warmup_iters = warmup_iters
        self.warmup_ratio = warmup_ratio
        self.warmup_mode = warmup_mode
        super().__init__(optimizer)

    def get_lr(self):
        if self.last_epoch <= self.warmup_iters:
            t = self.last_epoch / self.warmup_iters
            if self.warmup_mode == "constant":
                return [lr * self.warmup_ratio for lr in self.base_lrs]
            if self.warmup_mode == "linear":
                k = (1 - t) * (1 - self.warmup_ratio)
                return [lr * (1 - k) for lr in self.base_lrs]
            k = self.warmup_ratio ** (1 - t)
            return [lr * k for lr in self.base_lrs]
        return [g["lr"] for g in self.optimizer.param_groups]


def yaml_args(d):
    return "{" + ", ".join(f"{k}: {v}" for k, v in d.items()) + "}"


def config(root, sched_yaml, monitor_interval, max_epochs=3):
    return f"""
seed_everything: 5
trainer:
  max_epochs: {max_epochs}
  default_root_dir: {root}
  log_every_n_steps: 1
  enable_progress_bar: false
  num_sanity_val_steps: 0
  num_threads: 1
  callbacks:
    - class_path: LearningRateMonitor
      init_args: {{logging_interval: {monitor_interval}}}
model:
  class_path: fulgur.ClassificationModule
  init_args:
    model:
      class_path: fulgur.models.MLP
      init_args: {{in_features: 6, hidden: [8], out_features: 3}}
optimizer_config:
  optimizer:
    class_path: torch.optim.SGD
    init_args: {{lr: 0.1, momentum: 0.9}}
  lr_scheduler:
{sched_yaml}
data:
  class_path: fulgur.DataModule
  init_args:
    dataset_cfg:
      fit:
        class_path: fulgur.data.Synthetic
        init_args: {{num_samples: 20, shape: [6], num_classes: 3, seed: 1}}
      val:
        init_args: {{num_samples: 8, seed: 2}}
    dataloader_cfg: {{batch_size: 4}}
"""


def fulgur_lrs(work, name, sched_yaml, monitor_interval):
    root = os.path.join(work, name)
    path = os.path.join(work, name + ".yaml")
    with open(path, "w") as f:
        f.write(config(root, sched_yaml, monitor_interval))
    r = subprocess.run([FULGUR, "fit", "--config", path], capture_output=True, text=True)
    if r.returncode != 0:
        return None, r.stderr
    with open(os.path.join(root, "version_0", "metrics.csv")) as f:
        rows = [row for row in csv.DictReader(f) if row.get("lr-SGD")]
    return [(int(row["step"]), float(row["lr-SGD"])) for row in rows], ""


def python_lrs(make_sched, interval, warmup=None, steps_per_epoch=5, epochs=3, per_step=True):
    p = torch.nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    sched = make_sched(opt)
    warm = WarmupScheduler(opt, **warmup[0]) if warmup else None
    warm_freq = warmup[1] if warmup else 1
    out = []
    step = 0
    for epoch in range(epochs):
        if not per_step:
            out.append((step, opt.param_groups[0]["lr"]))
        for _ in range(steps_per_epoch):
            if per_step:
                out.append((step, opt.param_groups[0]["lr"]))
            opt.step()
            if warm is not None and step % warm_freq == 0:
                warm.step()
            step += 1
            if interval == "step":
                sched.step()
        if interval == "epoch":
            sched.step()
    return out


def compare(name, got, want, err):
    if got is None:
        check(name, False, err)
        return
    ok = len(got) == len(want) and all(
        gs == ws and abs(gl - wl) <= 1e-9 for (gs, gl), (ws, wl) in zip(got, want))
    check(name, ok, f"\n  fulgur: {got}\n  torch:  {want}")


def sched_yaml(class_path, init_args, interval, warmup=None):
    s = f"""    scheduler:
      class_path: {class_path}
      init_args: {yaml_args(init_args)}
    interval: {interval}
"""
    if warmup:
        s += f"    warmup_config: {{scheduler: {yaml_args(warmup[0])}, frequency: {warmup[1]}}}\n"
    return s


L = torch.optim.lr_scheduler
CASES = [
    # name, fulgur class, init args, python constructor, interval, warmup, monitor interval
    ("MultiStepLR + linear warmup, per step", "torch.optim.lr_scheduler.MultiStepLR",
     {"milestones": "[3, 7, 7]", "gamma": 0.5}, lambda o: L.MultiStepLR(o, [3, 7, 7], 0.5),
     "step", ({"warmup_iters": 5, "warmup_ratio": 0.1}, 1), "step"),
    ("MultiStepLR + exp warmup every 2nd step", "MultiStepLR",
     {"milestones": "[4, 9]", "gamma": 0.3}, lambda o: L.MultiStepLR(o, [4, 9], 0.3),
     "step", ({"warmup_iters": 6, "warmup_ratio": 0.01, "warmup_mode": "exp"}, 2), "step"),
    ("StepLR per step", "StepLR", {"step_size": 4, "gamma": 0.7},
     lambda o: L.StepLR(o, 4, 0.7), "step", None, "step"),
    ("CosineAnnealingLR per step past T_max", "CosineAnnealingLR",
     {"T_max": 4, "eta_min": 0.001}, lambda o: L.CosineAnnealingLR(o, 4, 0.001),
     "step", None, "step"),
    ("LinearLR + constant warmup", "LinearLR",
     {"start_factor": 0.25, "end_factor": 1.0, "total_iters": 6},
     lambda o: L.LinearLR(o, 0.25, 1.0, 6), "step",
     ({"warmup_iters": 3, "warmup_ratio": 0.5, "warmup_mode": "constant"}, 1), "step"),
    ("ConstantLR per step", "ConstantLR", {"factor": 0.5, "total_iters": 3},
     lambda o: L.ConstantLR(o, 0.5, 3), "step", None, "step"),
    ("ExponentialLR per epoch, logged per step", "ExponentialLR", {"gamma": 0.5},
     lambda o: L.ExponentialLR(o, 0.5), "epoch", None, "step"),
    ("CosineAnnealingLR per epoch, logged per epoch", "CosineAnnealingLR", {"T_max": 2},
     lambda o: L.CosineAnnealingLR(o, 2), "epoch", None, "null"),
    ("OneCycleLR (cos) per step", "OneCycleLR", {"max_lr": 0.5, "total_steps": 15},
     lambda o: L.OneCycleLR(o, max_lr=0.5, total_steps=15), "step", None, "step"),
    ("OneCycleLR three-phase linear, epochs * steps_per_epoch", "torch.optim.lr_scheduler.OneCycleLR",
     {"max_lr": 0.3, "epochs": 3, "steps_per_epoch": 6, "three_phase": "true",
      "anneal_strategy": "linear", "pct_start": 0.25},
     lambda o: L.OneCycleLR(o, max_lr=0.3, epochs=3, steps_per_epoch=6, three_phase=True,
                            anneal_strategy="linear", pct_start=0.25), "step", None, "step"),
]

with tempfile.TemporaryDirectory() as work:
    for i, (name, cp, args, make, interval, warmup, mon) in enumerate(CASES):
        got, err = fulgur_lrs(work, f"case{i}", sched_yaml(cp, args, interval, warmup), mon)
        want = python_lrs(make, interval, warmup, per_step=(mon == "step"))
        compare(name, got, want, err)

    # OneCycleLR cycles SGD's momentum too: compare the final momentum.
    p = torch.nn.Parameter(torch.zeros(1))
    o = torch.optim.SGD([p], lr=0.1, momentum=0.9)
    sch = L.OneCycleLR(o, max_lr=0.5, total_steps=15)
    for _ in range(15):  # fulgur's 15 batches, each followed by a scheduler step
        o.step()
        sch.step()
    ck = torch.load(os.path.join(work, "case8", "version_0", "checkpoints", "last.ckpt"))
    got_m = ck["optimizer_states"][0]["param_groups"][0]["momentum"]
    check("OneCycleLR cycles momentum as torch does",
          abs(got_m - o.param_groups[0]["momentum"]) < 1e-12, f"{got_m} vs {o.param_groups[0]['momentum']}")

    # ReduceLROnPlateau on a logged metric, and its errors.
    plateau = """    scheduler: {class_path: ReduceLROnPlateau, init_args: {mode: max, patience: 0, factor: 0.5}}
    monitor: val/loss
"""
    got, err = fulgur_lrs(work, "plateau", plateau, "epoch")
    # mode max on a loss: every epoch after the first is "no better", and
    # patience 0 halves the lr each time: 0.1, 0.1 (first value sets best), 0.05.
    check("ReduceLROnPlateau follows its monitor", got is not None and
          [round(lr, 12) for _, lr in got] == [0.1, 0.1, 0.05], f"{got} {err}")
    bad = plateau.replace("val/loss", "val/Acc")
    path = os.path.join(work, "bad.yaml")
    with open(path, "w") as f:
        f.write(config(os.path.join(work, "bad"), bad, "epoch"))
    r = subprocess.run([FULGUR, "fit", "--config", path], capture_output=True, text=True)
    check("a monitor that is never logged is a run error", r.returncode == 1 and
          "ReduceLROnPlateau watches 'val/Acc', which is never logged" in r.stderr, r.stderr)
    with open(path, "w") as f:
        f.write(config(os.path.join(work, "bad"), plateau.replace("    monitor: val/loss\n", ""), "epoch"))
    r = subprocess.run([FULGUR, "fit", "--config", path], capture_output=True, text=True)
    check("ReduceLROnPlateau without monitor is a config error", r.returncode == 2 and
          "needs a 'monitor'" in r.stderr, r.stderr)
    with open(path, "w") as f:
        f.write(config(os.path.join(work, "bad"), "    scheduler: {class_path: MultiStepLR, init_args: {milestones: [2], gama: 0.1}}\n", "step"))
    r = subprocess.run([FULGUR, "fit", "--config", path], capture_output=True, text=True)
    check("a scheduler init_args typo names the key", r.returncode == 2 and
          "optimizer_config.lr_scheduler.scheduler.init_args.gama: unknown key 'gama' (did you mean 'gamma'?)"
          in r.stderr, r.stderr)

    # Exact resume: 4 epochs straight == 2 epochs, then 2 more from last.ckpt.
    sched = sched_yaml("MultiStepLR", {"milestones": "[6, 13]", "gamma": 0.5}, "step",
                       ({"warmup_iters": 8, "warmup_ratio": 0.1}, 1))
    straight = os.path.join(work, "straight.yaml")
    with open(straight, "w") as f:
        f.write(config(os.path.join(work, "straight"), sched, "step", max_epochs=4))
    half = os.path.join(work, "half.yaml")
    with open(half, "w") as f:
        f.write(config(os.path.join(work, "resumed"), sched, "step", max_epochs=2))
    runs = [
        [FULGUR, "fit", "--config", straight],
        [FULGUR, "fit", "--config", half],
        [FULGUR, "fit", "--config", half, "--trainer.max_epochs", "4", "--ckpt_path",
         os.path.join(work, "resumed", "version_0", "checkpoints", "last.ckpt")],
    ]
    codes = [subprocess.run(c, capture_output=True, text=True) for c in runs]
    check("straight, half and resumed runs succeed", all(c.returncode == 0 for c in codes),
          "".join(c.stderr for c in codes))
    a = torch.load(os.path.join(work, "straight", "version_0", "checkpoints", "last.ckpt"))
    b = torch.load(os.path.join(work, "resumed", "version_1", "checkpoints", "last.ckpt"))
    same = all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    check("resumed weights are bit-identical", same)
    check("resumed optimizer lr and step are identical",
          a["optimizer_states"][0]["param_groups"][0]["lr"] ==
          b["optimizer_states"][0]["param_groups"][0]["lr"] and a["global_step"] == b["global_step"])
    check("scheduler states are saved", a["lr_schedulers"] == b["lr_schedulers"] and
          len(a["lr_schedulers"]) == 1 and a["fulgur_warmup_schedulers"][0]["last_epoch"] > 0, str(a["lr_schedulers"]))

finish()
