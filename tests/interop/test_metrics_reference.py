"""fulgur's TorchMetrics-compatible metrics against reference formulas written
in plain python3-torch (torchmetrics itself is not installed), on random
tensors, to 1e-6.

1. End to end: `fulgur test --json` on a CSV whose features are the logits
   (a fulgur.models.MLP with hidden: [] loads an identity checkpoint written
   here), with a MetricCollection of multiclass Precision / Recall / F1Score /
   AUROC / Accuracy as the evaluator, and with a bare F1Score. The values
   appear as test/<name>.
2. Through libfulgur's C API (ctypes; the real metric objects, created from
   YAML by the registry, as the trainer does), for what a
   ClassificationModule cannot feed: binary tasks, regression, per-class
   tensors, ConfusionMatrix tensors, many updates of odd sizes, reset.

The reference follows TorchMetrics' definitions: stats from a confusion
matrix; macro averages leave out classes never seen; top_k counts a sample
right when its target is among the k best scores (else its best class);
logits get a sigmoid / softmax per update when a value is outside [0, 1];
AUROC is the trapezoid over the exact ROC curve with one point per distinct
score (checked against the Mann-Whitney rank formula too); 0/0 is 0.
"""
import json
import os
import subprocess
import sys
import tempfile

import torch

from interop import FULGUR, SANITIZED, check, finish
from metrics_capi import Lib, batches_of, cfg, split
BUILD = os.environ.get("FG_BUILD_DIR") or os.path.dirname(os.path.abspath(FULGUR))
TOL = 1e-6


def close(name, got, want):
    if isinstance(want, (list, tuple)):
        ok = isinstance(got, list) and len(got) == len(want) and all(
            abs(g - w) <= TOL for g, w in zip(got, want))
    else:
        ok = isinstance(got, float) and abs(got - want) <= TOL
    check(name, ok, f"fulgur {got} vs python {want}")


# ---- reference formulas (python3-torch) ----------------------------------------


def unit(p):
    return bool(((p >= 0) & (p <= 1)).all())


def binary_probs(p):
    return p if unit(p) else p.sigmoid()


def binary_labels(p, threshold):
    if not p.is_floating_point():
        return p.long()
    return (binary_probs(p) > threshold).long()


def multiclass_labels(p, t, top_k):
    if not p.is_floating_point() or p.ndim == t.ndim:
        return p.long()
    if top_k == 1:
        return p.argmax(1)
    idx = p.topk(top_k, dim=1).indices
    return torch.where((idx == t.unsqueeze(1)).any(1), t, idx[:, 0])


def confmat(pred, target, c):
    return torch.bincount(target * c + pred, minlength=c * c).reshape(c, c)


def safe_div(num, den, zero_division=0.0):
    return torch.where(den != 0, num / torch.where(den != 0, den, torch.ones_like(den)),
                       torch.full_like(den, zero_division))


def stat_reduce(stat, cm, average, top_k=1, zero_division=0.0, binary=False):
    cm = cm.double()
    if binary:
        tp, fp, fn = cm[1, 1], cm[0, 1], cm[1, 0]
    else:
        tp = cm.diag()
        fp, fn = cm.sum(0) - tp, cm.sum(1) - tp

    def score(tp, fp, fn):
        num, den = {"precision": (tp, tp + fp), "recall": (tp, tp + fn),
                    "f1": (2 * tp, 2 * tp + fp + fn)}[stat]
        return safe_div(num, den, zero_division)

    if binary:
        return score(tp, fp, fn).item()
    if average == "micro":
        return score(tp.sum(), fp.sum(), fn.sum()).item()
    s = score(tp, fp, fn)
    if average in (None, "none"):
        return s.tolist()
    if average == "weighted":
        w = tp + fn
    else:
        # _fbeta_reduce does not pass top_k: F1 always uses the top_k == 1 rule.
        w = ((tp + fp + fn) != 0 if top_k == 1 or stat == "f1" else (tp + fn) != 0).double()
    return safe_div((w * s).sum(), w.sum()).item()


