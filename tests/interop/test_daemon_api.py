"""fulgurd's JobService contract, driven by Debian's python3-grpcio with
stubs generated from proto/: submit, watch to the end with contiguous seqs,
reconnects, paging, idempotency, the queue, cancel, pause/resume (same
weights as an uninterrupted run), and 50 concurrent watchers."""
import os
import threading
import time

import torch

from daemon_util import Daemon, pb, tiny_config, code_of, TERMINAL
from interop import check, finish
import grpc

d = Daemon(args=["--max-jobs", "1"]).start()
W = d.work


def seqs_ok(events):
    return [e.seq for e in events] == list(range(1, len(events) + 1))


# ---- submit, watch to the end ----
j = d.submit(tiny_config(f"{W}/a"), name="first", idempotency_key="key-1")
check("submit answers QUEUED or RUNNING with an id", j.id and j.state in (pb.QUEUED, pb.RUNNING), str(j))
check("submit keeps name and stage", j.name == "first" and j.stage == pb.FIT)
again = d.submit(tiny_config(f"{W}/a"), idempotency_key="key-1")
check("same idempotency_key returns the first job", again.id == j.id, f"{again.id} vs {j.id}")
evs = d.watch(j.id)
check("watch: seqs 1, 2, 3 ... without gaps", seqs_ok(evs), str([e.seq for e in evs]))
check("watch: every event names the job", all(e.job_id == j.id for e in evs))
check("watch: first event is QUEUED", evs[0].WhichOneof("kind") == "state" and evs[0].state.state == pb.QUEUED)
check("watch: ends right after the terminal state", evs[-1].WhichOneof("kind") == "state"
      and evs[-1].state.state == pb.SUCCEEDED, str(evs[-1]))
kinds = {e.WhichOneof("kind") for e in evs}
check("watch: step, epoch, log and artifact events", {"step", "epoch", "log", "artifact"} <= kinds, str(kinds))
steps = [e for e in evs if e.WhichOneof("kind") == "step"]
check("step events carry fit/loss and the loop position",
      steps and "fit/loss" in steps[0].step.values and steps[0].step.global_step == 2
      and steps[0].step.split == "fit", str(steps[:1]))
ck = [e.artifact.path for e in evs if e.WhichOneof("kind") == "artifact" and e.artifact.kind == "checkpoint"]
check("checkpoint artifacts have absolute paths; the last one exists",
      ck and all(os.path.isabs(p) for p in ck) and os.path.exists(ck[-1]), str(ck))

job = d.stub.GetJob(pb.GetJobRequest(id=j.id))
check("GetJob: SUCCEEDED with the latest metric values", job.state == pb.SUCCEEDED
      and "val/Accuracy" in job.metrics and "fit/loss" in job.metrics, str(job))
last_val = [e.epoch.values["val/Accuracy"] for e in evs if e.WhichOneof("kind") == "epoch" and "val/Accuracy" in e.epoch.values][-1]
check("GetJob metrics equal the last logged values", job.metrics["val/Accuracy"] == last_val)
check("GetJob progress: 100%, epoch and steps", job.progress.percent == 100.0
      and job.progress.global_step == 16 and job.progress.total_steps == 16 and job.progress.max_epochs == 2,
      str(job.progress))
check("GetJob times are ordered", 0 < job.create_time_ns <= job.start_time_ns <= job.end_time_ns)
check("GetJob last_seq is the last event's", job.last_seq == evs[-1].seq)
check("GetJob run_dir and last_checkpoint", job.run_dir == f"{W}/a/version_0"
      and job.last_checkpoint.endswith("last.ckpt"), f"{job.run_dir} {job.last_checkpoint}")

# ---- reconnect from a seq, ListJobEvents paging ----
k = len(evs) // 2
tail = d.watch(j.id, after_seq=k)
check("watch after_seq=k replays k+1 .. end, nothing twice",
      [e.seq for e in tail] == list(range(k + 1, len(evs) + 1)))
check("replayed events are byte-identical",
      [e.SerializeToString(deterministic=True) for e in tail] == [e.SerializeToString(deterministic=True) for e in evs[k:]])
check("watch after the end: nothing, then OK", d.watch(j.id, after_seq=len(evs)) == [])
code, _ = code_of(lambda: d.watch(j.id, after_seq=len(evs) + 5))
check("watch after_seq past the end -> OUT_OF_RANGE", code == grpc.StatusCode.OUT_OF_RANGE, str(code))
paged, after, pages = [], 0, 0
while True:
    r = d.stub.ListJobEvents(pb.ListJobEventsRequest(id=j.id, after_seq=after, page_size=3))
    paged += r.events
    after = r.last_seq
    pages += 1
    if not r.more:
        break
