"""TensorBoardLogger: fulgur's events.out.tfevents.* files read back with
python3-protobuf, checked against what nobody here wrote.

- The TFRecord framing is walked record by record and both CRCs are
  checked with python3-crc32c (Debian's CRC32C, not the ISA-L fulgur uses).
- The first record's raw bytes are parsed by hand as protobuf wire format,
  so the field numbers (TensorFlow's: wall_time 1, step 2, file_version 3,
  summary 5; Summary.value 1, tag 1, simple_value 2) are checked without
  the project's .proto files; the rest is decoded with messages compiled by
  grpc_tools.protoc from proto/tensorboard/.
- The hparams plugin's session start values are re-read as
  google.protobuf.Value (struct_pb2), the type TensorBoard declares there.
- Every scalar (tag, step, value) is checked against metrics.csv of the
  same run, fit and test, in both directions; epoch is logged as Lightning
  logs it.
- The folders follow Lightning: <save_dir>/<name>/version_N (next N,
  explicit int and string versions, name null, sub_dir), the first logger
  decides the run directory (config.yaml, checkpoints), and configs
  without TensorBoardLogger keep their run directory.
- Bad input: unknown arguments and log_graph: true are errors with
  file:line:col; W&B, MLflow, Comet and Neptune loggers are errors naming
  TensorBoardLogger and CSVLogger.

TensorBoard's own loader (python3-tensorboard) is not in Debian 12, so it
is not used here.
"""
import csv
import glob
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import tempfile

import yaml
from google.protobuf import struct_pb2

from interop import FULGUR, check, finish
from tb_events import compile_protos, masked_crc, records

WORK = tempfile.mkdtemp(prefix="fg-tb-")
compile_protos(os.path.join(WORK, "pb"))
from tensorboard import event_pb2  # noqa: E402
from tensorboard.plugins.hparams import plugin_data_pb2  # noqa: E402


# ---- reading ---------------------------------------------------------------------

def varint(b, i):
    v = shift = 0
    while True:
        c = b[i]
        i += 1
        v |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return v, i


def wire_fields(b):
    """Protobuf wire format as [(field number, wire type, raw value)]."""
    out, i = [], 0
    while i < len(b):
        key, i = varint(b, i)
        num, wt = key >> 3, key & 7
        if wt == 0:
            v, i = varint(b, i)
        elif wt == 1:
            v, i = b[i:i + 8], i + 8
        elif wt == 2:
            n, i = varint(b, i)
            v, i = b[i:i + n], i + n
        elif wt == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise ValueError(f"wire type {wt}")
        out.append((num, wt, v))
    return out


def event_file(d):
    files = sorted(glob.glob(os.path.join(d, "events.out.tfevents.*")))
    return files[0] if len(files) == 1 else None


def read_events(path):
    return [event_pb2.Event.FromString(r) for r in records(path)]


def scalars(events):
    """(tag, step, value) of every simple_value, in file order."""
    return [(v.tag, e.step, v.simple_value) for e in events if e.WhichOneof("what") == "summary"
            for v in e.summary.value if v.WhichOneof("value") == "simple_value"]


def f32(x):
    return struct.unpack("<f", struct.pack("<f", x))[0]


def csv_scalars(path):
    """(key, step, float32 value) of every cell but step, as Lightning's two
    loggers record the same log_metrics calls."""
    out = []
    with open(path) as f:
        for row in csv.DictReader(f):
            step = int(row["step"])
            for k, v in row.items():
                if k != "step" and v != "":
                    out.append((k, step, f32(float(v))))
    return out


# ---- running -------------------------------------------------------------------------

BASE = """seed_everything: 5
trainer:
  max_epochs: 2
  default_root_dir: {root}
  log_every_n_steps: 2
  enable_progress_bar: false
  num_sanity_val_steps: 0
  num_threads: 1
  logger:{logger}
model:
  class_path: fulgur.ClassificationModule
  init_args:
    model:
      class_path: fulgur.models.MLP
      init_args: {{in_features: 6, hidden: [8], out_features: 3}}
    evaluator_cfg:
      class_path: fulgur.metrics.Accuracy
      init_args: {{task: multiclass, num_classes: 3}}
optimizer_config:
  optimizer:
    class_path: torch.optim.SGD
    init_args: {{lr: 0.1, momentum: 0.9}}
data:
  class_path: fulgur.DataModule
  init_args:
    dataset_cfg:
      fit:
        class_path: fulgur.data.Synthetic
        init_args: {{num_samples: 20, shape: [6], num_classes: 3, seed: 1}}
      val:
        init_args: {{num_samples: 8, seed: 2}}
      test:
        init_args: {{num_samples: 12, seed: 3}}
    dataloader_cfg: {{batch_size: 4}}
"""


