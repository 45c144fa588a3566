"""The dashboard at GET / (issue 15) in Debian's headless Chromium, driven
through chromedriver by Debian's python3-selenium, against a real fulgurd
serving --http with a token and running a real fit job.

What a user would see is checked in the DOM, and the curves in Chart.js's
own objects (Chart.getChart): the job's row, a chart that grows as events
arrive and holds every step event exactly once (counted against
ListJobEvents over python3-grpcio), pause / resume / cancel changing the
job's state, errors for a refused token and an unknown job, and a layout
that fits a phone. Screenshots are kept in the build tree under
test-artifacts/dashboard/ (dashboard.png, dashboard-phone.png)."""
import os
import shutil
import signal
import socket
import tempfile
import urllib.error
import urllib.request

from selenium import webdriver
from selenium.common.exceptions import NoAlertPresentException, WebDriverException
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By

from daemon_util import Daemon, all_events, pb, tiny_config, wait_for
from interop import check, finish

SOURCE = os.environ["FG_SOURCE_DIR"]
ARTIFACTS = os.path.join(os.environ["FG_BUILD_DIR"], "test-artifacts", "dashboard")
TOKEN = "dash-token-3f9a"
AUTH = [("authorization", "Bearer " + TOKEN)]


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http_get(url, headers=None):
    """(status, content type, body bytes)."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.headers.get("Content-Type", ""), e.read()
    except OSError:
        return 0, "", b""


def job(jid):
    return d.stub.GetJob(pb.GetJobRequest(id=jid), metadata=AUTH)


def stored_events(jid):
    """Every stored event of the job, and the last seq."""
    out = all_events(d, jid, metadata=AUTH)
    return out, out[-1].seq if out else 0


def step_events(jid):
    events, last = stored_events(jid)
    return [e.step for e in events if e.WhichOneof("kind") == "step"], last


def js(script):
    try:
        return drv.execute_script(script)
    except WebDriverException:
        return None


def text(css):
    els = drv.find_elements(By.CSS_SELECTOR, css)
    return els[0].text if els else None


def shown(css):
    els = drv.find_elements(By.CSS_SELECTOR, css)
    return bool(els) and els[0].is_displayed()


def alert():
    try:
        return drv.switch_to.alert
    except NoAlertPresentException:
        return None


# {label: [[x, y], ...]} of a chart's datasets, from Chart.js's own objects
# (a dataset the decimation plugin thinned keeps its points in _data).
CHART = """const c = Chart.getChart(document.getElementById(arguments[0]));
const out = {};
if (c) for (const d of c.data.datasets) out[d.label] = (d._data || d.data).map(p => [p.x, p.y]);
return out;"""


def chart(which="chart-step"):
    try:
        return drv.execute_script(CHART, which) or {}
    except WebDriverException:
        return {}


def points(which="chart-step"):
    return sum(len(v) for v in chart(which).values())


def last_step():
    return max((v[-1][0] for v in chart().values() if v), default=-1)


def exact_curves(jid, when):
    """Once the stream has everything (the job paused or ended): each
    step key's curve is exactly its stored step events, in seq order, each
    once, where an attempt restarted from a checkpoint replaces the steps
    it logs again (the page's rule, so x stays sorted)."""
    steps, last_seq = step_events(jid)
    ended = wait_for(lambda: text("#d-stream") == f"ended at #{last_seq}", 60)
    check(f"{when}: the page's stream ended at the job's last event (#{last_seq})", ended, text("#d-stream"))
    want = {}
    for s in steps:
        for k, v in s.values.items():
            pts = want.setdefault(k, [])
            while pts and pts[-1][0] >= s.global_step:
                pts.pop()
            pts.append([s.global_step, v])
    got = chart()
    n = sum(len(v) for v in want.values())
    check(f"{when}: the step chart is the stored step events, each once ({n} points)", got == want and n,
          f"chart {({k: len(v) for k, v in got.items()})} events {({k: len(v) for k, v in want.items()})}")


os.makedirs(ARTIFACTS, exist_ok=True)
work = tempfile.mkdtemp(prefix="fgd-dash-")
token_file = os.path.join(work, "token")
with open(token_file, "w") as f:
    f.write(TOKEN + "\n")
os.chmod(token_file, 0o600)
port = free_port()
base = f"http://127.0.0.1:{port}"
ARGS = ["--token-file", token_file, "--http", f"127.0.0.1:{port}", "--max-jobs", "1"]
d = Daemon(work=work, args=ARGS).start()
drv = None
try:
    check("the daemon answers /healthz over HTTP", wait_for(lambda: http_get(base + "/healthz")[0] == 200, 30))

    # ---- the page and its scripts come from fulgurd itself ----------------
    st, ctype, body = http_get(base + "/")
    with open(os.path.join(SOURCE, "daemon/http/assets/index.html"), "rb") as f:
        check("GET / serves the dashboard page", st == 200 and ctype.startswith("text/html") and body == f.read(),
              f"{st} {ctype} {body[:200]!r}")
    st, _, body = http_get(base + "/assets/app.js")
    with open(os.path.join(SOURCE, "daemon/http/assets/app.js"), "rb") as f:
        check("GET /assets/app.js serves the page's script", st == 200 and body == f.read(), f"{st}")
    st, _, body = http_get(base + "/assets/chart.js")
    check("GET /assets/chart.js serves Debian's Chart.js 3.9", st == 200 and b"Chart.js v3.9" in body[:200],
          f"{st} {body[:120]!r}")

    # ---- a fit job long enough to watch, pause and resume, then cancel ----
    root = os.path.join(work, "runs")
    cfg = tiny_config(root, max_epochs=500, samples=4096, extra="restart_policy: resume\n")
    jid = d.stub.SubmitJob(pb.SubmitJobRequest(stage=pb.FIT, config_yaml=cfg, name="dash-fit"), metadata=AUTH).id
    check("the fit job runs", wait_for(lambda: job(jid).state == pb.RUNNING, 120), str(job(jid)))

    opts = Options()
    opts.binary_location = shutil.which("chromium") or "/usr/bin/chromium"
    profile = tempfile.mkdtemp(prefix="fg-chromium-", dir=work)
    # --no-sandbox: Chromium's sandbox refuses to run as root (CI containers).
    for a in ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
              "--no-first-run", f"--user-data-dir={profile}", "--window-size=1280,1000"]:
        opts.add_argument(a)
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    drv = webdriver.Chrome(service=Service(shutil.which("chromedriver") or "/usr/bin/chromedriver"), options=opts)
    drv.set_script_timeout(10)

    # ---- no token: the page asks for one -----------------------------------
    drv.get(base + "/")
    check("without a token in the fragment the page asks for one",
          wait_for(lambda: shown("#login") and not shown("#main"), 20))

    # ---- a wrong token: a clear error, and the question again ----------------
    drv.get(base + f"/#token=wrong&job={jid}")
    err = wait_for(lambda: shown("#error") and "401" in (text("#error-text") or "") and text("#error-text"), 20)
    check("a refused token shows the server's 401 and asks again", err and shown("#login"), str(err))

    # ---- the right token, typed into the form -------------------------------
    drv.find_element(By.ID, "token-input").send_keys(TOKEN)
    drv.find_element(By.CSS_SELECTOR, "#login button[type=submit]").click()
    check("the form's token goes into the fragment, with the job",
          wait_for(lambda: js("return location.hash") == f"#token={TOKEN}&job={jid}", 10), str(js("return location.hash")))
    row = f'#jobs tr[data-job-id="{jid}"]'
    check("the job table shows the job by name",
          wait_for(lambda: text(row + " td.name") == "dash-fit", 30), str(text(row)))
    check("its row and the detail show RUNNING",
          wait_for(lambda: text(row + " td.st") == "RUNNING" and text("#d-state") == "RUNNING", 30),
          f"{text(row)} / {text('#d-state')}")
    check("the login form is gone and no error is shown", not shown("#login") and not shown("#error"),
          str(text("#error-text")))
    n1 = wait_for(lambda: points(), 60)
    check("the step chart has points", n1, str(chart()))
    n2 = wait_for(lambda: points() > n1 and points(), 60)
    check("the step chart grows as events arrive", n2, f"{n1} -> {points()}")
    size = js("const c = document.getElementById('chart-step'); return [c.clientWidth, c.clientHeight];")
    check("the step chart is drawn at a visible size", size and size[0] > 100 and size[1] > 100, str(size))
    pct = wait_for(lambda: float((text(row + " td.pct") or "0%").rstrip("%")) > 0, 60)
    check("the row shows progress above 0%", pct, str(text(row)))
    check("the row shows the latest metrics",
          wait_for(lambda: "=" in (text(row + " td.metrics") or ""), 30), str(text(row)))
    check("the event log lists the job's RUNNING state event",
          wait_for(lambda: any("RUNNING" in li.text for li in drv.find_elements(By.CSS_SELECTOR, "#log li.k-state")), 30))

    # ---- pause -------------------------------------------------------------
    drv.find_element(By.ID, "b-pause").click()
    check("Pause: the page shows PAUSED", wait_for(lambda: text("#d-state") == "PAUSED", 120), str(text("#d-state")))
    check("... as the daemon does", job(jid).state == pb.PAUSED, str(job(jid).state))
    check("... and offers Resume, not Pause",
          drv.find_element(By.ID, "b-resume").is_enabled() and not drv.find_element(By.ID, "b-pause").is_enabled())
    exact_curves(jid, "paused")
    paused_points = points()

    # ---- resume --------------------------------------------------------------
    drv.find_element(By.ID, "b-resume").click()
    check("Resume: the page shows RUNNING again",
          wait_for(lambda: text("#d-state") == "RUNNING", 120), str(text("#d-state")))
    check("... and the chart grows past the pause",
          wait_for(lambda: points() > paused_points, 120), f"{paused_points} -> {points()}")
    epochs = wait_for(lambda: points("chart-epoch"), 120)
    check("the epoch chart has points", epochs, str(chart("chart-epoch")))

    # ---- the daemon dies (kill -9) and comes back: the stream resumes ----------
    before = last_step()
    check("kill -9 of the daemon", d.stop(signal.SIGKILL) == -signal.SIGKILL)
    check("the page sees its stream drop and the server go",
          wait_for(lambda: (text("#d-stream") or "").startswith(("dropped", "reconnecting")) and shown("#error"), 30),
          f"{text('#d-stream')} / {text('#error-text')}")
    d = Daemon(work=work, args=ARGS).start()
    check("restart_policy: resume runs the job again",
          wait_for(lambda: job(jid).state == pb.RUNNING and job(jid).attempts >= 2, 120), str(job(jid)))
    check("the page's stream is live again", wait_for(lambda: text("#d-stream") == "live", 60), text("#d-stream"))
    check("... the banner is gone and the page is connected",
          wait_for(lambda: not shown("#error") and text("#conn") == "connected", 30), text("#error-text"))
    check("... and the curve runs on past the kill", wait_for(lambda: last_step() > before, 120),
          f"{before} -> {last_step()}")
    drv.save_screenshot(os.path.join(ARTIFACTS, "dashboard.png"))

    # ---- a phone -------------------------------------------------------------
    drv.set_window_size(390, 844)
    narrow = wait_for(lambda: (js("return window.innerWidth") or 9999) <= 640, 10)
    fits = wait_for(lambda: js("return document.documentElement.scrollWidth <= window.innerWidth"), 10)
    check("on a phone-sized window the page needs no sideways scrolling", narrow and fits,
          str(js("return [document.documentElement.scrollWidth, window.innerWidth]")))
    check("... the row still shows name, state and progress",
          shown(row + " td.name") and shown(row + " td.st") and shown(row + " td.pct") and not shown(row + " td.id"))
    drv.save_screenshot(os.path.join(ARTIFACTS, "dashboard-phone.png"))
    drv.set_window_size(1280, 1000)

    # ---- cancel (asks first) ---------------------------------------------------
    drv.find_element(By.ID, "b-cancel").click()
    confirm = wait_for(alert, 10)
    check("Cancel asks for confirmation", confirm)
    if confirm:
        confirm.accept()
    check("Cancel: the page shows CANCELLED",
          wait_for(lambda: text("#d-state") == "CANCELLED" and text(row + " td.st") == "CANCELLED", 120),
          str(text("#d-state")))
    check("... as the daemon does", job(jid).state == pb.CANCELLED, str(job(jid).state))
    check("... and no control is left to press",
          not any(drv.find_element(By.ID, b).is_enabled() for b in ("b-pause", "b-resume", "b-cancel")))
    exact_curves(jid, "cancelled")
    states = [e.seq for e in stored_events(jid)[0] if e.WhichOneof("kind") == "state"]
    shown_states = js("return Array.from(document.querySelectorAll('#log li.k-state'), li => Number(li.dataset.seq))")
    check(f"the event log lists every state change once, newest first ({len(states)}), among all the step lines",
          shown_states == states[::-1], f"{shown_states} vs {states}")

    # ---- an unknown job: a 404 the user can read ---------------------------------
    drv.get("about:blank")
    drv.get(base + f"/#token={TOKEN}&job=no-such-job")
    err = wait_for(lambda: shown("#error") and "404" in (text("#error-text") or "") and text("#error-text"), 20)
    check("an unknown job id shows the server's 404", err, str(text("#error-text")))
    check("... while the job table still lists the real job", wait_for(lambda: text(row + " td.name") == "dash-fit", 20))

    errors = [e["message"] for e in drv.get_log("browser") if "Uncaught" in e["message"]]
    check("no script error in the browser console", not errors, str(errors))
    print(f"# screenshots: {ARTIFACTS}/dashboard.png, dashboard-phone.png")
except Exception as e:  # a crash of the harness is a failure, with what it was
    check("the browser session ran to its end", False, repr(e))
finally:
    if drv:
        drv.quit()
    rc = d.stop()
    check("fulgurd exits cleanly", rc == 0, f"{rc}: {d.log_text()[-2000:]}")
    if not os.environ.get("FG_KEEP_TMP"):
        shutil.rmtree(work, ignore_errors=True)
finish()
