"""Job control on a real fulgurd (issue 16): checkpoint now, retry in
place, one run per job, fork with new hyperparameters, and every refusal.

Each case is checked against an uninterrupted run of the same config, by
the weights (torch.equal over the state dict, read with python3-torch) and
by metrics.csv (read with Python's csv module): a job that was
checkpointed, paused and resumed, or killed and retried ends with the
same tensors and the same rows, each step once, in one run directory."""
import csv
import glob
import os
import shutil
import signal
import subprocess
import time

import grpc
import torch

from daemon_util import Daemon, all_events, alive, children, pb, tiny_config, TERMINAL, wait_for, worker_pid, code_of
from tb_events import records
from interop import check, finish, FULGUR

LR_MONITOR = "  callbacks:\n  - class_path: LearningRateMonitor\n    init_args: {logging_interval: step}\n"


def cfg(root, epochs=4, samples=4096, extra=""):
    c = tiny_config(root, max_epochs=epochs, samples=samples, extra=extra)
    return c.replace("trainer:\n", "trainer:\n" + LR_MONITOR, 1)


def weights(path):
    return torch.load(path)["state_dict"]


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def weight_diff(a, b):
    return str({k: (a[k] - b[k]).abs().max().item() for k in a if k in b})


def rows(run_dir):
    with open(os.path.join(run_dir, "metrics.csv")) as f:
        return list(csv.DictReader(f))


def events(d, jid):
    return all_events(d, jid)


def kinds(evs, kind):
    return [getattr(e, kind) for e in evs if e.WhichOneof("kind") == kind]


def steps_logged(d, jid, after=0):
    return [s.global_step for s in kinds(events(d, jid), "step") if s.global_step > after]


def when(jid, pred, timeout=300):
    """The job's first event (replayed or live) for which pred is true, as
    it streams: whatever the machine's speed, the caller acts a few
    milliseconds after it, well before the job ends."""
    for e in d.stub.WatchJob(pb.WatchJobRequest(id=jid), timeout=timeout):
        if pred(e):
            return e
    return None


def is_step(e, n=2):
    return e.WhichOneof("kind") == "step" and e.step.global_step >= n


def is_ckpt(e, part="/checkpoints/"):
    return e.WhichOneof("kind") == "artifact" and e.artifact.kind == "checkpoint" and part in e.artifact.path


d = Daemon(args=["--max-jobs", "1", "--kill-grace-ms", "20000"]).start()
W = d.work

# ---- the uninterrupted reference ----
ref = d.submit(cfg(f"{W}/ref"), name="ref")
rj = d.wait_state(ref.id, TERMINAL, timeout=300)
check("the reference run succeeds", rj.state == pb.SUCCEEDED, rj.error)
ref_w = weights(rj.last_checkpoint)
ref_rows = rows(rj.run_dir)
fit_steps = [int(r["step"]) for r in ref_rows if r.get("fit/loss")]
check("the reference logs every other step once", fit_steps == list(range(1, 512, 2)), str(fit_steps[:5]))

# ---- checkpoint now, then pause and resume: one run, the same result ----
cj = d.submit(cfg(f"{W}/ckpt"), name="ckpt")
when(cj.id, is_step)
t0 = time.time()
got = d.stub.CheckpointJob(pb.CheckpointJobRequest(id=cj.id))
check("CheckpointJob answers with the running job", got.id == cj.id and got.state == pb.RUNNING, str(got))
ev = when(cj.id, lambda e: is_ckpt(e, "/manual-step="))
took = time.time() - t0
manual = ev.artifact.path if ev else ""
check("an ARTIFACT event names checkpoints/manual-step=S.ckpt", manual and os.path.exists(manual), manual)
manual_step = int(manual.rsplit("manual-step=", 1)[1].split(".ckpt")[0]) if manual else -1
print(f"# checkpoint now: {manual} written {took:.3f} s after the request")
mk = torch.load(manual) if manual else {}
check("the manual checkpoint is at its global step, with the full resume state",
      mk.get("global_step") == manual_step and mk.get("fulgur_loop", {}).get("paused") is True
      and mk["optimizer_states"][0]["state"], str({k: mk.get(k) for k in ("global_step", "epoch")}))
