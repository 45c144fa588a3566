"""fulgurd's HTTP API (--http), driven by Python's urllib and Debian's
Prometheus server against a real daemon running real jobs: /healthz, REST
as gRPC transcoding maps JobService (compared with the gRPC answers),
Server-Sent Events (exact resume with Last-Event-ID, 50 readers at once),
/metrics scraped by Prometheus with a bearer token, bad input, TLS."""
import atexit
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import urllib.parse
import urllib.request

from google.protobuf import json_format

from daemon_util import Daemon, pb, tiny_config, TERMINAL
from http_util import Api, http_port
from interop import check, finish

W = tempfile.mkdtemp(prefix="fgd-http-")
TOKEN = "s3cret-token"
with open(f"{W}/token", "w") as f:
    f.write(TOKEN + "\n")
d = Daemon(work=W, args=["--http", "127.0.0.1:0", "--token-file", f"{W}/token", "--max-jobs", "2",
                         "--max-request-bytes", "65536", "--metrics-retain", "4s"]).start()
port = http_port(d)


@atexit.register
def _no_daemon_left():
    """A check that raises must not leave a daemon running."""
    for x in (d, globals().get("t")):
        if isinstance(x, Daemon) and x.proc and x.proc.poll() is None:
            x.proc.kill()
            x.proc.wait()

api = Api(f"http://127.0.0.1:{port}", TOKEN)
md = [("authorization", "Bearer " + TOKEN)]


def grpc_job(job_id):
    return d.stub.GetJob(pb.GetJobRequest(id=job_id), metadata=md)


def wait_state(job_id, states, timeout=180):
    end = time.time() + timeout
    while time.time() < end:
        j = grpc_job(job_id)
        if j.state in states:
            return j
        time.sleep(0.05)
    raise RuntimeError(f"job {job_id} never reached {states}")


STATE = {v: k for k, v in pb.JobState.items()}

# ---- /healthz, tokens ----
st, body, _ = api.get("/healthz", token=False)
check("/healthz needs no token and says ok", st == 200 and body == "ok\n", f"{st} {body!r}")
st, body, hdrs = api.get("/v1/jobs", token=False)
check("a missing token is 401 with the gRPC message", st == 401 and body["code"] == 16
      and "Bearer" in body["message"] and hdrs.get("WWW-Authenticate") == "Bearer", f"{st} {body}")
st, body, _ = api.get("/v1/jobs", token=False, headers={"Authorization": "Bearer wrong"})
check("a wrong token is 401", st == 401, f"{st} {body}")
st, body, _ = api.get("/metrics", token=False)
check("/metrics needs the token too", st == 401, f"{st}")

# ---- REST: submit, get, list, compared with gRPC ----
# A memory_limit, so Job.memory_limit (field 22) is not its default: the
# JSON must carry every field of the proto, new ones included.
cfg_a = tiny_config(f"{W}/a", extra="memory_limit: 8G\n")
st, job, _ = api.post("/v1/jobs", {"stage": "FIT", "configYaml": cfg_a, "name": "rest-one",
                                   "idempotencyKey": "k1"})
check("POST /v1/jobs submits (proto3 JSON body)", st == 200 and job["state"] in ("QUEUED", "RUNNING")
      and job["name"] == "rest-one" and job["stage"] == "FIT", f"{st} {job}")
jid = job["id"]
st, again, _ = api.post("/v1/jobs", {"stage": 1, "config_yaml": cfg_a, "idempotency_key": "k1"})
check("proto field names and enum numbers are accepted; the idempotency key holds", st == 200
      and again["id"] == jid, f"{st} {again}")

events, comments = api.sse(f"/v1/jobs/{jid}/events")
seqs = [e[0] for e in events]
check("SSE: ids 1, 2, 3 ... to the end, no gaps", seqs == list(range(1, len(seqs) + 1)) and len(seqs) > 10,
      str(seqs))
