"""A client of fulgurd's HTTP API made of Python's own urllib/http.client
(nothing we wrote on the other side of the wire): JSON calls and a
Server-Sent Events reader."""
import http.client
import json
import re
import time
import urllib.error
import urllib.request


def http_port(daemon, timeout=30):
    """The port fulgurd bound for --http HOST:0, from its log."""
    end = time.time() + timeout
    while time.time() < end:
        m = re.search(r"serving HTTPS? on port (\d+)", daemon.log_text())
        if m:
            return int(m.group(1))
        time.sleep(0.05)
    raise RuntimeError("fulgurd never said its HTTP port: " + daemon.log_text())


class Api:
    def __init__(self, base, token=None, context=None):
        self.base = base
        self.token = token
        self.context = context

    def request(self, method, path, body=None, headers=None, token=True, raw=None):
        """(status, parsed JSON or text, headers)."""
        h = dict(headers or {})
        if token and self.token:
            h["Authorization"] = "Bearer " + self.token
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            h["Content-Type"] = "application/json"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=h)
        try:
            with urllib.request.urlopen(req, timeout=60, context=self.context) as r:
                status, text, hdrs = r.status, r.read().decode(), r.headers
        except urllib.error.HTTPError as e:
            status, text, hdrs = e.code, e.read().decode(), e.headers
        ctype = hdrs.get("Content-Type", "")
        return status, (json.loads(text) if ctype.startswith("application/json") else text), hdrs

    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def post(self, path, body=None, **kw):
        return self.request("POST", path, body=body, **kw)

    def sse(self, path, last_event_id=None, stop_after=None, token=True):
        """Reads an event stream: ([(id, event, data dict)], comments).
        stop_after=N closes the connection after N events."""
        h = {"Accept": "text/event-stream"}
        if token and self.token:
            h["Authorization"] = "Bearer " + self.token
        if last_event_id is not None:
            h["Last-Event-ID"] = str(last_event_id)
        req = urllib.request.Request(self.base + path, headers=h)
        events, comments = [], []
        with urllib.request.urlopen(req, timeout=120, context=self.context) as r:
            assert r.headers["Content-Type"].startswith("text/event-stream"), r.headers
            cur = {}
            for line in r:
                line = line.decode().rstrip("\n")
                if line == "":
                    if "id" in cur or "data" in cur:
                        events.append((int(cur["id"]), cur.get("event"), json.loads(cur["data"])))
                        if stop_after and len(events) >= stop_after:
                            break
                    cur = {}
                elif line.startswith(":"):
                    comments.append(line[1:].strip())
                else:
                    k, _, v = line.partition(":")
                    cur[k] = v[1:] if v.startswith(" ") else v
        return events, comments
