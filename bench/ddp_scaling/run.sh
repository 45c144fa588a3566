#!/usr/bin/env bash
# usage: run.sh BUILD_DIR — the ddp_scaling benchmark (see ../README.md).
set -euo pipefail
if [ $# -ne 1 ]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
exec /usr/bin/python3 "$(dirname "$0")/harness.py" "$1"
