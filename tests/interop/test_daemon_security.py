"""fulgurd's guard rails, each against a real daemon driven by Debian's
python3-grpcio: the socket's mode, bearer tokens (health exempt), health
Check/Watch (also across SIGTERM), server reflection good enough for a
reflection-only client (as grpcurl is), the --root rule (outside, symlinks,
'..', the ckpt_path request field), request-size and queue limits
(including concurrent submits), malformed protobuf, bad configs, a full
state store (then the SQLite file itself), TLS on TCP, and a clean exit
status from every daemon."""
import importlib.util
import os
import re
import shutil
import signal
import socket
import sqlite3
import stat
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

import interop
from daemon_util import FULGURD, Daemon, code_of, pb, pb_grpc, tiny_config, TERMINAL
from interop import check, finish
import grpc

OK = grpc.StatusCode.OK
cleanup = []  # folders removed when every check passed


# ---- stubs for health and reflection -----------------------------------------
# daemon_util generates every proto under proto/, so proto/grpc/health/v1/
# health.proto became <stubs>/grpc/health/v1/health_pb2.py. It cannot be
# imported as grpc.health.v1.health_pb2: `grpc` is grpcio's own (regular)
# package, which wins over the stub folder's grpc/ (a namespace portion with
# no __init__.py), and grpcio has no `health` in it. So the generated files
# are loaded by path under names of their own; they register their
# descriptors (grpc/health/v1/health.proto, ...) in the default pool, where
# nothing else has them (grpcio-health-checking and grpcio-reflection, which
# would, are not installed with Debian's python3-grpcio).
STUBS = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(pb.__file__))))


def generated(name, rel):
    spec = importlib.util.spec_from_file_location(name, os.path.join(STUBS, rel))
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


health_pb2 = generated("fg_health_pb2", "grpc/health/v1/health_pb2.py")
refl_v1 = generated("fg_reflection_v1_pb2", "grpc/reflection/v1/reflection_pb2.py")
refl_v1alpha = generated("fg_reflection_v1alpha_pb2", "grpc/reflection/v1alpha/reflection_pb2.py")
HReq, HResp = health_pb2.HealthCheckRequest, health_pb2.HealthCheckResponse
SERVING, NOT_SERVING = HResp.SERVING, HResp.NOT_SERVING
REFLECTION = [(refl_v1alpha, "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo", "v1alpha"),
              (refl_v1, "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo", "v1")]


def health_check(channel, service, **kw):
    call = channel.unary_unary("/grpc.health.v1.Health/Check", request_serializer=HReq.SerializeToString,
                               response_deserializer=HResp.FromString)
    return call(HReq(service=service), timeout=10, **kw)


def raw_unary(channel, method, payload, **kw):
    """A call with the request bytes as given (no serializer)."""
    return channel.unary_unary(method)(payload, timeout=10, **kw)


def reflect(channel, mod, path, requests, **kw):
    call = channel.stream_stream(path, request_serializer=mod.ServerReflectionRequest.SerializeToString,
                                 response_deserializer=mod.ServerReflectionResponse.FromString)
    return list(call(iter(requests), timeout=10, **kw))


def job_ids(d, **kw):
    return [j.id for j in d.stub.ListJobs(pb.ListJobsRequest(page_size=1000), timeout=10, **kw).jobs]


def submit(d, config, stage=pb.FIT, **kw):
    """(code, Job or details) of a SubmitJob."""
    return code_of(lambda: d.stub.SubmitJob(pb.SubmitJobRequest(stage=stage, config_yaml=config, **kw),
                                            timeout=60))


def settle(d, jid, states, timeout=60):
    """The job once in one of states; None when it never got there."""
    try:
        return d.wait_state(jid, states, timeout=timeout)
    except RuntimeError:
        return None


def state_name(s):
    return pb.JobState.Name(s)


def quick(root):
    """A fit job of about a second."""
    return tiny_config(root, max_epochs=1, samples=64)


def long_job(root):
    return tiny_config(root, max_epochs=100000)