def tb(save_dir, **args):
    a = ", ".join([f"save_dir: {save_dir}"] + [f"{k}: {v}" for k, v in args.items()])
    return f"\n    class_path: lightning.pytorch.loggers.TensorBoardLogger\n    init_args: {{{a}}}"


def as_list(*items):
    """One logger object per item (each "\n    class_path: ..."), as a list."""
    return "".join("\n    - " + it[5:].replace("\n    ", "\n      ") for it in items)


CSV = "\n    class_path: CSVLogger"


def run(name, logger, stage="fit", extra=()):
    root = os.path.join(WORK, name)
    cfg = os.path.join(WORK, name + ".yaml")
    with open(cfg, "w") as f:
        f.write(BASE.format(root=os.path.join(root, "default"), logger=logger))
    r = subprocess.run([FULGUR, stage, "--config", cfg, *extra], capture_output=True, text=True,
                       cwd=WORK)
    return r, root, cfg


def compare_with_csv(name, d, extra_tags=()):
    ev = event_file(d)
    got = scalars(read_events(ev)) if ev else []
    got = [s for s in got if s[0] not in extra_tags]
    want = csv_scalars(os.path.join(d, "metrics.csv"))
    check(f"{name}: scalars match metrics.csv", sorted(got) == sorted(want) and len(got) > 0,
          f"\n  only tfevents: {sorted(set(got) - set(want))[:8]}"
          f"\n  only csv:      {sorted(set(want) - set(got))[:8]}")
    return got


# ---- fit: TensorBoardLogger first, CSVLogger second ---------------------------------------

r, root, cfg = run("fit", as_list(tb("{save}"), CSV).replace("{save}", os.path.join(WORK, "fit", "tb")))
check("fit with [TensorBoardLogger, CSVLogger] succeeds", r.returncode == 0, r.stderr[-2000:])
vdir = os.path.join(root, "tb", "lightning_logs", "version_0")
check("the first logger's <save_dir>/<name>/version_0 is the run directory",
      os.path.isfile(os.path.join(vdir, "config.yaml")) and os.path.isdir(os.path.join(vdir, "checkpoints"))
      and not os.path.exists(os.path.join(root, "default")), str(os.listdir(root)))
ev_path = event_file(vdir)
host = re.escape(socket.gethostname())
check("one events.out.tfevents.<time>.<host>.<pid>.0 file", ev_path is not None and re.fullmatch(
    rf"events\.out\.tfevents\.\d{{10}}\.{host}\.\d+\.0", os.path.basename(ev_path)) is not None,
    str(os.listdir(vdir)))

recs = records(ev_path) if ev_path else []
check("every record's framing and masked CRC32Cs check out", len(recs) > 10, str(len(recs)))

# The first record, by hand: wall_time (1, fixed64 double), file_version (3).
first = wire_fields(recs[0]) if recs else []
fv = [v for n, wt, v in first if n == 3 and wt == 2]
wt_ = [struct.unpack("<d", v)[0] for n, wt, v in first if n == 1 and wt == 1]
check("first record: Event{wall_time = 1, file_version = 3: 'brain.Event:2'} on the wire",
      fv == [b"brain.Event:2"] and len(wt_) == 1 and wt_[0] > 1.6e9, str(first))
# A scalar record, by hand: step (2, varint), summary (5) > value (1) > tag (1), simple_value (2, fixed32).
by_hand = []
for rec in recs:
    f = wire_fields(rec)
    summ = [v for n, wt, v in f if n == 5 and wt == 2]
    if not summ:
        continue
    step = ([v for n, wt, v in f if n == 2 and wt == 0] or [0])[0]
    for n, wt, val in wire_fields(summ[0]):
        if n != 1:
            continue
        vf = wire_fields(val)
        tag = [v.decode() for n2, w2, v in vf if n2 == 1 and w2 == 2]
        sv = [struct.unpack("<f", v)[0] for n2, w2, v in vf if n2 == 2 and w2 == 5]
        if tag and sv:
            by_hand.append((tag[0], step, sv[0]))

events = [event_pb2.Event.FromString(x) for x in recs]
check("decoded with the compiled messages: the same scalars as by hand", scalars(events) == by_hand,
      f"{scalars(events)[:4]} vs {by_hand[:4]}")
check("wall times are seconds since the epoch, in order",
      all(e.wall_time > 1.6e9 for e in events) and
      all(a.wall_time <= b.wall_time for a, b in zip(events, events[1:])))

sc = scalars(events)
check("hp_metric -1 at step 0 first, as default_hp_metric does", sc[:1] == [("hp_metric", 0, -1.0)], str(sc[:2]))
got = compare_with_csv("fit", vdir, extra_tags=("hp_metric",))
check("fit: train, val and epoch tags are logged",
      {"fit/loss", "val/loss", "epoch"} <= {t for t, _, _ in got}, str({t for t, _, _ in got}))