# A pause asked for right away is served too; the job was still running
# (the events after the checkpoint's are training steps).
d.stub.PauseJob(pb.PauseJobRequest(id=cj.id))
pj = d.wait_state(cj.id, {pb.PAUSED} | TERMINAL)
check("then paused", pj.state == pb.PAUSED, str(pj))
after = [e for e in events(d, cj.id) if e.seq > ev.seq] if ev else []
check("the job trained on after the manual checkpoint", pj.progress.global_step >= manual_step and any(
    e.WhichOneof("kind") == "artifact" and e.artifact.path.endswith("/pause.ckpt") for e in after), str(pj.progress))
run_dir = pj.run_dir
check("the manual checkpoint is in the job's run directory", manual.startswith(run_dir + "/checkpoints/"),
      f"{manual} {run_dir}")
d.stub.ResumeJob(pb.ResumeJobRequest(id=cj.id))
cj = d.wait_state(cj.id, TERMINAL, timeout=300)
check("checkpointed, paused and resumed: SUCCEEDED", cj.state == pb.SUCCEEDED, cj.error)
check("resumed in its own run directory", cj.run_dir == run_dir, f"{cj.run_dir} {run_dir}")
check("one run directory under the job's root", sorted(os.listdir(f"{W}/ckpt")) == ["version_0"],
      str(os.listdir(f"{W}/ckpt")))
check("checkpointed + paused + resumed: the reference's final weights", same_weights(weights(cj.last_checkpoint), ref_w),
      weight_diff(weights(cj.last_checkpoint), ref_w))
got_rows = rows(cj.run_dir)
check("metrics.csv: the reference's rows, each step once", got_rows == ref_rows,
      f"{len(got_rows)} rows vs {len(ref_rows)}")

# The manual checkpoint resumes to the same final weights.
mj = d.submit(cfg(f"{W}/from_manual"), ckpt_path=manual, name="from-manual")
mj = d.wait_state(mj.id, TERMINAL, timeout=300)
check("a fit from the manual checkpoint succeeds", mj.state == pb.SUCCEEDED, mj.error)
check("... and ends with the reference's weights", same_weights(weights(mj.last_checkpoint), ref_w),
      weight_diff(weights(mj.last_checkpoint), ref_w))

# ---- checkpoint now refused where there is nothing running ----
code, det = code_of(lambda: d.stub.CheckpointJob(pb.CheckpointJobRequest(id=ref.id)))
check("CheckpointJob on a SUCCEEDED job: FAILED_PRECONDITION", code == grpc.StatusCode.FAILED_PRECONDITION
      and "succeeded" in det, f"{code} {det}")
code, det = code_of(lambda: d.stub.CheckpointJob(pb.CheckpointJobRequest(id="0123456789abcdef")))
check("CheckpointJob on an unknown id: NOT_FOUND", code == grpc.StatusCode.NOT_FOUND, f"{code} {det}")

# ---- checkpoint and pause in a worker's first moment ----
# RUNNING is stored as the worker is spawned, while it still loads libtorch
# and has no signal handlers: the requests must wait for it, not kill it.
def is_running(e):
    return e.WhichOneof("kind") == "state" and e.state.state == pb.RUNNING


early = d.submit(cfg(f"{W}/early", epochs=2, samples=1024), name="early-ckpt")
when(early.id, is_running)
got = d.stub.CheckpointJob(pb.CheckpointJobRequest(id=early.id))
ej = d.wait_state(early.id, TERMINAL, timeout=300)
evs = events(d, early.id)
check("CheckpointJob as the worker starts: the job runs on and SUCCEEDS, once", got.state == pb.RUNNING
      and ej.state == pb.SUCCEEDED and ej.attempts == 1 and not ej.failures, f"{ej.state} {ej.error} {ej.failures}")