check("ListJobEvents pages of 3 give every event once", [e.seq for e in paged] == [e.seq for e in evs]
      and pages == (len(evs) + 2) // 3, f"{pages} pages")

# ---- errors ----
code, msg = code_of(lambda: d.stub.GetJob(pb.GetJobRequest(id="no-such-job")))
check("GetJob unknown id -> NOT_FOUND", code == grpc.StatusCode.NOT_FOUND and "no-such-job" in msg, msg)
code, msg = code_of(lambda: d.watch("no-such-job"))
check("WatchJob unknown id -> NOT_FOUND (not a hang)", code == grpc.StatusCode.NOT_FOUND, str(code))
code, msg = code_of(lambda: d.stub.CancelJob(pb.CancelJobRequest(id=j.id)))
check("cancel a finished job -> FAILED_PRECONDITION", code == grpc.StatusCode.FAILED_PRECONDITION, msg)
code, msg = code_of(lambda: d.stub.ResumeJob(pb.ResumeJobRequest(id=j.id)))
check("resume a finished job -> FAILED_PRECONDITION", code == grpc.StatusCode.FAILED_PRECONDITION, msg)
n_before = len(d.stub.ListJobs(pb.ListJobsRequest()).jobs)
code, msg = code_of(lambda: d.submit(tiny_config(f"{W}/b").replace("max_epochs: 2", "max_epoch: 2")))
check("bad config -> INVALID_ARGUMENT with file:line:col and key path",
      code == grpc.StatusCode.INVALID_ARGUMENT and "config.yaml:3:" in msg and "trainer.max_epoch" in msg
      and "max_epochs" in msg, msg)
code, msg = code_of(lambda: d.submit(tiny_config(f"{W}/b"), overrides=["--trainer.max_epochs=two"]))
check("bad override -> INVALID_ARGUMENT naming the key", code == grpc.StatusCode.INVALID_ARGUMENT
      and "trainer.max_epochs" in msg, msg)
check("nothing stored for rejected submits", len(d.stub.ListJobs(pb.ListJobsRequest()).jobs) == n_before)

# ---- overrides apply, validate stage ----
v = d.submit(tiny_config(f"{W}/v"), stage=pb.VALIDATE, overrides=["--seed_everything=11"])
vj = d.wait_state(v.id, TERMINAL)
check("a validate job succeeds with val metrics", vj.state == pb.SUCCEEDED and "val/Accuracy" in vj.metrics,
      str(vj))

# ---- the queue: one at a time, in submission order; cancel in each state ----
long_cfg = tiny_config(f"{W}/long", max_epochs=1000, samples=2048)
a = d.submit(long_cfg, name="long")
b = d.submit(tiny_config(f"{W}/qb"), name="qb")
c = d.submit(tiny_config(f"{W}/qc"), name="qc")
d.wait_state(a.id, {pb.RUNNING})
time.sleep(0.5)
states = {x.id: x.state for x in d.stub.ListJobs(pb.ListJobsRequest()).jobs}
check("--max-jobs 1: the others wait QUEUED", states[b.id] == pb.QUEUED and states[c.id] == pb.QUEUED, str(states))
queued = d.stub.ListJobs(pb.ListJobsRequest(state=pb.QUEUED)).jobs
check("ListJobs filters by state, in submission order", [x.id for x in queued] == [b.id, c.id])
cc = d.stub.CancelJob(pb.CancelJobRequest(id=c.id))
check("cancel a queued job: CANCELLED at once", cc.state == pb.CANCELLED, str(cc.state))
# Wait until the long job has trained a little, then cancel it.
for e in d.stub.WatchJob(pb.WatchJobRequest(id=a.id)):
    if e.WhichOneof("kind") == "step" and e.step.global_step >= 10:
        break
t0 = time.time()
d.stub.CancelJob(pb.CancelJobRequest(id=a.id))
aj = d.wait_state(a.id, TERMINAL, timeout=60)
took = time.time() - t0
check("cancel a running job: CANCELLED", aj.state == pb.CANCELLED, str(aj))
check("the worker stopped itself at a step boundary (not killed)", aj.exit_signal == "" and aj.exit_code == 0,
      f"{aj.exit_signal} {aj.exit_code} after {took:.1f}s")
print(f"# running job cancelled in {took:.2f} s")
bj = d.wait_state(b.id, TERMINAL)
check("the next queued job ran after the cancel", bj.state == pb.SUCCEEDED and bj.start_time_ns >= aj.end_time_ns)
aev = d.watch(a.id)
check("a cancelled job's stream ends with CANCELLED", aev[-1].state.state == pb.CANCELLED and seqs_ok(aev))

# ---- ListJobs paging ----
allj, token = [], ""
while True:
    r = d.stub.ListJobs(pb.ListJobsRequest(page_size=2, page_token=token))
    allj += r.jobs
    token = r.next_page_token
    if not token:
        break
ids = [x.id for x in allj]
check("ListJobs pages of 2 give every job once, oldest first", len(ids) == len(set(ids)) and ids[0] == j.id
      and ids.index(a.id) < ids.index(b.id) < ids.index(c.id), str(ids))
code, msg = code_of(lambda: d.stub.ListJobs(pb.ListJobsRequest(page_token="garbage")))
check("a bad page_token -> INVALID_ARGUMENT", code == grpc.StatusCode.INVALID_ARGUMENT, msg)

# ---- pause / resume: same weights as an uninterrupted run ----
pcfg = lambda root: tiny_config(root, max_epochs=4, samples=2048)
ref = d.submit(pcfg(f"{W}/ref"))
refj = d.wait_state(ref.id, TERMINAL)
p = d.submit(pcfg(f"{W}/paused"))
for e in d.stub.WatchJob(pb.WatchJobRequest(id=p.id)):
    if e.WhichOneof("kind") == "step" and e.step.global_step >= 37:
        break
pj = d.stub.PauseJob(pb.PauseJobRequest(id=p.id))
pj = d.wait_state(p.id, {pb.PAUSED} | TERMINAL)
check("pause: the job is PAUSED with a checkpoint", pj.state == pb.PAUSED and pj.last_checkpoint.endswith("pause.ckpt"),
      str(pj))
pev = d.watch(p.id)
check("a paused job's stream ends after the PAUSED event", pev[-1].state.state == pb.PAUSED and seqs_ok(pev))
check("paused mid-run (not at the end)", 37 <= pj.progress.global_step < 256, str(pj.progress))
code, msg = code_of(lambda: d.stub.PauseJob(pb.PauseJobRequest(id=p.id)))
check("pause a paused job -> FAILED_PRECONDITION", code == grpc.StatusCode.FAILED_PRECONDITION, msg)
r = d.stub.ResumeJob(pb.ResumeJobRequest(id=p.id))
check("resume: QUEUED (or RUNNING) again", r.state in (pb.QUEUED, pb.RUNNING), str(r.state))
pj = d.wait_state(p.id, TERMINAL)
check("the resumed job succeeds, second attempt", pj.state == pb.SUCCEEDED and pj.attempts == 2, str(pj))
full = d.watch(p.id)
check("its events stay contiguous across pause and resume", seqs_ok(full) and full[-1].state.state == pb.SUCCEEDED)
a_sd = torch.load(refj.last_checkpoint)["state_dict"]
b_sd = torch.load(pj.last_checkpoint)["state_dict"]
same = a_sd.keys() == b_sd.keys() and all(torch.equal(a_sd[k], b_sd[k]) for k in a_sd)
check("paused+resumed weights == uninterrupted weights (bit for bit)", same,
      str({k: (a_sd[k] - b_sd[k]).abs().max().item() for k in a_sd}))
check("same global_step as uninterrupted", torch.load(pj.last_checkpoint)["global_step"]
      == torch.load(refj.last_checkpoint)["global_step"])
check("same final metrics as uninterrupted", pj.metrics["val/loss"] == refj.metrics["val/loss"],
      f"{pj.metrics['val/loss']} vs {refj.metrics['val/loss']}")

# ---- 50 concurrent watchers all receive every event ----
w = d.submit(tiny_config(f"{W}/w", max_epochs=3))
results = [None] * 50


def watcher(i):
    try:
        results[i] = [e.SerializeToString(deterministic=True) for e in d.stub.WatchJob(pb.WatchJobRequest(id=w.id), timeout=120)]
    except grpc.RpcError as e:
        results[i] = e


threads = [threading.Thread(target=watcher, args=(i,)) for i in range(50)]
for t in threads:
    t.start()
for t in threads:
    t.join()
wev = d.watch(w.id)
check("50 watchers: every one got every event, in order",
      all(r == [e.SerializeToString(deterministic=True) for e in wev] for r in results),
      str([len(r) if isinstance(r, list) else r for r in results][:5]) + f" of {len(wev)}")
check("and the job succeeded", wev[-1].state.state == pb.SUCCEEDED)

check("fulgurd exits 0 on SIGTERM", d.stop() == 0, d.log_text()[-2000:])
finish()
