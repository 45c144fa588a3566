"""examples/toy_project: lightning_template's worked example run as its README
says, with its own configs/ and the one override file, cut short on the
command line (2 epochs of 30 batches).

- The scripts make the scripted ToyModel and the TensorDict files.
- `fulgur fit`: the TensorBoardLogger's event file (the run's one logger)
  has toy_project's names (fit/loss_cls, fit/loss_parameter, val/ROC_1,
  val/F1_1, val/AP_1, the ClasswiseWrapper entries, lr-AdamW); each of
  lightning_template's utility callbacks that cannot act here warns exactly
  once; the checkpoints are named by the config's template,
  "epoch:{epoch}-val_f1:{val/F1_1:.4g}-...", with the logged values
  formatted as Python formats them, last.ckpt and best.ckpt links; last epoch's
  val/ROC_1 and val/F1_1 are scikit-learn's on the test file with
  last.ckpt's weights in the eager ToyModel.
- `fulgur test --ckpt_path best.ckpt`: test/ROC is scikit-learn's
  roc_auc_score with best.ckpt's weights.
- `fulgur predict --ckpt_path best.ckpt`: confusion_matrix/predictions.pt
  under the run directory holds the running confusion matrix after each
  batch; the last one is sklearn's confusion_matrix of the whole test file.
"""
import glob
import os
import re
import shutil
import subprocess
import sys
import tempfile

import torch
from sklearn.metrics import confusion_matrix, f1_score, roc_auc_score

from interop import FULGUR, check, finish
from tb_events import scalars

SRC = os.path.abspath(os.environ["FG_SOURCE_DIR"])
EX = os.path.join(SRC, "examples", "toy_project")
RUN_CFG = "configs/runs/toy_model/toy_model_toy_dataset_1x.yaml"
SHORT = ["--trainer.max_epochs", "2", "--trainer.limit_train_batches", "30",
         "--trainer.log_every_n_steps", "10", "--trainer.num_threads", "1",
         "--seed_everything", "5"]

sys.path.insert(0, EX)
import script_model  # noqa: E402  (the eager ToyModel the file was scripted from)


def tb_scalars(run):
    """tag -> [(step, value)] from the run's one event file."""
    files = glob.glob(os.path.join(run, "events.out.tfevents.*"))
    out = {}
    for tag, step, v in scalars(files[0]) if len(files) == 1 else []:
        out.setdefault(tag, []).append((step, v))
    return out


def fulgur(work, *args):
    cmd = [FULGUR, *args[:1], "--config", RUN_CFG, "--config", "fulgur.yaml", *args[1:]]
    return subprocess.run(cmd, cwd=work, capture_output=True, text=True)


def eager(ckpt):
    m = script_model.ToyModel()
    sd = torch.load(ckpt)["state_dict"]
    m.load_state_dict({k[len("model."):]: v for k, v in sd.items() if k.startswith("model.")})
    return m.eval()


def preds_of(model, subset, work):
    d = torch.load(os.path.join(work, "data", f"{subset}.pt"))
    with torch.no_grad():
        p = model.fcs(d["data"]).squeeze()
    return p, d["label"]