check("SSE: the stream ends right after the terminal state", events[-1][1] == "state"
      and events[-1][2]["state"]["state"] == "SUCCEEDED", str(events[-1]))
check("SSE: event names are the JobEvent kinds", {"state", "step", "epoch", "log", "artifact"}
      <= {e[1] for e in events}, str({e[1] for e in events}))
check("SSE: each data is the JobEvent JSON with its seq and job id",
      all(e[2]["seq"] == str(e[0]) and e[2]["jobId"] == jid and e[1] in e[2] for e in events), str(events[:2]))
grpc_events = list(d.stub.WatchJob(pb.WatchJobRequest(id=jid), metadata=md, timeout=60))
same = len(grpc_events) == len(events)
for g, (seq, kind, data) in zip(grpc_events, events):
    same = same and g.seq == seq and g.WhichOneof("kind") == kind and g.time_ns == int(data["timeNs"])
    if kind == "step":
        same = same and dict(g.step.values) == data["step"]["values"] \
            and g.step.global_step == int(data["step"]["globalStep"])
check("SSE events are WatchJob's events, field by field", same)
check("each SSE data is python3-protobuf's proto3 JSON of the WatchJob event",
      all(data == json_format.MessageToDict(g, including_default_value_fields=True)
          for g, (_, _, data) in zip(grpc_events, events)),
      [(data, json_format.MessageToDict(g, including_default_value_fields=True))
       for g, (_, _, data) in zip(grpc_events, events)
       if data != json_format.MessageToDict(g, including_default_value_fields=True)][:1])

st, got, _ = api.get(f"/v1/jobs/{jid}")
g = grpc_job(jid)
check("GET /v1/jobs/{id} is GetJob in the proto3 JSON mapping", st == 200 and got["id"] == g.id
      and got["state"] == STATE[g.state] and got["lastSeq"] == str(g.last_seq)
      and got["createTimeNs"] == str(g.create_time_ns) and got["metrics"] == dict(g.metrics)
      and got["progress"]["globalStep"] == str(g.progress.global_step)
      and got["attempts"] == g.attempts and got["runDir"] == g.run_dir, f"{got}\n{g}")
check("GET /v1/jobs/{id} is python3-protobuf's proto3 JSON of GetJob, every field (memoryLimit too)",
      got == json_format.MessageToDict(g, including_default_value_fields=True)
      and got["memoryLimit"] == str(8 << 30),
      f"{got}\n{json_format.MessageToDict(g, including_default_value_fields=True)}")

# The CLI prints the same shape (one renderer): same keys, same values
# up to the int64 spelling.
cli = subprocess.run([os.environ["FULGUR"], "--server", "unix:" + d.sock, "--token-file", f"{W}/token",
                      "--json", "status", jid], capture_output=True, text=True)
cj = json.loads(cli.stdout) if cli.returncode == 0 else {}
check("the CLI's --json and the HTTP API print the same fields", set(cj) == set(got)
      and all(str(cj[k]) == str(got[k]) for k in ("id", "lastSeq", "createTimeNs", "state")),
      f"{cli.stderr} {sorted(set(cj) ^ set(got))}")
cli = subprocess.run([os.environ["FULGUR"], "--server", "unix:" + d.sock, "--token-file", f"{W}/token",
                      "status", jid], capture_output=True, text=True)
check("fulgur status shows the config's memory_limit", cli.returncode == 0
      and "memory:      limit 8G" in cli.stdout, cli.stdout + cli.stderr)

st, lst, _ = api.get("/v1/jobs?state=succeeded&page_size=10")
check("GET /v1/jobs?state= filters", st == 200 and [j["id"] for j in lst["jobs"]] == [jid]
      and lst["nextPageToken"] == "", f"{st} {lst}")

st, page, _ = api.get(f"/v1/jobs/{jid}/events?after_seq=3&page_size=4")
check("GET /v1/jobs/{id}/events pages like ListJobEvents", st == 200
      and [e["seq"] for e in page["events"]] == ["4", "5", "6", "7"] and page["lastSeq"] == "7"
      and page["more"] is True, f"{st} {page}")