def position_of_value(config, key):
    """1-based line and column of `key:`'s value in config."""
    for i, line in enumerate(config.splitlines()):
        k = line.find(key + ":")
        if k >= 0:
            return i + 1, k + len(key) + 3
    raise KeyError(key)


def stop_ok(d, what):
    status = d.stop(timeout=10)
    check(f"{what}: fulgurd exits 0 on SIGTERM within 10 s", status == 0,
          f"status {status}: {d.log_text()[-1500:]}")


# ==== the main daemon ===========================================================
d = Daemon().start()
W = d.work
cleanup.append(W)
outside = tempfile.mkdtemp(prefix="fg-outside-")  # not under any --root
cleanup.append(outside)

# ---- 1. the unix socket, the state folder ----
st = os.stat(d.sock)
check("unix socket is a socket with mode 0600", stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o600,
      oct(st.st_mode))
check("state folder is not open to group or others", stat.S_IMODE(os.stat(d.state).st_mode) & 0o077 == 0,
      oct(os.stat(d.state).st_mode))

# ---- 3. health Check ----
c, r = code_of(lambda: health_check(d.channel, ""))
check('health Check("") is SERVING', c == OK and r.status == SERVING, f"{c} {r}")
c, r = code_of(lambda: health_check(d.channel, "fulgur.v1.JobService"))
check('health Check("fulgur.v1.JobService") is SERVING', c == OK and r.status == SERVING, f"{c} {r}")
c, r = code_of(lambda: health_check(d.channel, "no.such.Service"))
check("health Check of an unknown service is NOT_FOUND naming it",
      c == grpc.StatusCode.NOT_FOUND and "no.such.Service" in r, f"{c} {r}")

# ---- 5. roots ----
before = job_ids(d)
cfg = tiny_config(outside)
line, col = position_of_value(cfg, "default_root_dir")
c, r = submit(d, cfg)
check("default_root_dir outside the roots is PERMISSION_DENIED", c == grpc.StatusCode.PERMISSION_DENIED, f"{c} {r}")
check("... naming the key path and config.yaml:line:col of the value",
      isinstance(r, str) and "trainer.default_root_dir" in r and f"config.yaml:{line}:{col}" in r, str(r))
check("... and the folder", isinstance(r, str) and outside in r, str(r))

os.symlink(outside, os.path.join(W, "escape"))
c, r = submit(d, tiny_config(os.path.join(W, "escape", "runs")))
check("a symlink inside the root that points outside is refused (resolved after symlinks)",
      c == grpc.StatusCode.PERMISSION_DENIED and "trainer.default_root_dir" in r
      and os.path.realpath(outside) in r, f"{c} {r}")

c, r = submit(d, tiny_config(f"{W}/../{os.path.basename(outside)}/runs"))
check("'..' climbing out of the root is refused",
      c == grpc.StatusCode.PERMISSION_DENIED and "trainer.default_root_dir" in r, f"{c} {r}")
c, r = submit(d, tiny_config(f"{W}/not-yet/../../{os.path.basename(outside)}"))
check("'..' in a part that does not exist yet is refused",
      c == grpc.StatusCode.PERMISSION_DENIED and "trainer.default_root_dir" in r, f"{c} {r}")

c, r = submit(d, tiny_config(f"{W}/runs", extra=f"ckpt_path: {outside}/model.ckpt\n"))
check("a config's ckpt_path outside the roots is refused naming ckpt_path",
      c == grpc.StatusCode.PERMISSION_DENIED and "ckpt_path" in r, f"{c} {r}")
with open(os.path.join(outside, "model.ckpt"), "wb") as f:
    f.write(b"not a checkpoint")
c, r = submit(d, tiny_config(f"{W}/runs"), ckpt_path=os.path.join(outside, "model.ckpt"))
check("SubmitJobRequest.ckpt_path outside the roots is refused naming ckpt_path",
      c == grpc.StatusCode.PERMISSION_DENIED and "ckpt_path" in r, f"{c} {r}")
