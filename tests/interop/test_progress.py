"""Progress is computed once, by the engine's event bus, and only shown
elsewhere. `fulgur fit` on a terminal (a pty here) draws every bar frame
from the PROGRESS events: each frame's step, total and percent agree
(percent = 100 * step / total), the last one is the whole run. Through
fulgurd, the job's GetJob progress holds what the worker forwarded (total
steps = max_epochs x batches, 100% at the end), `fulgur status` prints
those numbers, and `fulgur submit --watch` on a terminal draws them with
the same renderer."""
import os
import pty
import re
import select
import subprocess
import time

from daemon_util import Daemon, pb, tiny_config, TERMINAL
from interop import FULGUR, check, finish

# Epoch 2/2  step 16/16 [========================] 100.0%  ETA 00:00  123.4 it/s  fit/loss 0.1
FRAME = re.compile(r"Epoch (\d+)/(\d+)  step (\d+)/(\d+) \[([=> ]{24})\] +([\d.]+)%  ETA (--:--|\d\d:\d\d)")


def run_in_pty(args, env=None, timeout=300):
    """A command's terminal output (stdout and stderr on one pty)."""
    pid, fd = pty.fork()
    if pid == 0:
        os.execvpe(args[0], args, env or os.environ)
    out, end = b"", time.time() + timeout
    while time.time() < end:
        r, _, _ = select.select([fd], [], [], 1)
        if r:
            try:
                chunk = os.read(fd, 65536)
            except OSError:
                break
            if not chunk:
                break
            out += chunk
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status), out.decode(errors="replace")


def frames(text):
    return [m for part in re.split(r"[\r\n]", text) for m in [FRAME.search(part)] if m]


d = Daemon().start()
W = d.work
# 2 epochs x 8 batches of 32; the bar is on (the config says so, the pty is a terminal).
cfg = tiny_config(f"{W}/runs", max_epochs=2, samples=256).replace("enable_progress_bar: false",
                                                                  "enable_progress_bar: true")
path = os.path.join(W, "tiny.yaml")
with open(path, "w") as f:
    f.write(cfg)

# ---- a local run: the bar is the events' progress ----
code, out = run_in_pty([FULGUR, "fit", "--config", path])
fr = frames(out)
check("fulgur fit on a terminal succeeds and draws fit frames", code == 0 and len(fr) > 0, out[-2000:])
consistent = all(int(m[4]) == 16 and int(m[2]) == 2 and abs(float(m[6]) - 100 * int(m[3]) / 16) < 0.051
                 for m in fr)
check("every local frame: total 16 = 2 epochs x 8 batches, percent = 100 x step / 16", consistent,
      str([m.group(0) for m in fr][:10]))
steps = [int(m[3]) for m in fr]
check("local steps only go forward, the last frame is the whole run (16/16, 100.0%)",
      steps == sorted(steps) and fr and fr[-1][3] == "16" and fr[-1][6] == "100.0",
      str([m.group(0) for m in fr][-3:]))
epochs = {(int(m[1]), int(m[3])) for m in fr}
check("the epoch shown is the step's epoch (steps 1..8 in 1, 9..16 in 2)",
      all(e == (s - 1) // 8 + 1 for e, s in epochs), str(sorted(epochs)))

# ---- through fulgurd: the same numbers, forwarded ----
env = dict(os.environ, FULGUR_SERVER="unix:" + d.sock)
code, out = run_in_pty([FULGUR, "submit", "fit", "--config", path, "--watch"], env=env)
check("submit --watch on a terminal succeeds", code == 0, out[-2000:])
job_id = re.search(r"job ([0-9a-f]{16})", out)
check("submit --watch names the job", job_id is not None, out[-2000:])
if job_id:
    j = d.stub.GetJob(pb.GetJobRequest(id=job_id[1]))
    p = j.progress
    check("GetJob: the engine's total (16 steps) and 100% at the end",
          j.state == pb.SUCCEEDED and p.total_steps == 16 and p.percent == 100.0 and p.global_step == 16, str(j))
    rf = frames(out)
    check("every remote frame shows the engine's total and a percent it forwarded",
          all(int(m[4]) == 16 and int(m[2]) == 2 and 0 <= float(m[6]) <= 100 for m in rf),
          str([m.group(0) for m in rf][:10]))
    pct = [float(m[6]) for m in rf]
    check("remote percent never goes back", pct == sorted(pct), str(pct))
    st = subprocess.run([FULGUR, "status", job_id[1]], env=env, capture_output=True, text=True)
    check("fulgur status prints the job's progress as GetJob holds it",
          st.returncode == 0 and "step 16/16 (100.0%)" in st.stdout and "epoch 2/2" in st.stdout, st.stdout)
check("fulgurd stops cleanly", d.stop() == 0)
finish()
