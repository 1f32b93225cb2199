"""``python -m mllm_ood run``: execute the notebooks in order with papermill (called by run_all.sh).

For each ``notebooks/NN_name.ipynb`` (sorted), parameters are read from ``params/<profile>/NN_name.yaml``;
``--smoke`` adds ``SMOKE: true``, ``-p KEY VALUE`` overrides one value. Before anything runs:

* every key (YAML or ``-p``) must be a parameter the notebook declares (a misspelling is refused);
* every notebook's cells up to its validation cell (imports, parameters, the injected values,
  ``check_parameters``) run in this process, so a bad value in the last notebook stops the run before the
  first one computes anything.

Then the run takes a lock on its folder ``runs/<profile>[-smoke]/`` (and on ``figures/``): a second run
into the same folder is refused with "another run is writing here". Each notebook executes into
``<run>/running/<name>/`` (executed copy, log, figures); only when it succeeds are its figures moved into
``figures/`` and its executed copy, HTML and log into the run folder, so a failed or interrupted notebook
leaves the previous good outputs in place; its own outputs go to ``<run>/failed/<name>/``. The run
ends with a summary table, also written to ``<run>/summary.txt``.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import fcntl
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import yaml

from .paths import NOTEBOOKS, PARAMS, RUNS, figures_dir
from .validation import ParameterError, check_choice

PROFILES = ["embedded", "paper"]
KERNEL = "mllm-ood"
LOCK = ".lock"
VALIDATION_CALL = "check_parameters("


class FolderBusy(RuntimeError):
    """Another run holds the lock on an output folder."""


def runs_root() -> Path:
    """Where run folders go: ``runs/``, or ``$MLLM_OOD_RUNS`` (tests, or a user keeping runs elsewhere)."""
    return Path(os.environ.get("MLLM_OOD_RUNS", RUNS))


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


# --------------------------------------------------------------------------------------------------
# parameters: declared names, overrides, the validation prefix


def declared_parameters(nb: Path) -> dict[str, str]:
    """{name: type hint} of the notebook's ``parameters`` cell, as papermill reads it."""
    from papermill.inspection import inspect_notebook

    return {name: p["inferred_type_name"] for name, p in inspect_notebook(str(nb)).items()}


def parse_override(value: str):
    """A ``-p KEY VALUE`` value as papermill reads it (True/False/None, int, float, else a string);
    a value starting with ``[`` or ``{`` is read as YAML, so lists can be passed: ``-p SEEDS '[0, 1]'``."""
    s = value.strip()
    if s.startswith(("[", "{")):
        try:
            return yaml.safe_load(s)
        except yaml.YAMLError as err:
            raise ParameterError(f"-p value {value!r} is not a valid YAML list or mapping: {err}") from err
    if s in ("True", "False", "None"):
        return {"True": True, "False": False, "None": None}[s]
    for cast in (int, float):
        try:
            return cast(s)
        except ValueError:
            pass
    return value


def _read_params_file(params_file: Path | None) -> dict:
    if params_file is None:
        return {}
    try:
        params = yaml.safe_load(params_file.read_text()) or {}
    except yaml.YAMLError as err:
        raise ParameterError(f"{params_file}: not valid YAML: {err}") from err
    if not isinstance(params, dict):
        raise ParameterError(f"{params_file}: expected a mapping of parameter names to values")
    return params


