"""SubmitJob's warm checker: one `fulgur-worker check --serve` child answers
every check (the same process, so libtorch is loaded once), with the
messages of the one-shot `fulgur-worker check` run on the same input;
concurrent submits queue; a checker killed while idle, crashed in the
middle of a check, or hung past --check-timeout-ms costs only itself (the
request gets the status a dead one-shot checker gives, and a fresh child
answers the next); a config naming plugins retires the child, so the next
check does not see the plugin's classes; the daemon's exit ends it."""
import os
import signal
import subprocess
import time

import grpc

from daemon_util import BUILD, SOURCE, Daemon, checkers, code_of, pb, tiny_config, wait_for
from interop import check, finish

WORKER = os.path.join(BUILD, "fulgur-worker")
SO = os.path.join(BUILD, "libexample_plugin.so")
XOR = open(os.path.join(SOURCE, "examples", "plugin", "xor.yaml")).read()

d = Daemon(args=["--check-timeout-ms", "3000", "--root", BUILD, "--root", SOURCE]).start()
W = d.work


def one_checker(other_than=None):
    """The single checker (waiting for it), not other_than."""
    got = wait_for(lambda: (lambda c: c if len(c) == 1 and c[0] != other_than else None)(checkers(d)), 60)
    return got[0] if got else None


def one_shot(config, stage="fit", overrides=()):
    """What the one-shot checker prints for this config, as fulgurd ran it
    (in the jobs folder, with the daemon's roots)."""
    jobs = os.path.realpath(os.path.join(d.state, "jobs"))
    roots = [jobs, os.path.realpath(W), os.path.realpath(BUILD), os.path.realpath(SOURCE)]
    args = [WORKER, "check", "--stage", stage, "--cwd", os.path.join(jobs, "0123456789abcdef")]
    for r in roots:
        args += ["--root", r]
    for o in overrides:
        args += ["--override", o]
    p = subprocess.run(args, input=config.encode(), capture_output=True, cwd=jobs)
    return p.returncode, p.stdout.decode().rstrip("\n")


cfg = tiny_config(f"{W}/runs", max_epochs=1, samples=64)
first = one_checker()
check("fulgurd starts one warm checker", first is not None, checkers(d))

code, job = code_of(lambda: d.submit(cfg, name="a"))
check("a valid config is accepted", code == grpc.StatusCode.OK, job)
code, job = code_of(lambda: d.submit(cfg, name="b"))
check("and again", code == grpc.StatusCode.OK, job)
check("the same checker answered both (no process per submit)", checkers(d) == [first], checkers(d))

bad = cfg.replace("  num_threads: 1\n", "  num_threads: 1\n  max_epoch: 3\n")
rc, expect = one_shot(bad)
code, msg = code_of(lambda: d.submit(bad))
check("a config error is INVALID_ARGUMENT", code == grpc.StatusCode.INVALID_ARGUMENT, (code, msg))
check("with the one-shot checker's words", rc == 2 and msg == expect, (rc, expect, msg))
outside = cfg.replace(f"default_root_dir: {W}/runs", "default_root_dir: /etc/fulgur-runs")
rc, expect = one_shot(outside)
code, msg = code_of(lambda: d.submit(outside))
check("a path outside the roots is PERMISSION_DENIED with the one-shot words",
      code == grpc.StatusCode.PERMISSION_DENIED and rc == 3 and msg == expect, (code, rc, expect, msg))
rel = cfg.replace(f"default_root_dir: {W}/runs", "default_root_dir: runs")
code, job = code_of(lambda: d.submit(rel, name="rel"))
check("a relative path resolves in the job's folder (under the roots)", code == grpc.StatusCode.OK, job)

# Requests queue: eight at once, all answered, still by one child.
futs = [d.stub.SubmitJob.future(pb.SubmitJobRequest(stage=pb.FIT, config_yaml=cfg if i % 2 else bad))
        for i in range(8)]
codes = [code_of(f.result)[0] for f in futs]
check("concurrent submits are queued and each gets its own answer",
      codes == [grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OK] * 4, codes)
check("by the same checker", checkers(d) == [first], checkers(d))

# Killed while idle: a fresh one is started, and it answers.
os.kill(first, signal.SIGKILL)
second = one_checker(other_than=first)
check("a checker killed while idle is replaced", second is not None, checkers(d))
code, job = code_of(lambda: d.submit(cfg, name="after-kill"))
check("and the replacement answers", code == grpc.StatusCode.OK, job)

# Crashed in the middle of a check: stopped, asked, then SIGABRT (not
# SIGSEGV: a sanitized build's handler turns that into exit status 1).
os.kill(second, signal.SIGSTOP)
fut = d.stub.SubmitJob.future(pb.SubmitJobRequest(stage=pb.FIT, config_yaml=cfg))
time.sleep(0.5)
os.kill(second, signal.SIGABRT)
os.kill(second, signal.SIGCONT)
code, msg = code_of(fut.result)
check("a check that crashes the checker is INTERNAL, as a crashed one-shot checker",
      code == grpc.StatusCode.INTERNAL and msg == f"the config check failed (signal {int(signal.SIGABRT)})",
      (code, msg))
third = one_checker(other_than=second)
check("a fresh checker follows the crash", third is not None, checkers(d))
code, job = code_of(lambda: d.submit(cfg, name="after-crash"))
check("and answers", code == grpc.StatusCode.OK, job)

# Hung: past --check-timeout-ms it is killed; requests behind it wait for
# the next child, not for ever.
os.kill(third, signal.SIGSTOP)
hung = d.stub.SubmitJob.future(pb.SubmitJobRequest(stage=pb.FIT, config_yaml=cfg))
behind = d.stub.SubmitJob.future(pb.SubmitJobRequest(stage=pb.FIT, config_yaml=cfg, name="behind"))
code, msg = code_of(hung.result)
check("a hung check fails INTERNAL after the timeout, naming it",
      code == grpc.StatusCode.INTERNAL and msg == "the config check failed (signal 9): the check gave no answer in 3000 ms",
      (code, msg))
code, job = code_of(behind.result)
check("the request queued behind it is answered by the next checker", code == grpc.StatusCode.OK, job)
fourth = one_checker(other_than=third)
check("one checker again", fourth is not None, checkers(d))

# Plugins: checked (with the plugin) by a child that then retires, so the
# next config naming the plugin's class without the plugin is refused, as
# a fresh one-shot checker refuses it.
xor = XOR.replace("default_root_dir: runs/xor", f"default_root_dir: {W}/xor")
code, job = code_of(lambda: d.submit(xor, overrides=[f"--plugins=[{SO}]"], name="xor"))
check("a config with a plugin is accepted", code == grpc.StatusCode.OK, job)
fifth = one_checker(other_than=fourth)
check("the checker that loaded a plugin is replaced", fifth is not None, checkers(d))
rc, expect = one_shot(xor)
code, msg = code_of(lambda: d.submit(xor))
check("the plugin's classes are not seen by the next check (the one-shot words)",
      code == grpc.StatusCode.INVALID_ARGUMENT and rc == 2 and msg == expect, (code, rc, expect, msg))

check("fulgurd exits cleanly", d.stop() == 0, d.log_text())
check("and its checker with it", wait_for(lambda: not os.path.exists(f"/proc/{fifth}") or
                                          open(f"/proc/{fifth}/stat").read().split()[2] == "Z", 10),
      fifth)
check("no handle left open", "handles left open" not in d.log_text(), d.log_text())
finish()
