"""fulgurd survives what production does to it: kill -9 of the daemon
(every accepted job and stored event is still there after a restart;
running jobs fail with "daemon restarted" or resume from their last
checkpoint with restart_policy: resume; queued jobs still run), and a
worker killed by SIGKILL (its job fails with the signal named; the daemon
and the other jobs carry on)."""
import os
import signal
import threading
import time

import grpc

from daemon_util import Daemon, all_events, alive, pb, pb_grpc, tiny_config, TERMINAL, wait_for, worker_pid
from interop import check, finish


d = Daemon(args=["--max-jobs", "2"]).start()
W = d.work
long_cfg = lambda root, extra="": tiny_config(root, max_epochs=1000, samples=1024, extra=extra)

# ---- a worker killed by SIGKILL ----
k = d.submit(long_cfg(f"{W}/killed"))
d.wait_state(k.id, {pb.RUNNING})
check("the RUNNING event names the worker pid", wait_for(lambda: worker_pid(d, k.id) is not None))
os.kill(worker_pid(d, k.id), signal.SIGKILL)
kj = d.wait_state(k.id, TERMINAL)
check("a worker killed by SIGKILL fails its job", kj.state == pb.FAILED, str(kj))
check("the error names the signal", "SIGKILL" in kj.error and kj.exit_signal == "SIGKILL", kj.error)
kev = d.watch(k.id)
check("its stream ends with the FAILED state, seqs contiguous", kev[-1].state.state == pb.FAILED
      and [e.seq for e in kev] == list(range(1, len(kev) + 1)))
ok = d.submit(tiny_config(f"{W}/after-kill"))
check("the daemon carries on: the next job succeeds", d.wait_state(ok.id, TERMINAL).state == pb.SUCCEEDED)

# ---- kill -9 of the daemon ----
resume = d.submit(long_cfg(f"{W}/resume", "restart_policy: resume\n"), name="resume")
failing = d.submit(long_cfg(f"{W}/fail"), name="fail")
queued = d.submit(tiny_config(f"{W}/queued"), name="queued")
check("two run, one waits", wait_for(lambda: d.stub.GetJob(pb.GetJobRequest(id=failing.id)).state == pb.RUNNING)
      and d.stub.GetJob(pb.GetJobRequest(id=queued.id)).state == pb.QUEUED)
check("the resumable job wrote a checkpoint",
      wait_for(lambda: d.stub.GetJob(pb.GetJobRequest(id=resume.id)).last_checkpoint != "", 120))
before = {x.id: x for x in d.stub.ListJobs(pb.ListJobsRequest()).jobs}
events_before = {i: [e.SerializeToString(deterministic=True) for e in all_events(d, i)] for i in before}
pids = [worker_pid(d, resume.id), worker_pid(d, failing.id)]
# Accepted just before the kill: must be on disk once SubmitJob answered.
last = d.submit(tiny_config(f"{W}/last"), name="last")
check("kill -9 of the daemon", d.stop(signal.SIGKILL) == -signal.SIGKILL)
check("its workers die with it (parent-death signal)", wait_for(lambda: not any(alive(p) for p in pids), 10),
      str([(p, alive(p)) for p in pids]))

d2 = Daemon(work=W, args=["--max-jobs", "2"]).start()
after = {x.id: x for x in d2.stub.ListJobs(pb.ListJobsRequest()).jobs}
check("every accepted job is still listed", set(before) | {last.id} <= set(after),
      f"{sorted(before)} vs {sorted(after)}")
kept = all([e.SerializeToString(deterministic=True) for e in all_events(d2, i)][:len(evs)] == evs
           for i, evs in events_before.items())
check("every stored event is still there, byte for byte", kept)
fj = d2.wait_state(failing.id, TERMINAL)
check("a running job is FAILED: daemon restarted", fj.state == pb.FAILED and fj.error == "daemon restarted", str(fj))
rj = d2.wait_state(resume.id, {pb.RUNNING} | TERMINAL)
check("restart_policy: resume runs it again, second attempt", rj.state == pb.RUNNING and rj.attempts == 2, str(rj))
ckpt_step = before[resume.id].progress.global_step
first_step = None
for e in d2.stub.WatchJob(pb.WatchJobRequest(id=resume.id, after_seq=len(events_before[resume.id]))):
    if e.WhichOneof("kind") == "step":
        first_step = e.step.global_step
        break
check("from its checkpoint: training goes on past the step it had reached",
      first_step is not None and first_step > 32, f"first step {first_step}, was at {ckpt_step}")
rev = all_events(d2, resume.id)
msgs = [e.state.message for e in rev if e.WhichOneof("kind") == "state"]
check("its events say it was re-queued from the checkpoint",
      any(m.startswith("daemon restarted; resuming from ") for m in msgs), str(msgs))
d2.stub.CancelJob(pb.CancelJobRequest(id=resume.id))
check("queued jobs still run", d2.wait_state(queued.id, TERMINAL).state == pb.SUCCEEDED)
check("the job accepted just before the kill runs", d2.wait_state(last.id, TERMINAL).state == pb.SUCCEEDED)
for i in list(before) + [last.id]:
    evs = all_events(d2, i)
    if [e.seq for e in evs] != list(range(1, len(evs) + 1)):
        check(f"job {i}: seqs contiguous after the restart", False, str([e.seq for e in evs]))
        break
else:
    check("every job's seqs are contiguous across the restart", True)
check("a second daemon on the same state dir is refused",
      Daemon(work=W, sock=os.path.join(W, "other.sock")).start(wait=False).proc.wait(10) != 0)

# ---- streams never lie: a daemon going down ends them with a status ----
job = d2.submit(long_cfg(f"{W}/stream", "restart_policy: resume\n").replace("max_epochs: 1000", "max_epochs: 8"))
got, status = [], {}


# Its own channel: stop() closes the daemon helper's.
watch_channel = grpc.insecure_channel("unix:" + d2.sock)


def watch_until_break():
    try:
        for e in pb_grpc.JobServiceStub(watch_channel).WatchJob(pb.WatchJobRequest(id=job.id)):
            got.append(e)
        status["code"] = "OK"
    except grpc.RpcError as e:
        status["code"] = e.code()


t = threading.Thread(target=watch_until_break)
t.start()
check("the job checkpoints", wait_for(lambda: d2.stub.GetJob(pb.GetJobRequest(id=job.id)).last_checkpoint != "", 120))
# A stalled watcher: opened, never read while the job goes on.
stalled = d2.stub.WatchJob(pb.WatchJobRequest(id=job.id))
check("SIGTERM: fulgurd exits 0", d2.stop() == 0, d2.log_text()[-2000:])
t.join(30)
check("a watcher of a daemon going down gets UNAVAILABLE, not a silent OK",
      status.get("code") == grpc.StatusCode.UNAVAILABLE, str(status))
watch_channel.close()
d3 = Daemon(work=W, args=["--max-jobs", "2"]).start()
last_seen = got[-1].seq if got else 0
rest = d3.watch(job.id, after_seq=last_seen, timeout=300)
whole = [e.seq for e in got] + [e.seq for e in rest]
check("reconnecting with the last seq misses nothing and repeats nothing",
      whole == list(range(1, len(whole) + 1)) and rest and rest[-1].state.state == pb.SUCCEEDED,
      f"{len(got)} + {len(rest)}")
check("the job resumed after the restart and finished", d3.stub.GetJob(pb.GetJobRequest(id=job.id)).attempts == 2)
check("fulgurd exits 0 on SIGTERM", d3.stop() == 0, d3.log_text()[-2000:])
finish()
