"""Hostile checkpoint files stop at a check with a message naming the file
and what is wrong, in little memory, through `fulgur test --ckpt_path`:
the zip directory is checked against the file's size before libtorch's
reader allocates a record (src/torch/ckpt_zip.c), and the pickle machine
(src/torch/pickle.cpp) bounds its memo, its nesting and what shared
objects expand to, and checks every tensor against its storage.

Each file is a real torch.save archive with one part replaced, written
with Python's zipfile as a user's tool would."""
import collections
import io
import os
import pickle
import shutil
import struct
import subprocess
import sys
import tempfile
import zipfile

import torch

from interop import FULGUR, SANITIZED, check, finish

W = tempfile.mkdtemp(prefix="fg-ckpt-limits-")
# fulgur-local with libtorch reserves a few hundred MB of address space;
# the bombs below would need many GB (shadow memory makes this moot under
# a sanitizer).
AS_LIMIT = 1536 << 20

cfg = os.path.join(W, "c.yaml")
with open(cfg, "w") as f:
    f.write(f"""seed_everything: 1
trainer: {{max_epochs: 1, default_root_dir: {W}/runs, enable_progress_bar: false, num_threads: 1}}
model:
  class_path: fulgur.ClassificationModule
  init_args:
    model: {{class_path: fulgur.models.MLP, init_args: {{in_features: 4, hidden: [], out_features: 2}}}}
optimizer_config:
  optimizer: {{class_path: torch.optim.SGD, init_args: {{lr: 0.1}}}}
data:
  class_path: fulgur.DataModule
  init_args:
    dataset_cfg:
      fit: {{class_path: fulgur.data.Synthetic, init_args: {{num_samples: 8, shape: [4], num_classes: 2, seed: 1}}}}
    dataloader_cfg: {{batch_size: 4}}
""")


def run_test(ckpt):
    cmd = [FULGUR, "test", "--config", cfg, "--ckpt_path", ckpt]
    if not SANITIZED:
        cmd = ["prlimit", f"--as={AS_LIMIT}", "--"] + cmd
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return p.returncode, p.stderr


# A real checkpoint to start from: the last.ckpt of a one-epoch fit.
p = subprocess.run([FULGUR, "fit", "--config", cfg], capture_output=True, text=True, timeout=300)
check("a fit writes the checkpoint to start from", p.returncode == 0, p.stderr[-2000:])
base = os.path.join(W, "runs", "version_0", "checkpoints", "last.ckpt")
with zipfile.ZipFile(base) as z:
    ENTRIES = [(i.filename, z.read(i.filename)) for i in z.infolist()]
PREFIX = ENTRIES[0][0].split("/")[0]


def archive(name, pkl=None, records=None, compress=()):
    """base.ckpt with data.pkl (and data/ records) replaced."""
    path = os.path.join(W, name)
    with zipfile.ZipFile(path, "w") as z:
        names = set()
        for n, data in ENTRIES:
            short = n.split("/", 1)[1]
            if short == "data.pkl" and pkl is not None:
                data = pkl
            if short.startswith("data/") and records is not None:
                continue
            names.add(short)
            z.writestr(n, data, zipfile.ZIP_DEFLATED if short in compress else zipfile.ZIP_STORED)
        for k, data in (records or {}).items():
            z.writestr(f"{PREFIX}/data/{k}", data,
                       zipfile.ZIP_DEFLATED if f"data/{k}" in compress else zipfile.ZIP_STORED)
    return path


def expect(name, path, *needles):
    rc, err = run_test(path)
    check(f"{name}: fails with exit 1", rc == 1, (rc, err[-2000:]))
    check(f"{name}: names the file", f"{path}: not a checkpoint" in err, err[-2000:])
    for n in needles:
        check(f"{name}: says '{n}'", n in err, err[-2000:])


rc, err = run_test(base)
check("the untouched checkpoint loads under the same limit", rc == 0, err[-2000:])