after_refusals = job_ids(d)
check("nothing is stored on refusal (ListJobs unchanged)", after_refusals == before,
      f"{len(before)} -> {len(after_refusals)}")

os.mkdir(os.path.join(W, "sub"))
c, inside = submit(d, quick(f"{W}/sub/../inside"), name="inside-root")
check("a path inside the root (even with a '..' that stays inside) is accepted",
      c == OK and inside.state in (pb.QUEUED, pb.RUNNING), f"{c} {inside}")
check("the accepted job is listed", c == OK and job_ids(d) == before + [inside.id])

# ---- 8. bad configs ----
before = job_ids(d)
c, r = submit(d, "trainer: [\n  max_epochs: 1\n")
check("YAML syntax error is INVALID_ARGUMENT with config.yaml:line:col",
      c == grpc.StatusCode.INVALID_ARGUMENT and re.search(r"config\.yaml:\d+:\d+", r) and "YAML" in r, f"{c} {r}")
cfg = tiny_config(f"{W}/runs").replace("log_every_n_steps:", "log_every_n_stepz:")
line, _ = position_of_value(cfg, "log_every_n_stepz")
c, r = submit(d, cfg)
check("an unknown key is INVALID_ARGUMENT naming the key path at its line",
      c == grpc.StatusCode.INVALID_ARGUMENT and "trainer.log_every_n_stepz" in r
      and re.search(rf"config\.yaml:{line}:\d+", r), f"{c} {r}")
check("... and suggests the known key", isinstance(r, str) and "log_every_n_steps" in r.replace("log_every_n_stepz", ""))
c, r = submit(d, tiny_config(f"{W}/runs"), stage=pb.STAGE_UNSPECIFIED)
check("stage unspecified is INVALID_ARGUMENT naming the stage", c == grpc.StatusCode.INVALID_ARGUMENT
      and "stage" in r, f"{c} {r}")
c, r = submit(d, "")
check("an empty config is INVALID_ARGUMENT", c == grpc.StatusCode.INVALID_ARGUMENT and "empty" in r, f"{c} {r}")
c, r = submit(d, "- a\n- b\n")
check("a config that is not a mapping is INVALID_ARGUMENT at config.yaml:1:1",
      c == grpc.StatusCode.INVALID_ARGUMENT and "config.yaml:1:1" in r, f"{c} {r}")
check("nothing is stored for bad configs", job_ids(d) == before)