check("... and writes its manual checkpoint", any(is_ckpt(e, "/manual-step=") for e in evs),
      [e.artifact.path for e in evs if e.WhichOneof("kind") == "artifact"])
early = d.submit(cfg(f"{W}/early-pause", epochs=2, samples=1024), name="early-pause")
when(early.id, is_running)
d.stub.PauseJob(pb.PauseJobRequest(id=early.id))
pj = d.wait_state(early.id, TERMINAL | {pb.PAUSED}, timeout=300)
check("PauseJob as the worker starts: PAUSED, not killed", pj.state == pb.PAUSED and not pj.failures,
      f"{pj.state} {pj.error} {pj.failures}")
if pj.state == pb.PAUSED:
    d.stub.ResumeJob(pb.ResumeJobRequest(id=early.id))
    pj = d.wait_state(early.id, TERMINAL, timeout=300)
check("... and resumed, SUCCEEDS", pj.state == pb.SUCCEEDED, pj.error)

# ---- local fulgur fit --ckpt_path: a new version, unless continue_run ----
with open(f"{W}/local.yaml", "w") as f:
    f.write(cfg(f"{W}/local"))
os.makedirs(f"{W}/local/version_0/checkpoints")
shutil.copy(manual, f"{W}/local/version_0/checkpoints/")
# The rows the checkpoint counts, as the interrupted run had them, and one
# row it logged after the checkpoint (which a continued run drops).
n_before = mk["fulgur_loop"]["log_rows"]
with open(f"{W}/local/version_0/metrics.csv", "w", newline="") as f:
    w = csv.DictWriter(f, fieldnames=list(ref_rows[0].keys()))
    w.writeheader()
    w.writerows(ref_rows[:n_before + 1])
lck = f"{W}/local/version_0/checkpoints/" + os.path.basename(manual)
r = subprocess.run([FULGUR, "fit", "--config", f"{W}/local.yaml", "--ckpt_path", lck],
                   capture_output=True, text=True, timeout=300)
check("local fit --ckpt_path makes a new version (Lightning's behaviour)", r.returncode == 0
      and sorted(os.listdir(f"{W}/local")) == ["version_0", "version_1"], r.stderr[-1500:])
r = subprocess.run([FULGUR, "fit", "--config", f"{W}/local.yaml", "--ckpt_path", lck,
                    "--trainer.continue_run=true"], capture_output=True, text=True, timeout=300)
check("trainer.continue_run: true continues the checkpoint's run directory", r.returncode == 0
      and sorted(os.listdir(f"{W}/local")) == ["version_0", "version_1"], r.stderr[-1500:])
check("... whose metrics.csv is the reference's, the row after the checkpoint dropped",
      rows(f"{W}/local/version_0") == ref_rows, f"{len(rows(f'{W}/local/version_0'))} rows")
r = subprocess.run([FULGUR, "fit", "--config", f"{W}/local.yaml", "--ckpt_path", rj.last_checkpoint.replace(
    "/checkpoints/", "/"), "--trainer.continue_run=true"], capture_output=True, text=True, timeout=120)
check("continue_run with a checkpoint outside a checkpoints/ folder: a config error naming ckpt_path",
      r.returncode != 0 and "ckpt_path" in r.stderr and "checkpoints/" in r.stderr, r.stderr[-800:])

# ---- retry in place: SIGKILL the worker ----
rt = d.submit(cfg(f"{W}/retry", extra="max_restarts: 2\n"), name="retry")
when(rt.id, is_ckpt)  # a checkpoint to resume from exists before the kill
when(rt.id, lambda e: is_step(e, 140))
wp = worker_pid(d, rt.id)
os.kill(wp, signal.SIGKILL)
t0 = time.time()
back = wait_for(lambda: (lambda j: j if j.state == pb.RUNNING and j.attempts == 2 else None)(
    d.stub.GetJob(pb.GetJobRequest(id=rt.id))), 60)
