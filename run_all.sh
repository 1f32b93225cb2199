#!/usr/bin/env bash
# Rebuild every result and figure: execute notebooks/NN_*.ipynb in order with papermill.
#   ./run_all.sh [--smoke] [--profile embedded|paper] [--only NAME] [-p KEY VALUE] [--retrain] [--timeout SECONDS]
# Parameters come from params/<profile>/<notebook>.yaml (under version control), -p overrides one of them
# (recorded in the logs and summary.txt). Every key and value is checked before any notebook runs. Executed
# notebooks, their HTML renderings, logs and summary.txt go to runs/<profile>[-smoke]/ (locked while a run
# writes there); figures to figures/ (smoke: to the run folder), published only when their notebook
# succeeds; a failed notebook's outputs go to runs/<profile>[-smoke]/failed/<notebook>/.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
source "$ROOT/scripts/bootstrap.sh"
# One thread per process: with two, a busy second core slows torch and BLAS by up to 10x (measured).
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
exec "$ROOT/.venv/bin/python" -m mllm_ood run "$@"
