"""fulgur's AveragePrecision, StatScores, ClasswiseWrapper and the binary /
multiclass / multilabel tasks of AUROC, Precision, Recall and F1Score against
scikit-learn (python3-sklearn), through libfulgur's C API (the registry builds
the metrics from YAML, as the trainer does), to 1e-6.

Each case runs for several seeds, on random scores and on tied scores (a few
distinct values, so ties decide the curves), fed in batches of random sizes.
Where TorchMetrics and sklearn define an edge differently the check follows
TorchMetrics and says so: multiclass macro averages leave out classes never
seen (sklearn averages every listed label, so it gets the seen ones), a
multiclass AveragePrecision class without positives is NaN and left out of
macro, an AUROC class without positives (or negatives) is 0 where sklearn
raises. Logits get a sigmoid / softmax per update when a value is outside
[0, 1], as in TorchMetrics. ignore_index is checked against sklearn on the
samples that are left.
"""
import math
import os
import warnings

import numpy as np
import torch
from sklearn.exceptions import UndefinedMetricWarning
from sklearn.metrics import (average_precision_score, multilabel_confusion_matrix,
                             precision_recall_fscore_support, roc_auc_score)

from interop import FULGUR, SANITIZED, check, finish
from metrics_capi import Lib, batches_of, cfg, split

BUILD = os.environ.get("FG_BUILD_DIR") or os.path.dirname(os.path.abspath(FULGUR))
TOL = 1e-6
SEEDS = (0, 1, 2)
warnings.simplefilter("ignore", UndefinedMetricWarning)


def as_list(x):
    if isinstance(x, torch.Tensor):
        return x.double().flatten().tolist()
    if isinstance(x, np.ndarray):
        return [float(v) for v in x.flatten()]
    return x


def close(name, got, want, relative=False):
    """To TOL; relative=True scales TOL by the magnitude, for float32
    results of a few hundred (StatScores' macro and weighted means)."""
    got, want = as_list(got), as_list(want)

    def near(g, w):
        return abs(g - w) <= TOL * (max(1.0, abs(w)) if relative else 1.0)

    if isinstance(want, list):
        ok = isinstance(got, list) and len(got) == len(want) and all(
            (math.isnan(g) and math.isnan(w)) or near(g, w) for g, w in zip(got, want))
    else:
        ok = isinstance(got, float) and near(got, float(want))
    check(name, ok, f"fulgur {got} vs sklearn {want}")


def unit(p):
    return bool(((p >= 0) & (p <= 1)).all())


def per_update(batches, fn):
    """TorchMetrics' input transform, applied per update as it is."""
    return torch.cat([p if unit(p) else fn(p) for p, _ in batches])


def scores(kind, shape, g):
    """Random probabilities, tied probabilities (five values) or logits."""
    if kind == "random":
        return torch.rand(shape, generator=g)
    if kind == "tied":
        return torch.randint(0, 5, shape, generator=g).float() / 4
    return torch.randn(shape, generator=g) * 2


def np64(t):
    return t.double().numpy() if t.is_floating_point() else t.numpy()


def one_hot(t, c):
    return torch.nn.functional.one_hot(t, c).numpy()


# ---- binary ------------------------------------------------------------------------------


def binary_checks(lib, seed, kind):
    g = torch.Generator().manual_seed(100 + seed)
    n = 457
    target = torch.randint(0, 2, (n,), generator=g)
    preds = scores(kind, (n,), g)
    batches = batches_of(preds, target, split(n, g))
    probs = np64(per_update(batches, torch.sigmoid))
    y = target.numpy()
    tag = f"binary, seed {seed}, {kind}"

    close(f"AveragePrecision {tag}", lib.run(cfg("torchmetrics.AveragePrecision", task="binary"), batches),
          average_precision_score(y, probs))
    close(f"AUROC {tag}", lib.run(cfg("torchmetrics.AUROC", task="binary"), batches), roc_auc_score(y, probs))

    for threshold in (0.5, 0.3):
        pred = (probs > np.float32(threshold)).astype(np.int64)
        p, r, f, _ = precision_recall_fscore_support(y, pred, average="binary", zero_division=0)
        for cls, want in (("Precision", p), ("Recall", r), ("F1Score", f)):
            close(f"{cls} {tag}, threshold {threshold}",
                  lib.run(cfg(f"torchmetrics.{cls}", task="binary", threshold=threshold), batches), want)
        (tn, fp), (fn, tp) = multilabel_confusion_matrix(y, pred, labels=[1])[0]
        close(f"StatScores {tag}, threshold {threshold}",
              lib.run(cfg("torchmetrics.StatScores", task="binary", threshold=threshold), batches),
              [tp, fp, tn, fn, tp + fn])


