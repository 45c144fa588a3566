"""strategy: ddp with real processes, sockets and libtorch's c10d.

- Numerical equivalence: 2 ranks x batch 16 end with the weights of one
  process x batch 32 on the same data order (max abs diff <= 1e-5), for
  SGD with momentum and AdamW. Two references, both exact about the order:
  (a) shuffle off: DistributedSampler gives rank r the samples r, r+2, ...,
      so step k of the two ranks together sees samples 32k..32k+31, which is
      batch k of a one-process `fulgur fit` with batch 32 (fulgur against
      itself, same code path but the distribution);
  (b) shuffle on: a python3-torch loop that, at each step, averages the
      losses of the two batches torch.utils.data.DistributedSampler hands
      ranks 0 and 1 (seed = seed_everything, set_epoch(epoch)) — PyTorch's
      own sampler and DDP's averaged gradients, here also with
      accumulate_grad_batches 2 and a frozen layer (finetune_cfg).
- devices: 2 started by fulgur itself, and two `fulgur fit` processes
  started here with torchrun's variables, end with the same checkpoint;
  rank 1 writes no run directory.
- A rank killed with SIGKILL fails the run, naming the rank, within the
  timeout, on both paths.
- Bad input: RANK outside WORLD_SIZE, WORLD_SIZE against devices, an
  unreachable master, devices beyond the cores, two ranks with different
  configs: clear errors, no hang.
"""
import collections
import os
import signal
import socket
import subprocess
import tempfile
import time

import torch
from torch.utils.data import DistributedSampler

from interop import FULGUR, check, finish, write_csv

torch.manual_seed(5)
N, F, C = 128, 6, 3
X = torch.randn(N, F)
Y = torch.randint(0, C, (N,))
SEED, EPOCHS = 7, 2

OPTS = {
    "SGD momentum": ("{class_path: torch.optim.SGD, init_args: {lr: 0.1, momentum: 0.9}}",
                     lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9)),
    "AdamW": ("{class_path: torch.optim.AdamW, init_args: {lr: 0.01, weight_decay: 0.1}}",
              lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.1)),
}


def make_model():
    torch.manual_seed(3)
    return torch.nn.Sequential(torch.nn.Linear(F, 8), torch.nn.ReLU(), torch.nn.Linear(8, C))


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config(work, name, opt_yaml, batch, shuffle, devices=1, trainer_extra="", model_extra="",
           max_epochs=EPOCHS, timeout=30):
    root = os.path.join(work, name)
    path = os.path.join(work, name + ".yaml")
    with open(path, "w") as f:
        f.write(f"""
seed_everything: {SEED}
trainer:
  max_epochs: {max_epochs}
  default_root_dir: {root}
  enable_progress_bar: false
  num_sanity_val_steps: 0
  num_threads: 1
  devices: {devices}
  ddp_timeout: {timeout}
{trainer_extra}model:
  class_path: fulgur.ClassificationModule
  init_args:
    ckpt_path: {work}/init.ckpt
{model_extra}    model:
      class_path: fulgur.models.MLP
      init_args: {{in_features: {F}, hidden: [8], out_features: {C}}}
    evaluator_cfg:
      class_path: fulgur.metrics.MetricCollection
      init_args:
        metrics:
          - {{class_path: fulgur.metrics.Accuracy, init_args: {{task: multiclass, num_classes: {C}}}}}
          - {{class_path: torchmetrics.AUROC, init_args: {{task: multiclass, num_classes: {C}}}}}
optimizer_config:
  optimizer: {opt_yaml}
data:
  class_path: fulgur.DataModule
  init_args:
    dataset_cfg:
      fit:
        class_path: fulgur.data.CSV
        init_args: {{path: {work}/data.csv, target: label}}
      val:
        class_path: fulgur.data.CSV
        init_args: {{path: {work}/val.csv, target: label}}
    dataloader_cfg:
      fit: {{batch_size: {batch}, shuffle: {str(shuffle).lower()}}}
      val: {{batch_size: 4}}
""")
    return path, root


def last_ckpt(root):
    return torch.load(os.path.join(root, "version_0", "checkpoints", "last.ckpt"))


def run(args, env=None, timeout=120):
    e = dict(os.environ)
    for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "NODE_RANK"):
        e.pop(k, None)
    e.update(env or {})
    t0 = time.monotonic()
    r = subprocess.run([FULGUR] + args, capture_output=True, text=True, env=e, timeout=timeout)
    return r, time.monotonic() - t0


