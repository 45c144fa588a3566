"""fulgurd's own memory stays bounded under watchers: 100 WatchJob streams
(python3-grpcio clients) on a job of over 10,000 events, started as it
starts (those that fall behind the daemon's cache of recent events read
from the store), and a client that opens a stream and never reads it. A watcher is a cursor with one message in flight
(daemon/watch.c), so a slow or stopped reader is served from the store
when it reads again and costs the daemon nothing meanwhile. The daemon's
peak resident memory (VmHWM) must stay under RSS_BOUND_MIB: about three
times the 19 MiB measured on a 2-core AMD EPYC VM."""
import threading

import grpc

from daemon_util import DAEMON_RSS_BOUND_MIB as RSS_BOUND_MIB, Daemon, TERMINAL, pb, pb_grpc, tiny_config
from interop import check, finish

WATCHERS = 100
d = Daemon().start()
W = d.work


def vm(key):
    with open(f"/proc/{d.proc.pid}/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) // 1024
    return None


# One step event per optimizer step: 10,240 steps (batch 1) plus epochs.
cfg = tiny_config(f"{W}/runs", max_epochs=2, samples=5120).replace("batch_size: 32", "batch_size: 1").replace(
    "log_every_n_steps: 2", "log_every_n_steps: 1")
channels = [grpc.insecure_channel("unix:" + d.sock) for _ in range(10)]
job = d.submit(cfg)
print(f"# fulgurd at start: VmRSS {vm('VmRSS')} MiB")

# The reader that stops: it opens a stream and never asks for a message.
stalled = pb_grpc.JobServiceStub(channels[0]).WatchJob(pb.WatchJobRequest(id=job.id), timeout=900)


def watch_all(k, out):
    stub = pb_grpc.JobServiceStub(channels[k % len(channels)])
    n, last, ok = 0, 0, True
    for e in stub.WatchJob(pb.WatchJobRequest(id=job.id), timeout=900):
        ok = ok and e.seq == last + 1
        last = e.seq
        n += 1
    out[k] = (n, ok)


def round_of(name):
    out = [None] * WATCHERS
    ts = [threading.Thread(target=watch_all, args=(k, out)) for k in range(WATCHERS)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(900)
    return out


live = round_of("live")
jj = d.wait_state(job.id, TERMINAL)
check("the job succeeds", jj.state == pb.SUCCEEDED, str(jj))
total = jj.last_seq
check("it wrote over 10,000 events", total > 10000, str(total))
check(f"{WATCHERS} live watchers each got every event, in order",
      all(o and o == (total, True) for o in live), str(set(live)))
hwm = vm("VmHWM")
print(f"# fulgurd's peak resident memory: VmHWM {hwm} MiB (bound {RSS_BOUND_MIB} MiB), now VmRSS {vm('VmRSS')} MiB")
if RSS_BOUND_MIB is not None:
    check(f"fulgurd's peak memory stays under {RSS_BOUND_MIB} MiB", hwm < RSS_BOUND_MIB, f"{hwm} MiB")
# The stalled reader still gets the whole stream when it reads at last.
seqs = [e.seq for e in stalled]
check("the reader that stopped gets every event once it reads again", seqs == list(range(1, total + 1)),
      f"{len(seqs)} events")
for ch in channels:
    ch.close()
check("fulgurd exits 0 on SIGTERM", d.stop() == 0, d.log_text()[-2000:])
finish()
