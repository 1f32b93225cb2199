"""``python -m mllm_ood run``: execute the notebooks in order with papermill (called by run_all.sh).

For each ``notebooks/NN_name.ipynb`` (sorted), parameters are read from ``params/<profile>/NN_name.yaml``;
``--smoke`` replaces the values named in the file's ``smoke:`` mapping (the smoke run's sizes) and adds
``SMOKE: true``, ``-p KEY VALUE`` overrides one value (in smoke runs too). Before anything runs:

* every key (YAML, its ``smoke:`` mapping, or ``-p``) must be a parameter the notebook declares (a
  misspelling is refused);
* every notebook's cells up to its validation cell (imports, parameters, the injected values,
  ``check_parameters``) run in this process, so a bad value in the last notebook stops the run before the
  first one computes anything. Under ``--smoke`` both sets are checked: the full-size values (what the
  same command without ``--smoke`` would run) and the smoke values.

Then the run takes a lock on its folder ``runs/<profile>[-smoke]/`` (and on ``figures/``): a second run
into the same folder is refused with "another run is writing here". Notebooks execute in order, up to
``--jobs`` at once (default: one per core, each kernel computing on one thread; the paper profile one at
a time, since each of its notebooks loads a hub MLLM onto the one GPU), except
``00_embedded_model``, which runs first, and alone when it may train the model the others load (with
``--retrain``, or when its MODEL_DIR holds no checkpoint; loading the committed one it runs beside them), and
``04_emi_bound``, the longest, which starts next so that the others run beside it; after a
failure nothing new starts, and Ctrl-C or SIGTERM stops every running notebook. Each notebook executes into
``<run>/running/<name>/`` (executed copy, log, figures); only when it succeeds are its figures moved into
``figures/`` and its executed copy, HTML and log into the run folder, so a failed or interrupted notebook
leaves the previous good outputs in place; its own outputs go to ``<run>/failed/<name>/``. The run
ends with a summary table, also written to ``<run>/summary.txt``.

Profiles: ``embedded`` runs every notebook; ``paper`` runs notebooks 01-04 (the 00 notebooks build and
train the embedded model, which the paper profile does not use). A planned notebook without its
``params/<profile>/<name>.yaml`` is refused (it would otherwise run the embedded defaults and file them
under the paper profile's folder).

``--standin`` (paper profile: a dry run, offline, on CPU): every hub model a parameter names is replaced
by its shape-faithful stand-in (:func:`mllm_ood.models.standin_model`), every ``hub:`` dataset is read
from stand-in copies in the card's schema (:func:`mllm_ood.data.hub.make_standin_dataset`, found through
``$MLLM_OOD_HUB_MIRROR``), paper A's CLIP probe model by a tiny CLIP of the same shapes, and notebook 04's
hub embedders (XLM-R, CLIP ViT-B/32) by tiny random stand-ins in the same formats. The substitutions
are listed in the logs and summary; outputs go to ``runs/<profile>-standin[-smoke]/`` and its
``figures/``, never to ``figures/``. Before anything runs, a few-shot notebook whose demonstrations and
query would not fit the model's context is refused, naming the largest shot count that fits.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import fcntl
import os
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

import yaml

from . import progress
from .paths import NOTEBOOKS, PARAMS, RUNS, figures_dir, resolve_model
from .validation import ParameterError, check_choice

PROFILES = ["embedded", "paper"]
# Notebooks a profile runs (by stem prefix); a profile not listed runs all of them.
PROFILE_SKIPS = {"paper": ("00_",)}
# Notebook 04's hub embedders -> tiny random stand-ins in save_pretrained format (XLM-R: embedders.standin_embedder,
# CLIP ViT-B/32: models.standin_clip),
# so the dry run takes paper B's own embedding code path (XLM-R first-layer pooling, CLIP patch mean).
STANDIN_EMBEDDERS = {"TEXT_EMBEDDER": {"xlm-roberta": "xlm-roberta"}, "IMAGE_EMBEDDER": {"clip": "clip"}}
# Notebook 02's probe feature source: 'clip' (or a CLIP hub id) is replaced by a CLIP stand-in folder.
PROBE_FEATURES = "PROBE_FEATURES"
SHOT_PARAMETERS = ("SHOTS", "LABEL_SHIFT_SHOTS", "SPURIOUS_SHOTS")
KERNEL = "mllm-ood"
# Per-cell limit (a hung cell fails the run). The longest cell, notebook 04 embedding the 8,616 shipped LLaVA
# answers with e5 on first use, took over 30 minutes on one core shared with the other notebooks and a test run.
CELL_TIMEOUT = 3 * 3600
LOCK = ".lock"
VALIDATION_CALL = "check_parameters("
# The params file's mapping of smoke-run values (--smoke), as params/embedded/model.yaml's ``smoke:``.
SMOKE_SECTION = "smoke"


class FolderBusy(RuntimeError):
    """Another run holds the lock on an output folder."""


def runs_root() -> Path:
    """Where run folders go: ``runs/``, or ``$MLLM_OOD_RUNS`` (tests, or a user keeping runs elsewhere)."""
    return Path(os.environ.get("MLLM_OOD_RUNS", RUNS))


def notebooks() -> list[Path]:
    """The study's notebooks in execution order."""
    return sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def plan(profile: str, only: list[str] | None) -> list[tuple[Path, Path | None]]:
    """(notebook, params file) pairs to run; validates names, and that every planned notebook has its
    params file, before anything runs."""
    check_choice("profile", profile, PROFILES)
    skips = PROFILE_SKIPS.get(profile, ())
    nbs = [p for p in notebooks() if not p.stem.startswith(skips)]
    if only:
        for name in only:
            hit = [p.stem for p in notebooks() if p.stem.startswith(skips) and
                   (p.stem == name or p.stem.startswith(name + "_") or p.stem[3:] == name)]
            if hit:
                raise ParameterError(f"notebook {hit[0]} is not part of the {profile} profile (it builds and trains "
                                     f"the embedded model); run it with --profile embedded")
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
        if not params.exists():
            raise ParameterError(f"no parameters file {profile}/{nb.stem}.yaml under {PARAMS}: the {profile} "
                                 f"profile would run the notebook's embedded defaults and file them under "
                                 f"runs/{profile}/; write the file (or leave the notebook out with --only)")
        out.append((nb, params))
    return out


