"""Shared by the daemon tests: Python stubs generated from proto/ with
Debian's python3-grpc-tools (a client we did not write), a real fulgurd
started on a unix socket in a temporary folder, and small configs."""
import atexit
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import grpc

from interop import SANITIZED

SOURCE = os.environ["FG_SOURCE_DIR"]
BUILD = os.environ["FG_BUILD_DIR"]
FULGURD = os.path.join(BUILD, "fulgurd")
PROTO = os.path.join(SOURCE, "proto")


# Temporary folders, removed at exit unless FG_KEEP_TMP is set (to debug).
_tmp = []


@atexit.register
def _cleanup():
    if not os.environ.get("FG_KEEP_TMP"):
        for d in _tmp:
            shutil.rmtree(d, ignore_errors=True)


def _stubs():
    out = tempfile.mkdtemp(prefix="fg-stubs-")
    _tmp.append(out)
    protos = []
    for root, _, files in os.walk(PROTO):
        protos += [os.path.relpath(os.path.join(root, f), PROTO) for f in files if f.endswith(".proto")]
    from grpc_tools import protoc
    inc = os.path.join(os.path.dirname(protoc.__file__), "_proto")
    if not os.path.isdir(inc):
        inc = "/usr/lib/python3/dist-packages/grpc_tools/_proto"
    rc = protoc.main(["protoc", f"-I{PROTO}", f"-I{inc}", f"--python_out={out}",
                      f"--grpc_python_out={out}"] + protos)
    if rc != 0:
        raise SystemExit(f"grpc_tools.protoc failed ({rc})")
    sys.path.insert(0, out)


_stubs()
from fulgur.v1 import jobs_pb2 as pb  # noqa: E402
from fulgur.v1 import jobs_pb2_grpc as pb_grpc  # noqa: E402

TERMINAL = {pb.SUCCEEDED, pb.FAILED, pb.CANCELLED}

# The bound on fulgurd's resident memory under load (a full store, 100
# watchers): 64 MiB, over three times the 19 MiB measured. None in a
# sanitized build: AddressSanitizer keeps freed memory resident in its
# quarantine (256 MiB by default) beside redzones and shadow (435 MiB
# measured with 100 watchers), so what it measures is its allocator, not
# fulgurd's; the plain build's run checks the bound.
DAEMON_RSS_BOUND_MIB = None if SANITIZED else 64


def tiny_config(root, max_epochs=2, samples=256, extra=""):
    """A small fit config (seconds on one core)."""
    return f"""seed_everything: 7
trainer:
  max_epochs: {max_epochs}
  default_root_dir: {root}
  log_every_n_steps: 2
  enable_progress_bar: false
  num_threads: 1
model:
  class_path: fulgur.ClassificationModule
  init_args:
    model:
      class_path: fulgur.models.MLP
      init_args: {{in_features: 20, hidden: [16], out_features: 4}}
    evaluator_cfg:
      class_path: fulgur.metrics.Accuracy
      init_args: {{task: multiclass, num_classes: 4}}
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
        init_args: {{num_samples: {samples}, shape: [20], num_classes: 4, seed: 1}}
      val:
        init_args: {{num_samples: 64, seed: 2}}
    dataloader_cfg: {{batch_size: 32, num_workers: 1, shuffle: true}}
{extra}"""


