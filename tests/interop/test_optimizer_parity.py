"""Optimizer parity with PyTorch: from the same initial weights (handed to
fulgur through the model's ckpt_path) and the same batches (a CSV read in
order), N steps of `fulgur fit` end with the weights N steps of a plain
python3-torch loop end with, to 1e-6, for SGD (momentum, dampening,
nesterov, weight_decay), Adam (amsgrad, weight_decay) and AdamW; and with
Lightning's gradient clipping (norm, value) and gradient accumulation
(loss / N, a step at each window's end and at the epoch's last batch).
"""
import collections
import os
import subprocess
import sys
import tempfile

import torch

from interop import FULGUR, check, finish


torch.manual_seed(11)
N, F, C, BATCH, EPOCHS = 40, 6, 3, 16, 3  # batches of 16, 16, 8: 9 steps
X = torch.randn(N, F)
Y = torch.randint(0, C, (N,))


def make_model():
    torch.manual_seed(3)
    return torch.nn.Sequential(torch.nn.Linear(F, 8), torch.nn.ReLU(), torch.nn.Linear(8, C))


def python_fit(make_opt, clip=None, accumulate=1):
    model = make_model()
    opt = make_opt(model.parameters())
    nb = (N + BATCH - 1) // BATCH
    steps = 0
    for _ in range(EPOCHS):
        for b, start in enumerate(range(0, N, BATCH)):
            x, y = X[start:start + BATCH], Y[start:start + BATCH]
            if b % accumulate == 0:
                opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            (loss / accumulate).backward()
            if (b + 1) % accumulate == 0 or b + 1 == nb:
                if clip and clip[0] == "norm":
                    torch.nn.utils.clip_grad_norm_(model.parameters(), clip[1])
                elif clip:
                    torch.nn.utils.clip_grad_value_(model.parameters(), clip[1])
                opt.step()
                steps += 1
    return {"model.layers." + k: v.detach() for k, v in model.state_dict().items()}, steps


def fulgur_fit(work, name, optimizer_yaml, trainer_extra="", optimizer_block=None):
    root = os.path.join(work, name)
    cfg = os.path.join(work, name + ".yaml")
    with open(cfg, "w") as f:
        f.write(f"""
seed_everything: 1
trainer:
  max_epochs: {EPOCHS}
  default_root_dir: {root}
  enable_progress_bar: false
  num_sanity_val_steps: 0
  limit_val_batches: 0
  num_threads: 1
{trainer_extra}model:
  class_path: fulgur.ClassificationModule
  init_args:
    ckpt_path: {work}/init.ckpt
    model:
      class_path: fulgur.models.MLP
      init_args: {{in_features: {F}, hidden: [8], out_features: {C}}}
optimizer_config:{optimizer_block or chr(10) + "  optimizer: " + optimizer_yaml}
data:
  class_path: fulgur.DataModule
  init_args:
    dataset_cfg:
      class_path: fulgur.data.CSV
      init_args: {{path: {work}/data.csv, target: label}}
    dataloader_cfg: {{batch_size: {BATCH}, shuffle: false}}
""")
    r = subprocess.run([FULGUR, "fit", "--config", cfg], capture_output=True, text=True)
    if r.returncode != 0:
        return None, r.stderr
    ck = torch.load(os.path.join(root, "version_0", "checkpoints", "last.ckpt"))
    return ck["state_dict"], ck


CASES = [
    ("SGD", "{class_path: torch.optim.SGD, init_args: {lr: 0.1}}",
     lambda p: torch.optim.SGD(p, lr=0.1)),
    ("SGD momentum + dampening + weight_decay",
     "{class_path: torch.optim.SGD, init_args: {lr: 0.05, momentum: 0.9, dampening: 0.1, weight_decay: 0.01}}",
     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, dampening=0.1, weight_decay=0.01)),
    ("SGD nesterov", "{class_path: torch.optim.SGD, init_args: {lr: 0.05, momentum: 0.8, nesterov: true}}",
     lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.8, nesterov=True)),
    ("Adam", "{class_path: torch.optim.Adam, init_args: {lr: 0.01, betas: [0.8, 0.99], weight_decay: 0.001}}",
     lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99), weight_decay=0.001)),
    ("Adam amsgrad", "{class_path: torch.optim.Adam, init_args: {lr: 0.01, amsgrad: true}}",
     lambda p: torch.optim.Adam(p, lr=0.01, amsgrad=True)),
    ("AdamW", "{class_path: torch.optim.AdamW, init_args: {lr: 0.01, weight_decay: 0.1, eps: 1.0e-6}}",
     lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1, eps=1e-6)),
]