# --------------------------------------------------------------------------------------------------
# stand-ins (dry run of the paper profile) and the context check of few-shot notebooks


def standin_substitutions(params: dict) -> dict:
    """{parameter: stand-in value} for one notebook's resolved parameters: hub model ids -> stand-in
    folders (built and cached here), paper A's CLIP probe model -> a tiny CLIP of the same image and patch
    size, hub-only embedders -> offline ones. ParameterError for a hub model without a stand-in (naming why)."""
    from .models import _HUB_ID, standin_model
    from .paths import ROOT

    out = {}
    for key, value in params.items():
        if key in STANDIN_EMBEDDERS and value in STANDIN_EMBEDDERS[key]:
            from .embedders import CLIP_MODEL, standin_embedder
            from .models import standin_clip

            kind = STANDIN_EMBEDDERS[key][value]
            out[key] = str(standin_clip(CLIP_MODEL) if kind == "clip" else standin_embedder(kind))
        elif key == "MODEL" and isinstance(value, str) and _HUB_ID.match(value) and not (ROOT / value).exists():
            out[key] = str(standin_model(value))
        elif key == PROBE_FEATURES and isinstance(value, str) and (
                value == "clip" or (_HUB_ID.match(value) and not (ROOT / value).exists())):
            from .features import CLIP_PROBE_MODEL
            from .models import standin_clip

            out[key] = str(standin_clip(CLIP_PROBE_MODEL if value == "clip" else value))
    return out


def prepare_standin_datasets(resolved, mirror: Path, per_cell: int = 6) -> list[str]:
    """Write a stand-in of every ``hub:`` dataset the parameters name into ``mirror/<spec>/`` (once), with
    ``per_cell`` images per domain x class; return the names. ParameterError for an unknown ``hub:`` name."""
    from .data import hub
    from .data.catalog import HUB_PREFIX

    names = set()

    def walk(v):
        if isinstance(v, str) and v.startswith(HUB_PREFIX):
            names.add(v[len(HUB_PREFIX):].split("/", 1)[0])  # 'hub:pacs/photo' (a reference) names pacs
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, (list, tuple)):
            for x in v:
                walk(x)

    for _, _, params in resolved:
        walk(params)
    for name in sorted(names):
        check_choice("hub dataset", name, hub.SPECS)
        if not (mirror / name).exists():
            tmp = mirror / f".tmp-{name}-{os.getpid()}"
            shutil.rmtree(tmp, ignore_errors=True)
            hub.make_standin_dataset(name, tmp, per_cell=per_cell)
            os.replace(tmp, mirror / name)
    return sorted(names)


