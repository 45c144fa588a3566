"""Writes the generated seeds of one fuzz target into a folder: files made
the way their real writers make them (torch.save, protobuf, gzip), so the
fuzzers start from inputs that get past the first checks.

Usage: seeds.py TARGET DIR   (TARGET: pickle idx csv frames rpc)

pickle  the TensorDict fixtures (tests/fixtures/make_tensordict.py) and a
        Lightning-style checkpoint: state_dict, optimizer state, hparams,
        a transposed (strided) tensor and a bfloat16 one.
idx     images (3 dims) and labels (1 dim), plain and .gz.
csv     small tables, each behind the option byte fuzz_csv.c reads.
frames  WorkerMessage frames as a worker writes them (event, progress,
        result), one per file and all in one stream.
rpc     each JobService request behind its method byte (server.h's
        fgd_method order), a health check and reflection requests.
"""
import collections
import gzip
import os
import re
import struct
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.dirname(os.path.dirname(HERE))
target, out = sys.argv[1], sys.argv[2]
os.makedirs(out, exist_ok=True)


def write(name, data):
    with open(os.path.join(out, name), "wb") as f:
        f.write(data)


def pickle_seeds():
    import torch
    subprocess.run([sys.executable, os.path.join(SOURCE, "tests", "fixtures", "make_tensordict.py"), out],
                   check=True)
    w = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    ckpt = {
        "epoch": 1,
        "global_step": 4,
        "pytorch-lightning_version": "2.1.0",
        "state_dict": collections.OrderedDict([("model.weight", w), ("model.bias", torch.zeros(2))]),
        "optimizer_states": [{"state": {0: {"momentum_buffer": torch.ones(2, 3)}},
                              "param_groups": [{"lr": 0.1, "params": [0, 1]}]}],
        "lr_schedulers": [],
        "hyper_parameters": {"lr": 0.1, "layers": [4, 8], "name": "m", "flag": True, "none": None},
        "views": {"t": w.t(), "bf16": torch.ones(3, dtype=torch.bfloat16), "i": torch.tensor([1, 2])},
    }
    torch.save(ckpt, os.path.join(out, "lightning.ckpt"))
    torch.save([1, [2, [3, (4, 5.5)]], "x"], os.path.join(out, "nested.pt"))


def idx_seeds():
    images = struct.pack(">BBBBIII", 0, 0, 8, 3, 2, 3, 3) + bytes(range(18))
    labels = struct.pack(">BBBBI", 0, 0, 8, 1, 2) + bytes([3, 7])
    write("images.idx", images)
    write("labels.idx", labels)
    write("images.idx.gz", gzip.compress(images))
    write("labels.idx.gz", gzip.compress(labels))


def csv_seeds():
    # The option byte: bit 0 integer target, bit 1 header, bits 2-3 the
    # target column ("0", "1", "y", "label").
    write("header_y.csv", bytes([0b1011]) + b"a,b,y\n1,2.5,0\n3,-4e2,1\n")
    write("quoted.csv", bytes([0b1110]) + b'"a","label"\n" 1 ",2\n"3""",4\n')
    write("plain.csv", bytes([0b0000]) + b"0,1.5,2\r\n1,2,3\r\n\r\n")
    write("bom.csv", bytes([0b0111]) + b"\xef\xbb\xbfx,y,label\n1,2,3\n")


def stubs():
    """Python modules for the protos, made with grpc_tools (as the interop
    tests make them)."""
    from grpc_tools import protoc
    proto = os.path.join(SOURCE, "proto")
    d = tempfile.mkdtemp(prefix="fg-fuzz-stubs-")
    inc = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    files = ["fulgur/v1/jobs.proto", "fulgur/v1/worker.proto"]
    if protoc.main(["protoc", f"-I{proto}", f"-I{inc}", f"--python_out={d}"] + files) != 0:
        raise SystemExit("grpc_tools.protoc failed")
    sys.path.insert(0, d)
    from fulgur.v1 import jobs_pb2, worker_pb2
    return jobs_pb2, worker_pb2


def frame(m):
    b = m.SerializeToString()
    return struct.pack("<I", len(b)) + b


def frames_seeds():
    pb, wpb = stubs()
    ev = pb.JobEvent(time_ns=1, step=pb.Scalars(values={"loss": 0.5, "acc": 0.9}, split="fit",
                                                 global_step=3))
    msgs = [
        wpb.WorkerMessage(event=ev),
        wpb.WorkerMessage(event=pb.JobEvent(artifact=pb.Artifact(kind="checkpoint", path="r/last.ckpt"))),
        wpb.WorkerMessage(event=pb.JobEvent(epoch=pb.Scalars(values={"val_loss": 1.0}, epoch=1))),
        wpb.WorkerMessage(progress=pb.Progress(epoch=1, global_step=4, split="fit", percent=50.0)),
        wpb.WorkerMessage(result=pb.StateChange(state=pb.SUCCEEDED, message="done")),
    ]
    for i, m in enumerate(msgs):
        write(f"frame{i}", frame(m))
    write("stream", b"".join(frame(m) for m in msgs))


def rpc_seeds():
    pb, _ = stubs()
    reqs = [
        pb.SubmitJobRequest(stage=pb.FIT, config_yaml="trainer:\n  max_epochs: 1\n",
                            overrides=["--trainer.max_epochs=2"], name="n", idempotency_key="k"),
        pb.GetJobRequest(id="0123456789abcdef"),
        pb.ListJobsRequest(state=pb.RUNNING, page_size=2, page_token="17"),
        pb.CancelJobRequest(id="a"),
        pb.PauseJobRequest(id="a"),
        pb.ResumeJobRequest(id="a"),
        pb.WatchJobRequest(id="a", after_seq=3),
        pb.ListJobEventsRequest(id="a", after_seq=1, page_size=10),
        pb.CheckpointJobRequest(id="a"),
        pb.ForkJobRequest(id="a", checkpoint="last", overrides=["--trainer.max_epochs=2"]),
    ]
    # The method byte is the fgd_method value, read from server.h so that a
    # method added there moves the seeds with it.
    with open(os.path.join(SOURCE, "daemon", "server.h")) as f:
        methods = re.findall(r"^\s*FGD_M_(\w+)", f.read(), re.M)

    def m(name):
        return bytes([methods.index(name)])

    order = ["SUBMIT", "GET", "LIST", "CANCEL", "PAUSE", "RESUME", "WATCH", "EVENTS", "CHECKPOINT", "FORK"]
    for i, (name, r) in enumerate(zip(order, reqs)):
        write(f"m{i}", m(name) + r.SerializeToString())
    # HealthCheckRequest {service}; ServerReflectionRequest list_services (7),
    # file_containing_symbol (4), file_by_filename (3).
    write("health", m("HEALTH_CHECK") + b"\x0a\x14fulgur.v1.JobService")
    write("health_watch", m("HEALTH_WATCH") + b"")
    write("refl_list", m("REFLECTION_V1") + b"\x3a\x01*")
    write("refl_symbol", m("REFLECTION_V1ALPHA") + b"\x22\x14fulgur.v1.JobService")
    write("refl_file", m("REFLECTION_V1") + b"\x1a\x14fulgur/v1/jobs.proto")

{"pickle": pickle_seeds, "idx": idx_seeds, "csv": csv_seeds, "frames": frames_seeds,
 "rpc": rpc_seeds}.get(target, lambda: None)()