# ---- multiclass -------------------------------------------------------------------------


def multiclass_checks(lib, seed, kind):
    g = torch.Generator().manual_seed(200 + seed)
    n, c = 523, 5
    # Class 4 is never a target: the curves' class without positives and the
    # macro averages' rule for classes never seen.
    target = torch.randint(0, c - 1, (n,), generator=g)
    preds = scores(kind, (n, c), g)
    batches = batches_of(preds, target, split(n, g))
    probs = np64(per_update(batches, lambda p: p.softmax(1)))
    y, Y = target.numpy(), one_hot(target, c)
    tag = f"multiclass, seed {seed}, {kind}"
    mc = dict(task="multiclass", num_classes=c)

    # AveragePrecision: per class as sklearn's one-vs-rest; class 4 is NaN.
    ap = average_precision_score(Y[:, :c - 1], probs[:, :c - 1], average=None)
    close(f"AveragePrecision {tag}, average none",
          lib.run(cfg("torchmetrics.AveragePrecision", average="none", **mc), batches), list(ap) + [math.nan])
    close(f"AveragePrecision {tag}, average macro (NaN class left out)",
          lib.run(cfg("torchmetrics.AveragePrecision", **mc), batches), ap.mean())
    close(f"AveragePrecision {tag}, average weighted",
          lib.run(cfg("torchmetrics.AveragePrecision", average="weighted", **mc), batches),
          average_precision_score(Y[:, :c - 1], probs[:, :c - 1], average="weighted"))

    # AUROC: one-vs-rest; class 4 has no positives and scores 0.
    auc = roc_auc_score(Y[:, :c - 1], probs[:, :c - 1], average=None)
    close(f"AUROC {tag}, average none",
          lib.run(cfg("torchmetrics.AUROC", average="none", **mc), batches), list(auc) + [0.0])
    close(f"AUROC {tag}, average macro", lib.run(cfg("torchmetrics.AUROC", **mc), batches),
          (auc.sum() + 0.0) / c)
    close(f"AUROC {tag}, average weighted",
          lib.run(cfg("torchmetrics.AUROC", average="weighted", **mc), batches),
          roc_auc_score(Y[:, :c - 1], probs[:, :c - 1], average="weighted"))

    # Stat scores on argmax labels (torch's argmax decides ties, as in
    # TorchMetrics; computed per batch like fulgur's).
    pred = torch.cat([p.argmax(1) for p, _ in batches]).numpy()
    labels = list(range(c))
    seen = sorted(set(y.tolist()) | set(pred.tolist()))
    for average in ("micro", "macro", "weighted", "none"):
        sk_avg = None if average == "none" else average
        p, r, f, _ = precision_recall_fscore_support(
            y, pred, labels=seen if average == "macro" else labels, average=sk_avg, zero_division=0)
        for cls, want in (("Precision", p), ("Recall", r), ("F1Score", f)):
            close(f"{cls} {tag}, average {average}",
                  lib.run(cfg(f"torchmetrics.{cls}", average=average, **mc), batches), want)
    mcm = multilabel_confusion_matrix(y, pred, labels=labels)
    rows = np.stack([mcm[:, 1, 1], mcm[:, 0, 1], mcm[:, 0, 0], mcm[:, 1, 0], mcm[:, 1, 1] + mcm[:, 1, 0]], 1)
    stat_checks(lib, f"StatScores {tag}", cfg_args=mc, batches=batches, rows=rows)


