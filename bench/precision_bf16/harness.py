"""What trainer.precision: bf16-mixed buys on this CPU: the per-step time
of torchvision's resnet18 (the torchvision_step benchmark's model, data and
config: conv1 1-channel, Fashion-MNIST 1x28x28, batch 32, SGD momentum, one
intra-op thread) under `fulgur fit` with precision 32-true and bf16-mixed,
beside python3-torch eager without and with
torch.autocast("cpu", dtype=torch.bfloat16) (the same loop otherwise).

Per step: (T(N2) - T(N1)) / (N2 - N1), wall and CPU (user + system of the
child), start-up cancelled; the four programs interleaved in each of R
repeats; median and min..max. Prints the speed-up 32-true / bf16-mixed of
each (target for fulgur: at least 1.6), the BLAS kernels and whether the
CPU has bf16 instructions.

usage: harness.py BUILD_DIR
environment: BENCH_REPEATS (3), BENCH_N1 (3), BENCH_N2 (13).
"""
import os
import statistics
import subprocess
import sys
import tempfile

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "torchvision_step"))
import harness as tv  # noqa: E402  the model, data, config and timer of torchvision_step

PY_LOOP = r'''
import gzip, sys, numpy as np, torch, torch.nn.functional as F
torch.set_num_threads(1)
steps, model, bf16 = int(sys.argv[1]), sys.argv[2], sys.argv[3] == "bf16"
raw = gzip.open("%(data)s/train-images-idx3-ubyte.gz").read()[16:16 + steps * %(b)d * 784]
lut = ((np.arange(256) / 255.0 - 0.286) / 0.353).astype(np.float32)
x = torch.from_numpy(lut[np.frombuffer(raw, np.uint8)]).reshape(-1, 1, 28, 28)
lab = gzip.open("%(data)s/train-labels-idx1-ubyte.gz").read()[8:8 + steps * %(b)d]
y = torch.from_numpy(np.frombuffer(lab, np.uint8).astype(np.int64))
net = torch.jit.load(model)
import torchvision
eager = torchvision.models.resnet18(num_classes=10)
eager.conv1 = torch.nn.Conv2d(1, 64, 7, 2, 3, bias=False)
eager.load_state_dict({k[len("net."):]: v for k, v in net.state_dict().items()})
opt = torch.optim.SGD(eager.parameters(), lr=0.01, momentum=0.9)
eager.train()
for s in range(steps):
    opt.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        loss = F.cross_entropy(eager(x[s * %(b)d:(s + 1) * %(b)d]), y[s * %(b)d:(s + 1) * %(b)d])
    loss.backward()
    opt.step()
    loss.item()
''' % {"data": tv.DATA, "b": tv.BATCH}


def main(argv):
    if len(argv) != 2:
        sys.exit("usage: harness.py BUILD_DIR")
    fulgur = os.path.join(os.path.abspath(argv[1]), "fulgur")
    repeats = int(os.environ.get("BENCH_REPEATS", "3"))
    n1, n2 = int(os.environ.get("BENCH_N1", "3")), int(os.environ.get("BENCH_N2", "13"))
    env = dict(os.environ, OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1")
    version = subprocess.run([fulgur, "--version"], env=env, capture_output=True, text=True).stdout
    with open("/proc/cpuinfo") as f:
        flags = next(line for line in f if line.startswith("flags")).split()
    bf16_units = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    with tempfile.TemporaryDirectory() as tmp:
        model = tv.save_model(tmp)
        cfg = os.path.join(tmp, "run.yaml")
        with open(cfg, "w") as f:
            f.write(tv.CONFIG.format(tmp=tmp, data=tv.DATA, b=tv.BATCH))
        loop = os.path.join(tmp, "loop.py")
        with open(loop, "w") as f:
            f.write(PY_LOOP)
        fit = [fulgur, "fit", "--config", cfg]
        programs = {
            "fulgur 32-true": lambda n: fit + [f"--trainer.max_steps={n}", "--trainer.precision=32-true"],
            "fulgur bf16-mixed": lambda n: fit + [f"--trainer.max_steps={n}", "--trainer.precision=bf16-mixed"],
            "python fp32": lambda n: [sys.executable, loop, str(n), model, "fp32"],
            "python autocast": lambda n: [sys.executable, loop, str(n), model, "bf16"],
        }
        per = tv.per_step(programs, repeats, n1, n2, env)
    print(version.strip().replace("\n", "; "))
    print(f"bf16 instructions: {', '.join(bf16_units) or 'none (bf16 is emulated)'}")
    print(f"resnet18, batch {tv.BATCH}, 1x28x28, 1 thread; per step over {n2 - n1} steps, "
          f"{repeats} interleaved repeats: median (min..max)")
    tv.print_per(per, 18)
    med = {k: statistics.median(v[0]) for k, v in per.items()}
    sf = med["fulgur 32-true"] / med["fulgur bf16-mixed"]
    sp = med["python fp32"] / med["python autocast"]
    print(f"  speed-up 32-true/bf16-mixed, fulgur: {sf:.2f}x (target >= 1.6)   python3-torch: {sp:.2f}x")
    cpu = {k: statistics.median(v[1]) for k, v in per.items()}
    print(f"  the same on CPU time (steadier on a loaded machine): fulgur "
          f"{cpu['fulgur 32-true'] / cpu['fulgur bf16-mixed']:.2f}x   python3-torch "
          f"{cpu['python fp32'] / cpu['python autocast']:.2f}x")
    print(f"  fulgur/python wall ratio of medians under bf16: "
          f"{med['fulgur bf16-mixed'] / med['python autocast']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
