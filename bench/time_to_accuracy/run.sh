#!/usr/bin/env bash
# usage: run.sh BUILD_DIR — the time_to_accuracy benchmark (see ../README.md).
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
# Debian's python3 (a python3 earlier on PATH may lack python3-torch).
exec /usr/bin/python3 "$(dirname "$0")/harness.py" "$1"