# ---- 4. reflection ----
for mod, path, tag in REFLECTION:
    Req = mod.ServerReflectionRequest
    c, resps = code_of(lambda: reflect(d.channel, mod, path, [
        Req(list_services=""),
        Req(file_containing_symbol="fulgur.v1.JobService"),
        Req(file_containing_symbol="no.such.Symbol")]))
    check(f"reflection {tag}: one answer per request", c == OK and len(resps) == 3, f"{c} {resps}")
    if c != OK or len(resps) != 3:
        continue
    names = {s.name for s in resps[0].list_services_response.service}
    check(f"reflection {tag}: list_services has fulgur.v1.JobService and grpc.health.v1.Health",
          {"fulgur.v1.JobService", "grpc.health.v1.Health"} <= names, str(names))
    check(f"reflection {tag}: an unknown symbol is error NOT_FOUND",
          resps[2].WhichOneof("message_response") == "error_response"
          and resps[2].error_response.error_code == grpc.StatusCode.NOT_FOUND.value[0], str(resps[2]))
    files = [descriptor_pb2.FileDescriptorProto.FromString(b)
             for b in resps[1].file_descriptor_response.file_descriptor_proto]
    # A pool of our own, filled only from what the daemon sent (imports first).
    pool = descriptor_pool.DescriptorPool()
    added, pending = set(), list(files)
    while pending:
        ready = [f for f in pending if all(dep in added for dep in f.dependency)]
        if not ready:
            break
        for f in ready:
            pool.Add(f)
            added.add(f.name)
            pending.remove(f)
    check(f"reflection {tag}: file_containing_symbol gives the file with its imports",
          files and not pending and "fulgur/v1/jobs.proto" in added, f"{[f.name for f in files]} missing imports of {[f.name for f in pending]}")
    try:
        svc = pool.FindServiceByName("fulgur.v1.JobService")
        methods = [m.name for m in svc.methods]
    except KeyError as e:
        svc, methods = None, str(e)
    check(f"reflection {tag}: the service has SubmitJob .. ForkJob",
          isinstance(methods, list) and methods[0] == "SubmitJob"
          and {"GetJob", "ListJobs", "CancelJob", "WatchJob", "ListJobEvents", "CheckpointJob",
               "ForkJob"} <= set(methods), str(methods))
    if svc is None or inside is None or isinstance(inside, str):
        continue
    # A reflection-only client (as grpcurl is): message classes from the
    # reflected descriptors alone, nothing from the generated stubs.
    get = svc.FindMethodByName("GetJob")
    try:
        GetReq, JobMsg = (message_factory.GetMessageClass(get.input_type),
                          message_factory.GetMessageClass(get.output_type))
    except AttributeError:  # protobuf < 4.22
        factory = message_factory.MessageFactory(pool)
        GetReq, JobMsg = factory.GetPrototype(get.input_type), factory.GetPrototype(get.output_type)
    call = d.channel.unary_unary(f"/fulgur.v1.JobService/{get.name}", request_serializer=GetReq.SerializeToString,
                                 response_deserializer=JobMsg.FromString)
    c, job = code_of(lambda: call(GetReq(id=inside.id), timeout=10))
    states = pool.FindEnumTypeByName("fulgur.v1.JobState")
    stages = pool.FindEnumTypeByName("fulgur.v1.Stage")
    check(f"reflection {tag}: GetJob through reflected descriptors only works",
          c == OK and JobMsg.DESCRIPTOR.file.pool is pool and job.id == inside.id and job.name == "inside-root"
          and stages.values_by_number[job.stage].name == "FIT"
          and states.values_by_number[job.state].name in ("QUEUED", "RUNNING", "SUCCEEDED"), f"{c} {job}")

t0 = time.time()
c, r = code_of(lambda: raw_unary(d.channel, "/fulgur.v1.JobService/Nope", b""))
check("an unknown method is UNIMPLEMENTED at once", c == grpc.StatusCode.UNIMPLEMENTED and time.time() - t0 < 3,
      f"{c} {r} after {time.time() - t0:.1f} s")
c, r = code_of(lambda: raw_unary(d.channel, "/no.such.Service/Method", b""))
check("an unknown service is UNIMPLEMENTED", c == grpc.StatusCode.UNIMPLEMENTED, f"{c} {r}")

# ---- 7. malformed protobuf ----
before = job_ids(d)
for method in ("GetJob", "SubmitJob", "ListJobs", "CancelJob", "ListJobEvents"):
    for payload in (b"\xff\xff\xff", b"\x0a\x05ab"):  # a bad tag; a length past the end
        c, r = code_of(lambda: raw_unary(d.channel, f"/fulgur.v1.JobService/{method}", payload))
        check(f"{method} with garbage {payload!r} is INVALID_ARGUMENT",
              c == grpc.StatusCode.INVALID_ARGUMENT and "malformed" in r, f"{c} {r}")
c, r = code_of(lambda: raw_unary(d.channel, "/grpc.health.v1.Health/Check", b"\xff\xff\xff"))
check("health Check with garbage is INVALID_ARGUMENT", c == grpc.StatusCode.INVALID_ARGUMENT, f"{c} {r}")
check("the daemon still answers after garbage (ListJobs, nothing stored)",
      d.proc.poll() is None and job_ids(d) == before)

# The accepted job ends; then health Watch across SIGTERM.
j = settle(d, inside.id, TERMINAL) if not isinstance(inside, str) else None
check("the accepted job ran to SUCCEEDED", j is not None and j.state == pb.SUCCEEDED, str(j))

