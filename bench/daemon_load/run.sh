#!/usr/bin/env bash
# usage: run.sh BUILD_DIR — the daemon_load benchmark (see ../README.md):
# a real fulgurd on a unix socket in a temporary folder.
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
build=$1
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d)
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
"$build/fulgurd" --state-dir "$work/state" --listen "unix:$work/d.sock" --root "$work" \
  --root "$here" 2>"$work/fulgurd.log" &
pid=$!
for _ in $(seq 100); do [ -S "$work/d.sock" ] && break; sleep 0.1; done
sed "s|^trainer:|trainer:\n  default_root_dir: $work/runs|" "$here/job.yaml" >"$work/job.yaml"
"$build/bench_daemon_load" --server "unix:$work/d.sock" --config "$work/job.yaml" --seconds 10 --watchers ${WATCHERS:-100}
