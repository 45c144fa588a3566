"""trainer.precision: bf16-mixed is PyTorch's CPU autocast, with Lightning's
meaning, checked against python3-torch itself.

1. A scripted net (Conv2d, BatchNorm2d, Linear) trained a few SGD steps by
   `fulgur fit` under bf16-mixed ends with the parameters and buffers of a
   python3-torch loop that wraps forward and loss in
   torch.autocast("cpu", dtype=torch.bfloat16) and steps outside it, from
   the same initial weights over the same batches; the 32-true run is
   measurably elsewhere (autocast really ran). Parameters, BatchNorm's
   running statistics and the optimizer's momentum stay float32 in the
   checkpoint.
2. `fulgur predict` under bf16-mixed writes what the autocast eval-mode
   forward gives in Python; validation under it changes no running
   statistic.
3. On a CPU without bf16 instructions (played with the test-only
   FULGUR_TEST_CPU_FLAGS) the run works and warns once that it will be
   slow; on this CPU, if it has them, there is no warning.
4. The Fashion-MNIST demo (examples/fashion_mnist/mlp.yaml, fewer epochs)
   reaches the same test accuracy under bf16-mixed as under 32-true, to
   0.005.
"""
import json
import os
import tempfile

import torch
import torch.nn.functional as F

from bf16_util import BATCH, EPOCHS, LR, N, Net, X, Y, config, max_diff, run
from interop import check, finish, write_csv

SRC = os.environ["FG_SOURCE_DIR"]


def python_fit(model_path, bf16):
    net = torch.jit.load(model_path)
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9)
    net.train()
    for _ in range(EPOCHS):
        for s in range(0, N, BATCH):
            opt.zero_grad()
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(net(X[s:s + BATCH]), Y[s:s + BATCH])
            loss.backward()
            opt.step()
    return net


def has_bf16_instructions():
    with open("/proc/cpuinfo") as f:
        flags = next(line for line in f if line.startswith("flags")).split()
    return "avx512_bf16" in flags or "amx_bf16" in flags


WARNING = "fulgur: warning: trainer.precision: bf16-mixed on a CPU without bf16 instructions"

