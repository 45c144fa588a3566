"""A full disk, on small tmpfs mounts (the tests run as root; skipped with
a message where mount is not permitted):

- a job's run dir fills up: the checkpoint write that fails leaves the
  previous last.ckpt whole (torch.load reads it, byte for byte what it was),
  no temp file is left behind, and the job fails with a message saying the
  save failed and the previous checkpoint is kept;
- the state dir fills up while a job streams events: SubmitJob answers
  RESOURCE_EXHAUSTED, the daemon stays up and keeps what it accepted, and
  once space is freed the job's events are committed without a gap and it
  finishes."""
import os
import subprocess
import sys

import grpc
import torch

from daemon_util import DAEMON_RSS_BOUND_MIB, Daemon, TERMINAL, code_of, pb, tiny_config, wait_for
from interop import check, finish

mounts = []


def mount_tmpfs(path, size):
    os.makedirs(path, exist_ok=True)
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", path], capture_output=True, text=True)
    if r.returncode != 0:
        return r.stderr.strip() or f"mount exited {r.returncode}"
    mounts.append(path)
    return None


def umount_all():
    for m in reversed(mounts):
        subprocess.run(["umount", "-l", m])


def fill(path):
    """Writes a file until the filesystem is full; returns its path."""
    p = os.path.join(path, "filler")
    with open(p, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError:
            pass
    return p


base = Daemon()
W = base.work
why = mount_tmpfs(os.path.join(W, "probe"), "64k")
if why:
    print(f"# SKIP: cannot mount a tmpfs ({why}): the full-disk tests need root")
    print("ok - skipped: mount not permitted")
    sys.exit(0)
subprocess.run(["umount", os.path.join(W, "probe")])
mounts.pop()

try:
    # ---- a job's run dir fills up ----
    runs = os.path.join(W, "runs")
    mount_tmpfs(runs, "4m")
    d = base.start()
    # Only last.ckpt, rewritten every epoch: the file a failed save must
    # not take away (the save used to delete it before writing).
    cfg = tiny_config(runs, max_epochs=100000, samples=128).replace("trainer:\n", """trainer:
  logger: false
  callbacks:
    - class_path: ModelCheckpoint
      init_args: {save_top_k: 0, save_last: true}
""")
    job = d.submit(cfg)
    j = wait_for(lambda: (lambda x: x if x.last_checkpoint.endswith("last.ckpt") else None)(
        d.stub.GetJob(pb.GetJobRequest(id=job.id))), 180)
    check("the job writes last.ckpt", j is not None, str(j))
    last = j.last_checkpoint
    filler = fill(runs)
    # What last.ckpt holds now the disk is full: no later save can land.
    with open(last, "rb") as f:
        kept = f.read()
    jj = d.wait_state(job.id, TERMINAL, timeout=180)
    check("a run dir that fills up fails the job", jj.state == pb.FAILED, str(jj))
    check("... saying the save failed and the previous checkpoint is kept",
          "ModelCheckpoint: saving" in jj.error and "failed; the previous checkpoint" in jj.error
          and "is kept" in jj.error and "No space left on device" in jj.error, jj.error)
    with open(last, "rb") as f:
        now = f.read()
    check("last.ckpt is the previous one, byte for byte", now == kept, f"{len(now)} vs {len(kept)} bytes")
    ck = torch.load(last)
    check("... and torch.load reads it", "state_dict" in ck and ck["global_step"] > 0, str(ck.keys()))
    left = [f for f in os.listdir(os.path.dirname(last)) if ".tmp." in f or ".link." in f]
    check("no temp file is left behind", not left, str(left))
    os.unlink(filler)
    code, ok = code_of(lambda: d.submit(tiny_config(f"{W}/after", max_epochs=1, samples=64)))
    check("the daemon goes on: the next job succeeds",
          code == grpc.StatusCode.OK and d.wait_state(ok.id, TERMINAL).state == pb.SUCCEEDED)
    check("fulgurd exits 0 on SIGTERM", d.stop() == 0, d.log_text()[-2000:])

    # ---- the state dir fills up ----
    state = os.path.join(W, "state-full")
    mount_tmpfs(state, "16m")
    d = Daemon(work=W, state=state, sock=os.path.join(W, "s.sock")).start()
    # A job that streams one event per step: 6,144 steps, more than the
    # daemon lets wait for a commit (FGD_PENDING_MAX, 4096).
    stream = tiny_config(f"{W}/stream", max_epochs=12, samples=2048).replace(
        "log_every_n_steps: 2", "log_every_n_steps: 1").replace("batch_size: 32", "batch_size: 4")
    sj = d.submit(stream)
    d.wait_state(sj.id, {pb.RUNNING})
    filler = fill(state)
    codes = set()
    for _ in range(40):
        code, msg = code_of(lambda: d.submit(tiny_config(f"{W}/refused", max_epochs=1, samples=64)))
        codes.add(code)
        if code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            break
        wait_for(lambda: False, 0.25)
    check("a full state dir: SubmitJob answers RESOURCE_EXHAUSTED", grpc.StatusCode.RESOURCE_EXHAUSTED in codes,
          str(codes))
    check("... saying the store is full", msg and ("state store is full" in msg or "could not be stored" in msg),
          str(msg))
    check("the daemon stays up", d.proc.poll() is None, d.log_text()[-2000:])
    code, g = code_of(lambda: d.stub.GetJob(pb.GetJobRequest(id=sj.id)))
    check("... and answers reads of what it accepted", code == grpc.StatusCode.OK and g.id == sj.id, str(code))
    # Nothing can be committed: once 4096 events wait, the daemon stops
    # reading the worker's pipe, so its progress stops where it is.
    def stalled_step():
        a = d.stub.GetJob(pb.GetJobRequest(id=sj.id))
        wait_for(lambda: False, 3)
        b = d.stub.GetJob(pb.GetJobRequest(id=sj.id))
        # Held near 4096 pending events, not merely slow for a moment.
        held = b.state == pb.RUNNING and a.progress.global_step == b.progress.global_step >= 3500
        return held and b.progress.global_step
    step = wait_for(stalled_step, 300)
    check("the daemon stops reading the worker while events cannot be committed", step, str(step))
    with open(f"/proc/{d.proc.pid}/status") as f:
        hwm = [int(x.split()[1]) // 1024 for x in f if x.startswith("VmHWM:")][0]
    print(f"# fulgurd's VmHWM with the store full and the worker held at step {step}: {hwm} MiB")
    if DAEMON_RSS_BOUND_MIB is not None:
        check(f"... and its memory stays small (under {DAEMON_RSS_BOUND_MIB} MiB)", hwm < DAEMON_RSS_BOUND_MIB,
              f"{hwm} MiB")
    os.unlink(filler)
    fj = d.wait_state(sj.id, TERMINAL, timeout=600)
    check("once space is freed, the job finishes", fj.state == pb.SUCCEEDED, str(fj))
    evs = d.watch(sj.id)
    check("its events are all there, seqs without a gap", [e.seq for e in evs] == list(range(1, len(evs) + 1))
          and evs[-1].state.state == pb.SUCCEEDED, f"{len(evs)} events")
    check("fulgurd exits 0 on SIGTERM", d.stop() == 0, d.log_text()[-2000:])
    d = Daemon(work=W, state=state, sock=os.path.join(W, "s.sock")).start()
    check("after a restart the job and its events are still there",
          d.stub.GetJob(pb.GetJobRequest(id=sj.id)).state == pb.SUCCEEDED and len(d.watch(sj.id)) == len(evs))
    check("fulgurd exits 0 on SIGTERM", d.stop() == 0, d.log_text()[-2000:])
finally:
    umount_all()
finish()