def check_context(nb: Path, params: dict, model_label: str | None = None) -> None:
    """Refuse a few-shot notebook whose largest episode (max shots + the query, one image each) would not
    fit the model's context, naming the largest shot count that fits. Models whose image-token count is
    unknown without loading them are left to the runtime check."""
    from .models import context_budget, max_shots, text_reserve

    model = params.get("MODEL")
    shots = {k: (max(params[k]) if isinstance(params[k], list) and params[k] else params[k])
             for k in SHOT_PARAMETERS if k in params and params[k] not in (None, [])}
    if not isinstance(model, str) or not shots:
        return
    from .paths import ROOT

    ref = str(ROOT / model) if (ROOT / model).exists() else model
    budget, fits = context_budget(ref), max_shots(ref)
    if budget is None:
        return
    for key, n in shots.items():
        if isinstance(n, int) and n > fits:
            per_image, positions = budget
            raise ParameterError(
                f"{nb.stem}: parameter {key} asks for {n} demonstrations, but {model_label or model} holds "
                f"{positions} positions and takes up to {per_image} tokens per image: {n} shots + the query = "
                f"{(n + 1) * per_image} image tokens. At most {fits} shots fit (leaving {text_reserve(positions)} tokens of text); "
                f"lower {key} to {fits} or use a model with a longer context (e.g. HuggingFaceTB/SmolVLM-Instruct)")


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

    The file's ``smoke:`` mapping (``{parameter: smoke-run value}``) is used only with ``smoke``: then the
    full-size values are checked first (:func:`check_context` and the notebook's validation prefix, as
    without ``smoke``), and the returned values are the file's with the ``smoke:`` values in their place and
    ``SMOKE: True``, checked too; ``-p`` overrides win over both. Without ``smoke`` the mapping is ignored.

    Raises ParameterError for a key the notebook does not declare (the file's, its ``smoke:`` mapping's or
    ``-p``'s), naming the file or ``-p``, and under ``smoke`` for a bad value of either set, a smoke value
    naming the file's ``smoke:`` mapping.
    """
    declared = declared_parameters(nb)
    params = _read_params_file(params_file)
    source = str(params_file.relative_to(PARAMS.parent)) if params_file else "params"
    smoke_values = params.pop(SMOKE_SECTION, None)
    if smoke_values is None:
        smoke_values = {}
    if not isinstance(smoke_values, dict):
        raise ParameterError(f"{source}: {SMOKE_SECTION}: must be a mapping of parameter names to their smoke-run "
                             f"values, got {type(smoke_values).__name__}")
    _refuse_undeclared(nb, params, source, declared)
    _refuse_undeclared(nb, smoke_values, f"{source} ({SMOKE_SECTION}:)", declared)
    flags = {}
    if smoke:
        _refuse_undeclared(nb, ["SMOKE"], "--smoke", declared)
        flags["SMOKE"] = True
    if retrain and "RETRAIN" in declared:
        flags["RETRAIN"] = True
    _refuse_undeclared(nb, overrides or {}, "-p", declared)
    if not smoke:
        return {**params, **flags, **(overrides or {})}
    full = {**params, **{k: v for k, v in flags.items() if k != "SMOKE"}, **(overrides or {})}
    try:  # what the same command without --smoke would run: a smoke run must not hide a bad full-size value
        check_context(nb, full)
        check_notebook_parameters(nb, full)
    except ParameterError as err:
        raise ParameterError(f"{nb.stem}, full-size values (checked under --smoke too): {err}") from err
    small = {**params, **smoke_values, **flags, **(overrides or {})}
    try:
        check_context(nb, small)
        check_notebook_parameters(nb, small)
    except ParameterError as err:
        raise ParameterError(f"{source}, its {SMOKE_SECTION}: values (--smoke): {err}") from err
    return small


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
        timeout: int = CELL_TIMEOUT, overrides: list[tuple[str, str]] | None = None, standin: bool = False,
        jobs: int | None = None) -> int:
    """Check every planned notebook's parameters, then execute the notebooks; print and write a summary.

    standin: the paper profile's dry run on shape-faithful stand-ins (see the module docstring).
    jobs: notebooks executed at once (default: :func:`default_jobs`: one per core; the paper profile one).
    Returns 0 on success, 1 when a notebook failed, 3 when another run holds the output folder.
    """
    import papermill as pm

    from . import cache

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
    t0 = time.time()  # the checks below, with --smoke's full-size checks inside resolve_parameters
    resolved = [(nb, pf, resolve_parameters(nb, pf, smoke, retrain, extra)) for nb, pf in planned]
    for nb, _, params in resolved:  # the real model's context, before any stand-in is built
        check_context(nb, params)
    unchecked = [nb.stem for nb, _, params in resolved if not check_notebook_parameters(nb, params)]
    print(f"parameters checked for {len(resolved) - len(unchecked)} notebook(s) in {time.time() - t0:.1f}s"
          + (f"; no validation cell (checked only when run): {', '.join(unchecked)}" if unchecked else ""),
          flush=True)
    standin_notes: list[str] = []
    saved_mirror = os.environ.get("MLLM_OOD_HUB_MIRROR")
    if standin:
        from .paths import cache_dir

        # Smoke: a handful of images per domain x class; full dry run: enough for 20 queries + 8 shots per class.
        per_cell = 6 if smoke else 32
        mirror = cache_dir() / "standin_datasets" / f"per_cell_{per_cell}"
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

    run_dir = runs_root() / (profile + ("-standin" if standin else "") + ("-smoke" if smoke else ""))
    figs = run_dir / "figures" if smoke or standin else figures_dir()
    command = " ".join(["run_all.sh", *sys.argv[2:]]) if sys.argv[1:2] == ["run"] else " ".join(sys.argv)
    saved_env = {k: os.environ.get(k) for k in ["MLLM_OOD_FIGURES", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE",
                                                 "TRANSFORMERS_OFFLINE", progress.ENV, "HF_HUB_DISABLE_PROGRESS_BARS",
                                                 "HF_DATASETS_DISABLE_PROGRESS_BARS"]}
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
            # Executed notebooks stay quiet: the project's bars go to each notebook's progress log (see
            # mllm_ood.progress), the libraries' own loading bars are switched off.
            os.environ.update(HF_HUB_DISABLE_PROGRESS_BARS="1", HF_DATASETS_DISABLE_PROGRESS_BARS="1")
            return _execute(pm, resolved, run_dir, figs, timeout, command, profile, smoke, extra, standin_notes,
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


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")


# Runs first, and alone when it may train the model every later notebook loads (:func:`runs_alone`).
SOLO = ("00_embedded_model",)
# Started next, before the others (which need no order among themselves): the longest notebook, so the
# shorter ones fill the other cores beside it instead of it starting last and running alone.
LONGEST_FIRST = ("04_emi_bound",)


def runs_alone(nb: Path, params: dict) -> bool:
    """Whether ``nb`` must run alone: a :data:`SOLO` notebook may write the model the others load, unless it
    only loads a checkpoint (RETRAIN off and its MODEL_DIR holding a training record, as the committed one
    does: ``train_or_load`` then trains nothing)."""
    if nb.stem not in SOLO:
        return False
    from .embedded_model.saving import read_record  # imports torch: only when a run is scheduled

    model_dir = params.get("MODEL_DIR")
    return bool(params.get("RETRAIN")) or not isinstance(model_dir, str) or read_record(resolve_model(model_dir)) is None


def schedule(resolved: list) -> list:
    """``resolved`` ((notebook, params file, params) triples, in notebook order) in execution order: the
    :data:`SOLO` notebooks, then the :data:`LONGEST_FIRST` ones, then the rest, each group in notebook order."""
    return sorted(resolved, key=lambda item: (item[0].stem not in SOLO, item[0].stem not in LONGEST_FIRST))


def default_jobs(profile: str = "embedded") -> int:
    """Notebooks executed at once: one per usable core (each kernel computes on one thread), except the
    paper profile, one at a time: its notebooks each load a hub MLLM, and two would share one GPU's memory."""
    if profile == "paper":
        return 1
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1)


