"""TorchScript models written by Python run in fulgur.

(torch.jit.script compiles forward and what it calls; methods such as
loss_step need @torch.jit.export to be in the saved file.)

A module scripted and saved by python3-torch, with forward(batch), its own
loss_step and metric_step, trains in `fulgur fit` (fulgur.LightningModule
with loss_weights) and ends with the weights a Python loop over the same
batches gives; its methods are used as the seed's hasattr rule says. A
forward(x) -> logits module works in ClassificationModule. Bad files and
signatures are clear errors.
"""
import os
import subprocess
import sys
import tempfile
from typing import Dict

import torch
import torch.nn.functional as F

from interop import FULGUR, check, finish


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.Sequential(
            torch.nn.Linear(6, 8), torch.nn.ReLU(), torch.nn.Linear(8, 3))

    def forward(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return {"logits": self.layers(batch["x"])}

    @torch.jit.export
    def loss_step(self, batch: Dict[str, torch.Tensor],
                  output: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return {"ce_loss": F.cross_entropy(output["logits"], batch["y"]),
                "l2_loss": (self.layers[0].weight ** 2).sum()}

    @torch.jit.export
    def metric_step(self, batch: Dict[str, torch.Tensor],
                    output: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return {"preds": output["logits"], "target": batch["y"]}


class Logits(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.layers = torch.nn.Sequential(torch.nn.Linear(6, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x)


class TwoArgs(torch.nn.Module):
    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


torch.manual_seed(5)
N, BATCH, EPOCHS, L2 = 40, 16, 2, 0.5
X = torch.randn(N, 6)
Y = torch.randint(0, 3, (N,))


def config(work, name, model_yaml, module="fulgur.LightningModule", extra=""):
    path = os.path.join(work, name + ".yaml")
    with open(path, "w") as f:
        f.write(f"""
seed_everything: 1
trainer:
  max_epochs: {EPOCHS}
  default_root_dir: {work}/{name}
  enable_progress_bar: false
  num_sanity_val_steps: 0
  num_threads: 1
  log_every_n_steps: 1
model:
  class_path: {module}
  init_args:
    model: {model_yaml}
    evaluator_cfg: {{class_path: fulgur.metrics.Accuracy, init_args: {{task: multiclass, num_classes: 3}}}}
{extra}
optimizer_config:
  optimizer: {{class_path: torch.optim.SGD, init_args: {{lr: 0.1}}}}
data:
  class_path: fulgur.DataModule
  init_args:
    dataset_cfg:
      class_path: fulgur.data.CSV
      init_args: {{path: {work}/data.csv, target: label}}
    dataloader_cfg: {{batch_size: {BATCH}, shuffle: false}}
""")
    return path


with tempfile.TemporaryDirectory() as work:
    with open(os.path.join(work, "data.csv"), "w") as f:
        f.write("a,b,c,d,e,f,label\n")
        for x, y in zip(X.tolist(), Y.tolist()):
            f.write(",".join(repr(v) for v in x) + f",{y}\n")
    torch.manual_seed(0)
    net = torch.jit.script(Net())
    net.save(os.path.join(work, "net.pt"))
    init = {k: v.clone() for k, v in net.state_dict().items()}

    cfg = config(work, "net", f"{{class_path: fulgur.models.TorchScript, init_args: {{path: {work}/net.pt}}}}",
                 extra=f"    loss_weights: {{l2_loss: {L2}}}")
    r = subprocess.run([FULGUR, "fit", "--config", cfg, "--json"], capture_output=True, text=True)
    check("fit a scripted module with its own loss_step and metric_step", r.returncode == 0, r.stderr)
    if r.returncode == 0:
        ck = torch.load(os.path.join(work, "net", "version_0", "checkpoints", "last.ckpt"))
        got = ck["state_dict"]
        check("parameters keep their PyTorch names under model.",
              sorted(got) == sorted("model." + k for k in init), str(sorted(got)))
        ref = torch.jit.load(os.path.join(work, "net.pt"))
        opt = torch.optim.SGD(ref.parameters(), lr=0.1)
        for _ in range(EPOCHS):
            for s in range(0, N, BATCH):
                batch = {"x": X[s:s + BATCH], "y": Y[s:s + BATCH]}
                losses = ref.loss_step(batch, ref(batch))
                loss = losses["ce_loss"] + L2 * losses["l2_loss"]
                opt.zero_grad()
                loss.backward()
                opt.step()
        diff = max((got["model." + k] - v).abs().max().item() for k, v in ref.state_dict().items())
        check(f"weights equal a python3-torch loop's (max diff {diff:.1e})", diff <= 1e-6)
        header = open(os.path.join(work, "net", "version_0", "metrics.csv")).readline()
        check("every loss term and the evaluator are logged",
              all(k in header for k in ("fit/ce_loss", "fit/l2_loss", "fit/loss", "val/Accuracy")),
              header)

    torch.jit.script(Logits()).save(os.path.join(work, "logits.pt"))
    cfg = config(work, "logits", f"{{class_path: TorchScript, init_args: {{path: {work}/logits.pt}}}}",
                 module="fulgur.ClassificationModule")
    r = subprocess.run([FULGUR, "fit", "--config", cfg], capture_output=True, text=True)
    check("forward(x) -> logits in a ClassificationModule", r.returncode == 0, r.stderr)

    # TorchScript source compiled in-process, parameters declared in the
    # config and started from a Python-written checkpoint (ckpt_path).
    lin = torch.nn.Linear(6, 3)
    torch.save({"state_dict": {"model.weight": lin.weight.detach(), "model.bias": lin.bias.detach()}},
               os.path.join(work, "lin.ckpt"))
    src_model = ("\n      class_path: fulgur.models.TorchScript\n      init_args:\n        source: |\n"
                 "          def forward(self, x: torch.Tensor) -> torch.Tensor:\n"
                 "              return torch.matmul(x, self.weight.t()) + self.bias\n"
                 "        parameters: {weight: [3, 6], bias: [3]}")
    cfg = config(work, "source", src_model, module="fulgur.ClassificationModule",
                 extra=f"    ckpt_path: {work}/lin.ckpt")
    r = subprocess.run([FULGUR, "fit", "--config", cfg], capture_output=True, text=True)
    check("a model from TorchScript source trains", r.returncode == 0, r.stderr)
    if r.returncode == 0:
        got = torch.load(os.path.join(work, "source", "version_0", "checkpoints", "last.ckpt"))["state_dict"]
        opt = torch.optim.SGD(lin.parameters(), lr=0.1)
        for _ in range(EPOCHS):
            for s in range(0, N, BATCH):
                opt.zero_grad()
                F.cross_entropy(lin(X[s:s + BATCH]), Y[s:s + BATCH]).backward()
                opt.step()
        diff = max((got["model.weight"] - lin.weight).abs().max().item(),
                   (got["model.bias"] - lin.bias).abs().max().item())
        check(f"source model weights equal nn.Linear trained in Python (max diff {diff:.1e})", diff <= 1e-6)
    bad = config(work, "badsrc", src_model.replace("self.bias", "self.bias_typo"),
                 module="fulgur.ClassificationModule")
    r = subprocess.run([FULGUR, "fit", "--config", bad], capture_output=True, text=True)
    check("a source that does not compile is named", r.returncode != 0 and
          "model.init_args.model.init_args.source: cannot compile" in r.stderr, r.stderr)

    torch.jit.script(TwoArgs()).save(os.path.join(work, "two.pt"))
    cfg = config(work, "two", f"{{class_path: TorchScript, init_args: {{path: {work}/two.pt}}}}")
    r = subprocess.run([FULGUR, "fit", "--config", cfg], capture_output=True, text=True)
    check("a forward with the wrong signature is named", r.returncode == 1 and
          "model.init_args.model.init_args.path" in r.stderr and "forward takes 2 arguments" in r.stderr,
          r.stderr)
    with open(os.path.join(work, "junk.pt"), "w") as f:
        f.write("not a module")
    cfg = config(work, "junk", f"{{class_path: TorchScript, init_args: {{path: {work}/junk.pt}}}}")
    r = subprocess.run([FULGUR, "fit", "--config", cfg], capture_output=True, text=True)
    check("a file that is not TorchScript is named", r.returncode == 1 and
          "cannot load TorchScript module" in r.stderr and "junk.pt" in r.stderr, r.stderr)

finish()
