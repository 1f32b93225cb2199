#!/usr/bin/env bash
# Bootstrap the pinned environment on first use, then run the test suite (pytest; arguments pass through).
# Tests run in parallel, one pytest-xdist worker per core (-n auto), unless the arguments choose
# (-n N, -n 0 for one process, or -p no:xdist).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
workers=(-n auto --dist worksteal)
for arg in "$@"; do
  case "$arg" in -n|-n*|--numprocesses|--numprocesses=*|no:xdist) workers=() ;; esac
done
exec "$ROOT/.venv/bin/python" -m pytest "${workers[@]}" "$@"
