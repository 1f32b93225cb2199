#!/usr/bin/env bash
# Create .venv on first use (or when requirements.txt changed), install the pinned environment and
# the project (editable), and register the Jupyter kernel "mllm-ood" inside the venv.
# Sourced by run_all.sh and run_tests.sh; safe to run repeatedly (a stamp file skips the work).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="$ROOT/.venv"
STAMP="$VENV/.bootstrap-stamp"
want="$(cat "$ROOT/requirements.txt" "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)"

if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$want" ]]; then
  return 0 2>/dev/null || exit 0
fi

PY="${PYTHON:-}"
if [[ -z "$PY" ]]; then
  for cand in python3.11 python3; do
    if command -v "$cand" >/dev/null && "$cand" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))'; then
      PY="$cand"; break
    fi
  done
fi
[[ -n "$PY" ]] || { echo "bootstrap: Python 3.11 is required (set PYTHON=/path/to/python3.11)" >&2; exit 1; }

echo "bootstrap: creating $VENV and installing the pinned environment (first run: a few minutes)" >&2
[[ -x "$VENV/bin/python" ]] || "$PY" -m venv "$VENV"
mkdir -p "$ROOT/runs"
log="$ROOT/runs/bootstrap.log"
{
  "$VENV/bin/python" -m pip install --upgrade pip
  # torch first and exactly pinned: the local CPU wheel; an unpinned torch would pull CUDA builds.
  "$VENV/bin/python" -m pip install "$(grep '^torch==' "$ROOT/requirements.txt")"
  "$VENV/bin/python" -m pip install -r "$ROOT/requirements.txt"
  "$VENV/bin/python" -m pip install --no-deps -e "$ROOT"
  "$VENV/bin/python" -m ipykernel install --prefix "$VENV" --name mllm-ood --display-name "mllm-ood (.venv)"
} >"$log" 2>&1 || { echo "bootstrap failed; see $log" >&2; tail -20 "$log" >&2; exit 1; }
echo "$want" >"$STAMP"
echo "bootstrap: done (log: $log)" >&2