# The hparams plugin.
plug = {}
for e in events:
    for v in e.summary.value if e.WhichOneof("what") == "summary" else []:
        if v.metadata.plugin_data.plugin_name == "hparams":
            plug[v.tag] = plugin_data_pb2.HParamsPluginData.FromString(v.metadata.plugin_data.content)
check("the hparams plugin's three summaries", sorted(plug) == [
    "_hparams_/experiment", "_hparams_/session_end_info", "_hparams_/session_start_info"], str(sorted(plug)))
with open(os.path.join(vdir, "config.yaml")) as f:
    config = yaml.safe_load(f)


def flatten(d, parent=""):
    out = {}
    for k, v in d.items():
        key = f"{parent}/{k}" if parent else str(k)
        if isinstance(v, dict):
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


if len(plug) == 3:
    ssi = plug["_hparams_/session_start_info"].session_start_info
    hp = {}
    for k, v in ssi.hparams.items():
        sv = struct_pb2.Value.FromString(v.SerializeToString())  # TensorBoard's declared type
        hp[k] = sv.number_value if sv.WhichOneof("kind") == "number_value" else sv.string_value
    # Lightning: _flatten_dict, then str() of what is not bool/int/float/str;
    # torch stores bools (ints) as numbers.
    want = {}
    for k, v in flatten(config).items():
        want[k] = float(v) if isinstance(v, (bool, int, float)) else v if isinstance(v, str) else str(v)
    check("session start info: the config's hyperparameters, flattened as Lightning does", hp == want,
          f"\n  only fulgur: {sorted(set(hp.items()) - set(want.items()), key=str)[:6]}"
          f"\n  only python: {sorted(set(want.items()) - set(hp.items()), key=str)[:6]}")
    check("e.g. trainer/max_epochs 2, the logger list as its repr",
          hp.get("trainer/max_epochs") == 2.0 and hp.get("trainer/logger", "").startswith("[{'class_path': "),
          str(hp.get("trainer/logger"))[:80])
    exp = plug["_hparams_/experiment"].experiment
    check("experiment: each hyperparameter's name and type, metric hp_metric",
          [i.name for i in exp.hparam_infos] == list(flatten(config)) and
          all(i.type == (3 if isinstance(want[i.name], float) else 1) for i in exp.hparam_infos) and
          [m.name.tag for m in exp.metric_infos] == ["hp_metric"], str(exp)[:300])
    check("session end info: STATUS_SUCCESS",
          plug["_hparams_/session_end_info"].session_end_info.status == 1)
with open(os.path.join(vdir, "hparams.yaml")) as f:
    check("hparams.yaml holds the config's hyperparameters", yaml.safe_load(f) == config)

# ---- test: a second run numbers version_1; test rows log at global_step ------------------

last = os.path.join(vdir, "checkpoints", "last.ckpt")
r2, _, _ = run("fit", as_list(tb(os.path.join(WORK, "fit", "tb")), CSV), stage="test",
               extra=("--ckpt_path", last))
v1 = os.path.join(root, "tb", "lightning_logs", "version_1")
check("test run succeeds in version_1", r2.returncode == 0 and os.path.isdir(v1), r2.stderr[-1500:])
if os.path.isdir(v1):
    got = compare_with_csv("test", v1, extra_tags=("hp_metric",))
    # A fresh Trainer's test run starts at global step 0, as Lightning's does.
    check("test: test/ tags and epoch at step 0",
          {t for t, _, _ in got} >= {"test/loss", "epoch"} and all(st == 0 for _, st, _ in got), str(got[:6]))

# ---- versions, name, sub_dir, prefix, default_hp_metric ---------------------------------------

r, root, _ = run("v7", tb("tb", version=7, sub_dir="events", prefix="pre", default_hp_metric="false"))
d = os.path.join(WORK, "tb", "lightning_logs", "version_7")
check("version: 7 -> version_7; sub_dir holds the event file and hparams.yaml, checkpoints stay above",
      r.returncode == 0 and event_file(os.path.join(d, "events")) is not None and
      os.path.isfile(os.path.join(d, "events", "hparams.yaml")) and os.path.isdir(os.path.join(d, "checkpoints")),
      r.stderr[-1500:])
if r.returncode == 0 and event_file(os.path.join(d, "events")):
    sc = scalars(read_events(event_file(os.path.join(d, "events"))))
    tags = {t for t, _, _ in sc}
    check("prefix 'pre' -> 'pre-<key>' tags, epoch too; default_hp_metric: false writes no hp_metric",
          "pre-fit/loss" in tags and "pre-epoch" in tags and not any("hp_metric" in t for t in tags), str(tags))
    check("default_hp_metric: false writes no hparams summaries", not any(
        v.metadata.plugin_data.plugin_name for e in read_events(event_file(os.path.join(d, "events")))
        for v in (e.summary.value if e.WhichOneof("what") == "summary" else [])))

