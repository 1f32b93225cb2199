"""Benchmark ``run_all.sh`` cold against warm, side by side (not a timed test).

Cold: a run into an empty cache (every dataset, answer, feature, probe and CLUB computed). Warm: the
same run again on the cache the cold run filled, which should only read tables and draw figures.
Prints the wall time of each notebook and of the whole run for both, and the ratio cold / warm.

Runs, figures and the cold cache go to a temporary folder, so the user's ``runs/``, ``figures/`` and
``data/cache/`` are untouched; with ``--cache DIR`` both runs use DIR instead (e.g. the filled
``data/cache``, to time a warm run of the full profile without a cold one: ``--warm-only``).

Usage: ``.venv/bin/python bench/bench_run_all.py [--smoke] [--only NAME ...] [--cache DIR] [--warm-only]``
A cold full run of the embedded profile takes over an hour on two cores (the multilingual text
embeddings of notebook 04 alone about one), so the default cold/warm pair is ``--smoke``.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _cpu_seconds() -> float:
    """User + system CPU seconds of every finished child process so far (kernels included)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_once(label: str, work: Path, cache: Path, args) -> tuple[float, dict[str, float], float]:
    """One ``run_all.sh``: (total wall seconds, {notebook: wall seconds from the run's summary}, CPU
    seconds of the run and its kernels: on a shared machine the wall time depends on the other jobs)."""
    runs, figures = work / f"runs-{label}", work / f"figures-{label}"
    env = {**os.environ, "MLLM_OOD_CACHE": str(cache), "MLLM_OOD_RUNS": str(runs), "MLLM_OOD_FIGURES": str(figures)}
    cmd = [str(ROOT / "run_all.sh"), "--profile", args.profile, *(["--smoke"] if args.smoke else [])]
    for name in args.only or []:
        cmd += ["--only", name]
    t, cpu = time.perf_counter(), _cpu_seconds()
    proc = subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True)
    wall, cpu = time.perf_counter() - t, _cpu_seconds() - cpu
    if proc.returncode != 0:
        raise SystemExit(f"{label} run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    summary = next(runs.rglob("summary.txt")).read_text()
    per = {m.group(1): float(m.group(2)) for m in re.finditer(r"^(\S+)\s+ok\s+([\d.]+)s", summary, re.M)}
    return wall, per, cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="embedded")
    ap.add_argument("--smoke", action="store_true", help="the smoke run (the default cold/warm pair; see above)")
    ap.add_argument("--only", action="append", help="one notebook (repeatable)")
    ap.add_argument("--cache", type=Path, help="cache folder for both runs (default: a new, empty one)")
    ap.add_argument("--warm-only", action="store_true", help="time only the warm run (needs a filled --cache)")
    args = ap.parse_args()
    if args.warm_only and args.cache is None:
        ap.error("--warm-only needs --cache DIR (a filled cache)")
    with tempfile.TemporaryDirectory(prefix="bench-run-all-") as tmp:
        work = Path(tmp)
        cache = args.cache.resolve() if args.cache else work / "cache"
        results = {}
        if not args.warm_only:
            results["cold"] = run_once("cold", work, cache, args)
        results["warm"] = run_once("warm", work, cache, args)
    names = list(dict.fromkeys(n for _, per, _ in results.values() for n in per))
    print(f"profile {args.profile}{' (smoke)' if args.smoke else ''}; cache {'temporary' if args.cache is None else args.cache}; "
          f"{os.cpu_count()} cores; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '1 (run_all.sh)')}")
    print(f"{'notebook':28s}" + "".join(f"{k:>12s}" for k in results))
    for n in names:
        print(f"{n:28s}" + "".join(f"{per.get(n, float('nan')):11.1f}s" for _, per, _ in results.values()))
    print(f"{'run_all.sh (total wall)':28s}" + "".join(f"{wall:11.1f}s" for wall, _, _ in results.values()))
    print(f"{'CPU (user + system)':28s}" + "".join(f"{cpu:11.1f}s" for _, _, cpu in results.values()))
    if "cold" in results:
        print(f"cold / warm: {results['cold'][0] / results['warm'][0]:.1f}x wall, "
              f"{results['cold'][2] / results['warm'][2]:.1f}x CPU")


if __name__ == "__main__":
    main()
