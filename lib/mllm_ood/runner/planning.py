"""Which notebooks run with which parameters: the plan of a profile, the parameters papermill will inject
(the YAML file, its ``smoke:`` values, ``-p`` overrides), and each notebook's validation prefix run in this
process before anything computes."""

from __future__ import annotations

import difflib
import os
from pathlib import Path

import yaml

from ..data import hub
from ..data.catalog import HUB_PREFIX
from ..mllm.preflight import HUB_ID, hub_unreachable, needs_hub
from ..paths import NOTEBOOKS, PARAMS, RUNS
from ..validation import ParameterError, check_choice
from .standins import check_context

PROFILES = ["embedded", "paper"]
# Notebooks a profile runs (by stem prefix); a profile not listed runs all of them.
PROFILE_SKIPS = {"paper": ("00_",)}
KERNEL = "mllm-ood"
VALIDATION_CALL = "check_parameters("
# The params file's mapping of smoke-run values (--smoke), as params/embedded/model.yaml's ``smoke:``.
SMOKE_SECTION = "smoke"


def runs_root() -> Path:
    """Where run folders go: ``runs/``, or ``$MLLM_OOD_RUNS`` (tests, or a user keeping runs elsewhere)."""
    return Path(os.environ.get("MLLM_OOD_RUNS") or RUNS)


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


def params_label(params_file: Path | None) -> str:
    """A parameters file as the logs name it: relative to the repository (``params/embedded/01_....yaml``)."""
    return str(params_file.relative_to(PARAMS.parent)) if params_file else "(defaults)"


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
            return yaml.load(s, Loader=UniqueKeyLoader)  # noqa: S506 - a SafeLoader
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


class UniqueKeyLoader(yaml.SafeLoader):
    """YAML's safe loader refusing a mapping that repeats a key (plain YAML keeps the last value silently)."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} repeats (line "
                                                        f"{key_node.start_mark.line + 1}); give each key once",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_params_file(params_file: Path | None) -> dict:
    if params_file is None:
        return {}
    try:
        params = yaml.load(params_file.read_text(), Loader=UniqueKeyLoader) or {}  # noqa: S506 - a SafeLoader
    except yaml.YAMLError as err:
        raise ParameterError(f"{params_file}: not valid YAML: {err}") from err
    if not isinstance(params, dict):
        raise ParameterError(f"{params_file}: expected a mapping of parameter names to values")
    return params


def refuse_undeclared(nb: Path, keys, source: str, declared: dict) -> None:
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
    params = read_params_file(params_file)
    source = params_label(params_file) if params_file else "params"
    if smoke and params_file is not None and SMOKE_SECTION not in params:
        raise ParameterError(f"{source} has no {SMOKE_SECTION}: mapping, so --smoke would run the full-size values; "
                             f"add the smoke run's sizes ({SMOKE_SECTION}: {{PARAMETER: value}}), or "
                             f"'{SMOKE_SECTION}: {{}}' to smoke-run the full-size values on purpose")
    smoke_values = params.pop(SMOKE_SECTION, None)
    if smoke_values is None:
        smoke_values = {}
    if not isinstance(smoke_values, dict):
        raise ParameterError(f"{source}: {SMOKE_SECTION}: must be a mapping of parameter names to their smoke-run "
                             f"values, got {type(smoke_values).__name__}")
    refuse_undeclared(nb, params, source, declared)
    refuse_undeclared(nb, smoke_values, f"{source} ({SMOKE_SECTION}:)", declared)
    flags = {}
    if smoke:
        refuse_undeclared(nb, ["SMOKE"], "--smoke", declared)
        flags["SMOKE"] = True
    if retrain and "RETRAIN" in declared:
        flags["RETRAIN"] = True
    refuse_undeclared(nb, overrides or {}, "-p", declared)
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


def check_hub_once(planned, smoke: bool, extra: dict) -> None:
    """The paper profile without --standin: if any hub model or dataset its parameters name is not in the
    local cache, check once that the hub can be reached, and refuse the run at once when it cannot."""
    needed = set()
    for _, pf in planned:
        params = read_params_file(pf)
        sets = [params, {**params, **(params.get(SMOKE_SECTION) or {})}] if smoke else [params]
        for values in sets:
            for value in {**values, **extra}.values():
                for v in value if isinstance(value, list) else [value]:
                    if isinstance(v, str) and v.startswith(HUB_PREFIX) and not os.environ.get("MLLM_OOD_HUB_MIRROR"):
                        spec = hub.SPECS.get(v[len(HUB_PREFIX):].split("/", 1)[0])
                        if spec is not None and spec.hub_id and needs_hub(spec.hub_id, "dataset"):
                            needed.add(spec.hub_id)
                    elif isinstance(v, str) and HUB_ID.match(v) and needs_hub(v):
                        needed.add(v)
    if needed:
        why = hub_unreachable()
        if why is not None:
            raise ParameterError(f"the paper profile reads {', '.join(sorted(needed))} from the Hugging Face hub, which "
                                 f"cannot be used: {why}. Connect to the network, or run the offline dry run "
                                 f"(--standin)")


def code_cells(nb: Path):
    import nbformat

    return [c for c in nbformat.read(nb, as_version=4).cells if c.cell_type == "code"]


def validation_prefix(nb: Path) -> tuple[list[str], str, str | None]:
    """(code cells before the parameters cell, the parameters cell, the validation cell or None).

    The validation cell is the first code cell after the parameters cell, when it calls
    ``check_parameters``; a notebook without one has its values checked only when it runs.
    """
    cells = code_cells(nb)
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
