#!/usr/bin/env bash
# usage: run.sh BUILD_DIR — the daemon_load benchmark (see ../README.md):
# a real fulgurd and the bare gRPC echo server (echo.c) on unix sockets in
# a temporary folder, loaded by the same client.
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
build=$1
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
pid=
epid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; [ -n "$epid" ] && kill $epid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
"$build/fulgurd" --state-dir "$work/state" --listen "unix:$work/d.sock" --root "$work" \
  --root "$here" 2>"$work/fulgurd.log" &
pid=$!
"$build/bench_echo_server" --listen "unix:$work/echo.sock" 2>"$work/echo.log" &
epid=$!
for _ in $(seq 100); do [ -S "$work/d.sock" ] && [ -S "$work/echo.sock" ] && break; sleep 0.1; done
sed "s|^trainer:|trainer:\n  default_root_dir: $work/runs|" "$here/job.yaml" >"$work/job.yaml"
"$build/bench_daemon_load" --server "unix:$work/d.sock" --config "$work/job.yaml" \
  --echo "unix:$work/echo.sock" --daemon-pid "$pid" --seconds "${SECONDS_PER_WINDOW:-3}" \
  --rounds "${ROUNDS:-3}" --watchers "${WATCHERS:-100}"
# SubmitJob while a job trains (target p50 <= 10 ms); its own daemons.
ROUNDS=${SUBMIT_ROUNDS:-3} bash "$here/submit.sh" "$build"
# The HTTP side (--http): REST against gRPC, SSE latency, /metrics.
bash "$here/http.sh" "$build"