def max_diff(a, b):
    return max((a[k] - b[k]).abs().max().item() for k in b)


def python_ddp(make_opt, shuffle, accumulate=1, frozen=()):
    """Two ranks' steps in one process: the mean of the two batches' losses."""
    model = make_model()
    named = dict(zip(["layers." + n for n, _ in model.named_parameters()], model.parameters()))
    for n in frozen:
        named[n].requires_grad_(False)
    opt = make_opt([p for p in model.parameters() if p.requires_grad])
    for epoch in range(EPOCHS):
        shards = []
        for r in range(2):
            s = DistributedSampler(range(N), num_replicas=2, rank=r, shuffle=shuffle, seed=SEED)
            s.set_epoch(epoch)
            shards.append(list(s))
        nb = (len(shards[0]) + 15) // 16
        for b in range(nb):
            if b % accumulate == 0:
                opt.zero_grad()
            losses = [torch.nn.functional.cross_entropy(model(X[idx]), Y[idx])
                      for idx in (sh[16 * b:16 * b + 16] for sh in shards)]
            ((losses[0] + losses[1]) / 2 / accumulate).backward()
            if (b + 1) % accumulate == 0 or b + 1 == nb:
                opt.step()
    return {"model.layers." + k: v.detach() for k, v in model.state_dict().items()}