# ---- 3. health Watch, and what it says when the daemon stops ----
seen, ended = [], []
first = threading.Event()


def watch_health(channel):
    call = channel.unary_stream("/grpc.health.v1.Health/Watch", request_serializer=HReq.SerializeToString,
                                response_deserializer=HResp.FromString)
    try:
        for resp in call(HReq(service=""), timeout=30):
            seen.append(resp.status)
            first.set()
        ended.append(OK)
    except grpc.RpcError as e:
        ended.append(e.code())
    first.set()


watch_channel = grpc.insecure_channel("unix:" + d.sock)
th = threading.Thread(target=watch_health, args=(watch_channel,), daemon=True)
th.start()
first.wait(10)
check("health Watch(\"\") sends SERVING first", seen[:1] == [SERVING], str(seen))


def nag(proc, until):
    """SIGTERM again and again until the process has gone (an impatient
    supervisor, a second Ctrl-C): the shutdown must not be cut short."""
    while proc.poll() is None and time.time() < until:
        try:
            proc.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            break
        time.sleep(0.001)


t0 = time.time()
d.proc.send_signal(signal.SIGTERM)
th.join(10)
took = time.time() - t0
nagger = threading.Thread(target=nag, args=(d.proc, t0 + 15), daemon=True)
nagger.start()
check("on SIGTERM the Watch stream says NOT_SERVING, then ends",
      not th.is_alive() and seen[1:] == [NOT_SERVING] and ended, f"{seen} {ended}")
check("... within the shutdown grace (< 5 s)", took < 5, f"{took:.1f} s")
watch_channel.close()
nagger.join(15)
stop_ok(d, "main daemon (SIGTERM, repeated while shutting down)")

# ==== 2. a bearer token ============================================================
work = tempfile.mkdtemp(prefix="fgd-")
cleanup.append(work)
TOKEN = "s3cret-token-value"
token_file = os.path.join(work, "token")
with open(token_file, "w") as f:
    f.write(TOKEN + "\n")
os.chmod(token_file, 0o600)
d = Daemon(work=work, args=["--token-file", token_file]).start()
good = [("authorization", "Bearer " + TOKEN)]
for what, md in [("no metadata", None), ("a wrong token", [("authorization", "Bearer wrong")]),
                 ("a prefix of the token", [("authorization", "Bearer " + TOKEN[:-1])]),
                 ("the token without 'Bearer '", [("authorization", TOKEN)])]:
    c, r = code_of(lambda: d.stub.ListJobs(pb.ListJobsRequest(), timeout=10, metadata=md))
    check(f"token: ListJobs with {what} is UNAUTHENTICATED", c == grpc.StatusCode.UNAUTHENTICATED
          and "authorization" in r, f"{c} {r}")
c, r = code_of(lambda: d.stub.SubmitJob(pb.SubmitJobRequest(stage=pb.FIT, config_yaml=quick(f"{work}/r")),
                                        timeout=10))
check("token: SubmitJob without it is UNAUTHENTICATED (and stores nothing)",
      c == grpc.StatusCode.UNAUTHENTICATED and job_ids(d, metadata=good) == [], f"{c} {r}")
c, r = code_of(lambda: d.stub.ListJobs(pb.ListJobsRequest(), timeout=10, metadata=good))
check("token: ListJobs with 'Bearer <token>' works", c == OK, f"{c} {r}")
c, r = code_of(lambda: d.stub.GetJob(pb.GetJobRequest(id="nope"), timeout=10, metadata=good))
check("token: with it, GetJob of an unknown id is NOT_FOUND", c == grpc.StatusCode.NOT_FOUND, f"{c} {r}")
c, r = code_of(lambda: health_check(d.channel, ""))
check("token: health Check works without it", c == OK and r.status == SERVING, f"{c} {r}")
mod, path, _ = REFLECTION[1]
c, r = code_of(lambda: reflect(d.channel, mod, path, [mod.ServerReflectionRequest(list_services="")]))
check("token: reflection without it is UNAUTHENTICATED", c == grpc.StatusCode.UNAUTHENTICATED, f"{c} {r}")
c, r = code_of(lambda: reflect(d.channel, mod, path, [mod.ServerReflectionRequest(list_services="")],
                               metadata=good))
