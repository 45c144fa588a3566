#!/usr/bin/env bash
# usage: http.sh BUILD_DIR — the HTTP side of daemon_load (http_load.c):
# one fulgurd with --http for the request rates and SSE latency while a
# job trains, and one with 1,000 jobs known for the /metrics scrape.
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
build=$1
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; wait 2>/dev/null; rm -rf "$work"' EXIT
sed "s|^trainer:|trainer:\n  default_root_dir: $work/runs|" "$here/job.yaml" >"$work/job.yaml"
for mode in rates metrics; do
  rm -rf "$work/state" "$work/fulgurd.log"
  "$build/fulgurd" --state-dir "$work/state" --listen "unix:$work/d.sock" --root "$work" --root "$here" \
    --http 127.0.0.1:0 --max-queue 2000 2>"$work/fulgurd.log" &
  pid=$!
  port=
  for _ in $(seq 200); do
    port=$(sed -n 's/.*serving HTTP on port \([0-9]*\).*/\1/p' "$work/fulgurd.log")
    [ -n "$port" ] && [ -S "$work/d.sock" ] && break
    sleep 0.1
  done
  "$build/bench_http_load" --server "unix:$work/d.sock" --http-port "$port" --config "$work/job.yaml" \
    --daemon-pid "$pid" --seconds "${SECONDS_PER_WINDOW:-2}" --rounds "${ROUNDS:-5}" --jobs "${JOBS:-1000}" \
    --mode "$mode"
  kill "$pid"
  wait "$pid" || true
  pid=
done
