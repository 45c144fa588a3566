"""restart_policy comes from the parsed config: `fulgur-worker check`
reports the job's top-level options in its reply and fulgurd stores them
with the job. The configs here mention restart_policy where it is not the
option (a comment, a string value), so only a reader of the parsed tree
gets each job right; after a kill -9 of the daemon, the job whose
restart_policy is fail fails and the one whose policy is resume resumes.
An invalid value is refused at submit, as before."""
import os
import signal

import grpc

from daemon_util import Daemon, all_events, pb, tiny_config, TERMINAL, wait_for
from interop import check, finish

d = Daemon(args=["--max-jobs", "2"]).start()
W = d.work

# A job that says resume everywhere but where it counts (a comment before
# and after, a logger name with a line "restart_policy: resume" in it), and
# one that says fail everywhere but where it counts.
def cfg(root, policy, decoy):
    base = tiny_config(root, max_epochs=1000, samples=1024)
    base = base.replace("trainer:\n", "trainer:\n  logger:\n    class_path: fulgur.loggers.CSVLogger\n"
                        f"    init_args: {{name: \"x\\nrestart_policy: {decoy}\\n\"}}\n", 1)
    return f"# restart_policy: {decoy}\n" + base + f"restart_policy: {policy}\n# restart_policy: {decoy}\n"


fails = d.submit(cfg(f"{W}/fails", "fail", "resume"), name="fails")
resumes = d.submit(cfg(f"{W}/resumes", "resume", "fail"), name="resumes")

# What the worker runs is the checked config, without the options line.
check("the job folder's config is the checked YAML alone",
      wait_for(lambda: os.path.exists(os.path.join(d.state, "jobs", fails.id, "config.yaml")))
      and not open(os.path.join(d.state, "jobs", fails.id, "config.yaml")).read().startswith("# job options"))

for j in (fails, resumes):
    check(f"{j.name} wrote a checkpoint",
          wait_for(lambda: d.stub.GetJob(pb.GetJobRequest(id=j.id)).last_checkpoint != "", 120))
check("kill -9 of the daemon", d.stop(signal.SIGKILL) == -signal.SIGKILL)

d2 = Daemon(work=W, args=["--max-jobs", "2"]).start()
fj = d2.wait_state(fails.id, TERMINAL)
check("restart_policy: fail (resume only in a comment and a value): FAILED, daemon restarted",
      fj.state == pb.FAILED and fj.error == "daemon restarted", str(fj))
rj = d2.wait_state(resumes.id, {pb.RUNNING} | TERMINAL)
check("restart_policy: resume (fail only in a comment and a value): runs again, second attempt",
      rj.state == pb.RUNNING and rj.attempts == 2, str(rj))
msgs = [e.state.message for e in all_events(d2, resumes.id) if e.WhichOneof("kind") == "state"]
check("it was re-queued from its checkpoint", any(m.startswith("daemon restarted; resuming from ") for m in msgs),
      str(msgs))
d2.stub.CancelJob(pb.CancelJobRequest(id=resumes.id))
d2.wait_state(resumes.id, TERMINAL)

# ---- invalid values are still refused where they are written ----
try:
    d2.submit(tiny_config(f"{W}/bad", extra="restart_policy: sometimes\n"))
    check("restart_policy: sometimes is refused", False, "accepted")
except grpc.RpcError as e:
    check("restart_policy: sometimes is refused as INVALID_ARGUMENT naming the key and the value",
          e.code() == grpc.StatusCode.INVALID_ARGUMENT and "restart_policy" in e.details()
          and "expected fail or resume, got 'sometimes'" in e.details(), f"{e.code()} {e.details()}")
check("fulgurd stops cleanly", d2.stop() == 0)
finish()
