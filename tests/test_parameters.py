"""Every notebook checks every parameter by name, in the cell after its parameters cell, before any compute.

The sweep runs each notebook only up to that validation cell (imports, parameters, papermill's injected
values, ``check_parameters``), exactly as the runner's pre-flight does, so it takes seconds. Bad values
come from each parameter's type hint (values no parameter of that type may take) plus the cases the
issue found slow or unclear; none of them is derived from the notebook's own rules.
"""

from __future__ import annotations

import ast
import math

import pytest

from mllm_ood.paths import NOTEBOOKS, PARAMS
from mllm_ood.runner.planning import (check_notebook_parameters, declared_parameters, notebooks, resolve_parameters,
                                      validation_prefix)
from mllm_ood.validation import ParameterError

NOTEBOOK_NAMES = [p.stem for p in notebooks()]
# Notebooks whose validation cell is not written yet. Adding one = deleting its name here.
PENDING: set = set()
VALIDATED = [n for n in NOTEBOOK_NAMES if n not in PENDING]

# Values that no parameter of the hinted type may take.
GENERIC_BAD = {
    "int": ["ten", 2.5, -1, True, None, [1]],
    "float": ["high", None, math.nan, True, [0.5]],
    "bool": ["yes", 1, None],
    "str": [3, None, "", ["a"]],
    "list": ["abc", [], None, 5],
    "dict": ["abc", None, 5, [1]],
}
# Lists whose empty value is meaningful ("off"): [] is not a bad value for these.
MAY_BE_EMPTY = {("04_emi_bound", "HUB_DATASETS")}
# (notebook, parameter, bad value): what the issue measured as failing late, unclearly or not at all.
SPECIFIC_BAD = [
    ("00_embedded_world", "SAMPLES_PER_DOMAIN", 0), ("00_embedded_world", "SAMPLES_PER_DOMAIN", -3),
    ("00_embedded_world", "SAMPLES_PER_DOMAIN", "ten"), ("00_embedded_world", "SEED", "abc"),
    ("01_zero_shot_ood", "BATCH_SIZE", 0), ("01_zero_shot_ood", "SAMPLES_PER_CLASS", 1e9),
    ("01_zero_shot_ood", "SAMPLES_PER_CLASS", "1e9"), ("01_zero_shot_ood", "SAMPLES_PER_CLASS", 10**9),
    ("01_zero_shot_ood", "DATASETS", ["rotated_mnist", "imagenet"]), ("01_zero_shot_ood", "MODES", ["guess"]),
    ("01_zero_shot_ood", "SAMPLING", "all"), ("01_zero_shot_ood", "MODEL", "data/models/embeded_mllm"),
    ("01_zero_shot_ood", "N_BOOT", 0), ("01_zero_shot_ood", "PROMPT_STYLE", "long"),
    ("02_hypotheses", "PROMPT_STYLE", "paper"),
    ("04_emi_bound", "HUB_DATASETS", ["hub:pacs"]), ("04_emi_bound", "HUB_QUESTIONS", -1),
    ("02_hypotheses", "LEARNING_CURVE", [-1, 2]), ("02_hypotheses", "LEARNING_CURVE", []),
    ("02_hypotheses", "LEARNING_CURVE", [64, 128]), ("02_hypotheses", "PROBE_PER_CLASS", -1),
    ("02_hypotheses", "PROBE_PER_CLASS", 10**9), ("02_hypotheses", "MODES", ["both"]),
    ("02_hypotheses", "BATCH_SIZE", 0),
    ("04_emi_bound", "GRIDS", ["coco"]), ("04_emi_bound", "LEVEL", 1.0), ("04_emi_bound", "LEVEL", 0),
    ("04_emi_bound", "WASSERSTEIN", "emd"), ("04_emi_bound", "BATCH_SIZE", 0),
    ("04_emi_bound", "MAX_NEW_TOKENS", 0), ("04_emi_bound", "CLUB_MAX_EPOCHS", 0),
    ("04_emi_bound", "SAMPLES_PER_CLASS", 10**9), ("04_emi_bound", "BENCH_MODELS", ["llava-v1.5-7b"]),
    ("04_emi_bound", "BENCH_TEXT_EMBEDDERS", ["xlm-roberta"]), ("04_emi_bound", "N_PERM", 0),
    # Active once these notebooks leave PENDING:
    ("00_embedded_model", "N_ICL_QUERIES_PER_CLASS", 0), ("00_embedded_model", "N_OOD_PER_CLASS", -1),
    ("00_embedded_model", "SEED", "abc"),
    ("03_in_context_learning", "PROBE_CURVE", [-2, 4]), ("03_in_context_learning", "PROBE_PER_CLASS", -1),
    ("03_in_context_learning", "SEEDS", "abc"), ("03_in_context_learning", "BATCH_SIZE", 0),
    ("03_in_context_learning", "SHOTS", [-1, 2]),
]
# Bad combinations: (notebook, overrides, the parameter the error must name).
COMBINED_BAD = [
    ("04_emi_bound", {"N_PERM": 10, "LEVEL": 0.95}, "N_PERM"),
    ("02_hypotheses", {"PROBE_PER_CLASS": 4, "LEARNING_CURVE": [4, 8]}, "LEARNING_CURVE"),
    # a model whose family offers no vision features (capabilities_of), where the notebook reads them
    ("02_hypotheses", {"MODEL": "openai:gpt-4o"}, "MODEL"),
    ("04_emi_bound", {"MODEL": "openai:gpt-4o", "IMAGE_EMBEDDER": "model"}, "IMAGE_EMBEDDER"),
    ("04_emi_bound", {"REPLAY_PAPER_B": True, "HUB_DATASETS": []}, "REPLAY_PAPER_B"),  # the replay reads the hub sets
]


