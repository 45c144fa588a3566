"""trainer.num_folds: lightning_template's KFoldLoop, checked against a
python3-torch loop doing what KFoldLoop does with sklearn's KFold.

A scripted ToyModel (examples/toy_project) on 55 samples, num_folds 3,
2 epochs, SGD, batches of 8 in order:
- fold_checkpoints/model_fold_1.pt .. model_fold_3.pt hold the weights of a
  Python loop that trains each fold from the same starting weights with a
  fresh optimizer on KFold(3)'s train indices (max abs diff <= 1e-5);
- each fold's last val/loss is that loop's loss over the fold's held-out
  indices;
- metrics.csv logs current_fold 0, 1, 2 at global steps 0, 10, 20 (the step
  keeps counting; epochs restart per fold);
- num_folds 0, more folds than samples, and resuming a k-fold fit are
  clear errors.
"""
import csv
import os
import subprocess
import sys
import tempfile

import torch
from sklearn.model_selection import KFold

from interop import FULGUR, check, finish

SRC = os.path.abspath(os.environ["FG_SOURCE_DIR"])
sys.path.insert(0, os.path.join(SRC, "examples", "toy_project"))
import script_model  # noqa: E402

# Uneven folds (19, 18, 18 held out; 5 training batches each) with no
# batch of one, which ToyModel's squeeze() cannot take.
N, B, EPOCHS, LR, K = 55, 8, 2, 0.5, 3
torch.manual_seed(11)
X = torch.randn(N, 16)
Y = torch.randint(0, 2, (N,))


def config(work, folds, extra=""):
    path = os.path.join(work, f"kfold_{folds}.yaml")
    with open(path, "w") as f:
        f.write(f"""
seed_everything: 3
trainer:
  max_epochs: {EPOCHS}
  num_folds: {folds}
  default_root_dir: {work}/runs_{folds}
  enable_progress_bar: false
  num_sanity_val_steps: 0
  num_threads: 1
  log_every_n_steps: 1
{extra}model:
  class_path: fulgur.LightningModule
  init_args:
    model: {{class_path: fulgur.models.TorchScript, init_args: {{path: {work}/toy.pt}}}}
optimizer_config:
  optimizer: {{class_path: torch.optim.SGD, init_args: {{lr: {LR}}}}}
data:
  class_path: fulgur.DataModule
  init_args:
    dataset_cfg:
      fit: {{class_path: fulgur.data.TensorDict, init_args: {{path: {work}/data.pt}}}}
      val: {{}}
    dataloader_cfg: {{batch_size: {B}, shuffle: false}}
""")
    return path


def step_losses(m, idx):
    out = m({"data": X[idx], "label": Y[idx]})["loss_dict"]
    return out["loss_cls"] + out["loss_parameter"]


with tempfile.TemporaryDirectory() as work:
    torch.manual_seed(2)
    start = script_model.ToyModel()
    torch.jit.script(start).save(os.path.join(work, "toy.pt"))
    torch.save({"data": X, "label": Y}, os.path.join(work, "data.pt"))

    r = subprocess.run([FULGUR, "fit", "--config", config(work, K)], capture_output=True, text=True)
    check("fit with num_folds: 3", r.returncode == 0, r.stderr[-3000:])
    run = os.path.join(work, f"runs_{K}", "version_0")
    rows = list(csv.DictReader(open(os.path.join(run, "metrics.csv")))) if r.returncode == 0 else []
    folds = [(int(x["step"]), float(x["current_fold"])) for x in rows if x.get("current_fold")]
    check("current_fold logged at each fold's first step", folds == [(0, 0.0), (10, 1.0), (20, 2.0)],
          str(folds))
    val = [x for x in rows if x.get("val/loss")]
    check("two validations per fold, epochs restarting", [int(x["epoch"]) for x in val] == [0, 1] * K,
          str([x["epoch"] for x in val]))

    for fold, (train, held) in enumerate(KFold(K).split(range(N))):
        m = script_model.ToyModel()
        m.load_state_dict(start.state_dict())
        opt = torch.optim.SGD(m.parameters(), lr=LR)
        for _ in range(EPOCHS):
            for b in range(0, len(train), B):
                opt.zero_grad()
                step_losses(m, torch.as_tensor(train[b:b + B])).backward()
                opt.step()
        path = os.path.join(run, "fold_checkpoints", f"model_fold_{fold + 1}.pt")
        if not os.path.exists(path):
            check(f"{path} written", False)
            continue
        ck = torch.load(path)
        got = {k[len("model."):]: v for k, v in ck["state_dict"].items()}
        diff = max((got[k] - v).abs().max().item() for k, v in m.state_dict().items())
        check(f"fold {fold + 1}: the weights of a Python loop over KFold's train indices from the "
              "starting weights", diff <= 1e-5, f"max abs diff {diff}")
        check(f"fold {fold + 1}: the checkpoint's epoch and global step", ck["epoch"] == EPOCHS - 1
              and ck["global_step"] == 10 * (fold + 1), f"{ck['epoch']} {ck['global_step']}")
        with torch.no_grad():
            total = sum(step_losses(m, torch.as_tensor(held[b:b + B])).item() * len(held[b:b + B])
                        for b in range(0, len(held), B)) / len(held)
        logged = float(val[2 * fold + 1]["val/loss"]) if len(val) == 2 * K else float("nan")
        check(f"fold {fold + 1}: val/loss is the loss over the held-out fold", abs(logged - total) < 1e-5,
              f"{logged} vs {total}")

    # Bad input.
    r = subprocess.run([FULGUR, "fit", "--config", config(work, 0)], capture_output=True, text=True)
    check("num_folds: 0 is a config error", r.returncode == 2 and "trainer.num_folds" in r.stderr
          and "expected an integer >= 1" in r.stderr, r.stderr)
    r = subprocess.run([FULGUR, "fit", "--config", config(work, 60)], capture_output=True, text=True)
    check("more folds than samples names both", r.returncode != 0 and "n_splits=60" in r.stderr
          and "n_samples=55" in r.stderr, r.stderr)
    r = subprocess.run([FULGUR, "fit", "--config", config(work, K), "--ckpt_path",
                        os.path.join(run, "fold_checkpoints", "model_fold_1.pt")], capture_output=True, text=True)
    check("a k-fold fit does not resume", r.returncode != 0 and "cannot resume" in r.stderr, r.stderr)

finish()
