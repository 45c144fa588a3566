"""A `devices: 2` job on fulgurd: N worker processes reported as one job
(events from rank 0 only, failures from any rank, cancel stops them all),
and the same checkpoint as the same config run by `fulgur fit` locally."""
import os
import signal
import subprocess
import time

import torch

from daemon_util import Daemon, children, pb, tiny_config, TERMINAL, wait_for, worker_pid
from interop import check, finish, FULGUR


def ddp(root, **kw):
    extra = "".join(f"  {k}: {v}\n" for k, v in kw.items())
    cfg = tiny_config(root, max_epochs=kw.pop("epochs", 2))
    return cfg.replace("trainer:\n", "trainer:\n  strategy: ddp\n  devices: 2\n  ddp_timeout: 20\n" + extra)


d = Daemon(args=["--max-jobs", "1"]).start()
W = d.work

# ---- a 2-rank fit through the daemon ----
j = d.submit(ddp(f"{W}/daemon"))
evs = d.watch(j.id)
jj = d.stub.GetJob(pb.GetJobRequest(id=j.id))
check("a devices: 2 job succeeds as one job", jj.state == pb.SUCCEEDED, jj.error)
steps = [e.step.global_step for e in evs if e.WhichOneof("kind") == "step"]
check("events come from rank 0 only: each logged step once", steps and len(steps) == len(set(steps)), str(steps))
check("seqs contiguous", [e.seq for e in evs] == list(range(1, len(evs) + 1)))
# 256 samples, 2 ranks x batch 32 -> 4 steps an epoch, 2 epochs.
check("the step count is the 2-rank one", jj.progress.global_step == 8, str(jj.progress))
check("val metrics over the whole split", "val/Accuracy" in jj.metrics)

# The same config, run locally by `fulgur fit` (rank 0 spawns rank 1).
with open(f"{W}/local.yaml", "w") as f:
    f.write(ddp(f"{W}/local"))
local = subprocess.run([FULGUR, "fit", "--config", f"{W}/local.yaml"], capture_output=True, text=True,
                       timeout=300)
check("the same config with fulgur fit locally succeeds", local.returncode == 0, local.stderr[-2000:])
a = torch.load(jj.last_checkpoint)["state_dict"]
b = torch.load(f"{W}/local/version_0/checkpoints/last.ckpt")["state_dict"]
check("daemon and local runs end with the same weights", a.keys() == b.keys()
      and all(torch.equal(a[k], b[k]) for k in a), str({k: (a[k] - b[k]).abs().max().item() for k in a}))

# ---- a rank killed by SIGKILL fails the job, naming the rank ----
long_job = ddp(f"{W}/killed").replace("max_epochs: 2", "max_epochs: 100000")
k = d.submit(long_job)
d.wait_state(k.id, {pb.RUNNING})
wp = wait_for(lambda: worker_pid(d, k.id))
kids = wait_for(lambda: children(wp), 60)
check("the job runs as 2 processes (the worker and its rank 1)", wp and kids, f"{wp} {kids}")
wait_for(lambda: any(e.WhichOneof("kind") == "step" for e in d.stub.ListJobEvents(
    pb.ListJobEventsRequest(id=k.id)).events), 60)
t0 = time.time()
os.kill(kids[0], signal.SIGKILL)
kj = d.wait_state(k.id, TERMINAL, timeout=120)
took = time.time() - t0
check("a killed rank fails the whole job", kj.state == pb.FAILED, str(kj))
check("the error names the rank", "rank 1" in kj.error, kj.error)
check("within the ddp timeout", took < 30, f"{took:.1f} s")
print(f"# rank 1 SIGKILLed: job failed in {took:.2f} s")

# ---- cancel stops every rank ----
c = d.submit(long_job.replace("/killed", "/cancelled"))
d.wait_state(c.id, {pb.RUNNING})
wp = wait_for(lambda: worker_pid(d, c.id))
kids = wait_for(lambda: children(wp), 60) or []
d.stub.CancelJob(pb.CancelJobRequest(id=c.id))
cj = d.wait_state(c.id, TERMINAL, timeout=60)
check("cancel: the job is CANCELLED", cj.state == pb.CANCELLED, str(cj))
gone = wait_for(lambda: all(not os.path.exists(f"/proc/{p}") or open(f"/proc/{p}/stat").read().split()[2] == "Z"
                            for p in kids + [wp]), 20)
check("cancel: no rank is left running", gone, str(kids))
check("fulgurd exits 0 on SIGTERM", d.stop() == 0, d.log_text()[-2000:])
finish()
