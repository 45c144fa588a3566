"""toy_project's ToyModel (src/project/models/toy_model.py), scripted for
fulgur: the same layers, the same forward output (loss_dict and
metric_dict), and its confusion_matrix predict task with the "forward"
dependency.

Usage: script_model.py OUT.pt [--input-dim 16] [--hidden-dim 32] [--seed N]

What differs from the Python class, and why:
- It is a plain torch.nn.Module: fulgur's LightningModule (the config's
  fulgur.LightningModule) wraps it under `model.`, as lightning_template's
  base LightningModule wraps a `model` argument. ToyModel's own defaults
  (predict_tasks=["confusion_matrix"]) are Python code, so the override
  config states them.
- Methods fulgur calls besides forward need @torch.jit.export, or
  torch.jit.script leaves them out of the file.
- TorchScript cannot draw figures. predict_confusion_matrix returns what
  ToyModel plots after each batch, the running binary confusion matrix
  (TorchMetrics' ConfusionMatrix(task="binary"): preds > 0.5, rows are the
  target); fulgur saves the results as confusion_matrix/predictions.pt, its
  last entry being the matrix predict_confusion_matrix_end plots.
"""
import argparse
from typing import Dict, List

import torch
from torch import nn


class ToyModel(nn.Module):
    def __init__(self, input_dim: int = 16, hidden_dim: int = 32) -> None:
        super().__init__()
        self.input_dim = input_dim
        self.hidden_dim = hidden_dim
        # ToyModel.build_model
        self.fcs = nn.Sequential(
            nn.Linear(self.input_dim, self.hidden_dim),
            nn.ReLU(),
            nn.Linear(self.hidden_dim, 1),
            nn.Sigmoid(),
        )
        self.loss = nn.BCELoss()

    def forward(self, batch: Dict[str, torch.Tensor]) -> Dict[str, Dict[str, torch.Tensor]]:
        preds = self.fcs(batch["data"]).squeeze()
        # sum(p.pow(2).mean() for p in self.parameters()): TorchScript has no
        # parameters() (a generator), so the four parameters are named.
        first, second = self.fcs[0], self.fcs[2]
        loss_parameter = (first.weight.pow(2).mean() + first.bias.pow(2).mean()
                          + second.weight.pow(2).mean() + second.bias.pow(2).mean())
        return {
            "loss_dict": {
                "loss_cls": self.loss(preds, batch["label"].float()),
                "loss_parameter": loss_parameter,
            },
            "metric_dict": {"preds": preds, "target": batch["label"]},
        }

    @torch.jit.export
    def predict_forward_dependency(self, batch: Dict[str, torch.Tensor]) -> Dict[str, torch.Tensor]:
        return {"preds": self.fcs(batch["data"]).squeeze()}

    @torch.jit.export
    def predict_confusion_matrix_start(self, output_path: str) -> Dict[str, List[str]]:
        # "result": [] is the task's initial state (TorchScript types an empty
        # list as List[Tensor] unless told).
        result: List[str] = []
        return {"dependency": ["forward"], "result": result}

    @torch.jit.export
    def predict_confusion_matrix(
        self,
        batch: Dict[str, torch.Tensor],
        deps: Dict[str, Dict[str, torch.Tensor]],
        prediction: List[torch.Tensor],
    ) -> torch.Tensor:
        preds = (deps["forward"]["preds"].reshape(-1) > 0.5).long()
        target = batch["label"].reshape(-1).long()
        counts = torch.bincount(target * 2 + preds, minlength=4).reshape(2, 2)
        # The running matrix: the previous batch's result plus this batch.
        if len(prediction) > 0:
            counts = counts + prediction[-1]
        return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--input-dim", type=int, default=16)
    ap.add_argument("--hidden-dim", type=int, default=32)
    ap.add_argument("--seed", type=int, default=None, help="seed for the initial weights")
    a = ap.parse_args()
    if a.seed is not None:
        torch.manual_seed(a.seed)
    torch.jit.script(ToyModel(a.input_dim, a.hidden_dim)).save(a.out)


if __name__ == "__main__":
    main()