with tempfile.TemporaryDirectory() as work:
    # What a user copies: the project's configs and the example's files.
    shutil.copytree(os.path.join(EX, "configs"), os.path.join(work, "configs"))
    shutil.copy(os.path.join(EX, "fulgur.yaml"), work)
    py = sys.executable
    r1 = subprocess.run([py, os.path.join(EX, "script_model.py"), "toy_model.pt", "--seed", "1"],
                        cwd=work, capture_output=True, text=True)
    r2 = subprocess.run([py, os.path.join(EX, "make_data.py"), "data"], cwd=work,
                        capture_output=True, text=True)
    check("script_model.py and make_data.py run", r1.returncode == 0 and r2.returncode == 0,
          r1.stderr + r2.stderr)
    # The vendored toy_project (test_config_loader checks it against the
    # reference's own files) is what examples/toy_project/configs copied.
    vendored = os.path.join(SRC, "tests", "fixtures", "lightning_template", "toy_project")
    ours = sorted(os.path.relpath(f, EX) for f in glob.glob(os.path.join(EX, "configs", "**", "*.yaml"),
                                                           recursive=True))
    theirs = sorted(os.path.relpath(f, vendored) for f in glob.glob(os.path.join(vendored, "configs", "**",
                                                                                 "*.yaml"), recursive=True))
    check("examples/toy_project/configs is toy_project's configs/, unchanged",
          ours == theirs and all(open(os.path.join(EX, f), "rb").read() == open(os.path.join(vendored, f), "rb").read()
                                 for f in ours), f"{ours} vs {theirs}")

    r = fulgur(work, "fit", *SHORT)
    check("fulgur fit on the run config and the override", r.returncode == 0, r.stderr[-3000:])
    for cb in ("SetPrecisionAndCudnnCallback:", "SetWandbLoggerCallback does nothing",
               "CustomReprCallback does nothing"):
        check(f"one warning: {cb}", r.stderr.count(cb) == 1, r.stderr[-3000:])
    runs = sorted(glob.glob(os.path.join(work, "work_dirs", "*", "version_*")))
    check("a TensorBoardLogger run directory under work_dirs", len(runs) == 1, str(runs))
    run = runs[0] if runs else work
    logged = tb_scalars(run)
    want = {"fit/loss_cls", "fit/loss_parameter", "fit/loss", "val/loss_cls_0", "val/ROC_0", "val/ROC_1",
            "val/F1_1", "val/AP_1", "lr-AdamW", "epoch"}
    check("the TensorBoard scalars have toy_project's metric names", want <= set(logged),
          str(sorted(logged)))
    check("the ClasswiseWrapper entries are named by the labels",
          all(f"val/binarystatscores_{lab}_1" in logged for lab in ("tp", "fp", "tn", "fn", "support")),
          str(sorted(logged)))
    # Per epoch, in order: the val values the checkpoint names are made of.
    per_epoch = {k: [v for _, v in logged.get(k, [])] for k in ("val/F1_1", "val/AP_1", "val/ROC_1")}
    check("val metrics after each of the 2 epochs", all(len(v) == 2 for v in per_epoch.values()),
          str(per_epoch))
    ck = os.path.join(run, "checkpoints")
    names = sorted(os.listdir(ck)) if os.path.isdir(ck) else []
    pat = re.compile(r"^epoch:(\d+)-val_f1:(.+)-val_ap:(.+)-val_roc:(.+)\.ckpt$")
    named = [n for n in names if pat.match(n)]
    check("checkpoints named by the config's filename template", len(named) == 2, str(names))
    for n in named:
        e, f1, ap, roc = pat.match(n).groups()
        vals = [per_epoch[k][int(e)] if int(e) < len(per_epoch[k]) else float("nan")
                for k in ("val/F1_1", "val/AP_1", "val/ROC_1")]
        # Python's {:.4g} of the logged value (TensorBoard keeps float32,
        # so the last digit is compared with float32's error).
        check(f"{n}: its numbers are the logged values, formatted as Python's {{:.4g}}",
              all(t == format(float(t), ".4g") and abs(float(t) - v) <= 5e-4 * abs(v) + 1e-7
                  for t, v in zip((f1, ap, roc), vals)), str(vals))
    check("last.ckpt and best.ckpt are links", os.path.islink(os.path.join(ck, "last.ckpt"))
          and os.path.islink(os.path.join(ck, "best.ckpt")), str(names))
    check("the run directory holds the merged config", os.path.isfile(os.path.join(run, "config.yaml")))

    last = os.path.join(ck, "last.ckpt")
    if os.path.exists(last) and len(per_epoch["val/ROC_1"]) == 2:
        p, y = preds_of(eager(last), "test", work)
        roc, f1 = roc_auc_score(y.numpy(), p.numpy()), f1_score(y.numpy(), (p > 0.5).long().numpy())
        got_roc, got_f1 = per_epoch["val/ROC_1"][-1], per_epoch["val/F1_1"][-1]
        # TensorBoard keeps float32.
        check("last epoch's val/ROC_1 and val/F1_1 are scikit-learn's with last.ckpt's weights",
              abs(got_roc - roc) < 1e-5 and abs(got_f1 - f1) < 1e-5, f"{got_roc} vs {roc}, {got_f1} vs {f1}")

    best = os.path.join(ck, "best.ckpt")
    r = fulgur(work, "test", "--ckpt_path", best, "--trainer.num_threads", "1")
    check("fulgur test --ckpt_path best.ckpt", r.returncode == 0, r.stderr[-3000:])
    test_runs = sorted(set(glob.glob(os.path.join(work, "work_dirs", "*", "version_*"))) - set(runs))
    tvals = {k: v[-1][1] for k, v in tb_scalars(test_runs[-1]).items()} if test_runs else {}
    if os.path.exists(best):
        p, y = preds_of(eager(best), "test", work)
        roc = roc_auc_score(y.numpy(), p.numpy())
        check("test/ROC is scikit-learn's roc_auc_score with best.ckpt's weights",
              abs(tvals.get("test/ROC", float("nan")) - roc) < 1e-5, f"{tvals} vs {roc}")

    r = fulgur(work, "predict", "--ckpt_path", best, "--trainer.num_threads", "1")
    check("fulgur predict --ckpt_path best.ckpt", r.returncode == 0, r.stderr[-3000:])
    out = glob.glob(os.path.join(run, "*", "confusion_matrix", "predictions.pt"))
    check("confusion_matrix/predictions.pt written under the checkpoint's run directory",
          len(out) == 1, str(out))
    if out and os.path.exists(best):
        mats = torch.load(out[0])
        p, y = preds_of(eager(best), "test", work)
        cm = torch.tensor(confusion_matrix(y.numpy(), (p > 0.5).long().numpy(), labels=[0, 1]))
        check("one running matrix per batch of 4, counting 4, 8, ... samples",
              len(mats) == 25 and [int(m.sum()) for m in mats] == list(range(4, 101, 4)),
              str([int(m.sum()) for m in mats]))
        check("the last matrix is scikit-learn's confusion_matrix of the test file",
              torch.equal(mats[-1], cm), f"{mats[-1]} vs {cm}")

finish()