with tempfile.TemporaryDirectory() as work:
    torch.manual_seed(3)
    model_path = os.path.join(work, "net.pt")
    torch.jit.script(Net()).save(model_path)
    write_csv(os.path.join(work, "data.csv"), X, Y)

    # ---- 1. training steps equal PyTorch's autocast ----
    want = {k: v.detach() for k, v in python_fit(model_path, True).state_dict().items()}
    want32 = {k: v.detach() for k, v in python_fit(model_path, False).state_dict().items()}
    got, got32 = {}, {}
    for name, precision, into in (("bf16", "bf16-mixed", got), ("fp32", "32-true", got32)):
        r = run("fit", "--config", config(work, name, precision))
        check(f"fit under {precision} succeeds", r.returncode == 0, r.stderr[-3000:])
        if r.returncode == 0:
            ck = torch.load(os.path.join(work, name, "version_0", "checkpoints", "last.ckpt"))
            into.update({k[len("model."):]: v for k, v in ck["state_dict"].items()})
            if precision == "bf16-mixed":
                bf16_ck = ck
                bf16_log = r.stderr
    if got and got32:
        d_bf16, d_32, gap = max_diff(got, want), max_diff(got32, want32), max_diff(want, want32)
        check(f"bf16-mixed: fulgur's parameters and buffers equal torch.autocast's "
              f"(max diff {d_bf16:.1e})", got.keys() == want.keys() and d_bf16 <= 1e-4, f"{got.keys()}")
        check(f"32-true: equal to the float32 loop (max diff {d_32:.1e})", d_32 <= 1e-5)
        check(f"bf16 really ran: autocast's result is {gap:.1e} away from float32's",
              gap > 1e-3 and gap > 20 * d_bf16)
        dtypes = {k: v.dtype for k, v in bf16_ck["state_dict"].items()}
        check("bf16-mixed: parameters and running statistics stay float32 in the checkpoint",
              all(dt == torch.float32 for k, dt in dtypes.items() if "num_batches_tracked" not in k)
              and dtypes["model.bn.num_batches_tracked"] == torch.int64, str(dtypes))
        moms = [s["momentum_buffer"] for s in bf16_ck["optimizer_states"][0]["state"].values()]
        check("bf16-mixed: the optimizer's momentum stays float32",
              len(moms) == 8 and all(m.dtype == torch.float32 for m in moms), str([m.dtype for m in moms]))
        if has_bf16_instructions():
            check("a CPU with bf16 instructions: no slowness warning", WARNING not in bf16_log, bf16_log)

    # ---- 2. validation and predict under autocast ----
    ckpt = os.path.join(work, "bf16", "version_0", "checkpoints", "last.ckpt")
    r = run("validate", "--config", config(work, "bf16", "bf16-mixed"), "--ckpt_path", ckpt, "--json")
    net = torch.jit.load(model_path)
    net.load_state_dict(want)
    net.eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        logits = net(X)
        val_loss = F.cross_entropy(logits, Y).item()
        acc = (logits.float().argmax(1) == Y).float().mean().item()
    if r.returncode == 0:
        m = json.loads(r.stdout)
        check(f"validate under bf16-mixed: loss {m['val/loss']:.5f} and accuracy equal Python's "
              f"autocast eval ({val_loss:.5f})",
              abs(m["val/loss"] - val_loss) <= 1e-3 and abs(m["val/Accuracy"] - acc) <= 1e-6, r.stdout)
    else:
        check("validate under bf16-mixed", False, r.stderr[-2000:])
    r = run("predict", "--config", config(work, "bf16", "bf16-mixed"), "--ckpt_path", ckpt)
    check("predict under bf16-mixed succeeds", r.returncode == 0, r.stderr[-2000:])
    if r.returncode == 0:
        pred = torch.cat(torch.load(os.path.join(work, "bf16", "pred", "logits", "predictions.pt")))
        d = (pred.float() - logits.float()).abs().max().item()
        check(f"predict under bf16-mixed: autocast's logits ({pred.dtype}, max diff {d:.1e})",
              pred.shape == logits.shape and pred.dtype == logits.dtype == torch.bfloat16 and d <= 1e-6,
              f"{pred.shape} {pred.dtype}")

    # ---- 3. a CPU without bf16 instructions: a warning, once ----
    r = run("fit", "--config", config(work, "nobf16", "bf16-mixed"),
            env={"FULGUR_TEST_CPU_FLAGS": "pni avx avx2 fma"})
    check("no bf16 instructions: fit still succeeds", r.returncode == 0, r.stderr[-2000:])
    check("no bf16 instructions: one warning that it will be slow", r.stderr.count(WARNING) == 1,
          r.stderr[-2000:])

    # ---- 4. the Fashion-MNIST demo's accuracy holds under bf16-mixed ----
    demo = os.path.join(SRC, "examples", "fashion_mnist", "mlp.yaml")
    accs = {}
    for precision in ("32-true", "bf16-mixed"):
        root = os.path.join(work, "demo-" + precision)
        common = ["--config", demo, f"--trainer.default_root_dir={root}", "--trainer.max_epochs=3",
                  "--trainer.num_threads=1", "--trainer.enable_progress_bar=false",
                  f"--trainer.precision={precision}"]
        r = run("fit", *common)
        if r.returncode != 0:
            check(f"demo fit under {precision}", False, r.stderr[-2000:])
            continue
        ckpts = os.path.join(root, "version_0", "checkpoints")
        best = next(f for f in sorted(os.listdir(ckpts)) if f.startswith("epoch="))
        r = run("test", *common, "--ckpt_path", os.path.join(ckpts, best), "--json")
        check(f"demo test under {precision}", r.returncode == 0, r.stderr[-2000:])
        if r.returncode == 0:
            accs[precision] = json.loads(r.stdout)["test/Accuracy"]
    if len(accs) == 2:
        a32, a16 = accs["32-true"], accs["bf16-mixed"]
        check(f"demo test accuracy: bf16-mixed {a16:.4f} vs 32-true {a32:.4f} (within 0.005)",
              abs(a16 - a32) <= 0.005 and a32 > 0.8)

finish()