r, root, _ = run("named", tb("tb2", name="null", version="run_a"))
d = os.path.join(WORK, "tb2", "run_a")
check("name: null, version: run_a -> <save_dir>/run_a", r.returncode == 0 and event_file(d) is not None
      and os.path.isfile(os.path.join(d, "config.yaml")), r.stderr[-1500:])

r, root, _ = run("named", tb("tb2", name="null"))
check("without a version the next version_N under save_dir", r.returncode == 0 and
      event_file(os.path.join(WORK, "tb2", "version_0")) is not None, r.stderr[-1500:])

# ---- CSVLogger first: today's run directory; TensorBoardLogger numbers its own --------------

r, root, _ = run("csvfirst", as_list(CSV, tb("tb3", name="exp")))
check("[CSVLogger, TensorBoardLogger]: the run directory stays <default_root_dir>/version_0",
      r.returncode == 0 and os.path.isfile(os.path.join(root, "default", "version_0", "config.yaml"))
      and os.path.isfile(os.path.join(root, "default", "version_0", "metrics.csv")), r.stderr[-1500:])
d = os.path.join(WORK, "tb3", "exp", "version_0")
check("... and the TensorBoardLogger writes <save_dir>/<name>/version_0",
      event_file(d) is not None and not os.path.exists(os.path.join(d, "config.yaml")),
      str(os.listdir(d)) if os.path.isdir(d) else "missing")
if event_file(d):
    got = [s for s in scalars(read_events(event_file(d))) if s[0] != "hp_metric"]
    want = csv_scalars(os.path.join(root, "default", "version_0", "metrics.csv"))
    check("... with the same scalars as the CSV", sorted(got) == sorted(want))

r, root, _ = run("default", " true")
vd = os.path.join(WORK, "default", "default", "version_0")
check("logger: true keeps <default_root_dir>/version_0/metrics.csv and writes no event file",
      r.returncode == 0 and os.path.isfile(os.path.join(vd, "metrics.csv")) and event_file(vd) is None,
      r.stderr[-1500:])

# ---- bad input ---------------------------------------------------------------------------------


def bad(name, logger, pattern):
    cfg = os.path.join(WORK, name + ".yaml")
    with open(cfg, "w") as f:
        f.write(BASE.format(root=os.path.join(WORK, name), logger=logger))
    r = subprocess.run([FULGUR, "fit", "--config", cfg], capture_output=True, text=True, cwd=WORK)
    ok = r.returncode != 0 and re.search(pattern, r.stderr) is not None and "Traceback" not in r.stderr
    check(f"bad input: {name}", ok and not os.path.exists(os.path.join(WORK, name)), r.stderr[-600:])


bad("unknown_arg", tb("tb", flush_every=3),
    r"unknown_arg\.yaml:11:\d+: trainer\.logger\.init_args\.flush_every: unknown key")
bad("log_graph", tb("tb", log_graph="true"),
    r"log_graph\.yaml:11:\d+: trainer\.logger\.init_args\.log_graph: log_graph: true is not supported")
bad("no_save_dir", "\n    class_path: TensorBoardLogger",
    r"no_save_dir\.yaml:\d+:\d+: trainer\.logger\.init_args(\.save_dir)?: .*save_dir")
bad("version_escapes", tb("tb", version="../up"), r"trainer\.logger\.init_args\.version: expected a folder inside")
SERVICE = r"use TensorBoardLogger or CSVLogger"
for i, cp in enumerate(["WandbLogger", "lightning.pytorch.loggers.WandbLogger", "pytorch_lightning.loggers.WandbLogger",
                        "lightning.pytorch.loggers.wandb.WandbLogger", "MLFlowLogger",
                        "lightning.pytorch.loggers.mlflow.MLFlowLogger", "pytorch_lightning.loggers.CometLogger",
                        "lightning.pytorch.loggers.comet.CometLogger", "NeptuneLogger",
                        "pytorch_lightning.loggers.neptune.NeptuneLogger",
                        "lightning_template.utils.loggers.wandb.WandbNamedLogger"]):
    bad(f"service_{i}", as_list(CSV, f"\n    class_path: {cp}\n    init_args: {{project: p, save_dir: w}}"),
        rf"service_{i}\.yaml:\d+:\d+: trainer\.logger\.1\.class_path: '{re.escape(cp)}' logs to .*{SERVICE}")

bad("service_alone", "\n    class_path: WandbLogger",
    rf"service_alone\.yaml:\d+:\d+: trainer\.logger\.class_path: 'WandbLogger' logs to .*{SERVICE}")

shutil.rmtree(WORK, ignore_errors=True)
finish()