SGD = lambda p: torch.optim.SGD(p, lr=0.5, momentum=0.9)
SGD_YAML = "{class_path: torch.optim.SGD, init_args: {lr: 0.5, momentum: 0.9}}"
TRAINER_CASES = [
    ("clip norm 0.05", "  gradient_clip_val: 0.05\n", ("norm", 0.05), 1),
    ("clip value 0.01", "  gradient_clip_val: 0.01\n  gradient_clip_algorithm: value\n",
     ("value", 0.01), 1),
    ("accumulate 2 (windows 2 + 1 per epoch)", "  accumulate_grad_batches: 2\n", None, 2),
    ("accumulate 3 + clip norm", "  accumulate_grad_batches: 3\n  gradient_clip_val: 0.1\n",
     ("norm", 0.1), 3),
]

with tempfile.TemporaryDirectory() as work:
    with open(os.path.join(work, "data.csv"), "w") as f:
        f.write(",".join(f"f{i}" for i in range(F)) + ",label\n")
        for x, y in zip(X.tolist(), Y.tolist()):
            # repr of the float32 value: fulgur's strtod then float cast gives it back exactly
            f.write(",".join(repr(v) for v in x) + f",{y}\n")
    # An OrderedDict, as every state_dict() Python writes is.
    init = collections.OrderedDict(
        ("model.layers." + k, v) for k, v in make_model().state_dict().items())
    torch.save({"state_dict": init}, os.path.join(work, "init.ckpt"))
    for i, (name, yaml, make) in enumerate(CASES):
        got, ck = fulgur_fit(work, f"case{i}", yaml)
        if got is None:
            check(name, False, ck)
            continue
        want, steps = python_fit(make)
        diff = max((got[k] - want[k]).abs().max().item() for k in want)
        moved = max((got[k] - init[k]).abs().max().item() for k in want)
        check(f"{name}: {ck['global_step']} steps, max |fulgur - torch| = {diff:.2e}",
              diff <= 1e-6 and moved > 1e-3 and ck["global_step"] == steps == 9)
    for i, (name, extra, clip, acc) in enumerate(TRAINER_CASES):
        got, ck = fulgur_fit(work, f"trainer{i}", SGD_YAML, extra)
        if got is None:
            check(name, False, ck)
            continue
        want, steps = python_fit(SGD, clip, acc)
        plain, _ = python_fit(SGD)
        diff = max((got[k] - want[k]).abs().max().item() for k in want)
        differs = max((plain[k] - want[k]).abs().max().item() for k in want)
        check(f"{name}: {ck['global_step']} steps, max |fulgur - torch| = {diff:.2e}",
              diff <= 1e-6 and differs > 1e-4 and ck["global_step"] == steps,
              f"(the setting changes the result by {differs:.2e}; steps {ck['global_step']} vs {steps})")

    # Parameter groups by name substring (longest match wins, null = the
    # rest) with per-group options, against torch param groups.
    groups_yaml = ("{class_path: torch.optim.SGD, init_args: {lr: 0.1, momentum: 0.9, params: "
                   "[{params: layers.0, lr: 0.01}, {params: [layers.0.bias], momentum: 0.0}, "
                   "{params: null, lr: 0.3}]}}")
    mon = "  callbacks: [{class_path: LearningRateMonitor}]\n  log_every_n_steps: 1\n"
    got, ck = fulgur_fit(work, "groups", groups_yaml, mon)

    def groups_opt(params):
        named = dict(zip(["layers." + n for n, _ in make_model().named_parameters()], params))
        return torch.optim.SGD([
            {"params": [named["layers.0.weight"]], "lr": 0.01},
            {"params": [named["layers.0.bias"]], "momentum": 0.0},
            {"params": [named["layers.2.weight"], named["layers.2.bias"]], "lr": 0.3},
        ], lr=0.1, momentum=0.9)

    if got is None:
        check("param groups", False, ck)
    else:
        want, _ = python_fit(groups_opt)
        diff = max((got[k] - want[k]).abs().max().item() for k in want)
        pg = ck["optimizer_states"][0]["param_groups"]
        check(f"param groups with per-group options: max |fulgur - torch| = {diff:.2e}",
              diff <= 1e-6 and [g["lr"] for g in pg] == [0.01, 0.1, 0.3] and
              [g["momentum"] for g in pg] == [0.9, 0.0, 0.9] and
              [len(g["params"]) for g in pg] == [1, 1, 2], str(pg))
        with open(os.path.join(work, "groups", "version_0", "metrics.csv")) as f:
            header = f.readline().strip().split(",")
        check("LearningRateMonitor names groups lr-SGD/pg1..3",
              all(f"lr-SGD/pg{i}" in header for i in (1, 2, 3)), str(header))
    # Without a null group, parameters no group names are frozen.
    got, ck = fulgur_fit(work, "frozen", "{class_path: torch.optim.SGD, init_args: {lr: 0.1, params: [layers.2]}}")
    if got is None:
        check("unnamed parameters are frozen", False, ck)
    else:
        check("unnamed parameters are frozen",
              torch.equal(got["model.layers.0.weight"], init["model.layers.0.weight"]) and
              not torch.equal(got["model.layers.2.weight"], init["model.layers.2.weight"]))
    bad = subprocess.run([FULGUR, "print-config", "--config", os.path.join(work, "case0.yaml"),
                          "--optimizer_config.optimizer.init_args.params",
                          "[{params: layers.0, lrr: 0.1}]"], capture_output=True, text=True)
    check("a group option typo names the key", bad.returncode == 2 and
          "optimizer_config.optimizer.init_args.params.0.lrr: unknown key 'lrr' (did you mean 'lr'?)"
          in bad.stderr, bad.stderr)

    # Several optimizers: one forward and backward per batch, each optimizer
    # steps its own parameters; with frequencies, round-robin by batch index.
    def two_fit(freq):
        model = make_model()
        a = torch.optim.SGD(list(model[0].parameters()), lr=0.2, momentum=0.5)
        b = torch.optim.Adam(list(model[2].parameters()), lr=0.01)
        for _ in range(EPOCHS):
            for i, start in enumerate(range(0, N, BATCH)):
                x, y = X[start:start + BATCH], Y[start:start + BATCH]
                active = [a, b] if freq is None else ([a] if i % sum(freq) < freq[0] else [b])
                for o in active:
                    o.zero_grad()
                torch.nn.functional.cross_entropy(model(x), y).backward()
                for o in active:
                    o.step()
        return {"model.layers." + k: v.detach() for k, v in model.state_dict().items()}

    for freq in (None, (2, 1)):
        fa = "" if freq is None else f", frequency: {freq[0]}"
        fb = "" if freq is None else f", frequency: {freq[1]}"
        two = ("\n    - {optimizer: {class_path: torch.optim.SGD, init_args: {lr: 0.2, momentum: 0.5, params: layers.0}}" + fa + "}"
               "\n    - {optimizer: {class_path: torch.optim.Adam, init_args: {lr: 0.01, params: layers.2}}" + fb + "}")
        name = "two" if freq is None else "two_freq"
        root = os.path.join(work, name)
        got, ck = fulgur_fit(work, name, None, optimizer_block=two)
        if got is None:
            check(f"two optimizers, frequency {freq}", False, ck)
            continue
        ck = torch.load(os.path.join(root, "version_0", "checkpoints", "last.ckpt"))
        want = two_fit(freq)
        diff = max((ck["state_dict"][k] - want[k]).abs().max().item() for k in want)
        check(f"two optimizers, frequency {freq}: max |fulgur - torch| = {diff:.2e}",
              diff <= 1e-6 and len(ck["optimizer_states"]) == 2)
    mixed = open(os.path.join(work, "two_freq.yaml")).read().replace(", frequency: 1}", "}")
    open(os.path.join(work, "mixed.yaml"), "w").write(mixed)
    r = subprocess.run([FULGUR, "fit", "--config", os.path.join(work, "mixed.yaml")], capture_output=True, text=True)
    check("mixed null and set frequencies are a config error", r.returncode == 2 and
          "frequency must be set for every optimizer or for none (1 of 2 have one)" in r.stderr, r.stderr)

finish()