print(f"# retry: running again {time.time() - t0:.2f} s after the SIGKILL")
check("SIGKILL of the worker: the same id runs again, attempts == 2", back is not None, str(back))
rt = d.wait_state(rt.id, TERMINAL, timeout=300)
check("the retried job SUCCEEDS", rt.state == pb.SUCCEEDED and rt.attempts == 2, str(rt))
check("Job.failures keeps attempt 1's reason", len(rt.failures) == 1 and rt.failures[0].attempt == 1
      and rt.failures[0].exit_signal == "SIGKILL" and "SIGKILL" in rt.failures[0].reason, str(rt.failures))
states = [s.message for s in kinds(events(d, rt.id), "state")]
check("the QUEUED event says why and where from", any(m.startswith("attempt 1 failed: worker killed by SIGKILL")
      and "/checkpoints/" in m for m in states), str(states))
check("retried: one run directory", sorted(os.listdir(f"{W}/retry")) == ["version_0"], str(os.listdir(f"{W}/retry")))
check("retried: the checkpoints folder holds what the reference's does (ModelCheckpoint's top-k went on)",
      sorted(os.listdir(rt.run_dir + "/checkpoints")) == sorted(os.listdir(rj.run_dir + "/checkpoints")),
      f"{os.listdir(rt.run_dir + '/checkpoints')} vs {os.listdir(rj.run_dir + '/checkpoints')}")
check("retried: the reference's final weights", same_weights(weights(rt.last_checkpoint), ref_w),
      weight_diff(weights(rt.last_checkpoint), ref_w))
got_rows = rows(rt.run_dir)
check("retried: metrics.csv holds every step once, as the reference's", got_rows == ref_rows,
      f"{len(got_rows)} rows vs {len(ref_rows)}")

# ---- retry with TensorBoardLogger first: TensorBoard sees one run ----
def tb_scalars(vdir):
    """(tag, step) of every scalar, read as TensorBoard reads a run's folder:
    its event files in name order, a SessionLog START dropping what came
    before at or after its step (TensorBoard's purge of orphaned data)."""
    from tensorboard import event_pb2
    kept = []
    for path in sorted(glob.glob(os.path.join(vdir, "events.out.tfevents.*"))):
        for r in records(path):
            e = event_pb2.Event.FromString(r)
            if e.WhichOneof("what") == "session_log" and e.session_log.status == event_pb2.SessionLog.START:
                kept = [k for k in kept if k[1] < e.step]
            elif e.WhichOneof("what") == "summary":
                kept += [(v.tag, e.step) for v in e.summary.value if v.WhichOneof("value") == "simple_value"]
    return kept


tbc = cfg(f"{W}/tb_default", extra="max_restarts: 1\n").replace("trainer:\n", f"""trainer:
  logger:
  - class_path: lightning.pytorch.loggers.TensorBoardLogger
    init_args: {{save_dir: {W}/tb_retry, default_hp_metric: false}}
  - class_path: CSVLogger
""", 1)
tj = d.submit(tbc, name="tb-retry")
when(tj.id, is_ckpt)
when(tj.id, lambda e: is_step(e, 140))
os.kill(worker_pid(d, tj.id), signal.SIGKILL)
tj = d.wait_state(tj.id, TERMINAL, timeout=300)
vdir = f"{W}/tb_retry/lightning_logs/version_0"
check("TensorBoardLogger first: the retried job SUCCEEDS in its one TensorBoard run folder",
      tj.state == pb.SUCCEEDED and tj.attempts == 2 and tj.run_dir == vdir
      and os.listdir(f"{W}/tb_retry/lightning_logs") == ["version_0"], str(tj))
check("... with an events file per attempt", len(glob.glob(vdir + "/events.out.tfevents.*")) == 2,
      str(os.listdir(vdir)))
