#!/usr/bin/env bash
# Rebuild every result and figure: execute notebooks/NN_*.ipynb in order with papermill.
#   ./run_all.sh [--smoke] [--profile embedded|paper] [--only NAME] [--retrain] [--timeout SECONDS]
# Parameters come from params/<profile>/<notebook>.yaml (under version control); executed notebooks,
# their HTML renderings and logs go to runs/<profile>[-smoke]/; figures to figures/ (smoke: to the
# run folder, so a smoke run never overwrites real figures).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$ROOT/scripts/bootstrap.sh"
# One thread per process: with two, a busy second core slows torch and BLAS by up to 10x (measured).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec "$ROOT/.venv/bin/python" -m mllm_ood run "$@"
