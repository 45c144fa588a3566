"""trainer.precision: bf16-true is Lightning's HalfPrecision("bf16-true"),
checked against python3-torch itself: the module's floating parameters
and buffers converted to bfloat16 (Module.to), a batch's floating tensors
converted before each step, so weights, gradients and the optimizer's
state are bf16.

1. A scripted net (Conv2d, BatchNorm2d, Linear) trained a few SGD steps by
   `fulgur fit` under bf16-true ends with the parameters and buffers of a
   python3-torch loop over net.bfloat16() fed bf16 batches, from the same
   initial weights over the same batches; the checkpoint keeps them (and
   the momentum) in bf16, BatchNorm's count as int64.
2. `fulgur validate` and `fulgur predict` under bf16-true give Python's
   bf16 eval-mode loss, accuracy and logits.
3. On a CPU without bf16 instructions (FULGUR_TEST_CPU_FLAGS) it warns
   once that it will be slow.
4. A float32 checkpoint validates under bf16-true (copied into bf16).
"""
import json
import os
import tempfile

import torch
import torch.nn.functional as F

from bf16_util import BATCH, EPOCHS, LR, N, Net, X, Y, config, max_diff, run
from interop import check, finish, write_csv


def python_fit(model_path):
    net = torch.jit.load(model_path)
    net.to(torch.bfloat16)
    opt = torch.optim.SGD(net.parameters(), lr=LR, momentum=0.9)
    net.train()
    for _ in range(EPOCHS):
        for s in range(0, N, BATCH):
            opt.zero_grad()
            loss = F.cross_entropy(net(X[s:s + BATCH].bfloat16()), Y[s:s + BATCH])
            loss.backward()
            opt.step()
    return net


WARNING = "fulgur: warning: trainer.precision: bf16-true on a CPU without bf16 instructions"

with tempfile.TemporaryDirectory() as work:
    torch.manual_seed(3)
    model_path = os.path.join(work, "net.pt")
    torch.jit.script(Net()).save(model_path)
    write_csv(os.path.join(work, "data.csv"), X, Y)

    # ---- 1. training steps equal a bf16 python3-torch loop ----
    want_net = python_fit(model_path)
    want = {k: v.detach() for k, v in want_net.state_dict().items()}
    r = run("fit", "--config", config(work, "bf16", "bf16-true"))
    check("fit under bf16-true succeeds", r.returncode == 0, r.stderr[-3000:])
    ckpt = os.path.join(work, "bf16", "version_0", "checkpoints", "last.ckpt")
    if r.returncode == 0:
        ck = torch.load(ckpt)
        got = {k[len("model."):]: v for k, v in ck["state_dict"].items()}
        dtypes = {k: v.dtype for k, v in got.items()}
        check("bf16-true: the checkpoint keeps parameters and running statistics in bf16, "
              "the BatchNorm count int64",
              all(dt == torch.bfloat16 for k, dt in dtypes.items() if "num_batches_tracked" not in k)
              and dtypes["bn.num_batches_tracked"] == torch.int64, str(dtypes))
        exact = got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
        check(f"bf16-true: fulgur's parameters and buffers equal python3-torch's bf16 loop "
              f"(max diff {max_diff(got, want):.1e})", exact,
              str([k for k in want if k in got and not torch.equal(got[k], want[k])]))
        moms = [s["momentum_buffer"] for s in ck["optimizer_states"][0]["state"].values()]
        check("bf16-true: the optimizer's momentum is bf16",
              len(moms) == 8 and all(m.dtype == torch.bfloat16 for m in moms), str([m.dtype for m in moms]))

    # ---- 2. validation and predict in bf16 ----
    net = torch.jit.load(model_path)
    net.to(torch.bfloat16)
    net.load_state_dict(want)
    net.eval()
    with torch.no_grad():
        # Per batch, as the loaders feed it; the loss a batch-size weighted
        # mean of the batches' bf16 losses, as Lightning's epoch mean.
        parts = [net(X[s:s + BATCH].bfloat16()) for s in range(0, N, BATCH)]
        logits = torch.cat(parts)
        val_loss = sum(F.cross_entropy(p, Y[i * BATCH:(i + 1) * BATCH]).double().item() * len(p)
                       for i, p in enumerate(parts)) / N
        acc = (logits.float().argmax(1) == Y).float().mean().item()
    r = run("validate", "--config", config(work, "bf16", "bf16-true"), "--ckpt_path", ckpt, "--json")
    if r.returncode == 0:
        m = json.loads(r.stdout)
        check(f"validate under bf16-true: loss {m['val/loss']:.5f} and accuracy {m['val/Accuracy']:.4f} "
              f"equal Python's bf16 eval ({val_loss:.5f}, {acc:.4f})",
              abs(m["val/loss"] - val_loss) <= 1e-6 and abs(m["val/Accuracy"] - acc) <= 1e-6, r.stdout)
    else:
        check("validate under bf16-true", False, r.stderr[-2000:])
    r = run("predict", "--config", config(work, "bf16", "bf16-true"), "--ckpt_path", ckpt)
    check("predict under bf16-true succeeds", r.returncode == 0, r.stderr[-2000:])
    if r.returncode == 0:
        pred = torch.cat(torch.load(os.path.join(work, "bf16", "pred", "logits", "predictions.pt")))
        check(f"predict under bf16-true: Python's bf16 logits ({pred.dtype})",
              pred.shape == logits.shape and pred.dtype == torch.bfloat16 and torch.equal(pred, logits),
              f"{pred.shape} {pred.dtype} max diff {(pred.float() - logits.float()).abs().max().item()}")

    # ---- 3. a CPU without bf16 instructions: a warning, once ----
    r = run("fit", "--config", config(work, "nobf16", "bf16-true"),
            env={"FULGUR_TEST_CPU_FLAGS": "pni avx avx2 fma"})
    check("no bf16 instructions: fit still succeeds", r.returncode == 0, r.stderr[-2000:])
    check("no bf16 instructions: one warning that it will be slow", r.stderr.count(WARNING) == 1,
          r.stderr[-2000:])

    # ---- 4. a float32 checkpoint under bf16-true ----
    r = run("fit", "--config", config(work, "fp32", "32-true"))
    check("fit under 32-true succeeds", r.returncode == 0, r.stderr[-2000:])
    if r.returncode == 0:
        ck32 = os.path.join(work, "fp32", "version_0", "checkpoints", "last.ckpt")
        sd = {k[len("model."):]: v for k, v in torch.load(ck32)["state_dict"].items()}
        net = torch.jit.load(model_path)
        net.load_state_dict(sd)
        net.to(torch.bfloat16)
        net.eval()
        with torch.no_grad():
            want_loss = sum(F.cross_entropy(net(X[s:s + BATCH].bfloat16()), Y[s:s + BATCH]).double().item()
                            * BATCH for s in range(0, N, BATCH)) / N
        r = run("validate", "--config", config(work, "fp32", "bf16-true"), "--ckpt_path", ck32, "--json")
        ok = r.returncode == 0
        got_loss = json.loads(r.stdout)["val/loss"] if ok else None
        check(f"a float32 checkpoint validates under bf16-true with Python's loss ({got_loss} vs "
              f"{want_loss:.5f})", ok and abs(got_loss - want_loss) <= 1e-6, r.stderr[-2000:])

finish()