tbs = [k for k in tb_scalars(vdir) if k[0] != "epoch"]
csv_pairs = [(k, int(r["step"])) for r in rows(vdir) for k, v in r.items() if v and k not in ("epoch", "step")]
check("TensorBoard's view: every scalar at every step once, as metrics.csv has them",
      len(tbs) == len(set(tbs)) and sorted(tbs) == sorted(csv_pairs) and rows(vdir) == ref_rows,
      f"{len(tbs)} vs {len(set(tbs))} unique vs {len(csv_pairs)} csv")

# ---- retries run out; a cancel never retries ----
ex = d.submit(cfg(f"{W}/exhaust", epochs=1000), max_restarts=1, name="exhaust")
check("SubmitJobRequest.max_restarts is the job's", ex.max_restarts == 1, str(ex))
for attempt in (1, 2):
    wait_for(lambda: (lambda j: j.state == pb.RUNNING and j.attempts == attempt)(
        d.stub.GetJob(pb.GetJobRequest(id=ex.id))), 60)
    wait_for(lambda: worker_pid(d, ex.id) and len(kinds(events(d, ex.id), "step")) > 2 * attempt, 60)
    os.kill(worker_pid(d, ex.id), signal.SIGKILL)
    time.sleep(0.2)
ex = d.wait_state(ex.id, TERMINAL, timeout=60)
check("after max_restarts retries the job FAILS", ex.state == pb.FAILED and ex.attempts == 2
      and len(ex.failures) == 2 and "SIGKILL" in ex.error, str(ex))

cn = d.submit(cfg(f"{W}/cancel", epochs=1000), max_restarts=3, name="cancel")
d.wait_state(cn.id, {pb.RUNNING})
wait_for(lambda: kinds(events(d, cn.id), "step"), 60)
d.stub.CancelJob(pb.CancelJobRequest(id=cn.id))
cn = d.wait_state(cn.id, TERMINAL, timeout=60)
check("a cancel never retries", cn.state == pb.CANCELLED and cn.attempts == 1 and not cn.failures, str(cn))

# ---- a config error never retries ----
bad_data = cfg(f"{W}/cfgerr", extra="max_restarts: 3\n").replace(
    "      val:\n        init_args: {num_samples: 64, seed: 2}\n", "")
bad_data = bad_data.replace("dataset_cfg:\n      fit:", "dataset_cfg:\n      test:", 1)
ce = d.submit(bad_data, name="cfgerr")
ce = d.wait_state(ce.id, TERMINAL, timeout=120)
check("a run that fails on its config is not retried", ce.state == pb.FAILED and ce.attempts == 1
      and len(ce.failures) == 1, str(ce))

code, det = code_of(lambda: d.submit(cfg(f"{W}/x", extra="max_restarts: -1\n")))
check("max_restarts: -1 is INVALID_ARGUMENT naming the key", code == grpc.StatusCode.INVALID_ARGUMENT
      and "max_restarts" in det, f"{code} {det}")
code, det = code_of(lambda: d.submit(cfg(f"{W}/x"), max_restarts=100000))
check("SubmitJobRequest.max_restarts above the limit is INVALID_ARGUMENT", code == grpc.StatusCode.INVALID_ARGUMENT
      and "max_restarts" in det, f"{code} {det}")

# ---- retry in place under ddp: one rank killed, every rank restarts ----
def ddp(root, extra=""):
    return cfg(root, extra=extra).replace("trainer:\n", "trainer:\n  strategy: ddp\n  devices: 2\n  ddp_timeout: 20\n", 1)


dref = d.submit(ddp(f"{W}/ddp_ref"), name="ddp-ref")
dref = d.wait_state(dref.id, TERMINAL, timeout=300)
check("the ddp reference succeeds", dref.state == pb.SUCCEEDED, dref.error)
dk = d.submit(ddp(f"{W}/ddp_retry", extra="max_restarts: 1\n"), name="ddp-retry")
d.wait_state(dk.id, {pb.RUNNING})
wp = wait_for(lambda: worker_pid(d, dk.id))
kids = wait_for(lambda: children(wp), 60) or []
when(dk.id, is_ckpt)
when(dk.id, lambda e: is_step(e, 70))
check("the ddp job runs as its worker and rank 1", kids, str(kids))
if kids:
    os.kill(kids[0], signal.SIGKILL)
