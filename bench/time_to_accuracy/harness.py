"""Time to a test accuracy, data loading included: the anchor (MLP
784-256-128-10, Adam, batch 64, Fashion-MNIST) trained until the 10,000
test images reach TARGET accuracy, each program a whole process (start-up,
reading and normalizing the IDX files, the epochs and the per-epoch test
pass all counted).

- `fulgur`: `fulgur fit --config mlp.yaml` at fulgur's defaults (no
  num_threads: auto; the BLAS kernels fulgur picks), EarlyStopping's
  stopping_threshold ending the fit at the target;
- `python`: python_eager.py, PyTorch eager at its defaults (its own thread
  count, a DataLoader without workers);
- `hand T/K`: fulgur with num_threads T and OpenBLAS kernel set K
  (`own`: what fulgur picks) — the settings one would try by hand.

Every program runs once per repeat with the same seed, the programs
interleaved; the report gives wall and CPU time (the child's user +
system), median and min..max, the epochs each needed, and the ratios
fulgur/python (target <= 0.8) and fulgur/best hand setting (target <= 1.1),
both of wall medians.

usage: harness.py BUILD_DIR
environment: BENCH_REPEATS (3), BENCH_TARGET (0.885), BENCH_MAX_EPOCHS (30),
BENCH_HAND_THREADS (1,2: the counts tried by hand), BENCH_HAND_KERNELS
(own,Haswell: OpenBLAS core types tried by hand), BENCH_SEED (1).
"""
import csv
import glob
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "torchvision_step"))
import harness as tv  # noqa: E402  the timer (wall, child CPU) and the data folder


def fulgur_config(tmp, target):
    """mlp.yaml with the target accuracy as EarlyStopping's threshold."""
    with open(os.path.join(HERE, "mlp.yaml")) as f:
        text = f.read().replace("stopping_threshold: 0.885", f"stopping_threshold: {target}")
    path = os.path.join(tmp, "mlp.yaml")
    with open(path, "w") as f:
        f.write(text)
    return path


def fulgur_argv(fulgur, cfg, root, seed, epochs, threads=None):
    argv = [fulgur, "fit", "--config", cfg, f"--trainer.default_root_dir={root}",
            f"--seed_everything={seed}", f"--trainer.max_epochs={epochs}"]
    if threads is not None:
        argv.append(f"--trainer.num_threads={threads}")
    return argv


def fulgur_epochs(root):
    """(epochs run, best val/Accuracy) from the run's metrics.csv."""
    rows = []
    for path in glob.glob(os.path.join(root, "version_*", "metrics.csv")):
        with open(path) as f:
            rows += [r for r in csv.DictReader(f) if r.get("val/Accuracy")]
    if not rows:
        return 0, 0.0
    return len(rows), max(float(r["val/Accuracy"]) for r in rows)


def kernel_env(kernel):
    env = dict(os.environ)
    env.pop("OPENBLAS_CORETYPE", None)
    if kernel != "own":
        env["OPENBLAS_CORETYPE"] = kernel
    return env


def main(argv):
    if len(argv) != 2:
        sys.exit("usage: harness.py BUILD_DIR")
    fulgur = os.path.join(os.path.abspath(argv[1]), "fulgur")
    repeats = int(os.environ.get("BENCH_REPEATS", "3"))
    target = float(os.environ.get("BENCH_TARGET", "0.885"))
    epochs = int(os.environ.get("BENCH_MAX_EPOCHS", "30"))
    seed = int(os.environ.get("BENCH_SEED", "1"))
    hand_threads = [int(t) for t in os.environ.get("BENCH_HAND_THREADS", "1,2").split(",")]
    hand_kernels = os.environ.get("BENCH_HAND_KERNELS", "own,Haswell").split(",")
    version = subprocess.run([fulgur, "--version"], env=kernel_env("own"), capture_output=True,
                             text=True).stdout.strip().replace("\n", "; ")

    programs = {"fulgur": (None, "own"), "python": None}
    for t in hand_threads:
        for k in hand_kernels:
            programs[f"hand {t}/{k}"] = (t, k)
    times = {k: ([], []) for k in programs}
    reached = {k: [] for k in programs}
    chosen = []
    with tempfile.TemporaryDirectory() as tmp:
        cfg = fulgur_config(tmp, target)
        for r in range(repeats):
            for name, setting in programs.items():
                root = os.path.join(tmp, f"{r}-{name.replace(' ', '_').replace('/', '_')}")
                if setting is None:
                    result = root + ".txt"
                    cmd = [sys.executable, os.path.join(HERE, "python_eager.py"), tv.DATA, str(seed),
                           str(target), str(epochs), result]
                    wall, cpu = tv.timed(cmd, dict(os.environ))
                    with open(result) as f:
                        e, a = f.read().split()[1::2]
                    reached[name].append((int(e), float(a)))
                else:
                    cmd = fulgur_argv(fulgur, cfg, root, seed, epochs, setting[0])
                    wall, cpu = tv.timed(cmd, kernel_env(setting[1]))
                times[name][0].append(wall)
                times[name][1].append(cpu)
                if setting is not None:
                    reached[name].append(fulgur_epochs(root))
                    if name == "fulgur":
                        with open(glob.glob(os.path.join(root, "version_*", "config.yaml"))[0]) as f:
                            m = re.search(r"num_threads: (\d+)  # auto", f.read())
                        chosen.append(m.group(1) if m else "?")
                    shutil.rmtree(root, ignore_errors=True)
    print(f"{version}")
    print(f"time to {target} Fashion-MNIST test accuracy (MLP 784-256-128-10, Adam, batch 64, "
          f"data loading included), {repeats} interleaved repeats: median (min..max)")
    width = max(len(k) for k in programs)
    for name, (walls, cpus) in times.items():
        ep = reached[name]
        note = ""
        if ep:
            note = "  epochs " + ",".join(str(e) for e, _ in ep)
            if any(a < target for _, a in ep):
                note += f"  NOT REACHED in some runs (best {max(a for _, a in ep):.4f})"
        print(f"  {name:{width}s} wall {statistics.median(walls):7.1f} s ({min(walls):.1f}..{max(walls):.1f})"
              f"   cpu {statistics.median(cpus):7.1f} s ({min(cpus):.1f}..{max(cpus):.1f}){note}")
    print(f"  fulgur's auto num_threads chose: {','.join(chosen)}")
    med = {k: statistics.median(v[0]) for k, v in times.items()}
    hand = {k: v for k, v in med.items() if k.startswith("hand")}
    best = min(hand, key=hand.get)
    print(f"  fulgur/python wall ratio of medians: {med['fulgur'] / med['python']:.3f} (target <= 0.8)")
    print(f"  fulgur/{best} (the best by hand) wall ratio of medians: {med['fulgur'] / hand[best]:.3f} "
          f"(target <= 1.1)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
