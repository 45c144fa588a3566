"""Resource limits on every process fulgurd starts, and a stopped worker.

- The config checker runs under an address-space limit (--check-memory-limit)
  and a per-check CPU limit (--check-cpu-seconds): a config that needs more
  memory than the limit, or a plugin that spins, is INVALID_ARGUMENT; the
  checker is restarted (under the same limits) and the daemon goes on.
- Job workers run under --job-memory-limit; a config's memory_limit lowers
  it and may not raise it (INVALID_ARGUMENT naming the key). A worker over
  its limit fails its job with "out of memory (limit N)" while another job
  runs on beside it and succeeds.
- A worker stopped with SIGSTOP does not hold a cancel up: it is killed
  after the grace period (--kill-grace-ms)."""
import os
import resource
import signal
import subprocess

import grpc

from daemon_util import (Daemon, TERMINAL, alive, checkers, code_of, pb, tiny_config, wait_for,
                         worker_pid)
from interop import SANITIZED, check, finish

JOB_LIMIT = 3 << 30
# A sanitizer's shadow memory (terabytes of address space per process)
# cannot live under an address-space limit: such a build applies none and
# says so, and the checks of what the limits do are left to the plain build.
GRACE_MS = 1500
d = Daemon(args=["--max-jobs", "2", "--check-cpu-seconds", "2", "--check-timeout-ms", "300000",
                 "--job-memory-limit", "3G", "--kill-grace-ms", str(GRACE_MS)]).start()
W = d.work


def limits(pid):
    """/proc/PID/limits as {name: (soft, hard)}."""
    out = {}
    with open(f"/proc/{pid}/limits") as f:
        next(f)
        for line in f:
            name, soft, hard = line[:26].strip(), line[26:47].strip(), line[47:68].strip()
            out[name] = (soft, hard)
    return out


def status_kb(pid, key):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    return None


def one_checker():
    c = checkers(d)
    return c[0] if len(c) == 1 else None


if SANITIZED:
    check("a sanitized fulgurd says it applies no address-space limits",
          "--job-memory-limit and --check-memory-limit are not applied" in d.log_text(), d.log_text()[-800:])

# ---- the checker's limits ----
ok_cfg = tiny_config(f"{W}/runs", max_epochs=1, samples=64)
code, _ = code_of(lambda: d.submit(ok_cfg, name="warm"))
check("a valid config is accepted", code == grpc.StatusCode.OK)
ck = wait_for(one_checker, 60)
lim = limits(ck)
if not SANITIZED:
    check("the checker's address space is limited to 4 GiB, soft and hard",
          lim["Max address space"] == (str(4 << 30), str(4 << 30)), str(lim["Max address space"]))
check("the checker writes no core files", lim["Max core file size"] == ("0", "0"), str(lim["Max core file size"]))
cpu_soft = lim["Max cpu time"][0]
check("each check has a CPU-time limit (RLIMIT_CPU soft, moved up per check)", cpu_soft.isdigit(), cpu_soft)
if not SANITIZED:
    vm_kb = status_kb(ck, "VmPeak")
    print(f"# the warm checker's address space: VmPeak {vm_kb // 1024} MiB, VmHWM {status_kb(ck, 'VmHWM') // 1024} MiB")

    # A config far inside the input limits (src/util/limits.h: 4 MiB, 1M
    # nodes) that still needs more memory than is left: the checker is given
    # only 64 MiB above what it has mapped (lowered from outside, as the
    # daemon's 4 GiB is too much to fill on a test machine).
    resource.prlimit(ck, resource.RLIMIT_AS, ((vm_kb << 10) + (64 << 20),) * 2)
    big = ok_cfg + "big: [" + "1," * 900000 + "1]\n"
    code, msg = code_of(lambda: d.submit(big))
    check("a config that blows the checker's memory limit -> INVALID_ARGUMENT",
          code == grpc.StatusCode.INVALID_ARGUMENT, f"{code} {msg}")
    check("... saying it ran out of memory", msg and "out of memory (limit" in msg, msg)
    ck2 = wait_for(lambda: one_checker() if one_checker() not in (None, ck) else None, 120)
    check("the checker is restarted", ck2 is not None and not alive(ck))
    check("... under the daemon's limits again",
          ck2 and limits(ck2)["Max address space"] == (str(4 << 30), str(4 << 30)))

# A plugin that spins while it loads: the check's CPU limit (2 s) ends it.
src = os.path.join(W, "spin.c")
with open(src, "w") as f:
    f.write("__attribute__((constructor)) static void spin(void) { for (volatile unsigned long i = 0;; i++) {} }\n")