def roc_auc(scores, pos):
    """TorchMetrics' _binary_clf_curve + trapz, in float64."""
    s = scores.double()
    order = torch.argsort(s, descending=True)
    s, y = s[order], pos.long()[order]
    distinct = torch.where(s[1:] - s[:-1] != 0)[0]
    idx = torch.cat([distinct, torch.tensor([s.numel() - 1])])
    tps = torch.cumsum(y, 0)[idx].double()
    fps = (1 + idx).double() - tps
    zero = torch.zeros(1, dtype=torch.float64)
    tps, fps = torch.cat([zero, tps]), torch.cat([zero, fps])
    if fps[-1] <= 0 or tps[-1] <= 0:
        return 0.0
    return torch.trapz(tps / tps[-1], fps / fps[-1]).item()


def mann_whitney(scores, pos):
    """The same area from tie-averaged ranks, as an independent check."""
    s = scores.double()
    _, inverse, counts = torch.unique(s, return_inverse=True, return_counts=True)
    counts = counts.double()
    first = torch.cumsum(counts, 0) - counts  # values below each group
    ranks = (first + (counts + 1) / 2)[inverse]  # 1-based, ties averaged
    npos = int(pos.sum())
    nneg = s.numel() - npos
    if npos == 0 or nneg == 0:
        return 0.0
    return ((ranks[pos.bool()].sum() - npos * (npos + 1) / 2.0) / (npos * nneg)).item()


def multiclass_auroc(probs, target, c, average):
    per = [roc_auc(probs[:, k], target == k) for k in range(c)]
    if average in (None, "none"):
        return per
    w = torch.bincount(target, minlength=c).double() if average == "weighted" else torch.ones(c, dtype=torch.float64)
    return safe_div((w * torch.tensor(per, dtype=torch.float64)).sum(), w.sum()).item()


def multiclass_probs(batches):
    return torch.cat([p if unit(p) else p.softmax(1) for p in batches])


# ---- 2. the C API ----------------------------------------------------------------------