class Daemon:
    """fulgurd in a folder of its own; stop() checks it exits cleanly."""

    def __init__(self, work=None, args=(), state=None, sock=None):
        if work is None:
            work = tempfile.mkdtemp(prefix="fgd-")
            _tmp.append(work)
        self.work = work
        self.state = state or os.path.join(self.work, "state")
        self.sock = sock or os.path.join(self.work, "d.sock")
        self.args = list(args)
        self.proc = None
        self.channel = None

    def start(self, wait=True):
        self.log = open(os.path.join(self.work, "fulgurd.log"), "ab")
        # FGD_WRAP="valgrind -q --leak-check=full" runs the daemon under a tool.
        cmd = os.environ.get("FGD_WRAP", "").split() + [FULGURD, "--state-dir", self.state, "--listen", "unix:" + self.sock,
               "--root", self.work] + self.args
        self.proc = subprocess.Popen(cmd, stdout=self.log, stderr=self.log)
        if wait:
            self.wait_ready()
        return self

    def wait_ready(self, timeout=60):
        end = time.time() + timeout
        while time.time() < end:
            if self.proc.poll() is not None:
                raise RuntimeError(f"fulgurd exited with {self.proc.returncode}: {self.log_text()}")
            if os.path.exists(self.sock):
                self.channel = grpc.insecure_channel("unix:" + self.sock)
                try:
                    grpc.channel_ready_future(self.channel).result(timeout=2)
                    self.stub = pb_grpc.JobServiceStub(self.channel)
                    return
                except grpc.FutureTimeoutError:
                    self.channel.close()
            time.sleep(0.05)
        raise RuntimeError("fulgurd did not become ready: " + self.log_text())

    def log_text(self):
        with open(os.path.join(self.work, "fulgurd.log"), "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self, sig=signal.SIGTERM, timeout=30):
        """Returns the exit status (negative: killed by that signal)."""
        if self.channel:
            self.channel.close()
            self.channel = None
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                return "hung"
        self.log.close()
        return self.proc.returncode

    def submit(self, config, stage=None, **kw):
        return self.stub.SubmitJob(pb.SubmitJobRequest(stage=stage or pb.FIT, config_yaml=config, **kw))

    def wait_state(self, job_id, states, timeout=120):
        end = time.time() + timeout
        while time.time() < end:
            j = self.stub.GetJob(pb.GetJobRequest(id=job_id))
            if j.state in states:
                return j
            time.sleep(0.05)
        raise RuntimeError(f"job {job_id} never reached {states}: {j}")

    def watch(self, job_id, after_seq=0, timeout=180):
        return list(self.stub.WatchJob(pb.WatchJobRequest(id=job_id, after_seq=after_seq), timeout=timeout))


def all_events(d, job_id, metadata=None):
    """Every stored event of a job, page by page (a long job's states lie
    beyond the first page)."""
    out, after = [], 0
    while True:
        r = d.stub.ListJobEvents(pb.ListJobEventsRequest(id=job_id, after_seq=after), metadata=metadata)
        out += r.events
        after = r.last_seq
        if not r.more:
            return out


def worker_pid(d, job_id):
    """A job's (latest) worker pid, from its RUNNING state event."""
    pid = None
    for e in all_events(d, job_id):
        if e.WhichOneof("kind") == "state" and e.state.state == pb.RUNNING:
            m = re.search(r"pid (\d+)", e.state.message)
            if m:
                pid = int(m.group(1))
    return pid


def children(pid):
    """pids of a process's children."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(x) for x in out.split()]


def alive(pid):
    """Whether a process runs; a zombie is dead for our purposes."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split()[2] != "Z"
    except FileNotFoundError:
        return False


def checkers(d):
    """pids of the daemon's `check --serve` children."""
    out = []
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            with open(f"/proc/{pid}/cmdline", "rb") as f:
                argv = f.read().split(b"\0")
        except OSError:
            continue
        if ppid == d.proc.pid and argv[1:3] == [b"check", b"--serve"]:
            out.append(int(pid))
    return out


def wait_for(cond, timeout=60):
    """cond()'s first true value within timeout seconds, else None."""
    end = time.time() + timeout
    while time.time() < end:
        v = cond()
        if v:
            return v
        time.sleep(0.05)
    return None


def code_of(fn):
    """(status code, details) of a call expected to fail; (OK, result) otherwise."""
    try:
        return grpc.StatusCode.OK, fn()
    except grpc.RpcError as e:
        return e.code(), e.details()
