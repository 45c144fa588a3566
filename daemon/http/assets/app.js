/* The fulgurd dashboard (index.html): a job table polled from
 * GET /v1/jobs, and for the selected job its curves, event log and
 * controls, fed by the job's Server-Sent Events.
 *
 * Why fetch() and not EventSource: EventSource cannot send an
 * Authorization header, and the token must not travel in the URL (servers
 * log URLs). So the stream is read with fetch() and parsed here, per the
 * WHATWG event-stream rules, and a dropped stream is resumed with
 * Last-Event-ID from the last seq seen: JobEvent seqs are 1, 2, 3 ... per
 * job with no gaps, so nothing is missed and a repeat is dropped by seq.
 *
 * JSON is the proto3 JSON mapping: int64 fields may arrive as strings,
 * enums as names (numbers are accepted too), fields at their default
 * value may be absent. */
'use strict';

(function () {
  const STATES = ['JOB_STATE_UNSPECIFIED', 'QUEUED', 'RUNNING', 'SUCCEEDED', 'FAILED', 'CANCELLED', 'PAUSED'];
  const STAGES = ['STAGE_UNSPECIFIED', 'FIT', 'VALIDATE', 'TEST', 'PREDICT'];
  const LEVELS = ['DEBUG', 'INFO', 'WARNING', 'ERROR'];
  const TERMINAL = new Set(['SUCCEEDED', 'FAILED', 'CANCELLED']);
  const POLL_MS = 2000;
  const LOG_MAX = 500;          // event-log lines kept on the page, steps and the rest each
  const TABLE_METRICS = 4;      // metrics shown in a table row (all in its tooltip)
  const PAGE_SIZE = 1000;       // ListJobs' maximum
  const MAX_PAGES = 50;
  const BACKOFF_MIN_MS = 500;
  const BACKOFF_MAX_MS = 10000;
  const COLORS = ['#2563eb', '#dc2626', '#16a34a', '#d97706', '#7c3aed', '#0891b2', '#db2777', '#65a30d',
    '#4b5563', '#ea580c'];

  const $ = (id) => document.getElementById(id);

  const app = {
    token: null,        // null: not asked yet; '' : the daemon needs none
    jobs: new Map(),    // id -> Job, in ListJobs' order
    selected: null,     // job id
    stream: null,       // the selected job's EventStream
    charts: null,       // {step, epoch} for the selected job
    pollTimer: null,
    pollGen: 0,         // bumped to retire an older poll loop
    logSteps: [],       // the event log's lines, oldest first: step events
    logStates: [],      // ... state changes
    logOthers: [],      // ... and the rest
  };

  /* ---- small helpers ---------------------------------------------------- */

  function enumName(names, v) {
    if (typeof v === 'number') return names[v] || String(v);
    return v || names[0];
  }

  function num(v) {
    const n = Number(v);
    return Number.isFinite(n) ? n : 0;
  }

  // Scalars may be "NaN" or "Infinity" in the JSON mapping; a chart point
  // of NaN is drawn as a gap, which is what a diverged loss should look like.
  function scalar(v) {
    const n = Number(v);
    return Number.isFinite(n) ? n : NaN;
  }

  function fmtNum(v) {
    const n = Number(v);
    if (!Number.isFinite(n)) return String(v);
    if (n !== 0 && (Math.abs(n) >= 1e5 || Math.abs(n) < 1e-3)) return n.toExponential(3);
    return String(Number(n.toPrecision(4)));
  }

  function fmtDuration(s) {
    if (!(s >= 0)) return '—';
    s = Math.round(s);
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    if (h) return `${h}h ${m}m`;
    if (m) return `${m}m ${sec}s`;
    return `${sec}s`;
  }

  function fmtTime(ns) {
    const ms = num(ns) / 1e6;
    return ms ? new Date(ms).toLocaleTimeString() : '';
  }

  function jobPath(id, suffix) {
    return '/v1/jobs/' + encodeURIComponent(id) + (suffix || '');
  }

  function sleep(ms, signal) {
    return new Promise((resolve) => {
      const t = setTimeout(resolve, ms);
      if (signal) signal.addEventListener('abort', () => { clearTimeout(t); resolve(); }, { once: true });
    });
  }

  function authHeaders(extra) {
    const h = Object.assign({}, extra);
    if (app.token) h['Authorization'] = 'Bearer ' + app.token;
    return h;
  }

  /* ---- errors ----------------------------------------------------------- */

  // source names who showed the message, so that the poll, once the server
  // answers again, takes back its own "unreachable" and nothing else.
  function showError(msg, source) {
    $('error-text').textContent = msg;
    $('error').hidden = false;
    $('error').dataset.source = source || '';
  }

  function clearError(source) {
    if (source && $('error').dataset.source !== source) return;
    $('error').hidden = true;
    $('error-text').textContent = '';
  }

  function setConn(text, ok) {
    const el = $('conn');
    el.textContent = text;
    el.classList.toggle('ok', !!ok);
    el.classList.toggle('bad', !ok);
  }

  /* ---- REST --------------------------------------------------------------- */

  // Resolves to the decoded JSON body; rejects with an Error whose message
  // says which request failed and carries the server's {code, message}.
  async function api(method, path, body) {
    const init = { method, headers: authHeaders({ Accept: 'application/json' }), cache: 'no-store' };
    if (body !== undefined) {
      init.headers['Content-Type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res;
    try {
      res = await fetch(path, init);
    } catch (e) {
      throw Object.assign(new Error(`${method} ${path}: the server is unreachable (${e.message})`), { status: 0 });
    }
    const text = await res.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (e) {
        if (res.ok) throw new Error(`${method} ${path}: the reply is not JSON (${e.message})`);
      }
    }
    if (!res.ok) {
      const what = data && data.message ? data.message : text.trim() || res.statusText;
      const code = data && data.code !== undefined ? `${data.code}: ` : '';
      throw Object.assign(new Error(`${method} ${path}: ${res.status} ${code}${what}`), { status: res.status });
    }
    return data || {};
  }

  /* ---- the job table ---------------------------------------------------- */

  async function listJobs() {
    const out = [];
    let token = '';
    for (let page = 0; page < MAX_PAGES; page++) {
      const q = new URLSearchParams({ page_size: String(PAGE_SIZE) });
      if (token) q.set('page_token', token);
      const r = await api('GET', '/v1/jobs?' + q);
      out.push(...(r.jobs || []));
      token = r.nextPageToken || '';
      if (!token) break;
    }
    return out;
  }

  function jobState(j) { return enumName(STATES, j.state); }

  function jobPercent(j) {
    if (jobState(j) === 'SUCCEEDED') return 100;
    // -1 while unknown (Progress.percent); the bar never runs backwards past 0.
    return j.progress ? Math.min(100, Math.max(0, num(j.progress.percent))) : 0;
  }

  function jobEta(j) {
    if (jobState(j) !== 'RUNNING' || !j.progress || j.progress.etaSeconds === undefined) return '—';
    return fmtDuration(Number(j.progress.etaSeconds));
  }

  function metricsText(j, limit) {
    const keys = Object.keys(j.metrics || {}).sort();
    const shown = limit ? keys.slice(0, limit) : keys;
    const parts = shown.map((k) => `${k}=${fmtNum(j.metrics[k])}`);
    if (limit && keys.length > limit) parts.push(`+${keys.length - limit}`);
    return parts.join('  ');
  }

  function stateBadge(el, state) {
    el.textContent = state;
    el.className = 'state s-' + state.toLowerCase();
  }

  function renderTable() {
    const tbody = document.querySelector('#jobs tbody');
    const rows = new Map();
    for (const tr of tbody.rows) rows.set(tr.dataset.jobId, tr);
    // Newest first: the job one just submitted is at the top.
    const jobs = Array.from(app.jobs.values()).reverse();
    let before = tbody.firstChild;
    for (const j of jobs) {
      let tr = rows.get(j.id);
      if (!tr) {
        tr = document.createElement('tr');
        tr.dataset.jobId = j.id;
        tr.tabIndex = 0;
        for (const cls of ['name', 'id opt', 'stage opt', 'st', 'pct', 'eta', 'metrics opt']) {
          const td = document.createElement('td');
          td.className = cls;
          tr.appendChild(td);
        }
        tr.cells[3].appendChild(document.createElement('span'));
        tr.addEventListener('click', () => select(j.id));
        tr.addEventListener('keydown', (e) => { if (e.key === 'Enter') select(j.id); });
      }
      rows.delete(j.id);
      const state = jobState(j);
      tr.cells[0].textContent = j.name || '(unnamed)';
      tr.cells[1].textContent = j.id;
      tr.cells[2].textContent = enumName(STAGES, j.stage);
      stateBadge(tr.cells[3].firstChild, state);
      tr.cells[4].textContent = jobPercent(j).toFixed(1) + '%';
      tr.cells[5].textContent = jobEta(j);
      tr.cells[6].textContent = metricsText(j, TABLE_METRICS);
      tr.cells[6].title = metricsText(j, 0);
      tr.classList.toggle('selected', j.id === app.selected);
      if (tr !== before) tbody.insertBefore(tr, before);
      before = tr.nextSibling;
    }
    for (const tr of rows.values()) tr.remove();
    $('jobs-empty').hidden = app.jobs.size > 0;
  }

  // Step events can come by the thousand (a replay): draw once per frame.
  let renderPending = false;
  function scheduleRender() {
    if (renderPending) return;
    renderPending = true;
    requestAnimationFrame(() => {
      renderPending = false;
      renderTable();
      renderDetail();
    });
  }

  // A Job fetched before the selected job's latest event (a poll in flight
  // while the stream brought CANCELLED) must not turn its state back.
  function keepFresherState(j) {
    const cur = app.jobs.get(j.id);
    if (cur && app.stream && j.id === app.selected && num(j.lastSeq) < app.stream.lastSeq) {
      j.state = cur.state;
      j.error = cur.error;
    }
    return j;
  }

  function upsertJob(j) {
    if (!j || !j.id) return;
    app.jobs.set(j.id, keepFresherState(j));
    renderTable();
    if (j.id === app.selected) renderDetail();
  }

  async function poll(gen) {
    if (gen !== app.pollGen) return;
    try {
      const jobs = await listJobs();
      if (gen !== app.pollGen) return;
      const next = new Map();
      for (const j of jobs) next.set(j.id, keepFresherState(j));
      // A job the list no longer has (retention) but the user looks at stays.
      if (app.selected && !next.has(app.selected) && app.jobs.has(app.selected))
        next.set(app.selected, app.jobs.get(app.selected));
      app.jobs = next;
      setConn('connected', true);
      clearError('poll');
      renderTable();
      if (app.selected) {
        renderDetail();
        reviveStream();
      }
    } catch (e) {
      if (gen !== app.pollGen) return;
      setConn('not connected', false);
      if (e.status === 401) {
        askToken(`the token was refused: ${e.message}`);
        return;
      }
      showError(e.message, 'poll');
    }
    app.pollTimer = setTimeout(() => poll(gen), POLL_MS);
  }

  function startPolling() {
    clearTimeout(app.pollTimer);
    app.pollGen++;
    poll(app.pollGen);
  }

  /* ---- the selected job ------------------------------------------------- */

  function makeChart(canvas, xTitle, pointRadius) {
    const old = Chart.getChart(canvas);
    if (old) old.destroy();
    const chart = new Chart(canvas, {
      type: 'line',
      data: { datasets: [] },
      options: {
        animation: false,
        parsing: false,     // points are {x, y} already
        normalized: true,   // ... and sorted by x (addPoint keeps them so)
        responsive: true,
        maintainAspectRatio: false,
        interaction: { mode: 'nearest', axis: 'x', intersect: false },
        elements: { point: { radius: pointRadius }, line: { borderWidth: 1.5 } },
        scales: {
          x: { type: 'linear', title: { display: true, text: xTitle }, ticks: { precision: 0 } },
          y: { type: 'linear' },
        },
        plugins: {
          legend: { position: 'bottom', labels: { boxWidth: 12 } },
          // Long runs log tens of thousands of steps; draw at most a few
          // points per pixel column, keeping each column's extremes.
          decimation: { enabled: true, algorithm: 'min-max' },
        },
      },
    });
    chart.$byKey = new Map();
    chart.$dirty = false;
    return chart;
  }

  function addPoint(chart, key, x, y) {
    // Our own reference to a curve's points: once the decimation plugin
    // thins a dataset, dataset.data reads its thinned copy (the original
    // moves to dataset._data), and a point pushed there would be lost.
    let pts = chart.$byKey.get(key);
    if (!pts) {
      const color = COLORS[chart.data.datasets.length % COLORS.length];
      pts = [];
      chart.data.datasets.push({ label: key, data: pts, borderColor: color, backgroundColor: color });
      chart.$byKey.set(key, pts);
    }
    // A retried attempt restarts from its checkpoint and logs those steps
    // again: its points replace the old attempt's tail, so x stays sorted.
    while (pts.length && pts[pts.length - 1].x >= x) pts.pop();
    pts.push({ x, y });
    if (!chart.$dirty) {
      chart.$dirty = true;
      requestAnimationFrame(() => { chart.$dirty = false; chart.update('none'); });
    }
  }

  function eventKind(ev, name) {
    for (const k of ['state', 'step', 'epoch', 'log', 'artifact'])
      if (ev[k] !== undefined) return k;
    return name || 'message';
  }

  function eventText(kind, ev) {
    const sc = (s) => Object.keys(s.values || {}).sort().map((k) => `${k}=${fmtNum(s.values[k])}`).join(' ');
    switch (kind) {
      case 'state': return `${enumName(STATES, ev.state.state)}${ev.state.message ? ' — ' + ev.state.message : ''}`;
      case 'step': return `step ${num(ev.step.globalStep)}${ev.step.split ? ' ' + ev.step.split : ''}: ${sc(ev.step)}`;
      case 'epoch': return `epoch ${num(ev.epoch.epoch)}${ev.epoch.split ? ' ' + ev.epoch.split : ''}: ${sc(ev.epoch)}`;
      case 'log': return `${enumName(LEVELS, ev.log.level)} ${ev.log.text || ''}`;
      case 'artifact': return `${ev.artifact.kind || 'artifact'} ${ev.artifact.path || ''}`;
      default: return JSON.stringify(ev);
    }
  }

  function appendLog(kind, ev) {
    const li = document.createElement('li');
    li.className = 'k-' + kind;
    li.dataset.seq = String(num(ev.seq));
    const meta = document.createElement('span');
    meta.className = 'meta';
    meta.textContent = `#${num(ev.seq)} ${fmtTime(ev.timeNs)} ${kind}`;
    const text = document.createElement('span');
    text.className = 'text';
    text.textContent = eventText(kind, ev);
    li.append(meta, text);
    if (kind === 'step') li.hidden = !$('show-steps').checked;
    const log = $('log');
    log.insertBefore(li, log.firstChild);   // newest first: no scrolling on a phone
    // Step lines have their own budget: thousands of them (hidden by
    // default) must not push the state changes and logs off the page; and
    // state changes have theirs: a long run's epoch and checkpoint lines
    // must not push its first QUEUED and RUNNING off.
    const kept = kind === 'step' ? app.logSteps : kind === 'state' ? app.logStates : app.logOthers;
    kept.push(li);
    if (kept.length > LOG_MAX) kept.shift().remove();
  }

  function onEvent(jobId, kind, ev) {
    if (jobId !== app.selected) return;
    appendLog(kind, ev);
    const j = app.jobs.get(jobId);
    if (kind === 'step' || kind === 'epoch') {
      const s = ev[kind];
      const chart = kind === 'step' ? app.charts.step : app.charts.epoch;
      const x = kind === 'step' ? num(s.globalStep) : num(s.epoch);
      for (const [k, v] of Object.entries(s.values || {})) {
        addPoint(chart, k, x, scalar(v));
        if (j) (j.metrics = j.metrics || {})[k] = v;
      }
      if (j) scheduleRender();
    } else if (kind === 'state' && j && num(ev.seq) >= num(j.lastSeq)) {
      // A live change (a replayed old state would only flicker past).
      j.state = enumName(STATES, ev.state.state);
      j.lastSeq = ev.seq;
      if (j.state === 'FAILED' || j.state === 'CANCELLED') j.error = ev.state.message || j.error;
      renderTable();
      renderDetail();
      // The rest (error, progress, end time) comes with the job itself.
      api('GET', jobPath(jobId)).then(upsertJob, (e) => showError(e.message));
    }
  }

  function renderDetail() {
    const j = app.jobs.get(app.selected);
    $('detail').hidden = !j;
    if (!j) return;
    const state = jobState(j);
    $('d-name').textContent = j.name || j.id;
    stateBadge($('d-state'), state);
    const pct = jobPercent(j);
    $('d-bar').style.width = pct + '%';
    const p = j.progress || {};
    const parts = [enumName(STAGES, j.stage), `${pct.toFixed(1)}%`];
    const maxEpochs = num(p.maxEpochs);
    // 1-based, as `fulgur status` prints it (Progress.epoch counts from 0).
    parts.push(`epoch ${num(p.epoch) + 1}${maxEpochs > 0 ? '/' + maxEpochs : ''}`);
    parts.push(`step ${num(p.globalStep)}${num(p.totalSteps) > 0 ? '/' + num(p.totalSteps) : ''}`);
    if (state === 'RUNNING') parts.push('ETA ' + jobEta(j));
    parts.push('id ' + j.id);
    $('d-summary').textContent = parts.join(' · ');
    $('d-metrics').textContent = metricsText(j, 0);
    $('d-error').hidden = !j.error;
    $('d-error').textContent = j.error || '';
    $('b-pause').disabled = !(state === 'RUNNING' || state === 'QUEUED');
    $('b-resume').disabled = state !== 'PAUSED';
    $('b-cancel').disabled = TERMINAL.has(state);
    document.title = `${j.name || j.id} · ${state} · fulgur`;
  }

  async function control(verb) {
    const id = app.selected;
    if (!id) return;
    if (verb === 'cancel' && !confirm(`Cancel job ${app.jobs.get(id)?.name || id}?`)) return;
    for (const b of document.querySelectorAll('.actions button')) b.disabled = true;
    try {
      upsertJob(await api('POST', jobPath(id, ':' + verb), {}));
      clearError();
      reviveStream();
    } catch (e) {
      showError(e.message);
      renderDetail();
    }
  }

  /* ---- Server-Sent Events ----------------------------------------------- */

  class EventStream {
    constructor(jobId, handler, status) {
      this.jobId = jobId;
      this.handler = handler;   // (kind, JobEvent) for each new event
      this.status = status;     // (text) for the stream's state
      this.lastSeq = 0;
      this.final = false;       // the job's final event (terminal or paused) arrived
      this.done = false;        // the loop has returned
      this.abort = new AbortController();
    }

    stop() {
      this.abort.abort();
    }

    // Resumes after the stream ended on a pause once the job runs again.
    revive() {
      if (!this.done || this.abort.signal.aborted) return;
      this.final = false;
      this.done = false;
      this.run();
    }

    async run() {
      let backoff = BACKOFF_MIN_MS;
      const signal = this.abort.signal;
      while (!signal.aborted) {
        try {
          const headers = authHeaders({ Accept: 'text/event-stream' });
          if (this.lastSeq > 0) headers['Last-Event-ID'] = String(this.lastSeq);
          this.status(this.lastSeq ? `reconnecting after #${this.lastSeq}` : 'connecting');
          const res = await fetch(jobPath(this.jobId, '/events?after_seq=' + this.lastSeq),
            { headers, signal, cache: 'no-store' });
          if (!res.ok) {
            const text = await res.text();
            let msg = text.trim() || res.statusText;
            try { msg = JSON.parse(text).message || msg; } catch (e) { /* not JSON: keep the text */ }
            const err = new Error(`events of ${this.jobId}: ${res.status} ${msg}`);
            // A refusal (bad token, unknown job) will not mend by retrying.
            if (res.status >= 400 && res.status < 500 && res.status !== 408 && res.status !== 429) {
              this.status('stopped');
              showError(err.message);
              if (res.status === 401) askToken(err.message);
              break;
            }
            throw err;
          }
          const type = res.headers.get('Content-Type') || '';
          if (!type.startsWith('text/event-stream')) {
            this.status('stopped');
            showError(`events of ${this.jobId}: expected text/event-stream, got '${type}'`);
            break;
          }
          this.status('live');
          await this.read(res.body);
          if (!this.final && !signal.aborted) {
            // Ended without the job's final event: a drop, or the job was
            // over already (a stream reopened after its last event).
            const j = await api('GET', jobPath(this.jobId)).catch(() => null);
            const st = j && jobState(j);
            if (j && num(j.lastSeq) <= this.lastSeq && (TERMINAL.has(st) || st === 'PAUSED')) this.final = true;
          }
          if (this.final) {
            this.status(`ended at #${this.lastSeq}`);
            break;
          }
          backoff = BACKOFF_MIN_MS;   // it had been up: retry soon
          this.status(`dropped after #${this.lastSeq}`);
        } catch (e) {
          if (signal.aborted) break;
          this.status(`dropped after #${this.lastSeq}: ${e.message}`);
        }
        await sleep(backoff, signal);
        backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
      }
      this.done = true;
    }

    // Parses the event stream until the body ends (WHATWG HTML, "event
    // stream interpretation": lines end with LF or CRLF, ':' starts a
    // comment such as a heartbeat, a blank line dispatches).
    async read(body) {
      const reader = body.getReader();
      const decoder = new TextDecoder();
      let buf = '';
      let ev = { id: '', event: '', data: [] };
      try {
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += decoder.decode(value, { stream: true });
          let start = 0, nl;
          while ((nl = buf.indexOf('\n', start)) >= 0) {
            let line = buf.slice(start, nl);
            start = nl + 1;
            if (line.endsWith('\r')) line = line.slice(0, -1);
            if (line === '') {
              this.dispatch(ev);
              ev = { id: '', event: '', data: [] };
              continue;
            }
            if (line[0] === ':') continue;
            const c = line.indexOf(':');
            const field = c < 0 ? line : line.slice(0, c);
            let val = c < 0 ? '' : line.slice(c + 1);
            if (val[0] === ' ') val = val.slice(1);
            if (field === 'data') ev.data.push(val);
            else if (field === 'event') ev.event = val;
            else if (field === 'id') ev.id = val;
          }
          buf = buf.slice(start);
        }
      } finally {
        reader.releaseLock();
      }
    }

    dispatch(raw) {
      if (!raw.data.length) return;
      let ev;
      try {
        ev = JSON.parse(raw.data.join('\n'));
      } catch (e) {
        showError(`events of ${this.jobId}: event ${raw.id || '?'} is not JSON (${e.message})`);
        return;
      }
      const seq = num(ev.seq) || num(raw.id);
      if (seq && seq <= this.lastSeq) return;   // already shown
      if (seq) this.lastSeq = seq;
      const kind = eventKind(ev, raw.event);
      if (kind === 'state') {
        const st = enumName(STATES, ev.state.state);
        this.final = TERMINAL.has(st) || st === 'PAUSED';
      }
      this.handler(kind, ev);
    }
  }

  // Only once the job runs again and has events the stream has not seen:
  // a stream reopened on a job that is over would end at once, again and again.
  function reviveStream() {
    const j = app.jobs.get(app.selected);
    if (!j || !app.stream) return;
    const st = jobState(j);
    if (!TERMINAL.has(st) && st !== 'PAUSED' && num(j.lastSeq) > app.stream.lastSeq) app.stream.revive();
  }

  async function select(id) {
    if (app.stream) app.stream.stop();
    app.stream = null;
    app.selected = id;
    writeFragment();
    $('log').replaceChildren();
    app.logSteps = [];
    app.logStates = [];
    app.logOthers = [];
    renderTable();
    if (!id) {
      $('detail').hidden = true;
      return;
    }
    app.charts = app.charts || {};
    app.charts.step = makeChart($('chart-step'), 'step', 0);
    app.charts.epoch = makeChart($('chart-epoch'), 'epoch', 3);
    try {
      upsertJob(await api('GET', jobPath(id)));
    } catch (e) {
      showError(`job ${id}: ${e.message}`);
      if (e.status === 401) askToken(e.message);
      return;
    }
    if (app.selected !== id) return;
    const s = new EventStream(id, (kind, ev) => onEvent(id, kind, ev), (t) => {
      if (app.stream === s) $('d-stream').textContent = t;
    });
    app.stream = s;
    s.run();
    renderDetail();
  }

  /* ---- the fragment, the token and start-up ------------------------------ */

  function readFragment() {
    const p = new URLSearchParams(location.hash.slice(1));
    return { token: p.has('token') ? p.get('token') : null, job: p.get('job') || null };
  }

  // The fragment keeps the token and the job, so a reload or a bookmark
  // comes back to the same view; it never reaches the server.
  function writeFragment() {
    const p = new URLSearchParams();
    if (app.token !== null) p.set('token', app.token);
    if (app.selected) p.set('job', app.selected);
    history.replaceState(null, '', '#' + p.toString());
  }

  function askToken(why) {
    clearTimeout(app.pollTimer);
    app.pollGen++;
    if (app.stream) app.stream.stop();
    app.stream = null;   // start() opens a new one with the new token
    if (why) showError(why);
    $('login').hidden = false;
    $('token-input').value = '';
    $('token-input').focus();
  }

  function start() {
    const f = readFragment();
    app.token = f.token;
    if (app.token === null) {
      $('main').hidden = true;
      askToken();
      return;
    }
    $('login').hidden = true;
    $('main').hidden = false;
    startPolling();
    if (f.job !== app.selected || !app.stream) select(f.job);
  }

  function init() {
    $('error-close').addEventListener('click', () => clearError());
    $('login').addEventListener('submit', (e) => {
      e.preventDefault();
      clearError();
      app.token = $('token-input').value.trim();
      writeFragment();
      start();
    });
    $('b-pause').addEventListener('click', () => control('pause'));
    $('b-resume').addEventListener('click', () => control('resume'));
    $('b-cancel').addEventListener('click', () => control('cancel'));
    $('show-steps').addEventListener('change', () => {
      for (const li of document.querySelectorAll('#log li.k-step')) li.hidden = !$('show-steps').checked;
    });
    window.addEventListener('hashchange', start);
    if (typeof Chart === 'undefined') {
      showError('Chart.js did not load from /assets/chart.js: curves cannot be drawn');
      return;
    }
    start();
  }

  init();
})();