# ---- SSE resume: Last-Event-ID misses nothing and repeats nothing ----
long_cfg = tiny_config(f"{W}/b", max_epochs=6, samples=1024)
st, jb, _ = api.post("/v1/jobs", {"stage": "FIT", "configYaml": long_cfg})
jb_id = jb["id"]
first, _ = api.sse(f"/v1/jobs/{jb_id}/events", stop_after=5)
rest, _ = api.sse(f"/v1/jobs/{jb_id}/events?after_seq=1", last_event_id=first[-1][0])
joined = [e[0] for e in first] + [e[0] for e in rest]
check("a reconnect with Last-Event-ID misses nothing and repeats nothing (Last-Event-ID wins over after_seq)",
      joined == list(range(1, len(joined) + 1)) and rest and rest[-1][1] == "state", str(joined))
part, _ = api.sse(f"/v1/jobs/{jb_id}/events?after_seq={len(joined) - 3}")
check("after_seq resumes exactly", [e[0] for e in part] == joined[-3:], str([e[0] for e in part]))

# ---- 50 concurrent SSE readers of one running job ----
st, jc, _ = api.post("/v1/jobs", {"stage": "FIT", "configYaml": tiny_config(f"{W}/c", max_epochs=4, samples=512)})
jc_id = jc["id"]
results = [None] * 50


def reader(i):
    try:
        results[i] = [e[0] for e in api.sse(f"/v1/jobs/{jc_id}/events")[0]]
    except Exception as e:  # noqa: BLE001 - reported as the check's detail
        results[i] = repr(e)


threads = [threading.Thread(target=reader, args=(i,)) for i in range(50)]
for t in threads:
    t.start()
for t in threads:
    t.join(180)
final = grpc_job(jc_id)
full = list(range(1, final.last_seq + 1))
check("50 concurrent SSE readers all finish with every event", all(r == full for r in results),
      str([r if r != full else "ok" for r in results][:5]))

# ---- pause, resume, cancel, checkpoint over REST; errors map to HTTP ----
# No epoch limit: the job must still be running when it is cancelled after the
# Prometheus scrape, and an idle machine finished 200 epochs before that.
st, jd, _ = api.post("/v1/jobs", {"stage": "FIT", "configYaml": tiny_config(f"{W}/d", max_epochs=-1, samples=2048),
                                  "name": 'odd "name"\\x'})
jd_id = jd["id"]
# Past its first steps, so /metrics and Prometheus below have its loss.
end = time.time() + 120
while grpc_job(jd_id).progress.global_step < 4 and time.time() < end:
    time.sleep(0.05)
st, body, _ = api.post(f"/v1/jobs/{jd_id}:checkpoint")
check("POST :checkpoint answers the running job", st == 200 and body["state"] == "RUNNING", f"{st} {body}")
st, body, _ = api.post(f"/v1/jobs/{jd_id}:resume")
check("resuming a running job is 409 (FAILED_PRECONDITION) with its message", st == 409
      and body["code"] == 9 and "only paused jobs can resume" in body["message"], f"{st} {body}")

# ---- /metrics, scraped by Debian's Prometheus with the bearer token ----
st, text, hdrs = api.get("/metrics")
check("/metrics is the text exposition format", st == 200
      and hdrs["Content-Type"].startswith("text/plain; version=0.0.4"), f"{st} {hdrs}")
lines = text.splitlines()
for name, typ in [("fulgur_jobs", "gauge"), ("fulgur_queue_length", "gauge"), ("fulgur_watchers", "gauge"),
                  ("fulgur_events_total", "counter"), ("fulgur_store_bytes", "gauge"),
                  ("fulgur_job_metric", "gauge"), ("fulgur_job_progress_ratio", "gauge"),
                  ("process_cpu_seconds_total", "counter"), ("process_resident_memory_bytes", "gauge")]:
    check(f"/metrics: {name} has HELP and TYPE {typ}", f"# TYPE {name} {typ}" in lines
          and any(line.startswith(f"# HELP {name} ") for line in lines))