class _Kernels:
    """The kernels the run has started, so an interrupt can stop every running notebook at once."""

    def __init__(self):
        self._lock, self._managers, self._logs = threading.Lock(), [], []

    def manager_class(self, env: dict, log: Path):
        """A kernel manager class whose kernels get ``env`` on top of this process's environment (each
        notebook's figure folder and progress log: threads share one ``os.environ``), write their own
        stderr (start-up warnings, the interrupt jupyter_client sends before a shutdown) to the end of the
        notebook's ``log`` instead of the terminal, and are recorded here."""
        from jupyter_client.manager import AsyncKernelManager

        kernels = self

        class _Manager(AsyncKernelManager):
            async def _async_pre_start_kernel(self, **kw):
                stderr = open(log, "a")  # noqa: SIM115 - closed by close_logs() when the run ends
                kw["env"], kw["stderr"] = {**kw.get("env", os.environ), **env}, stderr
                with kernels._lock:
                    kernels._managers.append(self)
                    kernels._logs.append(stderr)
                return await super()._async_pre_start_kernel(**kw)

        return _Manager

    def close_logs(self) -> None:
        with self._lock:
            for fh in self._logs:
                fh.close()
            self._logs.clear()

    def kill_all(self) -> None:
        with self._lock:
            managers = list(self._managers)
        for km in managers:
            pid = getattr(km.provisioner, "pid", None)
            if pid:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)