def child_pids(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


with tempfile.TemporaryDirectory() as work:
    write_csv(os.path.join(work, "data.csv"), X, Y)
    XV, YV = torch.randn(37, F), torch.randint(0, C, (37,))  # 37: the ranks get 19 and 18
    write_csv(os.path.join(work, "val.csv"), XV, YV)
    init = collections.OrderedDict(
        ("model.layers." + k, v) for k, v in make_model().state_dict().items())
    torch.save({"state_dict": init}, os.path.join(work, "init.ckpt"))

    # (a) fulgur 2 x 16 against fulgur 1 x 32, shuffle off.
    for name, (yaml, make) in OPTS.items():
        tag = name.replace(" ", "_")
        one, one_root = config(work, "one_" + tag, yaml, 32, False)
        two, two_root = config(work, "two_" + tag, yaml, 16, False, devices=2)
        r1, _ = run(["fit", "--config", one])
        r2, _ = run(["fit", "--config", two])
        if r1.returncode or r2.returncode:
            check(f"{name}: 1 x 32 and 2 x 16 runs", False, r1.stderr[-2000:] + r2.stderr[-2000:])
            continue
        a, b = last_ckpt(one_root), last_ckpt(two_root)
        d = max_diff(a["state_dict"], b["state_dict"])
        check(f"{name}: 2 ranks x 16 = 1 x 32 (shuffle off), max abs diff {d:.2e} <= 1e-5",
              d <= 1e-5 and a["global_step"] == b["global_step"] == 2 * N // 32)
        # Validation over the whole split (37 samples, 19 + 18 on the ranks):
        # the same epoch values as one process.
        m1 = open(os.path.join(one_root, "version_0", "metrics.csv")).read().splitlines()
        m2 = open(os.path.join(two_root, "version_0", "metrics.csv")).read().splitlines()
        def vals(lines, key):
            head = lines[0].split(",")
            i = head.index(key)
            return [float(l.split(",")[i]) for l in lines[1:] if l.split(",")[i]]
        va1, va2 = vals(m1, "val/Accuracy"), vals(m2, "val/Accuracy")
        vl1, vl2 = vals(m1, "val/loss"), vals(m2, "val/loss")
        check(f"{name}: val/Accuracy and val/loss over the whole split equal one process's",
              len(va1) == EPOCHS and va1 == va2 and all(abs(x - y) < 1e-5 for x, y in zip(vl1, vl2)),
              f"{va1} {va2} {vl1} {vl2}")
        # AUROC keeps every score: the ranks' scores are concatenated, not summed.
        au1, au2 = vals(m1, "val/AUROC"), vals(m2, "val/AUROC")
        check(f"{name}: val/AUROC over the whole split equals one process's",
              len(au1) == EPOCHS and all(abs(x - y) < 1e-6 for x, y in zip(au1, au2)), f"{au1} {au2}")
        check(f"{name}: rank 1 wrote no run directory", os.listdir(two_root) == ["version_0"],
              str(os.listdir(two_root)))

    # (b) shuffle on, against PyTorch's DistributedSampler and averaged losses.
    for name, (yaml, make) in OPTS.items():
        tag = name.replace(" ", "_")
        cfg, root = config(work, "shuf_" + tag, yaml, 16, True, devices=2)
        r, _ = run(["fit", "--config", cfg])
        if r.returncode:
            check(f"{name}: shuffled 2-rank run", False, r.stderr[-2000:])
            continue
        d = max_diff(last_ckpt(root)["state_dict"], python_ddp(make, True))
        check(f"{name}: shuffled 2 ranks = python3-torch DistributedSampler reference, "
              f"max abs diff {d:.2e} <= 1e-5", d <= 1e-5)
    yaml, make = OPTS["SGD momentum"]
    cfg, root = config(work, "acc_frozen", yaml, 16, True, devices=2,
                       trainer_extra="  accumulate_grad_batches: 3\n",
                       model_extra="    finetune_cfg: layers.2\n")
    r, _ = run(["fit", "--config", cfg])
    if r.returncode:
        check("accumulate 3 + frozen layers.0 under ddp", False, r.stderr[-2000:])
    else:
        got = last_ckpt(root)["state_dict"]
        want = python_ddp(make, True, accumulate=3, frozen=("layers.0.weight", "layers.0.bias"))
        d = max_diff(got, want)
        check(f"accumulate 3 + frozen layers.0 under ddp = reference, max abs diff {d:.2e}",
              d <= 1e-5 and torch.equal(got["model.layers.0.weight"], init["model.layers.0.weight"]))

    # Spawned by fulgur against started here with torchrun's variables.
    yaml = OPTS["AdamW"][0]
    spawn_cfg, spawn_root = config(work, "spawn", yaml, 16, True, devices=2)
    tr_cfg, tr_root = config(work, "torchrun", yaml, 16, True, devices=2)
    r, _ = run(["fit", "--config", spawn_cfg])
    check("devices: 2 spawned by fulgur succeeds", r.returncode == 0, r.stderr[-2000:])
    port = str(free_port())
    env = {"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
    e = [dict(os.environ, **env, RANK=str(k), LOCAL_RANK=str(k)) for k in range(2)]
    procs = [subprocess.Popen([FULGUR, "fit", "--config", tr_cfg], env=e[k],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k in range(2)]
    outs = [p.communicate(timeout=120) for p in procs]
    check("two `fulgur fit` processes with RANK=0/1 succeed",
          all(p.returncode == 0 for p in procs), outs[0][1][-1500:] + outs[1][1][-1500:])
    if r.returncode == 0 and all(p.returncode == 0 for p in procs):
        a, b = last_ckpt(spawn_root), last_ckpt(tr_root)
        same = all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
        check("both paths produce the same checkpoint (state_dict equal, same global_step)",
              same and a["global_step"] == b["global_step"])
        check("rank 1 logs nothing and writes no run directory",
              os.listdir(tr_root) == ["version_0"] and "run directory" not in outs[1][1],
              outs[1][1][-500:])

    # Resume under ddp: 1 epoch, then --ckpt_path for the rest, ends where
    # an uninterrupted run ends (every rank loads the checkpoint).
    half_cfg, half_root = config(work, "half", yaml, 16, True, devices=2, max_epochs=1)
    r1, _ = run(["fit", "--config", half_cfg])
    r2, _ = run(["fit", "--config", half_cfg, f"--trainer.max_epochs={EPOCHS}", "--ckpt_path",
                 os.path.join(half_root, "version_0", "checkpoints", "last.ckpt")])
    if r1.returncode or r2.returncode or r.returncode:
        check("resume under ddp", False, r1.stderr[-1000:] + r2.stderr[-1000:])
    else:
        a = last_ckpt(spawn_root)
        b = torch.load(os.path.join(half_root, "version_1", "checkpoints", "last.ckpt"))
        check("resume under ddp ends with the uninterrupted run's weights",
              a["global_step"] == b["global_step"] and
              all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"]))

    # A killed rank fails the job within the timeout, naming the rank.
    def wait_training(root, limit=120):
        # Training is under way (past the rendezvous) once rank 0 has written
        # its first epoch's checkpoint; a fixed sleep was too short on a
        # loaded machine, where the ranks can take seconds to start.
        ck = os.path.join(root, "version_0", "checkpoints")
        end = time.monotonic() + limit
        while time.monotonic() < end:
            if os.path.isdir(ck) and os.listdir(ck):
                return True
            time.sleep(0.1)
        return False

    long_cfg, long_root = config(work, "long", yaml, 16, True, devices=2, max_epochs=100000, timeout=10)
    p = subprocess.Popen([FULGUR, "fit", "--config", long_cfg], stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE, text=True)
    kids = []
    for _ in range(100):
        time.sleep(0.1)
        kids = child_pids(p.pid)
        if kids:
            break
    wait_training(long_root)
    t0 = time.monotonic()
    for k in kids:
        os.kill(k, signal.SIGKILL)
    try:
        _, err = p.communicate(timeout=30)
        dt = time.monotonic() - t0
        check(f"spawned: rank 1 killed -> the run fails in {dt:.1f} s, naming rank 1",
              bool(kids) and p.returncode == 1 and "rank 1: killed by signal 9" in err, err[-1500:])
    except subprocess.TimeoutExpired:
        p.kill()
        check("spawned: rank 1 killed -> the run fails within the timeout", False, "hung")

    long_tr, long_tr_root = config(work, "long_tr", yaml, 16, True, devices=2, max_epochs=100000, timeout=10)
    port = str(free_port())
    env = {"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
    procs = [subprocess.Popen([FULGUR, "fit", "--config", long_tr],
                              env=dict(os.environ, **env, RANK=str(k)), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for k in range(2)]
    wait_training(long_tr_root)
    t0 = time.monotonic()
    procs[1].kill()
    try:
        _, err = procs[0].communicate(timeout=30)
        dt = time.monotonic() - t0
        check(f"torchrun env: rank 1 killed -> rank 0 fails in {dt:.1f} s, naming rank 1",
              procs[0].returncode == 1 and "rank 1: " in err and dt < 20, err[-1500:])
    except subprocess.TimeoutExpired:
        procs[0].kill()
        check("torchrun env: rank 1 killed -> rank 0 fails within the timeout", False, "hung")
    procs[1].communicate()

    # Bad input.
    cfg, _ = config(work, "bad", yaml, 16, True, devices=2, timeout=3)
    r, dt = run(["fit", "--config", cfg], {"WORLD_SIZE": "2", "RANK": "2", "MASTER_ADDR": "127.0.0.1",
                                          "MASTER_PORT": "1"})
    check("RANK=2 with WORLD_SIZE=2 is a clear error",
          r.returncode == 2 and "RANK=2 is outside 0..WORLD_SIZE-1" in r.stderr, r.stderr[-800:])
    r, dt = run(["fit", "--config", cfg], {"WORLD_SIZE": "3", "RANK": "0", "MASTER_ADDR": "127.0.0.1",
                                          "MASTER_PORT": "1"})
    check("WORLD_SIZE=3 against devices: 2 is a clear error",
          r.returncode == 2 and "WORLD_SIZE=3, but trainer.devices x trainer.num_nodes = 2 x 1 = 2"
          in r.stderr, r.stderr[-800:])
    r, dt = run(["fit", "--config", cfg], {"WORLD_SIZE": "2", "RANK": "1", "MASTER_ADDR": "127.0.0.1",
                                          "MASTER_PORT": str(free_port())})
    check(f"unreachable master: a clear error after the bounded wait ({dt:.1f} s)",
          r.returncode != 0 and "cannot reach the rendezvous store at 127.0.0.1:" in r.stderr
          and dt < 20, r.stderr[-800:])
    r, dt = run(["fit", "--config", cfg, "--trainer.devices=4096"])
    check("devices beyond the cores is a config error",
          r.returncode == 2 and "trainer.devices: 4096 processes on a machine with" in r.stderr,
          r.stderr[-800:])
    r, dt = run(["fit", "--config", cfg, "--trainer.num_nodes=2"])
    check("num_nodes: 2 without torchrun's environment is a clear error",
          r.returncode == 2 and "need torchrun's environment" in r.stderr, r.stderr[-800:])
    port = str(free_port())
    env = {"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": port}
    procs = [subprocess.Popen([FULGUR, "fit", "--config", cfg] + (["--trainer.max_epochs=3"] if k else []),
                              env=dict(os.environ, **env, RANK=str(k)), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for k in range(2)]
    outs = [p.communicate(timeout=60) for p in procs]
    check("ranks with different configs both fail at rendezvous, naming the config hash",
          all(p.returncode == 2 for p in procs) and "runs a different config than rank 0" in outs[0][1]
          and "config differs from rank 0's" in outs[1][1], outs[0][1][-600:] + outs[1][1][-600:])

finish()