check("/metrics: a label value is escaped", f'job_name="odd \\"name\\"\\\\x"' in text,
      [line for line in lines if jd_id in line][:2])
check("/metrics: the running job's loss", any(line.startswith(f'fulgur_job_metric{{job_id="{jd_id}"')
                                              and 'key="fit/loss"' in line for line in lines))

prom_dir = tempfile.mkdtemp(prefix="fgd-prom-", dir=W)
s = socket.socket()
s.bind(("127.0.0.1", 0))
prom_port = s.getsockname()[1]
s.close()
with open(f"{prom_dir}/prometheus.yml", "w") as f:
    f.write(f"""global:
  scrape_interval: 1s
scrape_configs:
  - job_name: fulgurd
    metrics_path: /metrics
    authorization:
      type: Bearer
      credentials_file: {W}/token
    static_configs:
      - targets: ['127.0.0.1:{port}']
""")
prom_log = open(f"{prom_dir}/log", "wb")
prom = subprocess.Popen(["prometheus", f"--config.file={prom_dir}/prometheus.yml",
                         f"--storage.tsdb.path={prom_dir}/data", f"--web.listen-address=127.0.0.1:{prom_port}"],
                        stdout=prom_log, stderr=prom_log)


def promql(q):
    url = f"http://127.0.0.1:{prom_port}/api/v1/query?" + urllib.parse.urlencode({"query": q})
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return json.load(r)["data"]["result"]
    except OSError:
        return []


jobs_res, metric_res = [], []
end = time.time() + 60
while time.time() < end and not (jobs_res and metric_res):
    time.sleep(0.5)
    jobs_res = promql('fulgur_jobs{state="SUCCEEDED"}')
    metric_res = promql(f'fulgur_job_metric{{job_id="{jd_id}",key="fit/loss"}}')
targets = promql("up")
prom.terminate()
prom.wait(30)
prom_log.close()
check("Prometheus scrapes /metrics with the bearer token (up == 1)",
      targets and targets[0]["value"][1] == "1", str(targets))
check("Prometheus sees fulgur_jobs{state=SUCCEEDED}", jobs_res and float(jobs_res[0]["value"][1]) >= 3,
      str(jobs_res))
check("Prometheus sees fulgur_job_metric of the running job's fit/loss",
      metric_res and metric_res[0]["metric"]["job_name"] == 'odd "name"\\x' and float(metric_res[0]["value"][1]) > 0,
      str(metric_res))

st, body, _ = api.post(f"/v1/jobs/{jd_id}:cancel")
check("POST :cancel answers the job", st == 200 and body["id"] == jd_id, f"{st} {body}")
wait_state(jd_id, {pb.CANCELLED})
st, body, _ = api.post(f"/v1/jobs/{jd_id}:cancel")
check("cancelling a cancelled job is 409", st == 409 and "already" in body["message"], f"{st} {body}")

# Finished jobs leave the per-job series after --metrics-retain (4s).
time.sleep(4.5)
st, text, _ = api.get("/metrics")
check("finished jobs leave /metrics after --metrics-retain", jid not in text and jd_id not in text
      and 'fulgur_jobs{state="SUCCEEDED"} 3' in text, text[:300])

# ---- bad input ----
st, body, _ = api.request("POST", "/v1/jobs", raw=b'{"stage": "FIT", "configYaml": }',
                          headers={"Content-Type": "application/json"})
check("malformed JSON is 400 with the parse error and where", st == 400 and body["code"] == 3
      and "line 1, column" in body["message"] and "JSON" in body["message"], f"{st} {body}")