def c_api_checks(lib):
    g = torch.Generator().manual_seed(0)

    # Binary Precision / Recall / F1Score on probabilities, logits and labels.
    n = 517
    target = torch.randint(0, 2, (n,), generator=g)
    sizes = split(n, g)
    inputs = {
        "probabilities": torch.rand(n, generator=g),
        "logits": torch.randn(n, generator=g) * 3,
        "labels": torch.randint(0, 2, (n,), generator=g),
    }
    for kind, preds in inputs.items():
        for threshold in (0.5, 0.3):
            pred = torch.cat([binary_labels(p, threshold) for p in torch.split(preds, sizes)])
            cm = confmat(pred, target, 2)
            for cls, stat in (("Precision", "precision"), ("Recall", "recall"), ("F1Score", "f1")):
                got = lib.run(cfg(f"torchmetrics.{cls}", task="binary", threshold=threshold),
                              batches_of(preds, target, sizes))
                close(f"binary {cls} on {kind}, threshold {threshold}", got,
                      stat_reduce(stat, cm, None, binary=True))

    # Multiclass, every average, top_k 1..3, scores and labels. Class 5 of 6
    # never occurs, so macro must leave it out.
    n, c = 611, 6
    target = torch.randint(0, 5, (n,), generator=g)
    scores = torch.randn(n, c, generator=g)
    labels = torch.randint(0, 5, (n,), generator=g)
    sizes = split(n, g)
    for kind, preds, top_ks in (("scores", scores, (1, 2, 3)), ("labels", labels, (1,))):
        for top_k in top_ks:
            pred = multiclass_labels(preds, target, top_k)
            cm = confmat(pred, target, c)
            for average in ("micro", "macro", "weighted", "none"):
                for cls, stat in (("Precision", "precision"), ("Recall", "recall"), ("F1Score", "f1")):
                    got = lib.run(cfg(f"fulgur.metrics.{cls}", task="multiclass", num_classes=c,
                                      average=average, top_k=top_k),
                                  batches_of(preds, target, sizes))
                    if isinstance(got, torch.Tensor):
                        check(f"multiclass {cls} average none is float32", got.dtype == torch.float32)
                        got = got.double().tolist()
                    close(f"multiclass {cls} on {kind}, top_k {top_k}, average {average}", got,
                          stat_reduce(stat, cm, average, top_k=top_k))

    # zero_division: a class predicted never (precision 0/0).
    t = torch.tensor([0, 1, 2, 2])
    p = torch.tensor([0, 0, 2, 2])
    for zd in (0, 1):
        got = lib.run(cfg("fulgur.metrics.Precision", task="multiclass", num_classes=3, average="none",
                          zero_division=zd), [(p, t)])
        close(f"zero_division {zd}", got.double().tolist(),
              stat_reduce("precision", confmat(p, t, 3), "none", zero_division=float(zd)))

    # ConfusionMatrix: counts (int64) and the three normalizations (float32).
    n, c = 403, 4
    target = torch.randint(0, c - 1, (n,), generator=g)  # class 3 never a target
    scores = torch.randn(n, c, generator=g)
    sizes = split(n, g)
    cm = confmat(scores.argmax(1), target, c)
    got = lib.run(cfg("fulgur.metrics.ConfusionMatrix", task="multiclass", num_classes=c),
                  batches_of(scores, target, sizes))
    check("multiclass ConfusionMatrix counts", got.dtype == torch.int64 and torch.equal(got, cm),
          f"{got} vs {cm}")
    cmf = cm.float()
    norms = {"true": cmf / cmf.sum(1, keepdim=True), "pred": cmf / cmf.sum(0, keepdim=True),
             "all": cmf / cmf.sum()}
    for how, want in norms.items():
        want = torch.nan_to_num(want, nan=0.0)
        got = lib.run(cfg("fulgur.metrics.ConfusionMatrix", task="multiclass", num_classes=c,
                          normalize=f"'{how}'"), batches_of(scores, target, sizes))
        check(f"multiclass ConfusionMatrix normalize {how}",
              got.dtype == torch.float32 and torch.allclose(got, want, rtol=0, atol=TOL),
              f"{got} vs {want}")
    probs = torch.randn(n, generator=g) * 2
    btarget = torch.randint(0, 2, (n,), generator=g)
    bcm = confmat(torch.cat([binary_labels(p, 0.5) for p in torch.split(probs, sizes)]), btarget, 2)
    got = lib.run(cfg("torchmetrics.ConfusionMatrix", task="binary"), batches_of(probs, btarget, sizes))
    check("binary ConfusionMatrix counts", torch.equal(got, bcm), f"{got} vs {bcm}")

    # Binary AUROC: probabilities with many ties, saturating logits (ties at
    # sigmoid == 1), well-separated logits.
    n = 733
    target = torch.randint(0, 2, (n,), generator=g)
    sizes = split(n, g)
    cases = {
        "tied probabilities": (torch.rand(n, generator=g) * 10).round() / 10,
        "saturating logits": torch.randn(n, generator=g) * 30,
        "logits": torch.randn(n, generator=g) + target,
    }
    for kind, preds in cases.items():
        probs = torch.cat([binary_probs(p) for p in torch.split(preds, sizes)])
        want = roc_auc(probs, target)
        check(f"reference AUROC agrees with Mann-Whitney ({kind})",
              abs(want - mann_whitney(probs, target)) <= 1e-12)
        got = lib.run(cfg("fulgur.metrics.AUROC", task="binary"), batches_of(preds, target, sizes))
        close(f"binary AUROC on {kind}", got, want)
    got = lib.run(cfg("fulgur.metrics.AUROC", task="binary"),
                  batches_of(cases["logits"], torch.zeros(n, dtype=torch.int64), sizes))
    close("binary AUROC without positives is 0", got, 0.0)

    # Multiclass AUROC: logits (softmax per update) and probabilities.
    n, c = 529, 5
    target = torch.randint(0, c, (n,), generator=g)
    logits = torch.randn(n, c, generator=g) * 2
    sizes = split(n, g)
    for kind, preds in (("logits", logits), ("probabilities", logits.softmax(1))):
        probs = multiclass_probs(torch.split(preds, sizes))
        for average in ("macro", "weighted", "none"):
            got = lib.run(cfg("fulgur.metrics.AUROC", task="multiclass", num_classes=c, average=average),
                          batches_of(preds, target, sizes))
            if isinstance(got, torch.Tensor):
                got = got.double().tolist()
            close(f"multiclass AUROC on {kind}, average {average}", got,
                  multiclass_auroc(probs, target, c, average))

    # Regression, float32 and float64, 2-d, many updates.
    for dtype in (torch.float32, torch.float64):
        preds = (torch.randn(301, 3, generator=g) * 4).to(dtype)
        target = (torch.randn(301, 3, generator=g) * 4).to(dtype)
        sizes = split(301, g)
        diff = preds.double() - target.double()
        for yaml, want in ((cfg("fulgur.metrics.MeanSquaredError"), (diff ** 2).mean().item()),
                           (cfg("torchmetrics.MeanSquaredError", squared="false"), (diff ** 2).mean().sqrt().item()),
                           (cfg("fulgur.metrics.MeanAbsoluteError"), diff.abs().mean().item())):
            got = lib.run(yaml, batches_of(preds, target, sizes))
            close(f"{yaml} on {dtype}", got, want)

    # reset forgets the earlier updates.
    t1, p1 = torch.randint(0, 3, (50,), generator=g), torch.randn(50, 3, generator=g)
    t2, p2 = torch.randint(0, 3, (40,), generator=g), torch.randn(40, 3, generator=g)
    got = lib.run(cfg("fulgur.metrics.F1Score", task="multiclass", num_classes=3, average="macro"),
                  [(p2, t2)], reset_first=[(p1, t1)])
    close("F1Score after reset", got, stat_reduce("f1", confmat(p2.argmax(1), t2, 3), "macro"))
    got = lib.run(cfg("fulgur.metrics.AUROC", task="multiclass", num_classes=3),
                  [(p2, t2)], reset_first=[(p1, t1)])
    close("AUROC after reset", got, multiclass_auroc(p2.softmax(1), t2, 3, "macro"))

    # MetricCollection: one dict, keys by class name or by mapping key.
    t, p = torch.randint(0, 4, (97,), generator=g), torch.randn(97, 4, generator=g)
    got = lib.run("{class_path: torchmetrics.MetricCollection, init_args: {metrics: ["
                  + cfg("fulgur.metrics.Recall", task="multiclass", num_classes=4, average="macro") + ", "
                  + cfg("fulgur.metrics.AUROC", task="multiclass", num_classes=4) + "]}}",
                  batches_of(p, t, [30, 30, 37]))
    check("MetricCollection keys", isinstance(got, dict) and list(got) == ["Recall", "AUROC"], str(got))
    close("MetricCollection Recall", got.get("Recall"), stat_reduce("recall", confmat(p.argmax(1), t, 4), "macro"))
    close("MetricCollection AUROC", got.get("AUROC"),
          multiclass_auroc(multiclass_probs(torch.split(p, [30, 30, 37])), t, 4, "macro"))