so = os.path.join(W, "spin.so")
subprocess.run(["cc", "-shared", "-fPIC", "-o", so, src], check=True)
code, msg = code_of(lambda: d.submit(ok_cfg + f"plugins: [{so}]\n"))
check("a check that spins past its CPU limit -> INVALID_ARGUMENT", code == grpc.StatusCode.INVALID_ARGUMENT,
      f"{code} {msg}")
check("... naming the CPU limit", msg and "2 s of CPU" in msg, msg)
code, _ = code_of(lambda: d.submit(ok_cfg, name="after"))
check("the daemon goes on: the next valid config is accepted", code == grpc.StatusCode.OK)

# ---- the workers' memory limit ----
code, msg = code_of(lambda: d.submit(ok_cfg + "memory_limit: 8G\n"))
check("memory_limit above --job-memory-limit -> INVALID_ARGUMENT", code == grpc.StatusCode.INVALID_ARGUMENT,
      f"{code} {msg}")
check("... naming the key, where it is, and both values",
      msg and "memory_limit" in msg and "8G" in msg and "3G" in msg and ":" in msg.split("memory_limit")[0], msg)
code, msg = code_of(lambda: d.submit(ok_cfg + "memory_limit: lots\n"))
check("a memory_limit that is not a size -> INVALID_ARGUMENT", code == grpc.StatusCode.INVALID_ARGUMENT, msg)

if not SANITIZED:
    # Beside a job that needs more than its limit, another runs on.
    steady = d.submit(tiny_config(f"{W}/steady", max_epochs=6, samples=512) + "memory_limit: 2560M\n")
    check("a lower memory_limit is kept with the job", steady.memory_limit == 2560 << 20, str(steady.memory_limit))
    d.wait_state(steady.id, {pb.RUNNING} | TERMINAL)
    wp = wait_for(lambda: worker_pid(d, steady.id))
    check("the worker runs under the job's limit",
          wp and limits(wp)["Max address space"] == (str(2560 << 20),) * 2, str(wp and limits(wp)["Max address space"]))
    # 20 x 60M float32 weights: 4.8 GB, more than the daemon's 3G.
    hog_cfg = tiny_config(f"{W}/hog", max_epochs=1, samples=64).replace("hidden: [16]", "hidden: [60000000]")
    hog = d.submit(hog_cfg)
    hj = d.wait_state(hog.id, TERMINAL, timeout=300)
    check("a worker over its limit fails its job", hj.state == pb.FAILED, str(hj))
    check("... with 'out of memory (limit 3G)'", hj.error.startswith("out of memory (limit 3G)"), hj.error)
    sj = d.wait_state(steady.id, TERMINAL, timeout=300)
    check("the other job goes on and succeeds", sj.state == pb.SUCCEEDED, str(sj))
    msgs = [e.state.message for e in d.watch(steady.id) if e.WhichOneof("kind") == "state"]
    check("its RUNNING event names the limit", any("memory limit 2560M" in m for m in msgs), str(msgs))

# ---- a worker stopped with SIGSTOP ----
stopped = d.submit(tiny_config(f"{W}/stopped", max_epochs=1000, samples=1024))
d.wait_state(stopped.id, {pb.RUNNING})
for e in d.stub.WatchJob(pb.WatchJobRequest(id=stopped.id)):
    if e.WhichOneof("kind") == "step":
        break
sp = worker_pid(d, stopped.id)
os.kill(sp, signal.SIGSTOP)
check("the worker is stopped", wait_for(lambda: open(f"/proc/{sp}/stat").read().rsplit(")", 1)[1].split()[0] == "T", 10))
d.stub.CancelJob(pb.CancelJobRequest(id=stopped.id))
cj = d.wait_state(stopped.id, TERMINAL, timeout=120)
check("a stopped worker's cancel ends CANCELLED", cj.state == pb.CANCELLED, str(cj))
check("... killed after the grace period, as the error says",
      f"did not stop within {GRACE_MS} ms and was killed (SIGKILL)" in cj.error and cj.exit_signal == "SIGKILL",
      cj.error)
check("... and the worker is gone", wait_for(lambda: not alive(sp), 10))
code, job = code_of(lambda: d.submit(ok_cfg, name="last"))
check("the daemon goes on: a last job succeeds",
      code == grpc.StatusCode.OK and d.wait_state(job.id, TERMINAL).state == pb.SUCCEEDED)
check("fulgurd exits 0 on SIGTERM", d.stop() == 0, d.log_text()[-2000:])
finish()