check("token: reflection with it works", c == OK and len(r) == 1, f"{c} {r}")
stop_ok(d, "token daemon")

# ==== 6. limits ===================================================================
d = Daemon(args=["--max-request-bytes", "65536", "--max-queue", "1", "--max-jobs", "1"]).start()
W = d.work
cleanup.append(W)
pad = lambda n: "#" + "x" * n + "\n"  # noqa: E731
c, r = submit(d, tiny_config(f"{W}/r") + pad(200_000))
check("a 200 kB SubmitJob over --max-request-bytes 65536 is RESOURCE_EXHAUSTED",
      c == grpc.StatusCode.RESOURCE_EXHAUSTED and "65536" in r, f"{c} {r}")
check("... and stores nothing", job_ids(d) == [])
c, running = submit(d, long_job(f"{W}/r") + pad(30_000))
check("a 30 kB SubmitJob under the limit is accepted", c == OK, f"{c} {running}")
j = settle(d, running.id, {pb.RUNNING}) if c == OK else None
check("... and runs", j is not None, str(j))
c, queued = submit(d, long_job(f"{W}/r"))
check("with --max-jobs 1 the second job waits (QUEUED)", c == OK and queued.state == pb.QUEUED, f"{c} {queued}")
c, r = submit(d, long_job(f"{W}/r"))
check("a third job with --max-queue 1 is RESOURCE_EXHAUSTED naming the queue",
      c == grpc.StatusCode.RESOURCE_EXHAUSTED and "queue" in r and "--max-queue" in r, f"{c} {r}")
check("... and is not stored", len(job_ids(d)) == 2)
if c != OK and not isinstance(queued, str):
    d.stub.CancelJob(pb.CancelJobRequest(id=queued.id), timeout=10)
# Room for one again: concurrent submits must not all get in (the queue is
# checked when a submit arrives, and again when its config check is done).
with ThreadPoolExecutor(4) as ex:
    burst = list(ex.map(lambda _: submit(d, long_job(f"{W}/r")), range(4)))
codes = sorted(c.name for c, _ in burst)
check("4 concurrent submits with room for 1: one accepted, three RESOURCE_EXHAUSTED",
      codes == ["OK"] + ["RESOURCE_EXHAUSTED"] * 3, str(codes))
jobs = d.stub.ListJobs(pb.ListJobsRequest(), timeout=10).jobs
check("... so at most --max-queue jobs wait", sum(j.state == pb.QUEUED for j in jobs) <= 1,
      str([state_name(j.state) for j in jobs]))
for j in jobs:
    if j.state not in TERMINAL:
        code_of(lambda: d.stub.CancelJob(pb.CancelJobRequest(id=j.id), timeout=10))
ends = [settle(d, j.id, TERMINAL, timeout=30) for j in jobs]
check("cancelled jobs end CANCELLED", all(j and j.state == pb.CANCELLED for j in ends),
      str([state_name(j.state) if j else "stuck" for j in ends]))
stop_ok(d, "limits daemon")

# ==== 9. a full state store =======================================================
# --state-max-bytes caps the SQLite file (max_page_count) as a full disk
# would (24 pages: a checked config with every default is a few pages, and
# the daemon keeps room to rewrite the largest job row). The checked config is stored re-emitted (comments dropped), so a
# comment would not fill anything: the job's name (kept in its row) does.
# A quiet long job holds the one run slot, so the others wait and the
# store fills only with what the test sends.
d = Daemon(args=["--state-max-bytes", "98304", "--max-jobs", "1"]).start()
W = d.work
cleanup.append(W)
quiet = tiny_config(f"{W}/long", max_epochs=100000, samples=500_000).replace(
    "log_every_n_steps: 2", "log_every_n_steps: 100000000")
