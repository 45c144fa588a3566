"""Per-step time of torchvision's resnet18 (conv1 1-channel, 1x28x28
Fashion-MNIST images, batch 32, SGD momentum, one intra-op thread):
`fulgur fit` on the scripted model against the same loop in python3-torch
eager (torch.set_num_threads(1)).

Each program runs as a whole process at two step counts N1 < N2; wall and
CPU time (the child's user + system) per step are (T(N2) - T(N1)) / (N2 - N1),
start-up cancelled. Runs are interleaved within each of R repeats; the
report gives the median and the spread (min..max) over the repeats.

usage: harness.py BUILD_DIR
environment: BENCH_REPEATS (3), BENCH_N1 (3), BENCH_N2 (13).
"""
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

DATA = "/usr/share/datasets/fashion-mnist"
BATCH = 32

PY_LOOP = r'''
import gzip, sys, numpy as np, torch, torch.nn.functional as F
torch.set_num_threads(1)
steps, model = int(sys.argv[1]), sys.argv[2]
raw = gzip.open("%(data)s/train-images-idx3-ubyte.gz").read()[16:16 + steps * %(b)d * 784]
lut = ((np.arange(256) / 255.0 - 0.286) / 0.353).astype(np.float32)
x = torch.from_numpy(lut[np.frombuffer(raw, np.uint8)]).reshape(-1, 1, 28, 28)
lab = gzip.open("%(data)s/train-labels-idx1-ubyte.gz").read()[8:8 + steps * %(b)d]
y = torch.from_numpy(np.frombuffer(lab, np.uint8).astype(np.int64))
net = torch.jit.load(model)  # the same initial weights; eager below
import torchvision
eager = torchvision.models.resnet18(num_classes=10)
eager.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
eager.load_state_dict({k[len("net."):]: v for k, v in net.state_dict().items()})
opt = torch.optim.SGD(eager.parameters(), lr=0.01, momentum=0.9)
eager.train()
for s in range(steps):
    opt.zero_grad()
    loss = F.cross_entropy(eager(x[s * %(b)d:(s + 1) * %(b)d]), y[s * %(b)d:(s + 1) * %(b)d])
    loss.backward()
    opt.step()
    loss.item()
''' % {"data": DATA, "b": BATCH}

CONFIG = """
seed_everything: 1
trainer:
  max_epochs: 1
  default_root_dir: {tmp}/runs
  enable_progress_bar: false
  enable_checkpointing: false
  logger: false
  num_threads: 1
model:
  class_path: fulgur.ClassificationModule
  init_args:
    model: {{class_path: fulgur.models.TorchScript, init_args: {{path: {tmp}/resnet18.pt}}}}
optimizer_config:
  optimizer: {{class_path: torch.optim.SGD, init_args: {{lr: 0.01, momentum: 0.9}}}}
data:
  class_path: fulgur.DataModule
  init_args:
    dataset_cfg:
      fit:
        class_path: fulgur.data.IDX
        init_args:
          images: {data}/train-images-idx3-ubyte.gz
          labels: {data}/train-labels-idx1-ubyte.gz
          normalize: {{mean: 0.286, std: 0.353}}
          subset: [0, 2048]
    dataloader_cfg: {{batch_size: {b}, shuffle: false}}
"""


def timed(argv, env):
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"exit {proc.returncode}: {' '.join(argv)}\n{proc.stderr[-2000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def save_model(tmp):
    """The benchmark's scripted resnet18 (seed 0) at tmp/resnet18.pt."""
    import torch
    import torchvision

    torch.manual_seed(0)

    class Images(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.net(x.reshape(-1, 1, 28, 28))

    net = torchvision.models.resnet18(num_classes=10)
    net.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
    model = os.path.join(tmp, "resnet18.pt")
    torch.jit.script(Images(net)).save(model)
    return model


def per_step(programs, repeats, n1, n2, env):
    """{name: ([wall per step], [cpu per step])}, each program run at N1 and
    N2 steps, the programs interleaved within each repeat."""
    per = {k: ([], []) for k in programs}
    for _ in range(repeats):
        for name, argv_for in programs.items():
            w1, c1 = timed(argv_for(n1), env)
            w2, c2 = timed(argv_for(n2), env)
            per[name][0].append((w2 - w1) / (n2 - n1))
            per[name][1].append((c2 - c1) / (n2 - n1))
    return per


def print_per(per, width):
    for name, (walls, cpus) in per.items():
        print(f"  {name:{width}s} wall {statistics.median(walls) * 1e3:7.1f} ms "
              f"({min(walls) * 1e3:.1f}..{max(walls) * 1e3:.1f})   cpu "
              f"{statistics.median(cpus) * 1e3:7.1f} ms ({min(cpus) * 1e3:.1f}..{max(cpus) * 1e3:.1f})")


def main(argv):
    if len(argv) != 2:
        sys.exit("usage: harness.py BUILD_DIR")
    fulgur = os.path.join(os.path.abspath(argv[1]), "fulgur")
    repeats = int(os.environ.get("BENCH_REPEATS", "3"))
    n1, n2 = int(os.environ.get("BENCH_N1", "3")), int(os.environ.get("BENCH_N2", "13"))
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    with tempfile.TemporaryDirectory() as tmp:
        model = save_model(tmp)
        cfg = os.path.join(tmp, "run.yaml")
        with open(cfg, "w") as f:
            f.write(CONFIG.format(tmp=tmp, data=DATA, b=BATCH))
        loop = os.path.join(tmp, "loop.py")
        with open(loop, "w") as f:
            f.write(PY_LOOP)
        programs = {
            "fulgur": lambda n: [fulgur, "fit", "--config", cfg, f"--trainer.max_steps={n}"],
            "python": lambda n: [sys.executable, loop, str(n), model],
        }
        per = per_step(programs, repeats, n1, n2, env)
    print(f"resnet18, batch {BATCH}, 1x28x28, 1 thread; per step over {n2 - n1} steps, "
          f"{repeats} interleaved repeats: median (min..max)")
    print_per(per, 7)
    ratio = statistics.median(per["fulgur"][0]) / statistics.median(per["python"][0])
    print(f"  fulgur/python wall ratio of medians: {ratio:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