t0 = time.time()
back = wait_for(lambda: (lambda j: j if j.state == pb.RUNNING and j.attempts == 2 else None)(
    d.stub.GetJob(pb.GetJobRequest(id=dk.id))), 90)
print(f"# ddp retry: running again {time.time() - t0:.2f} s after rank 1's SIGKILL")
new_wp = wait_for(lambda: (lambda p: p if p and p != wp else None)(worker_pid(d, dk.id)), 60)
new_kids = wait_for(lambda: children(new_wp) if new_wp else None, 60) or []
check("rank 1 killed: the same id runs again with a new worker and a new rank 1", back is not None
      and new_wp and new_kids and not set(new_kids) & set(kids), f"{back} {wp}->{new_wp} {kids}->{new_kids}")
check("the old ranks are gone", wait_for(lambda: not any(alive(p) for p in kids + [wp]), 30), str(kids))
dk = d.wait_state(dk.id, TERMINAL, timeout=300)
check("the retried ddp job SUCCEEDS with attempts == 2", dk.state == pb.SUCCEEDED and dk.attempts == 2, str(dk))
check("its failure names rank 1", len(dk.failures) == 1 and "rank 1" in dk.failures[0].reason, str(dk.failures))
check("ddp retried: the uninterrupted ddp run's weights", same_weights(weights(dk.last_checkpoint), weights(dref.last_checkpoint)),
      weight_diff(weights(dk.last_checkpoint), weights(dref.last_checkpoint)))
check("ddp retried: one run directory, metrics.csv as the uninterrupted one's",
      sorted(os.listdir(f"{W}/ddp_retry")) == ["version_0"] and rows(dk.run_dir) == rows(dref.run_dir),
      f"{os.listdir(f'{W}/ddp_retry')} {len(rows(dk.run_dir))} rows vs {len(rows(dref.run_dir))}")

# ---- fork ----
src_ck = torch.load(rj.last_checkpoint)
fk = d.stub.ForkJob(pb.ForkJobRequest(id=ref.id, checkpoint="last", name="fork", overrides=[
    "--optimizer_config.optimizer.init_args.lr=0.03", "--trainer.max_epochs=6"]))
check("ForkJob: a new job recording its parent", fk.id != ref.id and fk.parent_id == ref.id
      and fk.parent_checkpoint == os.path.realpath(rj.last_checkpoint), str(fk))
fk = d.wait_state(fk.id, TERMINAL, timeout=300)
check("the fork SUCCEEDS", fk.state == pb.SUCCEEDED, fk.error)
fsteps = kinds(events(d, fk.id), "step")
first = min(s.global_step for s in fsteps) if fsteps else -1
check("the fork starts at the checkpoint's global_step", src_ck["global_step"] == 512
      and 512 < first <= 512 + 2 and fk.progress.global_step == 768, f"first {first} {fk.progress}")
lrs = [s.values["lr-SGD"] for s in fsteps if "lr-SGD" in s.values]
check("LearningRateMonitor logs the fork's lr", lrs and all(abs(v - 0.03) < 1e-12 for v in lrs), str(lrs[:4]))
ref_lrs = [s.values["lr-SGD"] for s in kinds(events(d, ref.id), "step") if "lr-SGD" in s.values]
check("... where the source logged its own", ref_lrs and all(abs(v - 0.1) < 1e-12 for v in ref_lrs), str(ref_lrs[:3]))
fck = torch.load(fk.last_checkpoint)
pg = fck["optimizer_states"][0]["param_groups"][0]
check("the fork's optimizer has the config's lr and the source's momentum", abs(pg["lr"] - 0.03) < 1e-12
      and pg["momentum"] == 0.9 and fck["epoch"] == 5, str(pg))
check("the fork has a run directory of its own", fk.run_dir != rj.run_dir and
      os.path.exists(os.path.join(fk.run_dir, "metrics.csv")))