# ---- 1. fulgur test --json --------------------------------------------------------------

COLLECTION = {  # name -> (metric config, reference on (logits, target, batches))
    "P_micro": ("fulgur.metrics.Precision", {}),
    "P_macro": ("fulgur.metrics.Precision", {"average": "macro"}),
    "R_weighted": ("torchmetrics.Recall", {"average": "weighted"}),
    "F1_macro": ("fulgur.metrics.F1Score", {"average": "macro"}),
    "F1_macro_top2": ("fulgur.metrics.F1Score", {"average": "macro", "top_k": 2}),
    "AUROC_macro": ("fulgur.metrics.AUROC", {}),
    "AUROC_weighted": ("fulgur.metrics.AUROC", {"average": "weighted"}),
    "Accuracy": ("fulgur.metrics.Accuracy", {}),
}


def cli_reference(name, x, y, k, batch):
    cls, args = COLLECTION[name]
    short = cls.rsplit(".", 1)[1]
    if short == "AUROC":
        return multiclass_auroc(multiclass_probs(torch.split(x, batch)), y, k, args.get("average", "macro"))
    if short == "Accuracy":
        return (x.argmax(1) == y).double().mean().item()
    top_k = args.get("top_k", 1)
    stat = {"Precision": "precision", "Recall": "recall", "F1Score": "f1"}[short]
    return stat_reduce(stat, confmat(multiclass_labels(x, y, top_k), y, k), args.get("average", "micro"),
                       top_k=top_k)