c, hold = submit(d, quiet, name="holds-the-slot")
check("full store: a long job runs", c == OK, f"{c} {hold}")
if c == OK:
    check("... and holds the one run slot", settle(d, hold.id, {pb.RUNNING}) is not None)
    # Its start-up events (run directory, BLAS kernels, model summary) come
    # once the worker has loaded the engine: let them be stored first, so
    # the reserve the daemon keeps for state changes is not spent on them.
    last, since = -1, time.time()
    start = since
    while time.time() - since < 2 and time.time() - start < 30:
        seq = d.stub.GetJob(pb.GetJobRequest(id=hold.id), timeout=10).last_seq
        if seq != last:
            last, since = seq, time.time()
        time.sleep(0.2)
accepted, failure = [hold.id] if c == OK else [], None
for i in range(12):
    c, r = submit(d, quick(f"{W}/r{i}"), name=f"job{i}-" + "n" * 1500)
    if c != OK:
        failure = (c, r)
        break
    accepted.append(r.id)
check("full store: some submits fit, a later one fails", len(accepted) > 1 and failure,
      f"{len(accepted)} {failure}")
if failure:
    check("... with RESOURCE_EXHAUSTED saying the job could not be stored",
          failure[0] == grpc.StatusCode.RESOURCE_EXHAUSTED and ("could not be stored" in failure[1] or "state store is full" in failure[1]), str(failure))
check("... and the daemon stays up, the failed submit not listed",
      d.proc.poll() is None and job_ids(d) == accepted, d.log_text()[-1500:])
for jid in accepted:
    c, j = code_of(lambda: d.stub.GetJob(pb.GetJobRequest(id=jid), timeout=10))
    check(f"full store: GetJob of earlier job {jid} works", c == OK and j.id == jid, f"{c} {j}")
# What a user does next: cancel everything. Each cancel is a state change
# to store; whatever the daemon answers must be what it stored.
for jid in reversed(accepted):
    code_of(lambda: d.stub.CancelJob(pb.CancelJobRequest(id=jid), timeout=10))
told = {}
for jid in accepted:
    j = settle(d, jid, TERMINAL, timeout=30) or d.stub.GetJob(pb.GetJobRequest(id=jid), timeout=10)
    told[jid] = j.state
    if j.state not in TERMINAL:
        continue
    t0 = time.time()
    c, evs = code_of(lambda: list(d.stub.WatchJob(pb.WatchJobRequest(id=jid), timeout=3)))
    check(f"full store: WatchJob of {state_name(j.state)} job {jid} ends, does not hang",
          c != grpc.StatusCode.DEADLINE_EXCEEDED, f"{c} after {time.time() - t0:.1f} s; GetJob says "
          f"{state_name(j.state)}, last_seq {j.last_seq}")
stop_ok(d, "full-store daemon")

db = sqlite3.connect(os.path.join(d.state, "fulgurd.db"))
check("full store: PRAGMA integrity_check is ok", db.execute("PRAGMA integrity_check").fetchone()[0] == "ok")
rows = db.execute("SELECT rowid, id, job FROM jobs ORDER BY rowid").fetchall()
check("full store: exactly the accepted jobs are stored", [r[1] for r in rows] == accepted,
      f"{[r[1] for r in rows]} vs {accepted}")
for rowid, jid, blob in rows:
    evs = [(seq, pb.JobEvent.FromString(data))
           for seq, data in db.execute("SELECT seq, data FROM events WHERE job = ? ORDER BY seq", (rowid,))]
    seqs = [s for s, _ in evs]
    stored = pb.Job.FromString(blob)
    check(f"full store: job {jid} has events 1..N without gaps",
          seqs == list(range(1, len(seqs) + 1)) and all(e.seq == s for s, e in evs), str(seqs))
    check(f"full store: job {jid}'s row records its last stored event", stored.last_seq == len(seqs),
          f"row last_seq {stored.last_seq}, {len(seqs)} events")
    states = [e.state.state for _, e in evs if e.WhichOneof("kind") == "state"]
    check(f"full store: job {jid}'s row state has its state event stored",
          states and states[-1] == stored.state,
          f"row {state_name(stored.state)}, last stored state event "
          f"{state_name(states[-1]) if states else None}")
    check(f"full store: what GetJob told is what is stored (what a restart shows) for job {jid}",
          told.get(jid) == stored.state,
          f"GetJob said {state_name(told.get(jid, 0))}, the store has {state_name(stored.state)} "
          f"with {len(seqs)} events")