logs = [l.text for l in kinds(events(d, fk.id), "log")]
check("its log says where it forked from", any("forked from" in t and "global step 512" in t for t in logs),
      str([t for t in logs if "fork" in t]))

# What a Lightning user does by hand, with python3-torch: the checkpoint's
# lr edited to the new one, then an ordinary resume with the new config.
# The fork must end with those weights -- under ddp too, where every rank
# has to load the checkpoint as a fork (a rank stepping with the old lr
# would change the averaged gradients).
def edited_resume(src_ckpt, config, path):
    ck = torch.load(src_ckpt)
    for g in ck["optimizer_states"][0]["param_groups"]:
        g["lr"] = 0.03
    torch.save(ck, path)
    j = d.submit(config.replace("lr: 0.1", "lr: 0.03"), ckpt_path=path)
    return d.wait_state(j.id, TERMINAL, timeout=300)


ej = edited_resume(rj.last_checkpoint, cfg(f"{W}/edited", epochs=6), f"{W}/edited.ckpt")
check("the fork ends with the weights of a resume from the checkpoint with its lr edited in Python",
      ej.state == pb.SUCCEEDED and same_weights(weights(fk.last_checkpoint), weights(ej.last_checkpoint)),
      ej.error or weight_diff(weights(fk.last_checkpoint), weights(ej.last_checkpoint)))
dfk = d.stub.ForkJob(pb.ForkJobRequest(id=dref.id, overrides=[
    "--optimizer_config.optimizer.init_args.lr=0.03", "--trainer.max_epochs=6"]))
dfk = d.wait_state(dfk.id, TERMINAL, timeout=300)
dej = edited_resume(dref.last_checkpoint, ddp(f"{W}/ddp_edited").replace("max_epochs: 4", "max_epochs: 6"),
                    f"{W}/ddp_edited.ckpt")
check("a ddp fork: every rank forks (the weights of the edited-checkpoint resume under ddp)",
      dfk.state == pb.SUCCEEDED and dej.state == pb.SUCCEEDED
      and same_weights(weights(dfk.last_checkpoint), weights(dej.last_checkpoint)),
      (dfk.error or dej.error) or weight_diff(weights(dfk.last_checkpoint), weights(dej.last_checkpoint)))

# A fork without overrides from a mid-run checkpoint is a resume: the
# weights, buffers, optimizer state and step all carried over.
rel = os.path.relpath(manual, run_dir)
same = d.stub.ForkJob(pb.ForkJobRequest(id=cj.id, checkpoint=rel))
same = d.wait_state(same.id, TERMINAL, timeout=300)
check("a fork with no overrides from the manual checkpoint ends with the reference's weights",
      same.state == pb.SUCCEEDED and same_weights(weights(same.last_checkpoint), ref_w),
      same.error or weight_diff(weights(same.last_checkpoint), ref_w))

# CLI: fulgur checkpoint and fulgur fork.
env = dict(os.environ, FULGUR_SERVER="unix:" + d.sock)
lj = d.submit(cfg(f"{W}/cli", epochs=1000), name="cli")
d.wait_state(lj.id, {pb.RUNNING})
wait_for(lambda: kinds(events(d, lj.id), "step"), 60)
r = subprocess.run([FULGUR, "checkpoint", lj.id], capture_output=True, text=True, env=env, timeout=60)
check("fulgur checkpoint ID", r.returncode == 0 and lj.id in r.stdout and "running" in r.stdout, r.stdout + r.stderr)
got = wait_for(lambda: [a.path for a in kinds(events(d, lj.id), "artifact") if "manual-step=" in a.path], 60)
check("... writes a manual checkpoint", got, "")
if got:
    mseq = [e.seq for e in events(d, lj.id) if is_ckpt(e, "/manual-step=")][0]
    check("... and the job trains on after it", wait_for(lambda: any(
        e.seq > mseq and e.WhichOneof("kind") == "step" for e in events(d, lj.id)), 60)
        and d.stub.GetJob(pb.GetJobRequest(id=lj.id)).state == pb.RUNNING)
