"""``python -m mllm_ood run``: execute the notebooks in order with papermill (called by run_all.sh).

For each ``notebooks/NN_name.ipynb`` (sorted), parameters are read from
``params/<profile>/NN_name.yaml``; ``--smoke`` adds ``SMOKE: true``. Executed copies, HTML renderings
and logs go to ``runs/<profile>[-smoke]/``. A failing notebook stops the run with its name, the failing
cell and the path of the executed copy. The run ends with a summary table.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

from .paths import NOTEBOOKS, PARAMS, RUNS
from .validation import ParameterError, check_choice

PROFILES = ["embedded", "paper"]
KERNEL = "mllm-ood"


def notebooks() -> list[Path]:
    """The study's notebooks in execution order."""
    return sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def plan(profile: str, only: list[str] | None) -> list[tuple[Path, Path | None]]:
    """(notebook, params file or None) pairs to run; validates names before anything runs."""
    check_choice("profile", profile, PROFILES)
    nbs = notebooks()
    if only:
        stems = [p.stem for p in nbs]
        for name in only:
            matches = [s for s in stems if s == name or s.startswith(name + "_") or s[3:] == name]
            if not matches:
                raise ParameterError(f"unknown notebook {name!r}; allowed: {', '.join(stems)}")
        nbs = [p for p in nbs if any(p.stem == n or p.stem.startswith(n + "_") or p.stem[3:] == n for n in only)]
    out = []
    for nb in nbs:
        params = PARAMS / profile / f"{nb.stem}.yaml"
        out.append((nb, params if params.exists() else None))
    return out


def _parameters(params_file: Path | None, smoke: bool, extra: dict) -> dict:
    params = {}
    if params_file is not None:
        try:
            params = yaml.safe_load(params_file.read_text()) or {}
        except yaml.YAMLError as err:
            raise ParameterError(f"{params_file}: not valid YAML: {err}") from err
        if not isinstance(params, dict):
            raise ParameterError(f"{params_file}: expected a mapping of parameter names to values")
    if smoke:
        params["SMOKE"] = True
    params.update(extra)
    return params


def _failing_cell(executed: Path) -> str:
    import nbformat

    try:
        nb = nbformat.read(executed, as_version=4)
    except Exception:  # noqa: BLE001 - the copy may be unreadable after a crash
        return "unknown cell"
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                first = cell.source.strip().splitlines()[0] if cell.source.strip() else ""
                return f"cell {i} ({out.get('ename')}: {out.get('evalue', '')[:200]}) starting {first[:80]!r}"
    return "unknown cell"


def run(profile: str = "embedded", smoke: bool = False, only: list[str] | None = None, retrain: bool = False,
        timeout: int = 1800) -> int:
    """Execute the planned notebooks; print a summary table; return 0 on success, 1 on a failure."""
    import papermill as pm

    jobs = plan(profile, only)
    if timeout <= 0:
        raise ParameterError(f"timeout must be > 0 seconds, got {timeout}")
    run_dir = RUNS / (profile + ("-smoke" if smoke else ""))
    run_dir.mkdir(parents=True, exist_ok=True)
    env_figures = run_dir / "figures" if smoke else None
    if env_figures is not None:
        os.environ["MLLM_OOD_FIGURES"] = str(env_figures)  # inherited by the kernels
    if profile == "embedded":
        os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    rows = []
    status = 0
    for nb, params_file in jobs:
        extra = {"RETRAIN": True} if retrain and "model" in nb.stem else {}
        params = _parameters(params_file, smoke, extra)
        out = run_dir / nb.name
        log = run_dir / f"{nb.stem}.log"
        print(f"==> {nb.name}  params: {params_file.relative_to(PARAMS.parent) if params_file else '(defaults)'}"
              f"{' +SMOKE' if smoke else ''}", flush=True)
        t0 = time.time()
        ok = True
        with open(log, "w") as fh:
            try:
                pm.execute_notebook(str(nb), str(out), parameters=params, kernel_name=KERNEL,
                                    execution_timeout=timeout, log_output=True, stdout_file=fh, stderr_file=fh,
                                    progress_bar=False, cwd=str(NOTEBOOKS))
            except Exception as err:  # noqa: BLE001 - papermill raises several kinds; all mean "failed"
                ok = False
                fh.write(f"\n{type(err).__name__}: {err}\n")
        wall = time.time() - t0
        if ok:
            subprocess.run([sys.executable, "-m", "nbconvert", "--to", "html", str(out)],
                           capture_output=True, check=False)
        rows.append((nb.stem, "ok" if ok else "FAILED", wall, out))
        if not ok:
            print(f"FAILED: {nb.name} at {_failing_cell(out)}\n  executed copy: {out}\n  log: {log}", file=sys.stderr)
            status = 1
            break
    figs = env_figures or Path(os.environ.get("MLLM_OOD_FIGURES", RUNS.parent / "figures"))
    print(f"\n{'notebook':32s} {'status':8s} {'wall':>8s}  outputs")
    for stem, st, wall, out in rows:
        print(f"{stem:32s} {st:8s} {wall:7.1f}s  {out}")
    print(f"figures: {figs}\nlogs and executed notebooks: {run_dir}")
    return status


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="execute the study's notebooks with papermill (used by run_all.sh)")
    p.add_argument("--profile", default="embedded", help=f"one of {PROFILES}")
    p.add_argument("--smoke", action="store_true", help="shrink every notebook to seconds (SMOKE=True)")
    p.add_argument("--only", action="append", help="run only this notebook (name, stem or number); repeatable")
    p.add_argument("--retrain", action="store_true", help="retrain the embedded model instead of loading it")
    p.add_argument("--timeout", type=int, default=1800, help="per-cell execution timeout in seconds")
    p.set_defaults(func=lambda a: run(a.profile, a.smoke, a.only, a.retrain, a.timeout))
