#!/usr/bin/env bash
# usage: run.sh BUILD_DIR — runs every benchmark (bench/*/run.sh) against the
# binaries in BUILD_DIR; `make bench` calls this. Exits 1 if any failed.
set -uo pipefail
if [ $# -ne 1 ]; then
  echo "usage: $0 BUILD_DIR" >&2
  exit 2
fi
build=$(cd "$1" && pwd) || exit 2
here=$(cd "$(dirname "$0")" && pwd)

# The engine and the BLAS kernels every figure below was measured with.
"$build/fulgur" --version || exit 1
echo

failed=()
for script in "$here"/*/run.sh; do
  name=$(basename "$(dirname "$script")")
  echo "== $name"
  if ! bash "$script" "$build"; then
    failed+=("$name")
  fi
  echo
done
if [ ${#failed[@]} -ne 0 ]; then
  echo "failed: ${failed[*]}" >&2
  exit 1
fi