st, body, _ = api.post("/v1/jobs", {"stage": "FIT", "configYaml": "x: 1", "bogus": 1})
check("an unknown field is 400 naming it", st == 400 and "'bogus'" in body["message"], f"{st} {body}")
st, body, _ = api.post("/v1/jobs", {"stage": "WARP", "configYaml": "x"})
check("an unknown enum name is 400", st == 400 and "WARP" in body["message"], f"{st} {body}")
st, body, _ = api.post("/v1/jobs", {"stage": "FIT", "configYaml": tiny_config(f"{W}/e") + "  bogus_key: 1\n"})
check("a bad config is 400 with the checker's message (file:line:col)", st == 400
      and "bogus_key" in body["message"], f"{st} {body}")
st, body, _ = api.post("/v1/jobs", {"stage": "FIT", "configYaml": tiny_config("/etc/fulgur-out")})
check("a path outside --root is 403 naming the key", st == 403 and "default_root_dir" in body["message"],
      f"{st} {body}")
st, body, _ = api.get("/v1/jobs/0123456789abcdef")
check("an unknown job is 404", st == 404 and body["code"] == 5 and "0123456789abcdef" in body["message"],
      f"{st} {body}")
st, body, _ = api.get("/v1/jobs/0123456789abcdef/events", headers={"Accept": "text/event-stream"})
check("SSE of an unknown job is 404", st == 404, f"{st} {body}")
st, body, _ = api.get(f"/v1/jobs/{jid}/events", headers={"Accept": "text/event-stream", "Last-Event-ID": "999999"})
check("SSE past the last event is 400 (OUT_OF_RANGE)", st == 400 and body["code"] == 11, f"{st} {body}")
st, body, _ = api.post("/v1/jobs", {"stage": "FIT", "configYaml": "x" * 70000})
check("an oversized body is 413", st == 413 and body["code"] == 8 and "65536" in body["message"], f"{st} {body}")
st, body, _ = api.get("/v1/jobs?page_size=lots")
check("a bad query parameter is 400", st == 400 and "page_size" in body["message"], f"{st} {body}")
st, body, _ = api.get("/v1/jobs?state=NAPPING")
check("an unknown state is 400", st == 400 and "NAPPING" in body["message"], f"{st} {body}")
st, body, _ = api.post(f"/v1/jobs/{jid}:explode")
check("an unknown verb is 404", st == 404, f"{st} {body}")
st, body, _ = api.request("DELETE", f"/v1/jobs/{jid}")
check("a method a route does not take is 501 (UNIMPLEMENTED)", st == 501, f"{st} {body}")
st, body, _ = api.get("/nowhere")
check("an unknown path is 404", st == 404, f"{st} {body}")
st, body, _ = api.get("/assets/../../etc/passwd", token=False)
check("no asset path reaches outside the embedded files", st == 404, f"{st}")
# Raw bytes a browser never sends: garbage request lines, a huge header.
for junk in [b"\x00\x01\x02 / HTTP/1.1\r\n\r\n", b"GET /v1/jobs HTTP/1.1\r\nX: " + b"a" * 100000 + b"\r\n\r\n",
             b"POST /v1/jobs HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n"]:
    c = socket.create_connection(("127.0.0.1", port))
    c.sendall(junk)
    c.settimeout(10)
    try:
        c.recv(100)
    except OSError:
        pass
    c.close()
st, body, _ = api.get("/healthz", token=False)
check("the daemon survives malformed requests", st == 200 and d.proc.poll() is None)

# ---- the dashboard's files ----
st, body, hdrs = api.get("/assets/chart.js", token=False)
check("/assets/chart.js is Debian's Chart.js", st == 200 and "Chart" in body
      and hdrs["Content-Type"].startswith("text/javascript"), f"{st}")
if not os.path.exists(os.path.join(os.environ["FG_SOURCE_DIR"], "daemon/http/assets/index.html")):
    st, body, _ = api.get("/", token=False)
    check("GET / without an embedded index.html is 404", st == 404, f"{st}")
else:
    st, body, hdrs = api.get("/", token=False)
    check("GET / is the dashboard page", st == 200 and hdrs["Content-Type"].startswith("text/html"), f"{st}")