def stat_checks(lib, tag, cfg_args, batches, rows):
    """StatScores' four averages against sklearn's per-class confusion
    matrices ([tn, fp], [fn, tp]) stacked as [tp, fp, tn, fn, support]."""
    rows = rows.astype(np.float64)
    support = rows[:, 4]
    want = {"none": rows, "micro": rows.sum(0), "macro": rows.mean(0),
            "weighted": (rows * (support / support.sum())[:, None]).sum(0)}
    for average, w in want.items():
        got = lib.run(cfg("torchmetrics.StatScores", average=average, **cfg_args), batches)
        dtype_ok = got.dtype == (torch.float32 if average in ("macro", "weighted") else torch.int64)
        check(f"{tag}, average {average}: dtype {got.dtype}", dtype_ok)
        close(f"{tag}, average {average}", got, w, relative=dtype_ok and got.dtype == torch.float32)


# ---- multilabel -------------------------------------------------------------------------


def multilabel_checks(lib, seed, kind):
    g = torch.Generator().manual_seed(300 + seed)
    n, L = 389, 4
    target = torch.randint(0, 2, (n, L), generator=g)
    target[:, 3] = 0  # a label without positives
    preds = scores(kind, (n, L), g)
    batches = batches_of(preds, target, split(n, g))
    probs = np64(per_update(batches, torch.sigmoid))
    Y = target.numpy()
    tag = f"multilabel, seed {seed}, {kind}"
    ml = dict(task="multilabel", num_labels=L)

    # sklearn's AP of a label without positives is 0, as TorchMetrics'.
    for average in ("macro", "weighted", "micro", "none"):
        close(f"AveragePrecision {tag}, average {average}",
              lib.run(cfg("torchmetrics.AveragePrecision", average=average, **ml), batches),
              average_precision_score(Y, probs, average=None if average == "none" else average))
    # sklearn raises on label 3; TorchMetrics scores it 0.
    auc = roc_auc_score(Y[:, :3], probs[:, :3], average=None)
    close(f"AUROC {tag}, average none", lib.run(cfg("torchmetrics.AUROC", average="none", **ml), batches),
          list(auc) + [0.0])
    close(f"AUROC {tag}, average macro", lib.run(cfg("torchmetrics.AUROC", **ml), batches), auc.sum() / L)
    close(f"AUROC {tag}, average weighted", lib.run(cfg("torchmetrics.AUROC", average="weighted", **ml), batches),
          roc_auc_score(Y[:, :3], probs[:, :3], average="weighted"))
    close(f"AUROC {tag}, average micro", lib.run(cfg("torchmetrics.AUROC", average="micro", **ml), batches),
          roc_auc_score(Y, probs, average="micro"))

    for threshold in (0.5, 0.7):
        pred = (probs > np.float32(threshold)).astype(np.int64)
        for average in ("micro", "macro", "weighted", "none"):
            p, r, f, _ = precision_recall_fscore_support(
                Y, pred, average=None if average == "none" else average, zero_division=0)
            for cls, want in (("Precision", p), ("Recall", r), ("F1Score", f)):
                close(f"{cls} {tag}, threshold {threshold}, average {average}",
                      lib.run(cfg(f"torchmetrics.{cls}", average=average, threshold=threshold, **ml), batches),
                      want)
        mcm = multilabel_confusion_matrix(Y, pred)
        rows = np.stack([mcm[:, 1, 1], mcm[:, 0, 1], mcm[:, 0, 0], mcm[:, 1, 0], mcm[:, 1, 1] + mcm[:, 1, 0]], 1)
        stat_checks(lib, f"StatScores {tag}, threshold {threshold}",
                    cfg_args=dict(threshold=threshold, **ml), batches=batches, rows=rows)


# ---- ClasswiseWrapper --------------------------------------------------------------------