lj_run = d.stub.GetJob(pb.GetJobRequest(id=lj.id)).run_dir
r = subprocess.run([FULGUR, "fork", lj.id, "--trainer.max_epochs", "1", "--name", "cli-fork"],
                   capture_output=True, text=True, env=env, timeout=60)
fid = r.stdout.strip()
check("fulgur fork ID --a.b v prints the new job's id", r.returncode == 0 and len(fid) == 16, r.stdout + r.stderr)
d.stub.CancelJob(pb.CancelJobRequest(id=lj.id))
if r.returncode == 0:
    fj = d.wait_state(fid, TERMINAL, timeout=300)
    check("... from the source's newest checkpoint", fj.parent_id == lj.id and fj.name == "cli-fork"
          and fj.parent_checkpoint.startswith(os.path.realpath(lj_run) + "/checkpoints/"), str(fj))
r = subprocess.run([FULGUR, "fork", ref.id, "--trainer.max_epoch=3"], capture_output=True, text=True, env=env,
                   timeout=60)
check("fulgur fork with a bad override: exit 2 naming the key", r.returncode == 2 and "trainer.max_epoch" in r.stderr,
      f"{r.returncode} {r.stderr}")

# ---- fork refusals ----
def fork_code(**kw):
    return code_of(lambda: d.stub.ForkJob(pb.ForkJobRequest(**kw)))


code, det = fork_code(id=ref.id, checkpoint="checkpoints/nope.ckpt")
check("fork from a checkpoint the source does not have: FAILED_PRECONDITION", code == grpc.StatusCode.FAILED_PRECONDITION
      and "nope.ckpt" in det, f"{code} {det}")
code, det = fork_code(id=ref.id, checkpoint="checkpoints")
check("fork from a folder of the run: FAILED_PRECONDITION", code == grpc.StatusCode.FAILED_PRECONDITION
      and "not a file" in det, f"{code} {det}")
code, det = fork_code(id=ref.id, checkpoint=manual)
check("fork from another job's checkpoint: FAILED_PRECONDITION", code == grpc.StatusCode.FAILED_PRECONDITION
      and "not inside" in det, f"{code} {det}")
code, det = fork_code(id=ref.id, checkpoint="../../ckpt/version_0/checkpoints/" + os.path.basename(manual))
check("fork from a path climbing out of the run: FAILED_PRECONDITION", code == grpc.StatusCode.FAILED_PRECONDITION,
      f"{code} {det}")
q = d.submit(cfg(f"{W}/queued"), name="never-ran")
d.stub.PauseJob(pb.PauseJobRequest(id=q.id))
code, det = fork_code(id=q.id)
check("fork of a job with no checkpoint: FAILED_PRECONDITION", code == grpc.StatusCode.FAILED_PRECONDITION
      and "no checkpoint" in det, f"{code} {det}")
code, det = fork_code(id="0123456789abcdef")
check("fork of an unknown job: NOT_FOUND", code == grpc.StatusCode.NOT_FOUND, f"{code} {det}")
code, det = fork_code(id=ref.id, overrides=["--optimizer_config.optimizer.init_args.lr=fast"])
check("fork with an lr that is not a number: INVALID_ARGUMENT with its location",
      code == grpc.StatusCode.INVALID_ARGUMENT and "optimizer_config" in det and "lr" in det, f"{code} {det}")
code, det = fork_code(id=ref.id, overrides=["--trainer.max_epoch=3"])
check("fork with an unknown key: INVALID_ARGUMENT naming it", code == grpc.StatusCode.INVALID_ARGUMENT
      and "trainer.max_epoch" in det, f"{code} {det}")
code, det = fork_code(id=ref.id, overrides=["trainer.max_epochs"])
check("fork with a malformed override: INVALID_ARGUMENT", code == grpc.StatusCode.INVALID_ARGUMENT, f"{code} {det}")

check("fulgurd stops cleanly", d.stop() == 0, d.log_text()[-2000:])
finish()