def cli_checks(tmp):
    k, n, batch = 4, 203, 16
    g = torch.Generator().manual_seed(1)
    x = torch.randn(n, k, generator=g) * 2
    y = torch.randint(0, k, (n,), generator=g)
    csv = os.path.join(tmp, "logits.csv")
    with open(csv, "w") as f:
        f.write(",".join(f"f{i}" for i in range(k)) + ",label\n")
        for row, label in zip(x.tolist(), y.tolist()):
            f.write(",".join(repr(v) for v in row) + f",{label}\n")
    x = x.float()  # what fulgur reads
    ckpt = os.path.join(tmp, "identity.ckpt")
    torch.save({"epoch": 0, "global_step": 0, "state_dict": {
        "model.layers.0.weight": torch.eye(k), "model.layers.0.bias": torch.zeros(k)},
        "optimizer_states": [], "lr_schedulers": [], "callbacks": {}}, ckpt)

    def run(evaluator, tag):
        path = os.path.join(tmp, f"{tag}.yaml")
        with open(path, "w") as f:
            f.write(f"""
seed_everything: 0
trainer:
  default_root_dir: {tmp}/runs_{tag}
  enable_progress_bar: false
  num_threads: 1
model:
  class_path: fulgur.ClassificationModule
  init_args:
    model:
      class_path: fulgur.models.MLP
      init_args: {{in_features: {k}, hidden: [], out_features: {k}}}
    evaluator_cfg: {evaluator}
optimizer_config:
  optimizer: {{class_path: torch.optim.SGD, init_args: {{lr: 0.1}}}}
data:
  class_path: fulgur.DataModule
  init_args:
    dataset_cfg:
      class_path: fulgur.data.CSV
      init_args: {{path: {csv}, target: label}}
    dataloader_cfg: {{batch_size: {batch}}}
""")
        r = subprocess.run([FULGUR, "test", "--config", path, "--ckpt_path", ckpt, "--json"],
                           capture_output=True, text=True)
        check(f"fulgur test with {tag} succeeds", r.returncode == 0, r.stderr)
        return json.loads(r.stdout) if r.returncode == 0 else {}

    py_loss = abs(torch.nn.functional.cross_entropy(x, y).item())
    members = ", ".join(
        f"{name}: " + cfg(cls, task="multiclass", num_classes=k, **args)
        for name, (cls, args) in COLLECTION.items())
    m = run("{class_path: fulgur.metrics.MetricCollection, init_args: {metrics: {" + members + "}}}",
            "collection")
    check("the identity model's loss is the logits' cross entropy",
          abs(m.get("test/loss", 1e9) - py_loss) < 1e-5, f"{m.get('test/loss')} vs {py_loss}")
    for name in COLLECTION:
        close(f"fulgur test: test/{name}", m.get(f"test/{name}"),
              cli_reference(name, x, y, k, [batch] * (n // batch) + [n % batch]))

    m = run(cfg("torchmetrics.F1Score", task="multiclass", num_classes=k, average="macro"), "f1")
    close("fulgur test: a bare F1Score logs test/F1Score", m.get("test/F1Score"),
          stat_reduce("f1", confmat(x.argmax(1), y, k), "macro"))


with tempfile.TemporaryDirectory() as tmp:
    cli_checks(tmp)
lib_path = os.path.join(BUILD, "libfulgur.so")
if SANITIZED:
    # A sanitizer-instrumented libfulgur cannot be loaded into an
    # uninstrumented Python; the CLI checks above still ran.
    print("ok - # SKIP C API checks: libfulgur is built with sanitizers")
else:
    c_api_checks(Lib(lib_path))

finish()