def classwise_checks(lib):
    """lightning_template's toy_project evaluator, as its config writes it."""
    g = torch.Generator().manual_seed(7)
    n = 211
    target = torch.randint(0, 2, (n,), generator=g)
    preds = scores("tied", (n,), g)
    batches = batches_of(preds, target, split(n, g))
    y, probs = target.numpy(), np64(preds)
    pred = (probs > 0.5).astype(np.int64)
    (tn, fp), (fn, tp) = multilabel_confusion_matrix(y, pred, labels=[1])[0]
    yaml = ("{class_path: torchmetrics.MetricCollection, init_args: {metrics: {"
            "AP: {class_path: torchmetrics.AveragePrecision, init_args: {task: binary}}, "
            "F1: {class_path: torchmetrics.F1Score, init_args: {task: binary}}, "
            "ROC: {class_path: torchmetrics.AUROC, init_args: {task: binary}}, "
            "stat: {class_path: torchmetrics.ClasswiseWrapper, init_args: {labels: [tp, fp, tn, fn, support], "
            "metric: {class_path: torchmetrics.StatScores, init_args: {task: binary}}}}}}}")
    got = lib.run(yaml, batches)
    want = {"AP": average_precision_score(y, probs), "ROC": roc_auc_score(y, probs),
            "F1": precision_recall_fscore_support(y, pred, average="binary", zero_division=0)[2],
            "binarystatscores_tp": tp, "binarystatscores_fp": fp, "binarystatscores_tn": tn,
            "binarystatscores_fn": fn, "binarystatscores_support": tp + fn}
    check("toy_project's collection keys", isinstance(got, dict) and sorted(got) == sorted(want), str(got))
    for k, w in want.items():
        close(f"toy_project's collection: {k}", got.get(k), float(w))

    c = 4
    t = torch.randint(0, c, (150,), generator=g)
    p = torch.randn(150, c, generator=g)
    got = lib.run("{class_path: torchmetrics.ClasswiseWrapper, init_args: {labels: [a, b, c, d], metric: "
                  + cfg("torchmetrics.AveragePrecision", task="multiclass", num_classes=c, average="none") + "}}",
                  [(p, t)])
    ap = average_precision_score(one_hot(t, c), np64(p.softmax(1)), average=None)
    check("ClasswiseWrapper of multiclass AveragePrecision: keys",
          list(got) == [f"multiclassaverageprecision_{x}" for x in "abcd"], str(got))
    close("ClasswiseWrapper of multiclass AveragePrecision: values", [got[k] for k in got], ap)


# ---- ignore_index -------------------------------------------------------------------------

IGNORE = -100


