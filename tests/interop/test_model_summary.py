"""The model summary at fit start, against what python3-torch says about the
same modules.

The expected table is built here from the eager modules (named_modules,
type(m).__name__, p.numel(), m.training) with Lightning 2.x's layout
(columns " ", Name, Type, Params, Mode; totals 10 wide; sizes at 32 bits)
and compared, text for text, with what `fulgur fit` prints:
- a scripted module with nested submodules (a Block inside, a Sequential,
  one submodule saved in eval mode, a frozen part through finetune_cfg):
  the default summary (max_depth 1), ModelSummary(max_depth: 2) and
  lightning.pytorch.callbacks.RichModelSummary(max_depth: -1);
- the built-in MLP against the nn.Module Python would write for it;
- enable_model_summary: false prints none (but an explicit ModelSummary
  still prints, as in Lightning), max_depth: 0 prints none, max_depth: -2
  is a config error;
- under fulgurd, the same table reaches WatchJob as a log event.
"""
import math
import os
import subprocess
import tempfile
from typing import Dict

import torch
import torch.nn.functional as F

from interop import FULGUR, check, finish


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc = torch.nn.Linear(6, 8)
        self.norm = torch.nn.BatchNorm1d(8)
        self.act = torch.nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.fc(x)))


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = Block()
        self.head = torch.nn.Sequential(torch.nn.Linear(8, 150), torch.nn.Dropout(0.1), torch.nn.Linear(150, 3))

    def forward(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return {"loss": F.cross_entropy(self.head(self.encoder(batch["data"])), batch["label"])}


class MLP(torch.nn.Module):
    """What fulgur.models.MLP(in_features 6, hidden [9], out_features 3,
    dropout 0.2) is in Python."""

    def __init__(self):
        super().__init__()
        self.layers = torch.nn.Sequential(torch.nn.Linear(6, 9), torch.nn.ReLU(), torch.nn.Dropout(0.2),
                                          torch.nn.Linear(9, 3))


def human(n):
    """Lightning's get_human_readable_count, from its documented examples."""
    labels = [" ", "K", "M", "B", "T"]
    digits = int(math.floor(math.log10(n)) + 1) if n > 0 else 1
    groups = min(int(math.ceil(digits / 3)), len(labels))
    x = n * 10 ** (-3 * (groups - 1))
    if groups == 1 or x >= 100:
        return f"{int(x):,d} {labels[groups - 1]}"
    return f"{x:,.1f} {labels[groups - 1]}"


assert [human(v) for v in (0, 123, 1234, 2_000_000, 3_000_000_000, 4 * 10**14, 5 * 10**15)] == \
    ["0  ", "123  ", "1.2 K", "2.0 M", "3.0 B", "400 T", "5,000 T"]


def expected(model, max_depth, trainable):
    """The table for a LightningModule whose attribute `model` is `model`;
    trainable(name) says whether parameter `model.<name>` trains."""
    mods = [("model", model)] + [("model." + n, m) for n, m in model.named_modules() if n]
    rows = [(n, m) for n, m in mods if max_depth < 0 or n.count(".") < max_depth]
    cols = [(" ", [str(i) for i in range(len(rows))]),
            ("Name", [n for n, _ in rows]),
            ("Type", [type(m).__name__ for _, m in rows]),
            ("Params", [human(sum(p.numel() for p in m.parameters())) for _, m in rows]),
            ("Mode", ["train" if m.training else "eval" for _, m in rows])]
    widths = [max([len(h)] + [len(x) for x in xs]) for h, xs in cols]
    rule = "-" * (sum(widths) + 3 * (len(cols) + 1))
    lines = [" | ".join(h.ljust(w) for (h, _), w in zip(cols, widths)), rule]
    for i in range(len(rows)):
        lines.append(" | ".join(xs[i].ljust(w) for (_, xs), w in zip(cols, widths)))
    lines.append(rule)
    total = sum(p.numel() for p in model.parameters())
    train = sum(p.numel() for n, p in model.named_parameters() if trainable(n))
    modes = [m.training for _, m in mods]
    for v, what in ((human(train), "Trainable params"), (human(total - train), "Non-trainable params"),
                    (human(total), "Total params"), (f"{total * 32 / 8 * 1e-6:,.3f}",
                                                     "Total estimated model params size (MB)"),
                    (str(modes.count(True)), "Modules in train mode"),
                    (str(modes.count(False)), "Modules in eval mode")):
        lines.append(v.ljust(10) + what)
    return "\n".join(lines)


def printed(stderr):
    """The table(s) fulgur printed: from each header line to "Modules in eval mode"."""
    out, cur = [], None
    for line in stderr.splitlines():
        if line.startswith("  | Name"):
            cur = [line]
        elif cur is not None:
            cur.append(line)
            if line.endswith("Modules in eval mode"):
                out.append("\n".join(cur))
                cur = None
    return out


def config(work, name, model_yaml, trainer_extra="", model_extra="", module="fulgur.LightningModule",
           data="data.pt"):
    path = os.path.join(work, name + ".yaml")
    with open(path, "w") as f:
        f.write(f"""
seed_everything: 1
trainer:
  max_epochs: 1
  default_root_dir: {work}/runs_{name}
  enable_progress_bar: false
  num_sanity_val_steps: 0
  num_threads: 1
{trainer_extra}model:
  class_path: {module}
  init_args:
    model: {model_yaml}
{model_extra}optimizer_config:
  optimizer: {{class_path: torch.optim.SGD, init_args: {{lr: 0.1}}}}
data:
  class_path: fulgur.DataModule
  init_args:
    dataset_cfg:
      class_path: fulgur.data.TensorDict
      init_args: {{path: {work}/{data}}}
    dataloader_cfg: {{batch_size: 8}}
""")
    return path


def fit(path, *extra):
    return subprocess.run([FULGUR, "fit", "--config", path, *extra], capture_output=True, text=True,
                          timeout=300)


with tempfile.TemporaryDirectory() as work:
    torch.manual_seed(0)
    torch.save({"data": torch.randn(32, 6), "label": torch.randint(0, 3, (32,))},
               os.path.join(work, "data.pt"))
    # ClassificationModule reads batch["x"] and batch["y"].
    torch.save({"x": torch.randn(32, 6), "y": torch.randint(0, 3, (32,))}, os.path.join(work, "xy.pt"))
    net = Net()
    net.head[1].eval()  # saved in eval mode: its Mode is "eval"
    torch.jit.script(net).save(os.path.join(work, "net.pt"))
    ts = f"{{class_path: fulgur.models.TorchScript, init_args: {{path: {work}/net.pt}}}}"
    frozen = "    finetune_cfg: head\n"  # the encoder is frozen
    head_trains = lambda n: n.startswith("head.")

    # 1. The default: enable_model_summary true, max_depth 1.
    r = fit(config(work, "default", ts, model_extra=frozen))
    check("fit with the default summary", r.returncode == 0, r.stderr[-2000:])
    want = expected(net, 1, head_trains)
    got = printed(r.stderr)
    check("default summary (max_depth 1): one row `model` of type Net, the totals python3-torch counts",
          got == [want], "\n" + "\n".join(got) + "\n--- expected\n" + want)

    # 2. ModelSummary(max_depth: 2): the model's children too.
    cb = "  callbacks: [{class_path: ModelSummary, init_args: {max_depth: 2}}]\n"
    r = fit(config(work, "depth2", ts, trainer_extra=cb, model_extra=frozen))
    want = expected(net, 2, head_trains)
    got = printed(r.stderr)
    check("ModelSummary(max_depth: 2): model, model.encoder, model.head rows; only this table",
          r.returncode == 0 and got == [want] and "model.encoder.fc" not in r.stderr,
          r.stderr[-3000:] + "\n--- expected\n" + want)

    # 3. The full Lightning path, every depth.
    cb = "  callbacks: [{class_path: lightning.pytorch.callbacks.RichModelSummary, init_args: {max_depth: -1}}]\n"
    r = fit(config(work, "all", ts, trainer_extra=cb))
    want = expected(net, -1, lambda n: True)
    got = printed(r.stderr)
    check("RichModelSummary(max_depth: -1): every submodule, types as Python names them, "
          "the eval-mode Dropout marked eval", r.returncode == 0 and got == [want],
          r.stderr[-3000:] + "\n--- expected\n" + want)

    # 4. The built-in MLP, against the nn.Module Python would write.
    mlp = "{class_path: fulgur.models.MLP, init_args: {in_features: 6, hidden: [9], out_features: 3, dropout: 0.2}}"
    cb = "  callbacks: [{class_path: ModelSummary, init_args: {max_depth: -1}}]\n"
    r = fit(config(work, "mlp", mlp, trainer_extra=cb, module="fulgur.ClassificationModule", data="xy.pt"))
    want = expected(MLP(), -1, lambda n: True)
    got = printed(r.stderr)
    check("built-in MLP: model, model.layers (Sequential), model.layers.0 .. 3 as PyTorch names them",
          r.returncode == 0 and got == [want], r.stderr[-3000:] + "\n--- expected\n" + want)

    # 5. Turned off.
    r = fit(config(work, "off", ts, trainer_extra="  enable_model_summary: false\n"))
    check("enable_model_summary: false prints no summary",
          r.returncode == 0 and "| Name" not in r.stderr and "Total params" not in r.stderr, r.stderr[-2000:])
    r = fit(config(work, "zero", ts, trainer_extra="  callbacks: [{class_path: ModelSummary, init_args: {max_depth: 0}}]\n"))
    check("ModelSummary(max_depth: 0) prints no summary", r.returncode == 0 and "| Name" not in r.stderr,
          r.stderr[-2000:])
    cb = "  enable_model_summary: false\n  callbacks: [{class_path: ModelSummary, init_args: {max_depth: 2}}]\n"
    r = fit(config(work, "explicit", ts, trainer_extra=cb))
    check("an explicit ModelSummary prints even with enable_model_summary: false (Lightning's rule)",
          r.returncode == 0 and printed(r.stderr) == [expected(net, 2, lambda n: True)], r.stderr[-2000:])
    r = fit(config(work, "bad", ts, trainer_extra="  callbacks: [{class_path: ModelSummary, init_args: {max_depth: -2}}]\n"))
    check("ModelSummary(max_depth: -2) is a config error naming the key",
          r.returncode == 2 and "trainer.callbacks.0.init_args.max_depth" in r.stderr, r.stderr[-2000:])

    # 6. Under the daemon: WatchJob carries the table as a log event.
    from daemon_util import Daemon  # noqa: E402 (generates the gRPC stubs)
    d = Daemon(args=["--max-jobs", "1", "--root", work]).start()
    try:
        with open(config(work, "remote", ts, model_extra=frozen)) as f:
            yaml = f.read()
        job = d.submit(yaml)
        events = d.watch(job.id)
        logs = [e.log.text for e in events if e.WhichOneof("kind") == "log"]
        want = expected(net, 1, head_trains)
        check("fulgurd: WatchJob has the summary as one log event, on a line of its own",
              ("\n" + want) in logs, "\n".join(logs)[-3000:])
    finally:
        d.stop()

finish()
