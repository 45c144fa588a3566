"""Reading fulgur's TensorBoard event files in the interop tests: the
TFRecord framing (CRCs checked with python3-crc32c) and Event messages
from proto/tensorboard compiled by grpc_tools.protoc."""
import os
import struct
import sys
import tempfile

import crc32c

SRC = os.environ.get("FG_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
PROTO = os.path.join(SRC, "proto")


def compile_protos(out):
    os.makedirs(out, exist_ok=True)
    from grpc_tools import protoc
    inc = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    if not os.path.isdir(inc):
        inc = "/usr/lib/python3/dist-packages/grpc_tools/_proto"
    files = ["tensorboard/event.proto", "tensorboard/summary.proto",
             "tensorboard/plugins/hparams/plugin_data.proto"]
    rc = protoc.main(["protoc", f"-I{PROTO}", f"-I{inc}", f"--python_out={out}"] + files)
    if rc != 0:
        raise SystemExit(f"grpc_tools.protoc failed ({rc})")
    sys.path.insert(0, out)


def masked_crc(data):
    c = crc32c.crc32c(data)
    return (((c >> 15) | (c << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def records(path):
    """The records of a TFRecord file; raises on a bad frame or CRC."""
    out = []
    with open(path, "rb") as f:
        data = f.read()
    pos = 0
    while pos < len(data):
        if len(data) - pos < 12:
            raise ValueError(f"truncated header at {pos}")
        (n,) = struct.unpack_from("<Q", data, pos)
        (hcrc,) = struct.unpack_from("<I", data, pos + 8)
        if hcrc != masked_crc(data[pos:pos + 8]):
            raise ValueError(f"length CRC mismatch at {pos}")
        body = data[pos + 12:pos + 12 + n]
        if len(body) != n or len(data) < pos + 16 + n:
            raise ValueError(f"truncated record at {pos}")
        (dcrc,) = struct.unpack_from("<I", data, pos + 12 + n)
        if dcrc != masked_crc(body):
            raise ValueError(f"data CRC mismatch at {pos}")
        out.append(body)
        pos += 16 + n
    return out


_event_pb2 = None
_pb_dir = None  # kept alive (and removed at exit) while the module is loaded


def scalars(path):
    """[(tag, step, value)] of every simple_value in an event file, in order."""
    global _event_pb2, _pb_dir
    if _event_pb2 is None:
        _pb_dir = tempfile.TemporaryDirectory(prefix="fg-tbpb-")
        compile_protos(os.path.join(_pb_dir.name, "pb"))
        from tensorboard import event_pb2
        _event_pb2 = event_pb2
    out = []
    for r in records(path):
        ev = _event_pb2.Event.FromString(r)
        for v in ev.summary.value:
            if v.HasField("simple_value"):
                out.append((v.tag, ev.step, v.simple_value))
    return out
