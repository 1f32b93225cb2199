"""``python -m mllm_ood run``: check every planned notebook's parameters, then execute them (see the
package docstring)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

from .. import progress
from ..mllm.preflight import STANDIN_ENV
from ..paths import figures_dir
from ..validation import ParameterError
from .execution import CELL_TIMEOUT, FolderBusy, default_jobs, execute, folder_lock
from .planning import (PROFILES, check_hub_once, check_notebook_parameters, declared_parameters, parse_override, plan,
                       resolve_parameters, runs_root)
from .publish import check_writable_folder
from .standins import check_context, prepare_standin_datasets, standin_substitutions


def run(profile: str = "embedded", smoke: bool = False, only: list[str] | None = None, retrain: bool = False,
        timeout: int = CELL_TIMEOUT, overrides: list[tuple[str, str]] | None = None, standin: bool = False,
        jobs: int | None = None) -> int:
    """:func:`_run` with the profile's hub setting in force from the first check on: the embedded profile
    offline (``HF_HUB_OFFLINE``; a hub id it cannot have is refused at once, see :mod:`mllm_ood.mllm.preflight`),
    a ``--standin`` run marked so (its hub models are replaced after the checks)."""
    env = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"} \
        if profile == "embedded" else {}
    if standin:
        env[STANDIN_ENV] = "1"
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        return _run(profile, smoke, only, retrain, timeout, overrides, standin, jobs)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _run(profile: str, smoke: bool, only: list[str] | None, retrain: bool, timeout: int,
         overrides: list[tuple[str, str]] | None, standin: bool, jobs: int | None) -> int:
    """Check every planned notebook's parameters, then execute the notebooks; print and write a summary.

    standin: the paper profile's dry run on shape-faithful stand-ins (see the module docstring).
    jobs: notebooks executed at once (default: :func:`default_jobs`: one per core; the paper profile one).
    Returns 0 on success, 1 when a notebook failed, 3 when another run holds the output folder.
    """
    import papermill as pm

    from .. import cache

    for var in ("MLLM_OOD_CACHE", "MLLM_OOD_RUNS", "MLLM_OOD_FIGURES"):  # kernels run in notebooks/: a relative
        if os.environ.get(var):                                          # folder would silently point there
            os.environ[var] = str(Path(os.environ[var]).resolve())
    if standin and profile != "paper":
        raise ParameterError("--standin replaces the paper profile's hub models and datasets; use it with "
                             "--profile paper")
    planned = plan(profile, only)
    if timeout <= 0:
        raise ParameterError(f"timeout must be > 0 seconds, got {timeout}")
    if jobs is not None and (isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1):
        raise ParameterError(f"jobs must be a whole number >= 1, got {jobs!r}")
    extra = {key: parse_override(value) for key, value in overrides or []}
    declaring_retrain = [nb for nb, _ in planned if "RETRAIN" in declared_parameters(nb)]
    if retrain and not declaring_retrain:
        raise ParameterError("--retrain applies to notebooks with a RETRAIN parameter; none of "
                             f"{', '.join(nb.stem for nb, _ in planned)} has one")
    if profile == "paper" and not standin:
        check_hub_once(planned, smoke, extra)
    t0 = time.time()  # the checks below, with --smoke's full-size checks inside resolve_parameters
    resolved = [(nb, pf, resolve_parameters(nb, pf, smoke, retrain, extra)) for nb, pf in planned]
    for nb, _, params in resolved:  # the real model's context, before any stand-in is built
        check_context(nb, params)
    unchecked = [nb.stem for nb, _, params in resolved if not check_notebook_parameters(nb, params)]
    print(f"parameters checked for {len(resolved) - len(unchecked)} notebook(s) in {time.time() - t0:.1f}s"
          + (f"; no validation cell (checked only when run): {', '.join(unchecked)}" if unchecked else ""),
          flush=True)
    run_dir = runs_root() / (profile + ("-standin" if standin else "") + ("-smoke" if smoke else ""))
    figs = run_dir / "figures" if smoke or standin else figures_dir()
    check_writable_folder(run_dir, "the run folder")  # a read-only folder: one clear error, before compute
    check_writable_folder(figs, "the figures folder")
    standin_notes: list[str] = []
    saved_mirror = os.environ.get("MLLM_OOD_HUB_MIRROR")
    if standin:
        from ..paths import cache_dir

        # Smoke: a handful of images per domain x class; full dry run: enough for 20 queries + 8 shots per class.
        per_cell = 6 if smoke else 32
        # v2: Camelyon17's stand-in holds two splits (id_train, ood_val); a mirror is written once, so a change
        # to what a stand-in holds takes a new folder
        mirror = cache_dir() / "standin_datasets" / f"per_cell_{per_cell}_v2"
        swapped = []
        for nb, pf, params in resolved:
            subs = standin_substitutions(params)
            standin_notes += [f"{nb.stem}: {k} {params[k]!r} -> stand-in {v!r}" for k, v in subs.items()]
            params.update(subs)
            swapped.append((nb, pf, params))
        resolved = swapped
        mirror.mkdir(parents=True, exist_ok=True)
        names = prepare_standin_datasets(resolved, mirror, per_cell)
        standin_notes.append(f"hub datasets read from stand-ins in the card's schema: {', '.join(names) or 'none'} "
                             f"({mirror})")
        os.environ["MLLM_OOD_HUB_MIRROR"] = str(mirror)  # read by the validation prefixes and the kernels
        for line in standin_notes:
            print("stand-in:", line, flush=True)

    command = " ".join(["run_all.sh", *sys.argv[2:]]) if sys.argv[1:2] == ["run"] else " ".join(sys.argv)
    saved_env = {k: os.environ.get(k) for k in ["MLLM_OOD_FIGURES", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE",
                                                 "TRANSFORMERS_OFFLINE", progress.ENV, "HF_HUB_DISABLE_PROGRESS_BARS",
                                                 "HF_DATASETS_DISABLE_PROGRESS_BARS"]}
    # SIGTERM (a scheduler, `kill`) ends the run like Ctrl-C: the notebook's outputs go to failed/.
    on_main = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, interrupt) if on_main else None
    try:
        with contextlib.ExitStack() as locks:
            locks.enter_context(folder_lock(run_dir))
            if not figs.resolve().is_relative_to(run_dir.resolve()):
                locks.enter_context(folder_lock(figs))
            swept = cache.clean_stale_temporaries()
            if swept:
                print(f"removed {swept} stale temporary folder(s) left in {cache.cache_dir()} by killed builds")
            shutil.rmtree(run_dir / "running", ignore_errors=True)  # a killed run's leftovers; we hold the lock
            if profile == "embedded":
                os.environ.update(HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
            # Executed notebooks stay quiet: the project's bars go to each notebook's progress log (see
            # mllm_ood.progress), the libraries' own loading bars are switched off.
            os.environ.update(HF_HUB_DISABLE_PROGRESS_BARS="1", HF_DATASETS_DISABLE_PROGRESS_BARS="1")
            return execute(pm, resolved, run_dir, figs, timeout, command, profile, smoke, extra, standin_notes,
                            jobs or default_jobs(profile))
    except FolderBusy as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    finally:
        if on_main:
            signal.signal(signal.SIGTERM, old_term)
        if standin:
            saved_env["MLLM_OOD_HUB_MIRROR"] = saved_mirror
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="execute the study's notebooks with papermill (used by run_all.sh)")
    p.add_argument("--profile", default="embedded", help=f"one of {PROFILES}")
    p.add_argument("--smoke", action="store_true",
                   help="shrink every notebook to its params file's smoke: values (and SMOKE=True; see README for times)")
    p.add_argument("--only", action="append", help="run only this notebook (name, stem or number); repeatable")
    p.add_argument("--retrain", action="store_true", help="retrain the embedded model instead of loading it")
    p.add_argument("--timeout", type=int, default=CELL_TIMEOUT,
                   help=f"per-cell execution timeout in seconds (default {CELL_TIMEOUT}: the longest cell, notebook "
                        "04's first e5 embedding of the LLaVA answers, passed 30 minutes on two busy cores)")
    p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("KEY", "VALUE"),
                   help="override one parameter of every planned notebook (papermill's spelling; "
                        "'[a, b]' is read as a YAML list); repeatable; recorded in the logs and summary")
    p.add_argument("--standin", action="store_true",
                   help="paper profile dry run: every hub model and dataset replaced by its shape-faithful stand-in "
                        "(offline, CPU); outputs to runs/paper-standin[-smoke]/")
    p.add_argument("--jobs", type=int, default=None,
                   help="notebooks executed at once (default: one per core, the paper profile one at a time; "
                        "00_embedded_model runs first, alone when it may train the model, then 04_emi_bound; "
                        "05_claims_ledger last)")
    p.set_defaults(func=lambda a: run(a.profile, a.smoke, a.only, a.retrain, a.timeout, a.parameter, a.standin, a.jobs))
