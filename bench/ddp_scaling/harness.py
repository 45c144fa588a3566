"""ddp_scaling: samples/s of 1 rank against 2 ranks (devices: 2, one
intra-op thread each) on the same model and per-rank batch, and the
all-reduce time a 2-rank step pays. Each configuration is timed as a whole
`fulgur fit` process at two step counts; (T(N2) - T(N1)) / (N2 - N1) is
its time per step with start-up cancelled. Repeats are interleaved;
medians are reported."""
import os
import statistics
import subprocess
import sys
import tempfile
import time

build = os.path.abspath(sys.argv[1])
here = os.path.dirname(os.path.abspath(__file__))
fulgur = os.path.join(build, "fulgur")
N1, N2, REPEATS, BATCH = 4, 24, 3, 1024
work = tempfile.mkdtemp(prefix="ddp-scaling-")


def fit(devices, steps):
    cmd = [fulgur, "fit", "--config", os.path.join(here, "job.yaml"), f"--trainer.max_steps={steps}",
           f"--trainer.devices={devices}", f"--trainer.default_root_dir={work}/runs"]
    if devices > 1:
        cmd.append("--trainer.strategy=ddp")
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


per_step = {1: [], 2: []}
for _ in range(REPEATS):
    for dev in (1, 2):
        t1, t2 = fit(dev, N1), fit(dev, N2)
        per_step[dev].append((t2 - t1) / (N2 - N1))
rate = {d: d * BATCH / statistics.median(v) for d, v in per_step.items()}
print(f"{'ranks':>5} {'ms/step (median)':>17} {'samples/s':>10}   per repeat (ms/step)")
for d in (1, 2):
    print(f"{d:>5} {statistics.median(per_step[d]) * 1e3:>17.2f} {rate[d]:>10.0f}   "
          + " ".join(f"{x * 1e3:.2f}" for x in per_step[d]))
print(f"samples/s ratio 2 ranks / 1 rank: {rate[2] / rate[1]:.2f} (target >= 1.7)")

# The gradient all-reduce: the model's parameter sizes, as the trainer sends them.
sizes = [784 * 1024, 1024, 1024 * 1024, 1024, 1024 * 10, 10]
out = subprocess.run([os.path.join(build, "bench_ddp_allreduce"), "--sizes", ",".join(map(str, sizes))],
                     check=True, capture_output=True, text=True).stdout.strip()
print(out)
ar = float(out.rsplit("median ", 1)[1].split(" ms")[0])
print(f"all-reduce share of a 2-rank step: {ar / (statistics.median(per_step[2]) * 1e3):.1%}")