def _nb(name):
    return NOTEBOOKS / f"{name}.ipynb"


def _good(name: str, profile: str = "embedded") -> dict:
    params_file = PARAMS / profile / f"{name}.yaml"
    return resolve_parameters(_nb(name), params_file if params_file.exists() else None)


def _cases():
    cases = []
    for name in VALIDATED:
        for param, hint in declared_parameters(_nb(name)).items():
            for value in GENERIC_BAD.get(hint, []):
                if value == [] and (name, param) in MAY_BE_EMPTY:
                    continue
                cases.append(pytest.param(name, param, value, id=f"{name}-{param}-{value!r}"))
    cases += [pytest.param(n, p, v, id=f"{n}-{p}-{v!r}") for n, p, v in SPECIFIC_BAD if n in VALIDATED]
    return cases


@pytest.fixture(autouse=True)
def _no_figures_here(tmp_path, monkeypatch):
    monkeypatch.setenv("MLLM_OOD_FIGURES", str(tmp_path / "figures"))
    yield
    assert not (tmp_path / "figures").exists(), "a validation prefix wrote a figure"


@pytest.mark.parametrize("name", VALIDATED)
def test_validation_cell_comes_before_any_compute(name):
    before, _, check = validation_prefix(_nb(name))
    assert check is not None, f"{name}: the cell after the parameters cell must call check_parameters"
    for src in before:  # only imports (and docstrings) may run before the parameters are checked
        for node in ast.parse(src).body:
            assert isinstance(node, (ast.Import, ast.ImportFrom)) or (
                isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)), \
                f"{name}: {ast.unparse(node)[:80]!r} runs before the parameters are checked"


@pytest.mark.parametrize("name", VALIDATED)
def test_every_parameter_type_has_bad_values(name):
    hints = declared_parameters(_nb(name))
    assert set(hints.values()) <= set(GENERIC_BAD), f"{name}: add bad values for {set(hints.values()) - set(GENERIC_BAD)}"


@pytest.mark.parametrize("name", VALIDATED)
@pytest.mark.parametrize("profile", ["embedded", "paper"])
@pytest.mark.parametrize("smoke", [False, True])
def test_committed_parameters_pass(name, profile, smoke, monkeypatch):
    params_file = PARAMS / profile / f"{name}.yaml"
    if not params_file.exists():
        pytest.skip(f"no params/{profile}/{name}.yaml")
    if profile == "paper":  # its hub models are checked against the hub, here taken as reachable
        from mllm_ood.mllm import preflight

        monkeypatch.setattr(preflight, "hub_unreachable", lambda: None)
    params = resolve_parameters(_nb(name), params_file, smoke=smoke)
    assert check_notebook_parameters(_nb(name), params) is True


@pytest.mark.parametrize(("name", "param", "value"), _cases())
def test_bad_value_is_refused_by_name(name, param, value):
    with pytest.raises(ParameterError) as err:
        check_notebook_parameters(_nb(name), {**_good(name), param: value})
    assert str(err.value).startswith(f"parameter {param} = "), str(err.value)


@pytest.mark.parametrize(("name", "overrides", "param"), [c for c in COMBINED_BAD if c[0] in VALIDATED])
def test_bad_combination_is_refused_by_name(name, overrides, param):
    with pytest.raises(ParameterError, match=f"^parameter {param} = "):
        check_notebook_parameters(_nb(name), {**_good(name), **overrides})


@pytest.mark.parametrize("name", ["01_zero_shot_ood", "02_hypotheses"])
@pytest.mark.parametrize("reference, fragment", [({"hub:pacs": "hub:pacs/photo"}, "not among the datasets"),
                                                 ({"rotated_mnist": "digit_styles/photo"}, "unknown domain"),
                                                 ({"rotated_mnist": "molecules_size/small"}, "not evaluated")])
def test_bad_id_reference_is_refused_with_the_datasets(name, reference, fragment):
    with pytest.raises(ParameterError, match=f"^parameters ID_REFERENCE, DATASETS \\(together\\): .*{fragment}"):
        check_notebook_parameters(_nb(name), {**_good(name), "DATASETS": ["digit_styles", "rotated_mnist"],
                                              "ID_REFERENCE": reference})


def test_pending_list_is_current():
    """A notebook in PENDING that gained its validation cell must join the sweep (delete it from PENDING)."""
    for name in PENDING & set(NOTEBOOK_NAMES):
        assert validation_prefix(_nb(name))[2] is None, f"{name} has a validation cell: remove it from PENDING"
