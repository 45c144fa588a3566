"""What the precision tests share (test_precision_bf16*.py): a scripted
net with Conv2d, BatchNorm2d and Linear, its data, and the fulgur config
that trains it from a CSV file."""
import os
import subprocess

import torch
import torch.nn.functional as F

from interop import FULGUR

N, C, BATCH, LR, EPOCHS = 48, 4, 16, 0.1, 2  # 3 batches an epoch: 6 steps


class Net(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.fc1 = torch.nn.Linear(8 * 64, 32)
        self.fc2 = torch.nn.Linear(32, C)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.bn(self.conv(x.reshape(-1, 1, 8, 8))))
        return self.fc2(F.relu(self.fc1(h.flatten(1))))


torch.manual_seed(2)
X = torch.randn(N, 64)
Y = torch.randint(0, C, (N,))


def config(work, name, precision, extra_trainer=""):
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
  precision: {precision}
{extra_trainer}model:
  class_path: fulgur.ClassificationModule
  init_args:
    model: {{class_path: fulgur.models.TorchScript, init_args: {{path: {work}/net.pt}}}}
    evaluator_cfg:
      class_path: fulgur.metrics.Accuracy
      init_args: {{task: multiclass, num_classes: {C}}}
    predict_tasks: [logits]
    predict_path: {work}/{name}/pred
optimizer_config:
  optimizer: {{class_path: torch.optim.SGD, init_args: {{lr: {LR}, momentum: 0.9}}}}
data:
  class_path: fulgur.DataModule
  init_args:
    dataset_cfg:
      class_path: fulgur.data.CSV
      init_args: {{path: {work}/data.csv, target: label}}
    dataloader_cfg: {{batch_size: {BATCH}, shuffle: false}}
""")
    return path


def run(*args, env=None):
    return subprocess.run([FULGUR, *args], capture_output=True, text=True,
                          env=dict(os.environ, **(env or {})))


def max_diff(a, b):
    return max((a[k].double() - b[k].double()).abs().max().item() for k in b)