def _render_and_publish(executed: Path, stage: Path, stage_figs: Path, figs: Path, run_dir: Path, nb: Path) -> None:
    """Render the executed copy as HTML (nbconvert's HTMLExporter in this process: a subprocess spends
    seconds importing per notebook), then :func:`_publish` the notebook's outputs."""
    from nbconvert import HTMLExporter

    try:
        body, _ = HTMLExporter().from_filename(str(executed))
        executed.with_suffix(".html").write_text(body, encoding="utf-8")
    except Exception as err:  # noqa: BLE001 - the executed copy and figures still publish without HTML
        with open(stage / f"{nb.stem}.log", "a") as fh:
            fh.write(f"\n# no HTML rendering: {type(err).__name__}: {err}\n")
    _publish(stage, stage_figs, figs, run_dir, [nb.name, f"{nb.stem}.html", f"{nb.stem}.log",
                                                f"{nb.stem}.progress.log"])


def _run_one(pm, nb: Path, params_file: Path | None, params: dict, run_dir: Path, figs: Path, timeout: int,
             command: str, smoke: bool, extra: dict, standin_notes: list[str] | None, kernels: _Kernels,
             interrupted: threading.Event, publishing) -> tuple[tuple, str | None, int]:
    """Execute one notebook into its staging folder; hand a success to ``publishing`` (an executor:
    :func:`_render_and_publish`), keep a failure under failed/: (summary row, note or None, status 0 / 1 / 130)."""
    stage = run_dir / "running" / nb.stem
    stage_figs = stage / "figures"
    stage_figs.mkdir(parents=True)
    out, log = stage / nb.name, stage / f"{nb.stem}.log"
    env = {"MLLM_OOD_FIGURES": str(stage_figs), progress.ENV: str(stage / f"{nb.stem}.progress.log")}
    source = str(params_file.relative_to(PARAMS.parent)) if params_file else "(defaults)"
    flags = (" +SMOKE" if smoke else "") + "".join(f" -p {k} {v!r}" for k, v in extra.items())
    print(f"==> {nb.name}  params: {source}{flags}  (log: {log})", flush=True)
    t0 = time.time()
    ok = True
    with open(log, "a") as fh:  # appending: the kernel's own stderr goes to the end of this file too
        fh.write("".join(f"# stand-in: {line}\n" for line in standin_notes or []))
        fh.write(f"# {command}\n# parameters file: {source}\n# overrides (-p): "
                 f"{', '.join(f'{k}={v!r}' for k, v in extra.items()) or 'none'}\n"
                 f"# injected parameters: {params!r}\n")
        fh.flush()
        try:
            pm.execute_notebook(str(nb), str(out), parameters=params, kernel_name=KERNEL,
                                execution_timeout=timeout, log_output=True, stdout_file=fh, stderr_file=fh,
                                progress_bar=False, cwd=str(nb.parent), kernel_manager_class=kernels.manager_class(env, log))
        except KeyboardInterrupt:
            ok = False
            interrupted.set()
        except Exception as err:  # noqa: BLE001 - papermill raises several kinds; all mean "failed"
            ok = False
            fh.write(f"\n{type(err).__name__}: {err}\n")
        if interrupted.is_set() and not ok:
            fh.write("\nKeyboardInterrupt: run interrupted\n")
    wall = time.time() - t0
    if ok:
        print(f"<== {nb.name} ok in {wall:.0f}s", flush=True)
        # Rendered and published beside the next notebook's run, which can start at once.
        publishing.submit(_render_and_publish, out, stage, stage_figs, figs, run_dir, nb)
        return (nb.stem, "ok", wall, run_dir / nb.name), None, 0
    stopped = interrupted.is_set()
    cell = _failing_cell(out)
    failed = _keep_failed(stage, run_dir, nb.stem)
    print(f"{'INTERRUPTED' if stopped else 'FAILED'}: {nb.name} at {cell}\n"
          f"  executed copy, log and figures of the failed run: {failed}\n"
          f"  previous good figures and executed copy left in place ({figs}, {run_dir})", file=sys.stderr)
    note = (f"{nb.stem} {'interrupted' if stopped else 'failed'} at {cell}\n"
            f"  its executed copy, log and figures: {failed}\n"
            f"  {figs} and {run_dir} still hold the previous good outputs of {nb.stem}")
    return (nb.stem, "INTERRUPTED" if stopped else "FAILED", wall, failed / nb.name), note, 130 if stopped else 1