def _refuse_undeclared(nb: Path, keys, source: str, declared: dict) -> None:
    for key in keys:
        if key not in declared:
            close = difflib.get_close_matches(str(key), list(declared), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ParameterError(f"{source}: notebook {nb.stem} has no parameter {key!r}{hint}; "
                                 f"its parameters: {', '.join(declared)}")


def resolve_parameters(nb: Path, params_file: Path | None, smoke: bool = False, retrain: bool = False,
                       overrides: dict | None = None) -> dict:
    """The parameters papermill will inject: the YAML file, then SMOKE / RETRAIN, then ``-p`` overrides.

    Raises ParameterError for a key the notebook does not declare, naming the file or ``-p``.
    """
    declared = declared_parameters(nb)
    params = _read_params_file(params_file)
    _refuse_undeclared(nb, params, str(params_file.relative_to(PARAMS.parent)) if params_file else "params",
                       declared)
    if smoke:
        _refuse_undeclared(nb, ["SMOKE"], "--smoke", declared)
        params["SMOKE"] = True
    if retrain and "RETRAIN" in declared:
        params["RETRAIN"] = True
    _refuse_undeclared(nb, overrides or {}, "-p", declared)
    params.update(overrides or {})
    return params


def _code_cells(nb: Path):
    import nbformat

    return [c for c in nbformat.read(nb, as_version=4).cells if c.cell_type == "code"]


def validation_prefix(nb: Path) -> tuple[list[str], str, str | None]:
    """(code cells before the parameters cell, the parameters cell, the validation cell or None).

    The validation cell is the first code cell after the parameters cell, when it calls
    ``check_parameters``; a notebook without one has its values checked only when it runs.
    """
    cells = _code_cells(nb)
    idx = [i for i, c in enumerate(cells) if "parameters" in c.metadata.get("tags", [])]
    if len(idx) != 1:
        raise ParameterError(f"{nb.name}: expected one cell tagged 'parameters', found {len(idx)}")
    i = idx[0]
    after = cells[i + 1].source if i + 1 < len(cells) else ""
    return [c.source for c in cells[:i]], cells[i].source, after if VALIDATION_CALL in after else None


def check_notebook_parameters(nb: Path, parameters: dict) -> bool:
    """Run ``nb``'s imports, parameters cell, papermill's injected ``parameters`` and its validation cell
    in a fresh namespace (working directory: notebooks/, as under papermill); raise the notebook's
    ParameterError for a bad value. Return False when the notebook has no validation cell (nothing run).
    """
    from papermill.translators import translate_parameters

    before, params_cell, check_cell = validation_prefix(nb)
    if check_cell is None:
        return False
    injected = translate_parameters(KERNEL, "python", parameters, "Parameters")
    ns: dict = {"__name__": "__main__"}
    cwd = os.getcwd()
    try:
        os.chdir(nb.parent)
        for k, src in enumerate([*before, params_cell, injected, check_cell]):
            exec(compile(src, f"<{nb.name} validation prefix, cell {k}>", "exec"), ns)  # noqa: S102
    finally:
        os.chdir(cwd)
    return True


# --------------------------------------------------------------------------------------------------
# locks, staging, summary


@contextlib.contextmanager
def folder_lock(folder: Path):
    """Hold an exclusive lock on ``folder`` (a ``.lock`` file, released by the OS even if this process is
    killed); raise FolderBusy naming the holder when another run has it."""
    folder.mkdir(parents=True, exist_ok=True)
    fh = open(folder / LOCK, "a+")  # noqa: SIM115 - held for the whole block
    try:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            holder = fh.read().strip() or "a process that has not written its name yet"
            raise FolderBusy(f"another run is writing here: {folder}\n  held by {holder}\n  wait for it to "
                             f"finish, or write elsewhere (another --profile, or MLLM_OOD_RUNS=DIR and "
                             f"MLLM_OOD_FIGURES=DIR)") from None
        fh.seek(0)
        fh.truncate()
        fh.write(f"pid {os.getpid()} since {time.strftime('%Y-%m-%d %H:%M:%S')}: {' '.join(sys.argv)}\n")
        fh.flush()
        yield
    finally:
        fh.close()  # closing releases the lock


def _publish(stage: Path, stage_figs: Path, figs: Path, run_dir: Path, names: list[str]) -> None:
    """Move a succeeded notebook's figures into ``figs`` and its executed copy, HTML and log into ``run_dir``."""
    figs.mkdir(parents=True, exist_ok=True)
    for f in sorted(stage_figs.glob("*")) if stage_figs.exists() else []:
        os.replace(f, figs / f.name)
    for name in names:
        src, dst = stage / name, run_dir / name
        if src.exists():
            os.replace(src, dst)
        elif dst.exists():
            dst.unlink()  # e.g. no HTML this time: do not leave the previous run's beside the new copy
    shutil.rmtree(stage, ignore_errors=True)


def _keep_failed(stage: Path, run_dir: Path, stem: str) -> Path:
    failed = run_dir / "failed" / stem
    shutil.rmtree(failed, ignore_errors=True)
    failed.parent.mkdir(parents=True, exist_ok=True)
    os.replace(stage, failed)
    return failed


def _summary(command: str, profile: str, smoke: bool, overrides: dict, rows, figs: Path, run_dir: Path,
             notes: list[str]) -> str:
    lines = [f"command: {command}", f"profile: {profile}{' (smoke)' if smoke else ''}",
             "overrides: " + (", ".join(f"{k}={v!r}" for k, v in overrides.items()) if overrides else "none"),
             "", f"{'notebook':32s} {'status':11s} {'wall':>8s}  outputs"]
    lines += [f"{stem:32s} {st:11s} {wall:7.1f}s  {out}" for stem, st, wall, out in rows]
    lines += ["", f"figures: {figs}", f"logs and executed notebooks: {run_dir}", *notes]
    return "\n".join(lines) + "\n"


def run(profile: str = "embedded", smoke: bool = False, only: list[str] | None = None, retrain: bool = False,
        timeout: int = 1800, overrides: list[tuple[str, str]] | None = None) -> int:
    """Check every planned notebook's parameters, then execute the notebooks; print and write a summary.

    Returns 0 on success, 1 when a notebook failed, 3 when another run holds the output folder.
    """
    import papermill as pm

    from . import cache

    jobs = plan(profile, only)
    if timeout <= 0:
        raise ParameterError(f"timeout must be > 0 seconds, got {timeout}")
    extra = {key: parse_override(value) for key, value in overrides or []}
    declaring_retrain = [nb for nb, _ in jobs if "RETRAIN" in declared_parameters(nb)]
    if retrain and not declaring_retrain:
        raise ParameterError("--retrain applies to notebooks with a RETRAIN parameter; none of "
                             f"{', '.join(nb.stem for nb, _ in jobs)} has one")
    resolved = [(nb, pf, resolve_parameters(nb, pf, smoke, retrain, extra)) for nb, pf in jobs]
    t0 = time.time()
    unchecked = [nb.stem for nb, _, params in resolved if not check_notebook_parameters(nb, params)]
    print(f"parameters checked for {len(resolved) - len(unchecked)} notebook(s) in {time.time() - t0:.1f}s"
          + (f"; no validation cell (checked only when run): {', '.join(unchecked)}" if unchecked else ""),
          flush=True)

    run_dir = runs_root() / (profile + ("-smoke" if smoke else ""))
    figs = run_dir / "figures" if smoke else figures_dir()
    command = " ".join(["run_all.sh", *sys.argv[2:]]) if sys.argv[1:2] == ["run"] else " ".join(sys.argv)
    saved_env = {k: os.environ.get(k) for k in ["MLLM_OOD_FIGURES", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE",
                                                 "TRANSFORMERS_OFFLINE"]}
    # SIGTERM (a scheduler, `kill`) ends the run like Ctrl-C: the notebook's outputs go to failed/.
    on_main = threading.current_thread() is threading.main_thread()
    old_term = signal.signal(signal.SIGTERM, _interrupt) if on_main else None
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
            return _execute(pm, resolved, run_dir, figs, timeout, command, profile, smoke, extra)
    except FolderBusy as err:
        print(f"error: {err}", file=sys.stderr)
        return 3
    finally:
        if on_main:
            signal.signal(signal.SIGTERM, old_term)
        for k, v in saved_env.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


def _execute(pm, resolved, run_dir: Path, figs: Path, timeout: int, command: str, profile: str, smoke: bool,
             extra: dict) -> int:
    rows, notes, status = [], [], 0
    for nb, params_file, params in resolved:
        stage = run_dir / "running" / nb.stem
        stage_figs = stage / "figures"
        stage_figs.mkdir(parents=True)
        os.environ["MLLM_OOD_FIGURES"] = str(stage_figs)  # inherited by the kernel
        out, log = stage / nb.name, stage / f"{nb.stem}.log"
        source = str(params_file.relative_to(PARAMS.parent)) if params_file else "(defaults)"
        flags = (" +SMOKE" if smoke else "") + "".join(f" -p {k} {v!r}" for k, v in extra.items())
        print(f"==> {nb.name}  params: {source}{flags}  (log: {log})", flush=True)
        t0 = time.time()
        ok, interrupted = True, False
        with open(log, "w") as fh:
            fh.write(f"# {command}\n# parameters file: {source}\n# overrides (-p): "
                     f"{', '.join(f'{k}={v!r}' for k, v in extra.items()) or 'none'}\n"
                     f"# injected parameters: {params!r}\n")
            fh.flush()
            try:
                pm.execute_notebook(str(nb), str(out), parameters=params, kernel_name=KERNEL,
                                    execution_timeout=timeout, log_output=True, stdout_file=fh, stderr_file=fh,
                                    progress_bar=False, cwd=str(nb.parent))
            except KeyboardInterrupt:
                ok, interrupted = False, True
                fh.write("\nKeyboardInterrupt: run interrupted\n")
            except Exception as err:  # noqa: BLE001 - papermill raises several kinds; all mean "failed"
                ok = False
                fh.write(f"\n{type(err).__name__}: {err}\n")
        wall = time.time() - t0
        if ok:
            subprocess.run([sys.executable, "-m", "nbconvert", "--to", "html", str(out)],
                           capture_output=True, check=False)
            _publish(stage, stage_figs, figs, run_dir, [nb.name, f"{nb.stem}.html", f"{nb.stem}.log"])
            rows.append((nb.stem, "ok", wall, run_dir / nb.name))
            continue
        cell = _failing_cell(out)
        failed = _keep_failed(stage, run_dir, nb.stem)
        rows.append((nb.stem, "INTERRUPTED" if interrupted else "FAILED", wall, failed / nb.name))
        notes.append(f"{nb.stem} {'interrupted' if interrupted else 'failed'} at {cell}\n"
                     f"  its executed copy, log and figures: {failed}\n"
                     f"  {figs} and {run_dir} still hold the previous good outputs of {nb.stem}")
        print(f"{'INTERRUPTED' if interrupted else 'FAILED'}: {nb.name} at {cell}\n"
              f"  executed copy, log and figures of the failed run: {failed}\n"
              f"  previous good figures and executed copy left in place ({figs}, {run_dir})", file=sys.stderr)
        status = 130 if interrupted else 1
        break
    shutil.rmtree(run_dir / "running", ignore_errors=True)
    summary = _summary(command, profile, smoke, extra, rows, figs, run_dir, notes)
    (run_dir / "summary.txt").write_text(summary)
    print("\n" + summary, end="")
    return status


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


def add_parser(sub) -> None:
    p = sub.add_parser("run", help="execute the study's notebooks with papermill (used by run_all.sh)")
    p.add_argument("--profile", default="embedded", help=f"one of {PROFILES}")
    p.add_argument("--smoke", action="store_true", help="shrink every notebook (SMOKE=True; see README for times)")
    p.add_argument("--only", action="append", help="run only this notebook (name, stem or number); repeatable")
    p.add_argument("--retrain", action="store_true", help="retrain the embedded model instead of loading it")
    p.add_argument("--timeout", type=int, default=1800, help="per-cell execution timeout in seconds")
    p.add_argument("-p", "--parameter", nargs=2, action="append", metavar=("KEY", "VALUE"),
                   help="override one parameter of every planned notebook (papermill's spelling; "
                        "'[a, b]' is read as a YAML list); repeatable; recorded in the logs and summary")
    p.set_defaults(func=lambda a: run(a.profile, a.smoke, a.only, a.retrain, a.timeout, a.parameter))