def ignore_checks(lib, seed, kind):
    """Samples whose target is ignore_index are left out: sklearn gets the
    rest. The curves drop them before the sigmoid/softmax decision, the stat
    scores after (TorchMetrics' formats)."""
    g = torch.Generator().manual_seed(400 + seed)
    tag = f"ignore_index, seed {seed}, {kind}"
    ig = dict(ignore_index=IGNORE)

    n = 331
    target = torch.randint(0, 2, (n,), generator=g)
    target[torch.rand(n, generator=g) < 0.2] = IGNORE
    preds = scores(kind, (n,), g)
    batches = batches_of(preds, target, split(n, g))
    keep = [(p[t != IGNORE], t[t != IGNORE]) for p, t in batches]
    y = torch.cat([t for _, t in keep]).numpy()
    probs = np64(per_update(keep, torch.sigmoid))
    close(f"binary AveragePrecision {tag}",
          lib.run(cfg("torchmetrics.AveragePrecision", task="binary", **ig), batches), average_precision_score(y, probs))
    close(f"binary AUROC {tag}", lib.run(cfg("torchmetrics.AUROC", task="binary", **ig), batches),
          roc_auc_score(y, probs))
    pred = torch.cat([(p if unit(p) else p.sigmoid())[t != IGNORE] > 0.5 for p, t in batches]).long().numpy()
    p_, r_, f_, _ = precision_recall_fscore_support(y, pred, average="binary", zero_division=0)
    for cls, want in (("Precision", p_), ("Recall", r_), ("F1Score", f_)):
        close(f"binary {cls} {tag}", lib.run(cfg(f"torchmetrics.{cls}", task="binary", **ig), batches), want)
    (tn, fp), (fn, tp) = multilabel_confusion_matrix(y, pred, labels=[1])[0]
    close(f"binary StatScores {tag}", lib.run(cfg("torchmetrics.StatScores", task="binary", **ig), batches),
          [tp, fp, tn, fn, tp + fn])

    n, c = 307, 4
    target = torch.randint(0, c, (n,), generator=g)
    target[torch.rand(n, generator=g) < 0.2] = IGNORE
    preds = scores(kind, (n, c), g)
    batches = batches_of(preds, target, split(n, g))
    keep = [(p[t != IGNORE], t[t != IGNORE]) for p, t in batches]
    y = torch.cat([t for _, t in keep])
    probs = np64(per_update(keep, lambda p: p.softmax(1)))
    mc = dict(task="multiclass", num_classes=c, average="none", **ig)
    close(f"multiclass AveragePrecision {tag}", lib.run(cfg("torchmetrics.AveragePrecision", **mc), batches),
          average_precision_score(one_hot(y, c), probs, average=None))
    close(f"multiclass AUROC {tag}", lib.run(cfg("torchmetrics.AUROC", **mc), batches),
          roc_auc_score(one_hot(y, c), probs, average=None))
    pred = torch.cat([p.argmax(1)[t != IGNORE] for p, t in batches]).numpy()
    p_, r_, f_, _ = precision_recall_fscore_support(y.numpy(), pred, labels=list(range(c)), zero_division=0)
    for cls, want in (("Precision", p_), ("Recall", r_), ("F1Score", f_)):
        close(f"multiclass {cls} {tag}", lib.run(cfg(f"torchmetrics.{cls}", **mc), batches), want)
    mcm = multilabel_confusion_matrix(y.numpy(), pred, labels=list(range(c)))
    close(f"multiclass StatScores {tag}", lib.run(cfg("torchmetrics.StatScores", **mc), batches),
          np.stack([mcm[:, 1, 1], mcm[:, 0, 1], mcm[:, 0, 0], mcm[:, 1, 0], mcm[:, 1, 1] + mcm[:, 1, 0]], 1))

    n, L = 263, 3
    target = torch.randint(0, 2, (n, L), generator=g)
    target[torch.rand(n, L, generator=g) < 0.2] = IGNORE
    preds = scores(kind, (n, L), g)
    batches = batches_of(preds, target, split(n, g))
    probs = np64(per_update(batches, torch.sigmoid))
    pred = (probs > np.float32(0.5)).astype(np.int64)
    Y = target.numpy()
    ml = dict(task="multilabel", num_labels=L, **ig)
    kept = [Y[:, j] != IGNORE for j in range(L)]
    close(f"multilabel AveragePrecision {tag}, average none",
          lib.run(cfg("torchmetrics.AveragePrecision", average="none", **ml), batches),
          [average_precision_score(Y[k, j], probs[k, j]) for j, k in enumerate(kept)])
    close(f"multilabel AUROC {tag}, average none", lib.run(cfg("torchmetrics.AUROC", average="none", **ml), batches),
          [roc_auc_score(Y[k, j], probs[k, j]) for j, k in enumerate(kept)])
    flat = Y.flatten() != IGNORE
    close(f"multilabel AUROC {tag}, average micro", lib.run(cfg("torchmetrics.AUROC", average="micro", **ml), batches),
          roc_auc_score(Y.flatten()[flat], probs.flatten()[flat]))
    rows = []
    for j, k in enumerate(kept):
        (tn, fp), (fn, tp) = multilabel_confusion_matrix(Y[k, j], pred[k, j], labels=[1])[0]
        rows.append([tp, fp, tn, fn, tp + fn])
    close(f"multilabel StatScores {tag}", lib.run(cfg("torchmetrics.StatScores", average="none", **ml), batches),
          np.array(rows))
    close(f"multilabel Recall {tag}", lib.run(cfg("torchmetrics.Recall", average="none", **ml), batches),
          [precision_recall_fscore_support(Y[k, j], pred[k, j], average="binary", zero_division=0)[1]
           for j, k in enumerate(kept)])


lib_path = os.path.join(BUILD, "libfulgur.so")
if SANITIZED:
    # A sanitizer-instrumented libfulgur cannot be loaded into an
    # uninstrumented Python.
    print("ok - # SKIP libfulgur is built with sanitizers")
else:
    lib = Lib(lib_path)
    for seed in SEEDS:
        for kind in ("random", "tied", "logits"):
            binary_checks(lib, seed, kind)
            multiclass_checks(lib, seed, kind)
            multilabel_checks(lib, seed, kind)
            ignore_checks(lib, seed, kind)
    classwise_checks(lib)
finish()