# ---- the zip directory ----
# A deflated record whose directory entry claims 4 GB: libtorch's reader
# would allocate that before inflating a byte.
p = archive("zip_bomb.ckpt", compress={"data/0"}, records={"0": bytes(32)})
raw = bytearray(open(p, "rb").read())
for off in [i for i in range(len(raw)) if raw.startswith(b"PK\x01\x02", i)]:
    nl = struct.unpack_from("<H", raw, off + 28)[0]
    if raw[off + 46:off + 46 + nl].endswith(b"data/0"):
        struct.pack_into("<I", raw, off + 24, 0xF0000000)
open(p, "wb").write(raw)
expect("a deflated record claiming 4 GB", p, "declares 4026531840 bytes, more than its")

p = archive("outside.ckpt")
raw = bytearray(open(p, "rb").read())
last = raw.rfind(b"PK\x01\x02")
struct.pack_into("<I", raw, last + 42, len(raw) + 1000)
open(p, "wb").write(raw)
expect("a record past the end of the file", p, "lies outside the file of")

# ---- the pickle machine ----
# A list that contains itself: EMPTY_LIST, BINPUT 0, BINGET 0, APPEND.
expect("a list inside itself", archive("cycle.ckpt", pkl=b"\x80\x02]q\x00h\x00a."),
       "nested too deep (or inside themselves) (the limit is 200 levels)")

# A dict BUILD-merged with itself 40 times: 2^40 entries from 90 bytes.
pkl = b"\x80\x02}K\x01K\x02s" + b"2b" * 40 + b"."
expect("a dict doubled by BUILD", archive("doubling.ckpt", pkl=pkl),
       "containers hold too many items (the limit is 4000000 items)")

# Lists of the previous list twice, 40 deep through the memo: 2^40 values.
pkl = b"\x80\x02]q\x00"
for i in range(1, 41):
    pkl += b"(" + b"h" + bytes([i - 1]) + b"h" + bytes([i - 1]) + b"lq" + bytes([i])
pkl += b"."
expect("a memo reference doubled 40 times", archive("dag.ckpt", pkl=pkl),
       "the data expands to too many values")


# Tensors rebuilt against a 4-element float storage, with a chosen view.
class Storage:
    pass


STORAGE = Storage()


class View:
    def __init__(self, offset, size, stride):
        self.args = (STORAGE, offset, size, stride, False, collections.OrderedDict())

    def __reduce__(self):
        return (torch._utils._rebuild_tensor_v2, self.args)


class Pickler(pickle.Pickler):
    numel = 4

    def persistent_id(self, obj):
        return ("storage", torch.FloatStorage, "0", "cpu", self.numel) if obj is STORAGE else None


def tensor_ckpt(name, view, numel=4):
    buf = io.BytesIO()
    p = Pickler(buf, protocol=2)
    p.numel = numel
    p.dump({"state_dict": collections.OrderedDict(w=view), "epoch": 0})
    return archive(name, pkl=buf.getvalue(), records={"0": struct.pack("<4f", 1, 2, 3, 4)})


expect("a view past its storage", tensor_ckpt("far.ckpt", View(0, (1 << 20, 1 << 20), (1, 1))),
       "a tensor reaches element 2097150 of a storage of 4")
expect("sizes whose product overflows", tensor_ckpt("overflow.ckpt", View(0, (1 << 62, 8), (1, 1))),
       "a tensor's sizes overflow")
expect("a stride-0 view of 10^12 elements", tensor_ckpt("expand.ckpt", View(0, (1000000, 1000000), (0, 0))),
       "a tensor of 1000000000000 elements views a storage of 4")
expect("a negative size", tensor_ckpt("neg.ckpt", View(0, (-1,), (1,))),
       "a tensor's size holds something other than a non-negative int")
expect("a storage claiming more elements than its record", tensor_ckpt("numel.ckpt", View(0, (4,), (1,)), numel=1 << 40),
       "storage '0' declares 1099511627776 elements but its record holds 4")

shutil.rmtree(W, ignore_errors=True)
finish()
