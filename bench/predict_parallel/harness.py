"""Times the predict_parallel benchmark (see ../README.md).

1. Four independent tasks of equal compute (a TorchScript module scripted
   here), `fulgur predict` with predict_threads 1 and 2, one intra-op
   thread each: the wall-time ratio threads1/threads2 (target >= 1.7 on 2
   cores).
2. The engine's cost per task per batch with trivial tasks: 4 tasks minus
   2 tasks, over B2 minus B1 batches, so start-up, the per-batch data costs
   and the pool's per-batch handoff cancel (target < 20 us).

usage: harness.py BUILD_DIR; environment: BENCH_REPEATS (5).
"""
import os
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, Optional

import torch


class Heavy(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(256, 256) / 16)

    def forward(self, batch: Dict[str, torch.Tensor]) -> torch.Tensor:
        return batch["x"]

    def work(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for _ in range(60):
            y = torch.tanh(y @ self.w)
        return y.sum(1)

    @torch.jit.export
    def predict_t1(self, batch: Dict[str, torch.Tensor], deps: Dict[str, torch.Tensor]) -> Optional[torch.Tensor]:
        return self.work(batch["x"])

    @torch.jit.export
    def predict_t2(self, batch: Dict[str, torch.Tensor], deps: Dict[str, torch.Tensor]) -> Optional[torch.Tensor]:
        return self.work(batch["x"])

    @torch.jit.export
    def predict_t3(self, batch: Dict[str, torch.Tensor], deps: Dict[str, torch.Tensor]) -> Optional[torch.Tensor]:
        return self.work(batch["x"])

    @torch.jit.export
    def predict_t4(self, batch: Dict[str, torch.Tensor], deps: Dict[str, torch.Tensor]) -> Optional[torch.Tensor]:
        return self.work(batch["x"])

    @torch.jit.export
    def predict_n1(self, batch: Dict[str, torch.Tensor], deps: Dict[str, torch.Tensor]) -> Optional[torch.Tensor]:
        return None

    @torch.jit.export
    def predict_n2(self, batch: Dict[str, torch.Tensor], deps: Dict[str, torch.Tensor]) -> Optional[torch.Tensor]:
        return None

    @torch.jit.export
    def predict_n3(self, batch: Dict[str, torch.Tensor], deps: Dict[str, torch.Tensor]) -> Optional[torch.Tensor]:
        return None

    @torch.jit.export
    def predict_n4(self, batch: Dict[str, torch.Tensor], deps: Dict[str, torch.Tensor]) -> Optional[torch.Tensor]:
        return None


def config(work, tasks, samples, batch):
    path = os.path.join(work, "c.yaml")
    with open(path, "w") as f:
        f.write(f"""
seed_everything: 1
trainer: {{default_root_dir: {work}/runs, enable_progress_bar: false, num_threads: 1}}
model:
  class_path: fulgur.LightningModule
  init_args:
    model: {{class_path: fulgur.models.TorchScript, init_args: {{path: {work}/heavy.pt}}}}
    predict_tasks: {tasks}
    predict_path: {work}/out
data:
  class_path: fulgur.DataModule
  init_args:
    dataset_cfg: {{class_path: fulgur.data.Synthetic, init_args: {{num_samples: {samples}, shape: [256]}}}}
    dataloader_cfg: {{batch_size: {batch}}}
""")
    return path


def timed(argv):
    t0 = time.perf_counter()
    r = subprocess.run(argv, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"predict_parallel: {' '.join(argv)} failed:\n{r.stderr}")
    return time.perf_counter() - t0


def main():
    fulgur = os.path.join(sys.argv[1], "fulgur")
    repeats = int(os.environ.get("BENCH_REPEATS", "5"))
    with tempfile.TemporaryDirectory(prefix="fulgur-bench-") as work:
        torch.manual_seed(0)
        torch.jit.script(Heavy()).save(os.path.join(work, "heavy.pt"))
        # Per-batch time = (T(168 batches) - T(8 batches)) / 160: start-up cancels.
        t1, t2 = [], []
        for _ in range(repeats):
            row = {}
            for threads in (1, 2):
                small = config(work, "[t1, t2, t3, t4]", 8 * 16, 16)
                a = timed([fulgur, "predict", "--config", small, "--trainer.predict_threads", str(threads)])
                large = config(work, "[t1, t2, t3, t4]", 168 * 16, 16)
                b = timed([fulgur, "predict", "--config", large, "--trainer.predict_threads", str(threads)])
                row[threads] = (b - a) / 160 * 1e3
            t1.append(row[1])
            t2.append(row[2])
        m1, m2 = statistics.median(t1), statistics.median(t2)
        print("predict_parallel: 4 equal tasks, batch 16, 1 intra-op thread, "
              f"{repeats} repeats (ms per batch, start-up cancelled)")
        print(f"  predict_threads 1   median {m1:.2f}  min {min(t1):.2f}  max {max(t1):.2f}")
        print(f"  predict_threads 2   median {m2:.2f}  min {min(t2):.2f}  max {max(t2):.2f}")
        print(f"  speed-up threads 1 / threads 2: {m1 / m2:.2f}x (target >= 1.7 on 2 cores)")

        b1, b2 = 1000, 6000
        per, whole = [], []
        for _ in range(repeats):
            t = {}
            # 2 and 4 tasks both run on the pool, so the per-batch handoff
            # cancels and what remains is the cost of one more task.
            for tasks in ("[n1, n2]", "[n1, n2, n3, n4]"):
                for b in (b1, b2):
                    cfg = config(work, tasks, b, 1)
                    t[tasks, b] = timed([fulgur, "predict", "--config", cfg, "--trainer.predict_threads", "2"])
            two = t["[n1, n2]", b2] - t["[n1, n2]", b1]
            four = t["[n1, n2, n3, n4]", b2] - t["[n1, n2, n3, n4]", b1]
            per.append((four - two) / (2 * (b2 - b1)) * 1e6)
            whole.append(four / (4 * (b2 - b1)) * 1e6)
        print(f"  engine overhead per task per batch (trivial tasks, 2 threads): median "
              f"{statistics.median(per):.1f} us (min {min(per):.1f}, max {max(per):.1f}; target < 20)")
        print(f"  whole per-batch cost / 4 trivial tasks (loader, handoff, events included): median "
              f"{statistics.median(whole):.1f} us")


if __name__ == "__main__":
    main()
