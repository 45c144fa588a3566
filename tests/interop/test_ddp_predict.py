"""`fulgur predict` under strategy ddp (devices: 2, ranks started by fulgur).

- predict_gather: true: logits/predictions.pt, probs/predictions.pt,
  labels/predictions.pt and labels/labels.csv are identical (torch.equal,
  byte for byte for the CSV) to a one-process predict of the same
  checkpoint; rank 1 writes no file of its own. 37 samples, batch 5: the
  ranks hold 19 and 18 samples, so their batches (5,5,5,4 and 5,5,5,3) are
  not the single process's (7 x 5, then 2).
- Without it: rank 0 writes predictions.pt and labels.csv, rank 1
  predictions_1.pt and labels_1.csv; together they hold every sample once,
  and the labels.csv indices are the dataset's.
- A task whose results are not one row per sample (a scalar per batch) is
  gathered in rank order, with a warning.
- A rank killed during predict fails the run, naming the rank.
"""
import os
import subprocess
import tempfile
import time
from typing import Dict

import torch

from interop import FULGUR, SANITIZED, check, finish

torch.manual_seed(11)
N, F, C, B = 37, 5, 3, 5
X = torch.randn(N, F)
Y = torch.randint(0, C, (N,))


class Slow(torch.nn.Module):
    """A scripted module whose task sleeps per batch (the kill test) and
    one whose result is a scalar per batch (not batch-shaped)."""

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(F, 1)

    def forward(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        return self.lin(batch["x"])

    @torch.jit.export
    def predict_total(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        return batch["x"].sum()

    @torch.jit.export
    def predict_nap(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        t = torch.zeros(200000)
        for _ in range(2000):
            t = t + 1.0
        return batch["x"][:, 0]


def config(work, name, module, model, tasks, devices, gather, batch=B, timeout=30):
    path = os.path.join(work, name + ".yaml")
    with open(path, "w") as f:
        f.write(f"""
seed_everything: 3
trainer:
  default_root_dir: {work}/runs_{name}
  enable_progress_bar: false
  num_threads: 1
  devices: {devices}
  ddp_timeout: {timeout}
model:
  class_path: {module}
  init_args:
    model: {model}
    predict_tasks: {tasks}
    predict_path: {work}/out_{name}
    predict_gather: {str(gather).lower()}
data:
  class_path: fulgur.DataModule
  init_args:
    dataset_cfg:
      predict:
        class_path: fulgur.data.CSV
        init_args: {{path: {work}/data.csv, target: label}}
    dataloader_cfg:
      predict: {{batch_size: {batch}}}
""")
    return path, os.path.join(work, "out_" + name)


def run(args, timeout=120):
    e = dict(os.environ)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "NODE_RANK"):
        e.pop(k, None)
    return subprocess.run([FULGUR] + args, capture_output=True, text=True, env=e, timeout=timeout)


def load(path):
    return torch.load(path)


def same_lists(a, b):
    return len(a) == len(b) and all(x.shape == y.shape and x.dtype == y.dtype and torch.equal(x, y)
                                    for x, y in zip(a, b))


with tempfile.TemporaryDirectory() as work:
    with open(os.path.join(work, "data.csv"), "w") as f:
        f.write(",".join(f"f{i}" for i in range(F)) + ",label\n")
        for x, y in zip(X.tolist(), Y.tolist()):
            f.write(",".join(repr(v) for v in x) + f",{y}\n")
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(F, 6), torch.nn.ReLU(), torch.nn.Linear(6, C))
    ckpt = os.path.join(work, "net.ckpt")
    torch.save({"state_dict": {"model.layers." + k: v for k, v in net.state_dict().items()}}, ckpt)
    mlp = f"{{class_path: fulgur.models.MLP, init_args: {{in_features: {F}, hidden: [6], out_features: {C}}}}}"
    tasks = "[logits, probs, labels]"
    cls = "fulgur.ClassificationModule"

    one, one_out = config(work, "one", cls, mlp, tasks, 1, False)
    gat, gat_out = config(work, "gather", cls, mlp, tasks, 2, True)
    sep, sep_out = config(work, "sep", cls, mlp, tasks, 2, False)
    r1 = run(["predict", "--config", one, "--ckpt_path", ckpt])
    check("one-process predict", r1.returncode == 0, r1.stderr[-2000:])

    # 1. predict_gather: identical to one process.
    r2 = run(["predict", "--config", gat, "--ckpt_path", ckpt])
    check("2-rank predict with predict_gather", r2.returncode == 0, r2.stderr[-2000:])
    if r1.returncode == 0 and r2.returncode == 0:
        for t in ("logits", "probs", "labels"):
            a = load(os.path.join(one_out, t, "predictions.pt"))
            b = load(os.path.join(gat_out, t, "predictions.pt"))
            check(f"predict_gather: {t}/predictions.pt equals one process's "
                  f"({len(b)} batches of {[x.shape[0] for x in b]})",
                  same_lists(a, b) and [x.shape[0] for x in a] == [5] * 7 + [2],
                  f"{[x.shape for x in a]} {[x.shape for x in b]}")
        csv1 = open(os.path.join(one_out, "labels", "labels.csv")).read()
        csv2 = open(os.path.join(gat_out, "labels", "labels.csv")).read()
        check("predict_gather: labels.csv equals one process's", csv1 == csv2 and
              csv1.count("\n") == N + 1)
        files = sorted(os.listdir(os.path.join(gat_out, "labels")))
        check("predict_gather: rank 1 writes no file", files == ["labels.csv", "predictions.pt"],
              str(files))

    # 2. Without gathering: a file per rank, every sample exactly once.
    r3 = run(["predict", "--config", sep, "--ckpt_path", ckpt])
    check("2-rank predict without predict_gather", r3.returncode == 0, r3.stderr[-2000:])
    if r1.returncode == 0 and r3.returncode == 0:
        want = torch.cat(load(os.path.join(one_out, "logits", "predictions.pt")))
        p0 = torch.cat(load(os.path.join(sep_out, "logits", "predictions.pt")))
        p1 = torch.cat(load(os.path.join(sep_out, "logits", "predictions_1.pt")))
        check("per-rank files: rank 0 has samples 0, 2, 4 ..., rank 1 has 1, 3, 5 ...",
              torch.equal(p0, want[0::2]) and torch.equal(p1, want[1::2]),
              f"{p0.shape} {p1.shape}")
        rows = []
        for name in ("labels.csv", "labels_1.csv"):
            lines = open(os.path.join(sep_out, "labels", name)).read().split()
            check(f"{name} has a header", lines[0] == "index,label")
            rows += [tuple(map(int, l.split(","))) for l in lines[1:]]
        want_labels = want.argmax(1).tolist()
        check("labels.csv + labels_1.csv: every sample once, with its dataset index",
              sorted(rows) == [(i, want_labels[i]) for i in range(N)], str(sorted(rows)[:5]))
        check("per-rank files: nothing else written",
              sorted(os.listdir(os.path.join(sep_out, "logits"))) == ["predictions.pt", "predictions_1.pt"])

    # 3. Results that are not one row per sample: rank order, with a warning.
    torch.manual_seed(1)
    torch.jit.script(Slow()).save(os.path.join(work, "slow.pt"))
    ts = f"{{class_path: fulgur.models.TorchScript, init_args: {{path: {work}/slow.pt}}}}"
    sc, sc_out = config(work, "scalar", "fulgur.LightningModule", ts, "[total]", 2, True)
    r4 = run(["predict", "--config", sc])
    check("predict_gather with a scalar per batch", r4.returncode == 0, r4.stderr[-2000:])
    if r4.returncode == 0:
        got = load(os.path.join(sc_out, "total", "predictions.pt"))
        idx = list(range(N))
        r0, r1_ = idx[0::2], idx[1::2]
        want = [X[r0[i:i + B]].sum() for i in range(0, len(r0), B)] + \
               [X[r1_[i:i + B]].sum() for i in range(0, len(r1_), B)]
        check("scalar results: rank 0's batches, then rank 1's",
              len(got) == len(want) and all(torch.allclose(a, b) for a, b in zip(got, want)),
              f"{len(got)} {len(want)}")
        check("scalar results: a warning says they are in rank order",
              "rank order" in r4.stdout + r4.stderr, (r4.stdout + r4.stderr)[-800:])

    # 4. A rank killed during predict fails the run, naming it.
    kl, kl_out = config(work, "kill", "fulgur.LightningModule", ts, "[nap]", 2, True, batch=1,
                        timeout=20)
    p = subprocess.Popen([FULGUR, "predict", "--config", kl], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True,
                         env={k: v for k, v in os.environ.items()
                              if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")})
    victim = None
    deadline = time.monotonic() + 30
    while victim is None and time.monotonic() < deadline and p.poll() is None:
        try:
            with open(f"/proc/{p.pid}/task/{p.pid}/children") as f:
                kids = [int(x) for x in f.read().split()]
        except OSError:
            kids = []
        if kids:
            victim = kids[0]
        else:
            time.sleep(0.05)
    # Rank 0 creates the task's folder just before the barrier both ranks
    # pass on their way into the batches (about 0.2 s each, 19 per rank).
    while time.monotonic() < deadline and not os.path.isdir(os.path.join(kl_out, "nap")):
        time.sleep(0.05)
    time.sleep(1.0)
    if victim:
        os.kill(victim, 9)
    # Sanitized ranks run their exit-time leak check first.
    out, err = p.communicate(timeout=180 if SANITIZED else 60)
    # The launcher ends the run on the rank's death; it does not wait for
    # rank 0's collectives to time out (20 s), which would say so. Said by
    # the messages, not a clock: tests do not assert timings.
    check("a rank SIGKILLed during predict fails the run naming rank 1, not by the collective timeout",
          victim is not None and p.returncode != 0 and "rank 1: killed by signal 9 (SIGKILL)" in err and
          not any(w in err.lower() for w in ("timed out", "timeout", "did not arrive")),
          f"rc={p.returncode} {err[-800:]}")
    print("# " + err.strip().splitlines()[-1])

finish()