# Shutdown ends open streams with where to resume from.
st, je, _ = api.post("/v1/jobs", {"stage": "FIT", "configYaml": tiny_config(f"{W}/f", max_epochs=200, samples=2048)})
wait_state(je["id"], {pb.RUNNING})
got = []
t = threading.Thread(target=lambda: got.append(api.sse(f"/v1/jobs/{je['id']}/events")))
t.start()
end = time.time() + 60
while grpc_job(je["id"]).progress.global_step < 2 and time.time() < end:
    time.sleep(0.05)
time.sleep(0.3)
# Submits waiting for the config checker keep the gRPC server draining
# for a while after SIGTERM: /healthz must say 503 then, not ok.
futures = [d.stub.SubmitJob.future(pb.SubmitJobRequest(stage=pb.FIT, config_yaml=tiny_config(f"{W}/g{i}")),
                                   metadata=md) for i in range(40)]
time.sleep(0.1)
d.proc.send_signal(signal.SIGTERM)
seen = []
end = time.time() + 5
while time.time() < end:
    try:
        st, body, _ = api.get("/healthz", token=False)
    except OSError as e:
        seen.append(type(e).__name__)
        break
    seen.append(st)
    if st != 200:
        break
    time.sleep(0.01)
check("/healthz is 503 once shutdown starts", 503 in seen, str(seen[-3:]))
check("fulgurd exits cleanly", d.stop() == 0, d.log_text()[-2000:])
for fu in futures:
    try:
        fu.result(timeout=30)
    except Exception:  # noqa: BLE001 - UNAVAILABLE at shutdown is the expected answer
        pass
t.join(30)
evs, comments = got[0] if got else ([], [])
check("shutdown ends an SSE stream with the seq to resume from", evs and comments
      and comments[-1] == f"fulgurd is shutting down; resume with Last-Event-ID: {evs[-1][0]}", str(comments[-2:]))

# ---- TLS with the same --tls-cert/--tls-key ----
subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=localhost",
                "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1",
                "-keyout", f"{W}/key.pem", "-out", f"{W}/cert.pem"], check=True, capture_output=True)
t = Daemon(args=["--http", "127.0.0.1:0", "--tls-cert", f"{W}/cert.pem", "--tls-key", f"{W}/key.pem"]).start(wait=False)
tport = http_port(t)
ctx = ssl.create_default_context(cafile=f"{W}/cert.pem")
tapi = Api(f"https://127.0.0.1:{tport}", context=ctx)
st, body, _ = tapi.get("/healthz")
st2, lst, _ = tapi.get("/v1/jobs")
check("HTTPS with --tls-cert/--tls-key: /healthz and REST", st == 200 and st2 == 200 and lst["jobs"] == [],
      f"{st} {st2}")
try:
    urllib.request.urlopen(f"http://127.0.0.1:{tport}/healthz", timeout=5).read()
    plain = "answered"
except Exception:  # noqa: BLE001 - any failure is the point
    plain = "refused"
check("plain HTTP is not served on the TLS port", plain == "refused")
t.wait_ready()
check("the TLS daemon exits cleanly", t.stop() == 0, t.log_text()[-2000:])

# ---- bad options ----
for args, want in [(["--http", "nowhere"], "expected HOST:PORT"), (["--http", "127.0.0.1:99999"], "0 to 65535"),
                   (["--metrics-retain", "soon"], "bad option or value")]:
    r = subprocess.run([os.path.join(os.environ["FG_BUILD_DIR"], "fulgurd"), "--state-dir", f"{W}/bad-state",
                        "--listen", f"unix:{W}/bad.sock", "--root", W] + args, capture_output=True, text=True,
                       timeout=60)
    check(f"fulgurd {' '.join(args)}: refused with a message", r.returncode != 0 and want in r.stderr,
          f"{r.returncode} {r.stderr}")

if not os.environ.get("FG_KEEP_TMP"):
    shutil.rmtree(W, ignore_errors=True)
finish()