db.close()

# ==== 10. TLS ===================================================================
work = tempfile.mkdtemp(prefix="fgd-")
cleanup.append(work)
r = subprocess.run([FULGURD, "--tls-cert", "/dev/null", "--state-dir", work], capture_output=True, text=True,
                   timeout=30)
check("--tls-cert without --tls-key: exit 2 saying they go together", r.returncode == 2
      and "--tls-key" in r.stderr, f"{r.returncode} {r.stderr}")
work = tempfile.mkdtemp(prefix="fgd-")
cleanup.append(work)
cert, key = os.path.join(work, "cert.pem"), os.path.join(work, "key.pem")
r = subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=localhost",
                    "-addext", "subjectAltName=DNS:localhost", "-days", "2", "-keyout", key, "-out", cert],
                   capture_output=True, text=True, timeout=60)
check("openssl made a self-signed certificate", r.returncode == 0, r.stderr)
with socket.socket() as s:  # a free port (port 0 would not be reported back)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
# Readiness is awaited over TLS: the helper's own wait uses the unix socket,
# whose plaintext is checked below.
d = Daemon(work=work, args=["--listen", f"127.0.0.1:{port}", "--tls-cert", cert, "--tls-key", key]).start(wait=False)
with open(cert, "rb") as f:
    creds = grpc.ssl_channel_credentials(root_certificates=f.read())
tls = grpc.secure_channel(f"localhost:{port}", creds)
try:
    grpc.channel_ready_future(tls).result(timeout=60)
    ready = True
except grpc.FutureTimeoutError:
    ready = False
check("TLS: the daemon comes up on its TLS port", ready, d.log_text()[-1500:])
c, r = code_of(lambda: pb_grpc.JobServiceStub(tls).ListJobs(pb.ListJobsRequest(), timeout=10))
check("TLS: a channel trusting the certificate works (ListJobs)", c == OK, f"{c} {r}")
c, r = code_of(lambda: health_check(tls, ""))
check("TLS: health Check over TLS", c == OK and r.status == SERVING, f"{c} {r}")
plain = grpc.insecure_channel(f"127.0.0.1:{port}")
c, r = code_of(lambda: pb_grpc.JobServiceStub(plain).ListJobs(pb.ListJobsRequest(), timeout=10))
check("TLS: a plaintext channel to the TLS port is UNAVAILABLE", c == grpc.StatusCode.UNAVAILABLE, f"{c} {r}")
untrusting = grpc.secure_channel(f"localhost:{port}", grpc.ssl_channel_credentials())
c, r = code_of(lambda: pb_grpc.JobServiceStub(untrusting).ListJobs(pb.ListJobsRequest(), timeout=10))
check("TLS: a channel that does not trust the certificate is UNAVAILABLE", c == grpc.StatusCode.UNAVAILABLE,
      f"{c} {r}")
unix = grpc.insecure_channel("unix:" + d.sock)
c, r = code_of(lambda: pb_grpc.JobServiceStub(unix).ListJobs(pb.ListJobsRequest(), timeout=10))
check("TLS: the unix socket (owner only) still speaks plaintext", c == OK, f"{c} {r}")
for ch in (tls, plain, untrusting, unix):
    ch.close()
stop_ok(d, "TLS daemon")

if not interop._failures:
    for p in cleanup:
        shutil.rmtree(p, ignore_errors=True)
finish()
