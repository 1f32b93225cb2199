"""Benchmark ``run_all.sh`` cold against warm, and the test suite, side by side with issue 25's numbers
(not a timed test).

Cold: a run into an empty cache (every dataset, answer, feature, probe and CLUB computed; the embedded
model loaded from its committed checkpoint, LLaVA-Bench text embeddings read from the shipped files).
Warm: the same run again on the cache the cold run filled, which should only read tables and draw
figures. Tests: ``./run_tests.sh -q`` (parallel, one worker per core; the `slow` end-to-end notebook tests
left out) and ``./run_tests.sh -q -m slow`` (those; CI runs both), pytest's own time (the environment already
bootstrapped), each with its 15 slowest tests. Prints the wall time of each notebook and of the whole
run for cold and warm, then each measure beside the number issue 25 reported before the change, the
issue's target, and the ratio now / before.

Runs, figures and the cold cache go to a temporary folder, so the user's ``runs/``, ``figures/`` and
``data/cache/`` are untouched; with ``--cache DIR`` both runs use DIR instead (e.g. the filled
``data/cache``, to time a warm run without a cold one: ``--warm-only``).

Usage: ``.venv/bin/python bench/bench_run_all.py [--smoke] [--only NAME ...] [--cache DIR] [--warm-only]
[--tests | --tests-only]``. Measure on an otherwise idle machine (the printout names the cores and load):
each kernel computes on one thread, so other jobs on the cores lengthen every number.
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
# Issue 25's numbers on 2 cores, before the change: the first full run took about an hour, the warm rerun
# 72 s (README), the tests 634 s (pytest's time, environment warm; then every test ran by default); and its
# targets: the default ./run_tests.sh <= 6 min, every test (CI: the default run, then -m slow) <= 15 min.
BEFORE = {"cold run_all.sh": 3600.0, "warm run_all.sh": 72.0, "run_tests.sh": 634.0, "every test (CI)": 634.0}
TARGET = {"cold run_all.sh": 900.0, "warm run_all.sh": 90.0, "run_tests.sh": 360.0, "every test (CI)": 900.0}


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


def run_tests(*args: str) -> tuple[float, str]:
    """``./run_tests.sh -q [args]`` once: (pytest's own seconds, its slowest-15 table)."""
    proc = subprocess.run([str(ROOT / "run_tests.sh"), "-q", "-p", "no:cacheprovider", "--durations=15", *args],
                          cwd=ROOT, capture_output=True, text=True)
    found = re.search(r"^=*\s*(\d+ passed.*) in ([\d.]+)s", proc.stdout, re.M)
    if proc.returncode != 0 or not found:
        raise SystemExit(f"the test suite failed ({proc.returncode}):\n{proc.stdout[-3000:]}{proc.stderr[-2000:]}")
    slowest = proc.stdout[proc.stdout.index("slowest 15 durations"):].split("\n=")[0]
    return float(found.group(2)), f"{found.group(1)}\n{slowest}"


def time_tests() -> dict[str, float]:
    """The default ``./run_tests.sh`` (the `slow` tests left out), then ``-m slow`` (CI runs both), each with
    its slowest tests: {measure: pytest's seconds}."""
    default, table = run_tests()
    print(f"./run_tests.sh: {table}")
    slow, table = run_tests("-m", "slow")
    print(f"./run_tests.sh -m slow: {table}")
    return {"run_tests.sh": default, "every test (CI)": default + slow}


def compare(measured: dict[str, float]) -> None:
    """Each measure beside issue 25's number before the change and its target."""
    print(f"\n{'measure':22s}{'before':>10s}{'target':>10s}{'now':>10s}{'now/before':>12s}{'now/target':>12s}")
    for name, now in measured.items():
        print(f"{name:22s}{BEFORE[name]:9.0f}s{TARGET[name]:9.0f}s{now:9.1f}s{now / BEFORE[name]:12.2f}"
              f"{now / TARGET[name]:12.2f}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--profile", default="embedded")
    ap.add_argument("--smoke", action="store_true", help="the smoke run instead of the full one")
    ap.add_argument("--only", action="append", help="one notebook (repeatable)")
    ap.add_argument("--cache", type=Path, help="cache folder for both runs (default: a new, empty one)")
    ap.add_argument("--warm-only", action="store_true", help="time only the warm run (needs a filled --cache)")
    ap.add_argument("--tests", action="store_true", help="time the test suite too (after the runs)")
    ap.add_argument("--tests-only", action="store_true", help="time only the test suite")
    args = ap.parse_args()
    if args.warm_only and args.cache is None:
        ap.error("--warm-only needs --cache DIR (a filled cache)")
    print(f"{os.cpu_count()} cores, load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} at the start")
    if args.tests_only:
        compare(time_tests())
        return
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
    measured = {} if args.smoke or args.only or args.profile != "embedded" else \
        {f"{k} run_all.sh": wall for k, (wall, _, _) in results.items()}
    if args.tests:
        measured.update(time_tests())
    if measured:
        compare(measured)
    print(f"load average {' '.join(f'{x:.1f}' for x in os.getloadavg())} at the end")


if __name__ == "__main__":
    main()