def _execute(pm, resolved, run_dir: Path, figs: Path, timeout: int, command: str, profile: str, smoke: bool,
             extra: dict, standin_notes: list[str] | None = None, jobs: int = 1) -> int:
    """Execute the notebooks, up to ``jobs`` at once in the order of :func:`schedule` (a :data:`SOLO`
    notebook alone, before the rest). After a failure nothing new starts; an interrupt (Ctrl-C, SIGTERM) stops every running one."""
    from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait

    notes, status = [], 0
    if standin_notes:
        notes += ["DRY RUN on stand-ins (random tiny weights, noise images): the numbers mean nothing; only that "
                  "every step runs.", *[f"stand-in: {line}" for line in standin_notes]]
    kernels, interrupted = _Kernels(), threading.Event()
    done_rows: dict[str, tuple] = {}
    pending, running = schedule(resolved), {}

    def collect(futures) -> None:
        nonlocal status
        for f in futures:
            row, note, st = f.result()
            running.pop(f)
            done_rows[row[0]] = row
            notes.extend([note] if note else [])
            status = status or st

    with ThreadPoolExecutor(max_workers=1) as publishing, ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        try:
            while pending or running:
                while (pending and not status and len(running) < jobs
                       and not any(runs_alone(item[0], item[2]) for item in running.values())
                       and (not runs_alone(pending[0][0], pending[0][2]) or not running)):
                    nb, pf, params = item = pending.pop(0)
                    running[pool.submit(_run_one, pm, nb, pf, params, run_dir, figs, timeout, command, smoke,
                                        extra, standin_notes, kernels, interrupted, publishing)] = item
                if not running:
                    break
                collect(wait(list(running), return_when=FIRST_COMPLETED)[0])
        except KeyboardInterrupt:
            interrupted.set()
            while running:  # again each second: a kernel still starting has no process to stop yet
                kernels.kill_all()
                collect(wait(list(running), timeout=1)[0])
            status = 130
    kernels.close_logs()
    shutil.rmtree(run_dir / "running", ignore_errors=True)
    rows = [done_rows[nb.stem] for nb, _, _ in resolved if nb.stem in done_rows]
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
                        "00_embedded_model runs first, alone when it may train the model, then 04_emi_bound)")
    p.set_defaults(func=lambda a: run(a.profile, a.smoke, a.only, a.retrain, a.timeout, a.parameter, a.standin, a.jobs))
