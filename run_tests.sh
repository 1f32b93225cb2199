#!/usr/bin/env bash
# Bootstrap the pinned environment on first use, then run the test suite (pytest; arguments pass through).
# By default every test but the `slow` ones (end-to-end notebook runs: smoke runs, the paper profile's dry runs
# on stand-ins, notebooks against a local endpoint, concurrent runs): -m slow runs just those, -m "" all of
# them, and a test named by its id (file::test) runs whatever its marks; CI runs the default, then -m slow.
# Tests run in parallel, one pytest-xdist worker per core (-n auto), unless the arguments choose (-n N, -n 0
# for one process, or -p no:xdist).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$ROOT/scripts/bootstrap.sh"
cd "$ROOT"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
workers=(-n auto --dist worksteal)
select=(-m "not slow")
for arg in "$@"; do
  case "$arg" in
    -n|-n*|--numprocesses|--numprocesses=*|no:xdist) workers=() ;;
    -m|-m*|*::*) select=() ;;  # a marker expression, or a test named by its id, runs as asked
  esac
done
exec "$ROOT/.venv/bin/python" -m pytest "${workers[@]}" "${select[@]}" "$@"
