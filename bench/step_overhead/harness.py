"""Times the step_overhead benchmark: fulgur fit against a hand-written
libtorch loop (the physical limit) and the same loop in Python.

Each program runs the same training at two step counts N1 < N2 and the whole
process is timed; (T(N2) - T(N1)) / (N2 - N1) is its time per step with the
start-up costs (loading libtorch, Python imports, config parsing) cancelled.
The programs are interleaved within each of R repeats so that the machine's
noise falls on all of them alike; the report gives medians over the repeats
and ratios of those medians, never a single absolute time.

usage: harness.py BUILD_DIR
environment: BENCH_REPEATS (5), BENCH_N1 (300), BENCH_N2 (2300),
BENCH_BATCH (64), BENCH_THREADS (1), BENCH_PYTHON (an interpreter that
imports torch; default: the first of this one, python3, /usr/bin/python3).
Exits 1 if a program failed (its rows are then missing).
"""
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIG = os.path.join(HERE, "mlp_synthetic.yaml")


def env_int(name, default):
    value = os.environ.get(name, "")
    if value == "":
        return default
    try:
        n = int(value)
    except ValueError:
        n = 0
    if n <= 0:
        sys.exit(f"harness.py: {name} must be a positive integer, not '{value}'")
    return n


def find_python():
    """Debian's torch lives in the system interpreter's dist-packages, which a
    python3 earlier on PATH (a virtualenv, pyenv) may not see."""
    wanted = os.environ.get("BENCH_PYTHON")
    candidates = [wanted] if wanted else [sys.executable, "python3", "/usr/bin/python3"]
    for exe in candidates:
        path = shutil.which(exe)
        if path is None:
            continue
        probe = subprocess.run([path, "-c", "import torch"], capture_output=True)
        if probe.returncode == 0:
            return path
    return None


class Program:
    def __init__(self, name, argv_for, required=True):
        self.name = name
        self.argv_for = argv_for  # steps -> argv
        self.required = required
        self.per_step = []  # seconds, one estimate per repeat
        self.error = None

    def run(self, steps, env):
        """Runs the program for `steps` steps; returns its wall-clock time in
        seconds, or None after recording why it failed."""
        argv = self.argv_for(steps)
        start = time.perf_counter()
        try:
            proc = subprocess.run(argv, env=env, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        except OSError as e:
            self.error = f"{argv[0]}: {e.strerror}"
            return None
        elapsed = time.perf_counter() - start
        if proc.returncode != 0:
            tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
            self.error = f"exit {proc.returncode}: {' '.join(argv)}\n    " + \
                "\n    ".join(tail)
            return None
        return elapsed


def main(argv):
    if len(argv) != 2:
        sys.exit("usage: harness.py BUILD_DIR")
    build = os.path.abspath(argv[1])
    repeats = env_int("BENCH_REPEATS", 5)
    n1 = env_int("BENCH_N1", 300)
    n2 = env_int("BENCH_N2", 2300)
    batch = env_int("BENCH_BATCH", 64)
    threads = env_int("BENCH_THREADS", 1)
    if n2 <= n1:
        sys.exit("harness.py: BENCH_N2 must be larger than BENCH_N1")

    env = dict(os.environ)
    # OpenBLAS and OpenMP start their own pools otherwise; all three programs
    # also set the intra-op thread count themselves.
    env["OPENBLAS_NUM_THREADS"] = str(threads)
    env["OMP_NUM_THREADS"] = str(threads)

    tmp = tempfile.mkdtemp(prefix="fulgur-bench-")
    try:
        return measure(build, repeats, n1, n2, batch, threads, env, tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def measure(build, repeats, n1, n2, batch, threads, env, tmp):
    raw = os.path.join(build, "bench_step_overhead_raw")
    fulgur = os.path.join(build, "fulgur")
    python = find_python()

    def fulgur_argv(extra):
        return lambda steps: [
            fulgur, "fit", "--config", CONFIG, f"--trainer.max_steps={steps}",
            f"--data.init_args.dataloader_cfg.batch_size={batch}",
            f"--trainer.num_threads={threads}",
            # Run directories (config.yaml) go to the temporary folder, not
            # the working directory.
            f"--trainer.default_root_dir={tmp}"] + extra

    programs = [
        Program("raw", lambda steps: [raw, str(steps), str(batch), str(threads)]),
        Program("fulgur", fulgur_argv([])),
        # An extra row: the CSV logger writing every step's loss to disk.
        Program("fulgur+csv", fulgur_argv(
            ["--trainer.logger=true"]),
            required=False),
    ]
    if python is not None:
        programs.append(Program("python", lambda steps: [
            python, os.path.join(HERE, "python_loop.py"),
            str(steps), str(batch), str(threads)]))

    print(f"step_overhead: MLP 784-256-10, SGD momentum, batch {batch}, "
          f"{threads} thread(s), per-step loss read; "
          f"steps {n1} vs {n2}, {repeats} repeats", flush=True)

    # One untimed run each: fills the page cache and drops programs that fail.
    for p in programs:
        p.run(n1, env)
    failed = [p for p in programs if p.error is not None]
    programs = [p for p in programs if p.error is None]

    for r in range(repeats):
        # Rotating the order keeps a program from always following the same
        # neighbour (and its leftover cache or frequency state).
        order = programs[r % len(programs):] + programs[:r % len(programs)]
        times = {}
        for steps in (n1, n2):
            for p in order:
                t = p.run(steps, env)
                if t is None:
                    break
                times[(p.name, steps)] = t
        for p in list(programs):
            if p.error is not None:
                failed.append(p)
                programs.remove(p)
                continue
            p.per_step.append((times[(p.name, n2)] - times[(p.name, n1)]) / (n2 - n1))
        print(f"  repeat {r + 1}/{repeats}: " + "  ".join(
            f"{p.name} {p.per_step[-1] * 1e6:.0f}" for p in programs) + " us/step",
            flush=True)

    report(programs)
    bad = False
    for p in failed:
        print(f"{p.name} failed: {p.error}", file=sys.stderr)
        bad = bad or p.required
    if python is None:
        print("python: no interpreter imports torch (set BENCH_PYTHON)", file=sys.stderr)
        bad = True
    return 1 if bad else 0


def report(programs):
    med = {p.name: statistics.median(p.per_step) for p in programs if p.per_step}
    print()
    print(f"{'program':<12} {'median':>9} {'min':>9} {'max':>9}   (us/step)")
    for p in programs:
        if p.per_step:
            print(f"{p.name:<12} {med[p.name] * 1e6:9.1f} {min(p.per_step) * 1e6:9.1f} "
                  f"{max(p.per_step) * 1e6:9.1f}")
    print()
    for num, den in (("fulgur", "raw"), ("fulgur+csv", "raw"), ("python", "fulgur"),
                     ("python", "raw")):
        if num in med and den in med:
            print(f"{num + '/' + den:<18} {med[num] / med[den]:.3f}")
        else:
            print(f"{num + '/' + den:<18} n/a")


if __name__ == "__main__":
    sys.exit(main(sys.argv))
