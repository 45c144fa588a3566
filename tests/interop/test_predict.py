"""`fulgur predict`: tasks, dependencies computed once per batch, batch
order, outputs Python reads, and the errors of ARCHITECTURE.md 3.6.

1. ClassificationModule's logits / probs / labels tasks from a checkpoint
   Python wrote: predictions.pt equals the PyTorch module's outputs over
   the same CSV rows in order; labels.csv has one row per sample.
2. A module scripted in Python drives tasks and dependencies (with a
   dependency of a dependency); a dependency numbering its calls proves
   each dependency runs exactly once per batch although three tasks use it,
   with batches pipelined across worker threads.
3. Unknown tasks, missing dependencies, cycles and a failing task are
   clear errors, and a failed run leaves no predictions.pt behind.
"""
import os
import subprocess
import tempfile
from typing import Dict, List, Optional

import torch

from interop import FULGUR, check, finish

N, F, C, BATCH = 37, 5, 4, 8  # 5 batches, the last one short
torch.manual_seed(2)
X = torch.randn(N, F)
Y = torch.randint(0, C, (N,))


class Tasks(torch.nn.Module):
    calls: int

    def __init__(self):
        super().__init__()
        self.lin = torch.nn.Linear(F, C)
        self.calls = 0

    def forward(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        return self.lin(batch["x"])

    @torch.jit.export
    def predict_base_dependency(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        return self.lin(batch["x"])

    @torch.jit.export
    def predict_feat_dependency_start(self) -> Dict[str, List[str]]:
        return {"dependency": ["base"]}  # the dict form; a bare list works too

    @torch.jit.export
    def predict_feat_dependency(self, batch: Dict[str, torch.Tensor],
                                deps: Dict[str, torch.Tensor]) -> torch.Tensor:
        return deps["base"].sum(1)

    # Numbers its calls: run twice for one batch, the numbers would skip.
    @torch.jit.export
    def predict_ticket_dependency(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        self.calls += 1
        return torch.tensor([self.calls])

    @torch.jit.export
    def predict_double_start(self, output_path: str) -> List[str]:
        return ["feat", "ticket"]

    @torch.jit.export
    def predict_double(self, batch: Dict[str, torch.Tensor],
                       deps: Dict[str, torch.Tensor]) -> Optional[torch.Tensor]:
        return deps["feat"] * 2

    @torch.jit.export
    def predict_plus_start(self, output_path: str) -> List[str]:
        return ["feat", "ticket"]

    @torch.jit.export
    def predict_plus(self, batch: Dict[str, torch.Tensor],
                     deps: Dict[str, torch.Tensor]) -> Optional[torch.Tensor]:
        return deps["feat"] + 1

    @torch.jit.export
    def predict_count_start(self, output_path: str) -> List[str]:
        return ["feat", "ticket"]

    @torch.jit.export
    def predict_count(self, batch: Dict[str, torch.Tensor],
                      deps: Dict[str, torch.Tensor]) -> Optional[torch.Tensor]:
        return deps["ticket"]

    @torch.jit.export
    def predict_ghost_start(self, output_path: str) -> List[str]:
        return ["nobody"]

    @torch.jit.export
    def predict_ghost(self, batch: Dict[str, torch.Tensor],
                      deps: Dict[str, torch.Tensor]) -> Optional[torch.Tensor]:
        return None

    @torch.jit.export
    def predict_badstart_start(self, output_path: str) -> Dict[str, int]:
        return {"dependency": 3}

    @torch.jit.export
    def predict_badstart(self, batch: Dict[str, torch.Tensor],
                         deps: Dict[str, torch.Tensor]) -> Optional[torch.Tensor]:
        return None

    @torch.jit.export
    def predict_boom(self, batch: Dict[str, torch.Tensor],
                     deps: Dict[str, torch.Tensor]) -> Optional[torch.Tensor]:
        if bool(batch["x"].shape[0] < 8):
            raise RuntimeError("boom on the short batch")
        return batch["x"]


class Cycle(torch.nn.Module):
    def forward(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        return batch["x"]

    @torch.jit.export
    def predict_a_dependency_start(self) -> List[str]:
        return ["b"]

    @torch.jit.export
    def predict_a_dependency(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        return batch["x"]

    @torch.jit.export
    def predict_b_dependency_start(self) -> List[str]:
        return ["a"]

    @torch.jit.export
    def predict_b_dependency(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        return batch["x"]

    @torch.jit.export
    def predict_t_start(self, output_path: str) -> List[str]:
        return ["a"]

    @torch.jit.export
    def predict_t(self, batch: Dict[str, torch.Tensor],
                  deps: Dict[str, torch.Tensor]) -> Optional[torch.Tensor]:
        return None


def config(work, name, module, model, tasks, predict_path):
    path = os.path.join(work, name + ".yaml")
    pp = "null" if predict_path is None else predict_path
    with open(path, "w") as f:
        f.write(f"""
seed_everything: 1
trainer: {{default_root_dir: {work}/runs, enable_progress_bar: false, num_threads: 1}}
model:
  class_path: {module}
  init_args:
    model: {model}
    predict_tasks: {tasks}
    predict_path: {pp}
data:
  class_path: fulgur.DataModule
  init_args:
    dataset_cfg:
      class_path: fulgur.data.CSV
      init_args: {{path: {work}/data.csv, target: label}}
    dataloader_cfg: {{batch_size: {BATCH}}}
""")
    return path


def predict(cfg, *extra):
    return subprocess.run([FULGUR, "predict", "--config", cfg, *extra], capture_output=True, text=True)


with tempfile.TemporaryDirectory() as work:
    with open(os.path.join(work, "data.csv"), "w") as f:
        f.write(",".join(f"f{i}" for i in range(F)) + ",label\n")
        for x, y in zip(X.tolist(), Y.tolist()):
            f.write(",".join(repr(v) for v in x) + f",{y}\n")

    # 1. ClassificationModule tasks from a Python-written checkpoint.
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(F, 6), torch.nn.ReLU(), torch.nn.Linear(6, C))
    ckpt_dir = os.path.join(work, "old", "version_3", "checkpoints")
    os.makedirs(ckpt_dir)
    torch.save({"state_dict": {"model.layers." + k: v for k, v in net.state_dict().items()}},
               os.path.join(ckpt_dir, "best.ckpt"))
    mlp = f"{{class_path: fulgur.models.MLP, init_args: {{in_features: {F}, hidden: [6], out_features: {C}}}}}"
    cfg = config(work, "cls", "fulgur.ClassificationModule", mlp, "[logits, probs, labels]", None)
    os.makedirs(os.path.join(work, "old", "version_3", "visualization", "logits"))
    with open(os.path.join(work, "old", "version_3", "visualization", "logits", "stale.txt"), "w") as f:
        f.write("from an earlier run")
    r = predict(cfg, "--ckpt_path", os.path.join(ckpt_dir, "best.ckpt"))
    check("predict with ClassificationModule tasks", r.returncode == 0, r.stderr)
    out = os.path.join(work, "old", "version_3", "visualization")
    if r.returncode == 0:
        with torch.no_grad():
            want = net(X)
        logits = torch.cat(torch.load(os.path.join(out, "logits", "predictions.pt")))
        probs = torch.cat(torch.load(os.path.join(out, "probs", "predictions.pt")))
        labels = torch.cat(torch.load(os.path.join(out, "labels", "predictions.pt")))
        check("predict_path defaults to <run dir>/visualization and folders start empty",
              not os.path.exists(os.path.join(out, "logits", "stale.txt")))
        check("logits equal the PyTorch module's, in batch order",
              logits.shape == (N, C) and torch.allclose(logits, want, atol=1e-6))
        check("probs are softmax(logits)", torch.allclose(probs, torch.softmax(want, 1), atol=1e-6))
        check("labels are argmax(logits)", torch.equal(labels, want.argmax(1)))
        rows = open(os.path.join(out, "labels", "labels.csv")).read().split()
        check("labels.csv has index,label per sample",
              rows[0] == "index,label" and len(rows) == N + 1 and
              rows[-1] == f"{N - 1},{int(want.argmax(1)[-1])}", str(rows[:3]))

    # 2. A scripted module drives tasks and dependencies.
    torch.manual_seed(1)
    tasks = Tasks()
    torch.jit.script(tasks).save(os.path.join(work, "tasks.pt"))
    ts = f"{{class_path: fulgur.models.TorchScript, init_args: {{path: {work}/tasks.pt}}}}"
    cfg = config(work, "ts", "fulgur.LightningModule", ts, "[double, plus, count]", f"{work}/pred")
    r = predict(cfg)
    check("a scripted module's tasks run", r.returncode == 0, r.stderr)
    if r.returncode == 0:
        with torch.no_grad():
            feat = tasks.lin(X).sum(1)
        double = torch.cat(torch.load(os.path.join(work, "pred", "double", "predictions.pt")))
        plus = torch.cat(torch.load(os.path.join(work, "pred", "plus", "predictions.pt")))
        count = torch.cat(torch.load(os.path.join(work, "pred", "count", "predictions.pt")))
        check("a dependency of a dependency feeds the tasks, in batch order",
              torch.allclose(double, feat * 2, atol=1e-5) and torch.allclose(plus, feat + 1, atol=1e-5))
        check("the shared dependency runs exactly once per batch", count.tolist() == [1, 2, 3, 4, 5],
              str(count.tolist()))

    # Worker threads keep every task's batch order: one sample per batch,
    # three tasks, 1 and 2 predict threads, repeated.
    runs = []
    for threads in (1, 2, 2, 2, 2):
        out_dir = f"{work}/order{len(runs)}"
        c = config(work, f"order{len(runs)}", "fulgur.LightningModule", ts, "[double, plus, count]", out_dir)
        r = predict(c, "--data.init_args.dataloader_cfg.batch_size", "1",
                    "--trainer.predict_threads", str(threads))
        if r.returncode != 0:
            check("ordering runs", False, r.stderr)
            break
        runs.append([torch.cat(torch.load(f"{out_dir}/{t}/predictions.pt")) for t in ("double", "plus", "count")])
    if len(runs) == 5:
        same = all(all(torch.equal(a, b) for a, b in zip(runs[0], other)) for other in runs[1:])
        check("results keep batch order under concurrency (5 runs, 37 batches)",
              same and runs[0][2].tolist() == list(range(1, N + 1)))

    # 3. Errors before the first batch, and a failing task.
    for name, module, model, tasks_yaml, want in [
        ("unknown", "fulgur.LightningModule", ts, "[double, nope]",
         "task 'nope' is not supported: the module has no predict_nope"),
        ("ghost", "fulgur.LightningModule", ts, "[ghost]",
         "'ghost' depends on 'nobody', but the module has no predict_nobody_dependency"),
    ]:
        r = predict(config(work, name, module, model, tasks_yaml, f"{work}/p_{name}"))
        check(f"{name}: clear error", r.returncode == 2 and want in r.stderr, r.stderr)
    torch.jit.script(Cycle()).save(os.path.join(work, "cycle.pt"))
    cyc = f"{{class_path: TorchScript, init_args: {{path: {work}/cycle.pt}}}}"
    r = predict(config(work, "cycle", "fulgur.LightningModule", cyc, "[t]", f"{work}/p_cycle"))
    check("a dependency cycle is spelled out", r.returncode == 2 and
          "dependency cycle a -> b -> a" in r.stderr, r.stderr)
    r = predict(config(work, "boom", "fulgur.LightningModule", ts, "[double, boom]", f"{work}/p_boom"))
    check("a failing task names itself and the batch", r.returncode == 1 and
          "predict task 'boom', batch 4" in r.stderr and "boom on the short batch" in r.stderr,
          f"exit {r.returncode}: {r.stderr}")
    check("a failed run leaves no predictions.pt",
          not os.path.exists(os.path.join(work, "p_boom", "double", "predictions.pt")))
    r = predict(config(work, "badstart", "fulgur.LightningModule", ts, "[badstart]", f"{work}/p_bs"))
    check("a start hook returning the wrong type is named", r.returncode != 0 and
          "predict_badstart_start: expected a list of dependency names, got an int" in r.stderr, r.stderr)
    open(os.path.join(work, "a_file"), "w").close()
    r = predict(config(work, "badpath", "fulgur.LightningModule", ts, "[double]", f"{work}/a_file/out"))
    check("an output path that cannot be created is named", r.returncode == 1 and
          "a_file/out" in r.stderr, r.stderr)
    r = predict(config(work, "nopath", "fulgur.ClassificationModule", mlp, "[logits]", None))
    check("no predict_path and no run checkpoint is a config error", r.returncode == 2 and
          "predict_path is null" in r.stderr, r.stderr)

finish()
