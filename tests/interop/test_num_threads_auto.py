"""trainer.num_threads: auto, the default.

1. A fit without num_threads runs the trial: the log says which count it
   chose and what it timed, the run's config.yaml carries the choice as
   the explicit setting with the reason as a comment, and the checkpoint
   records it (fulgur_loop.threads).
2. The trial trains a copy: the auto run ends with exactly the weights and
   optimizer state (torch.equal, read by python3-torch) of a run given the
   chosen count explicitly. The model has dropout (the generator) and the
   loader a worker thread, so a trial that touched the model, the
   optimizer, the generator or the data order would show.
3. An explicit count wins: no trial, no auto line, the checkpoint records
   that count.
4. A resume reuses the checkpoint's choice: no second trial. `fulgur test`
   times evaluation steps instead, and its metrics are the explicit run's.
5. A value that is neither a count, null nor auto is a config error naming
   the file, the key and what is accepted.
"""
import json
import os
import re
import subprocess
import tempfile

import torch

from interop import FULGUR, check, finish


def config(work, name, threads_line, epochs=2):
    path = os.path.join(work, name + ".yaml")
    with open(path, "w") as f:
        f.write(f"""seed_everything: 7
trainer:
  max_epochs: {epochs}
  default_root_dir: {work}/{name}
  enable_progress_bar: false
  num_sanity_val_steps: 0
{threads_line}model:
  class_path: fulgur.ClassificationModule
  init_args:
    model:
      class_path: fulgur.models.MLP
      init_args: {{in_features: 64, hidden: [128, 64], out_features: 5, dropout: 0.3}}
optimizer_config:
  optimizer: {{class_path: torch.optim.Adam, init_args: {{lr: 0.001}}}}
data:
  class_path: fulgur.DataModule
  init_args:
    dataset_cfg:
      fit:
        class_path: fulgur.data.Synthetic
        init_args: {{num_samples: 640, shape: [64], num_classes: 5, seed: 1}}
      val:
        init_args: {{num_samples: 64, seed: 2}}
    dataloader_cfg: {{batch_size: 32, num_workers: 1}}
""")
    return path


def fit(path, *extra):
    return subprocess.run([FULGUR, "fit", "--config", path, *extra], capture_output=True, text=True)


def last_ckpt(work, name):
    return torch.load(os.path.join(work, name, "version_0", "checkpoints", "last.ckpt"))


def same_tensors(a, b):
    """Every tensor of two nested checkpoint values is torch.equal."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and a.dtype == b.dtype and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same_tensors(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return len(a) == len(b) and all(same_tensors(x, y) for x, y in zip(a, b))
    return a == b


CHOSE = re.compile(r"trainer\.num_threads auto: chose (\d+) of (\d+) cores by timing (\d+) training steps")

with tempfile.TemporaryDirectory() as work:
    # 1. auto chooses and reports.
    r = fit(config(work, "auto", ""))
    check("auto fit succeeds", r.returncode == 0, r.stderr[-2000:])
    m = CHOSE.search(r.stderr)
    check("the log names the chosen count", m is not None, r.stderr[-2000:])
    chosen = int(m.group(1)) if m else 0
    cores = os.cpu_count()
    check("the choice is a count of this machine's cores", 1 <= chosen <= cores and
          (m and int(m.group(2)) == cores), m.group(0) if m else "")
    with open(os.path.join(work, "auto", "version_0", "config.yaml")) as f:
        saved = f.read()
    line = re.search(r"^  num_threads: (\d+)  # auto: chose .*$", saved, re.M)
    check("config.yaml holds the choice as the explicit setting, with the reason",
          line is not None and int(line.group(1)) == chosen, saved)
    ck_auto = last_ckpt(work, "auto")
    check("the checkpoint records the choice",
          ck_auto["fulgur_loop"].get("threads") == chosen, str(ck_auto["fulgur_loop"].get("threads")))

    # 2. and 3. the explicit count: no trial, the same training.
    r = fit(config(work, "explicit", f"  num_threads: {chosen}\n"))
    check("explicit fit succeeds", r.returncode == 0, r.stderr[-2000:])
    check("an explicit count runs no trial", "num_threads auto" not in r.stderr, r.stderr[-2000:])
    ck_exp = last_ckpt(work, "explicit")
    check("the explicit run records its count", ck_exp["fulgur_loop"].get("threads") == chosen)
    check("auto's weights equal the explicit run's (torch.equal)",
          same_tensors(ck_auto["state_dict"], ck_exp["state_dict"]))
    check("auto's optimizer state equals the explicit run's (torch.equal)",
          same_tensors(ck_auto["optimizer_states"], ck_exp["optimizer_states"]))
    check("auto's generator state equals the explicit run's",
          torch.equal(ck_auto["fulgur_loop"]["rng_state"], ck_exp["fulgur_loop"]["rng_state"]))
    # The comparison can fail: another count's run (or dropout's draws)
    # ends elsewhere. A different seed shows the check is not vacuous.
    r = fit(config(work, "other", f"  num_threads: {chosen}\n"), "--seed_everything", "8")
    check("a run that differs does not compare equal",
          r.returncode == 0 and not same_tensors(ck_auto["state_dict"], last_ckpt(work, "other")["state_dict"]))

    # 4. A resume reuses the stored choice.
    ckpt = os.path.join(work, "auto", "version_0", "checkpoints", "last.ckpt")
    r = fit(config(work, "auto", "", epochs=3), "--ckpt_path", ckpt)
    check("resumed fit succeeds", r.returncode == 0, r.stderr[-2000:])
    check("the resume reuses the checkpoint's choice",
          f"trainer.num_threads auto: reused {chosen} from the checkpoint" in r.stderr, r.stderr[-2000:])
    check("the resume runs no second trial", CHOSE.search(r.stderr) is None, r.stderr[-2000:])

    # test: a trial of evaluation steps, which changes no result.
    def test(threads_line, *extra):
        path = config(work, "auto", threads_line)
        return subprocess.run([FULGUR, "test", "--config", path, "--ckpt_path", ckpt, "--json",
                               "--data.init_args.dataset_cfg.test",
                               "{class_path: fulgur.data.Synthetic, init_args: {num_samples: 256, shape: [64], "
                               "num_classes: 5, seed: 3}}", *extra], capture_output=True, text=True)
    r = test("")
    m = re.search(r"trainer\.num_threads auto: chose (\d+) of \d+ cores by timing \d+ evaluation steps",
                  r.stderr)
    check("auto test times evaluation steps and reports its choice", r.returncode == 0 and m is not None,
          r.stderr[-2000:])
    r2 = test(f"  num_threads: {m.group(1) if m else 1}\n")
    check("auto test gives the explicit run's metrics", r.returncode == 0 and r2.returncode == 0 and
          json.loads(r.stdout) == json.loads(r2.stdout), r.stdout + r2.stdout + r2.stderr[-1000:])

    # null keeps meaning every core, without a trial.
    r = fit(config(work, "null", "  num_threads: null\n", epochs=1))
    check("null runs no trial", r.returncode == 0 and "num_threads auto" not in r.stderr, r.stderr[-2000:])
    check("null records every core",
          r.returncode == 0 and last_ckpt(work, "null")["fulgur_loop"].get("threads") == cores)

    # 5. A bad value.
    path = config(work, "bad", "  num_threads: fast\n")
    r = fit(path)
    check("a bad num_threads is a config error naming file, key and what is accepted",
          r.returncode != 0 and f"{path}:7" in r.stderr and "trainer.num_threads" in r.stderr
          and "expected a positive count, null or 'auto', got 'fast'" in r.stderr, r.stderr)

finish()
