"""Hostile configs sent to fulgurd's SubmitJob are config errors: the warm
checker stops at a limit (src/util/limits.h) and the daemon answers
INVALID_ARGUMENT with the checker's file:line:col message, where a 400-byte
alias bomb used to make the checker allocate until it died (signal 6,
answered INTERNAL). The checker survives each (the same process answers
the next submit) and its peak memory stays small."""

import grpc

from daemon_util import Daemon, checkers, code_of, tiny_config, wait_for
from interop import SANITIZED, check, finish

d = Daemon().start()
W = d.work


def peak_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1])
    return None


cfg = tiny_config(f"{W}/runs", max_epochs=1, samples=64)
code, job = code_of(lambda: d.submit(cfg, name="warm"))
check("a valid config is accepted", code == grpc.StatusCode.OK, job)


def checker_pid():
    return (checkers(d) or [None])[0]


pid = wait_for(checker_pid, 60)
check("the warm checker runs", pid is not None)
before = peak_kb(pid)

letters = "abcdefghij"
bomb = "a: &a [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
    f"{l}: &{l} [{','.join(['*' + p] * 10)}]\n" for p, l in zip(letters, letters[1:]))
check("the bomb is at most 400 bytes", len(bomb) <= 400, len(bomb))
code, msg = code_of(lambda: d.submit(bomb))
check("an alias bomb is INVALID_ARGUMENT", code == grpc.StatusCode.INVALID_ARGUMENT, (code, msg))
check("naming config.yaml:line:col and the limit",
      "config.yaml:6:" in msg and "too many nodes" in msg and "(the limit is 1000000 nodes)" in msg, msg)

deep = "[" * 200000
code, msg = code_of(lambda: d.submit(deep))
check("200,000 nested brackets are INVALID_ARGUMENT", code == grpc.StatusCode.INVALID_ARGUMENT, (code, msg))
check("at the 129th level", "config.yaml:1:129: lists and mappings nested too deep" in msg, msg)

keys = "".join(f"k{i}: {i}\n" for i in range(10001))
code, msg = code_of(lambda: d.submit(keys))
check("10,001 keys are INVALID_ARGUMENT", code == grpc.StatusCode.INVALID_ARGUMENT, (code, msg))
check("at the 10,001st", "config.yaml:10001:1: too many keys in one mapping" in msg, msg)

check("the same checker answered them all", checker_pid() == pid, (pid, checker_pid()))
after = peak_kb(pid)
# The plain build checks the bound: a sanitizer's shadow memory grows with
# what the process touches (ThreadSanitizer's 5-10x of it, 600 MB
# measured here), so a sanitized build measures its runtime.
if not SANITIZED:
    check("its peak memory grew by less than 300 MB", before and after and after - before < 300 * 1024,
          (before, after))

code, job = code_of(lambda: d.submit(cfg, name="after"))
check("and a valid config is still accepted", code == grpc.StatusCode.OK, job)

check("fulgurd stops cleanly", d.stop() == 0, d.log_text()[-2000:])
finish()
