#!/usr/bin/env bash
# usage: submit.sh BUILD_DIR [OTHER_BUILD_DIR ...] — SubmitJob latency while
# a job trains (bench_submit_latency), for each build's fulgurd in turn,
# ROUNDS times (default 5) interleaved: round 1 of every build, then round
# 2, ... so a noisy neighbour hits them alike. The client is the first
# build's. Prints each round's line, then per build the median p50 and p99
# over the rounds with their spread (min..max).
set -euo pipefail
if [ $# -lt 1 ]; then
  echo "usage: $0 BUILD_DIR [OTHER_BUILD_DIR ...]" >&2
  exit 2
fi
here=$(cd "$(dirname "$0")" && pwd)
client=$(cd "$1" && pwd)/bench_submit_latency
rounds=${ROUNDS:-5}
work=$(mktemp -d)
pid=
trap '[ -n "$pid" ] && kill $pid 2>/dev/null; rm -rf "$work"' EXIT
for r in $(seq "$rounds"); do
  for b in "$@"; do
    b=$(cd "$b" && pwd)
    w="$work/$r-$(echo "$b" | md5sum | cut -c1-8)"
    mkdir -p "$w"
    "$b/fulgurd" --state-dir "$w/state" --listen "unix:$w/d.sock" --root "$w" --root "$here" \
      2>"$w/fulgurd.log" &
    pid=$!
    for _ in $(seq 100); do [ -S "$w/d.sock" ] && break; sleep 0.1; done
    sleep 1 # a warm checker, if the build has one, is warm
    sed "s|^trainer:|trainer:\n  default_root_dir: $w/runs|" "$here/job.yaml" >"$w/job.yaml"
    line=$("$client" --server "unix:$w/d.sock" --config "$w/job.yaml" --submits "${SUBMITS:-40}")
    echo "$b round $r: $line"
    echo "$b $line" >>"$work/results"
    kill "$pid"
    wait "$pid" 2>/dev/null || true
    pid=
  done
done
python3 - "$work/results" <<'PY'
import re, statistics, sys
rows = {}
for line in open(sys.argv[1]):
    b, rest = line.split(" ", 1)
    p50, p99 = (float(x) for x in re.search(r"p50 ([\d.]+) ms, p99 ([\d.]+) ms", rest).groups())
    rows.setdefault(b, []).append((p50, p99))
for b, v in rows.items():
    p50s, p99s = [x[0] for x in v], [x[1] for x in v]
    print(f"{b}: SubmitJob p50 median {statistics.median(p50s):.2f} ms (spread {min(p50s):.2f}..{max(p50s):.2f}), "
          f"p99 median {statistics.median(p99s):.2f} ms (spread {min(p99s):.2f}..{max(p99s):.2f}) over {len(v)} rounds; "
          f"target p50 <= 10 ms")
PY
