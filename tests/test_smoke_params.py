"""Smoke sizes declared in the params files: ``smoke:`` in ``params/<profile>/<notebook>.yaml`` holds the values
``--smoke`` runs with (as ``params/embedded/model.yaml``'s ``smoke:`` holds the micro model's). The runner
checks its keys like any other, checks the full-size values and then the smoke values before anything runs,
and injects the smoke values (and ``SMOKE: True``) only under ``--smoke``.

Most tests drive the real runner on a tiny one-figure notebook written here; one checks a real notebook.
"""

from __future__ import annotations

import pytest

from conftest import tiny_study
from mllm_ood import runner
from mllm_ood.paths import NOTEBOOKS, PARAMS
from mllm_ood.validation import ParameterError

CELLS = [
    ("", "import pandas as pd\nimport matplotlib.pyplot as plt\n\nfrom mllm_ood.plotting import save_figure"),
    ("parameters", 'SMOKE: bool = False  # run flag\nTAG: str = "full"  # written into the figure\n'
                   "N: int = 100  # a size"),
    ("", "from mllm_ood.validation import boolean, check_parameters, integer, text\n\n"
         "check_parameters(globals(), SMOKE=boolean(), TAG=text(), N=integer(1, 1000))"),
    ("", "fig, ax = plt.subplots()\nax.set_title(TAG)\nsave_figure(fig, 't_sizes', pd.DataFrame({'tag': [TAG], 'n': [N], "
         "'smoke': [SMOKE]}))"),
]


@pytest.fixture
def study(tmp_path, monkeypatch):
    """A one-notebook study in tmp_path (notebooks/, params/embedded/, runs/, figures/); returns its YAML."""
    return tiny_study(tmp_path, monkeypatch, CELLS) / "90_tiny.yaml"


def _resolve(yaml_file, **kw):
    return runner.resolve_parameters(runner.planning.NOTEBOOKS / "90_tiny.ipynb", yaml_file, **kw)


def _nothing_written(yaml_file):
    root = yaml_file.parents[2]
    return not (root / "runs").exists() and not (root / "figures").exists()


def test_smoke_values_injected_only_under_smoke(study):
    study.write_text("TAG: full\nN: 100\nsmoke:\n  N: 3\n")
    assert _resolve(study) == {"TAG": "full", "N": 100}  # no smoke key, no SMOKE
    assert _resolve(study, smoke=True) == {"TAG": "full", "N": 3, "SMOKE": True}
    assert _resolve(study, smoke=True, overrides={"N": 7}) == {"TAG": "full", "N": 7, "SMOKE": True}  # -p wins
    study.write_text("TAG: full\nN: 100\nsmoke:\n")  # an empty mapping: smoke runs the full values
    assert _resolve(study, smoke=True) == {"TAG": "full", "N": 100, "SMOKE": True}


def test_smoke_run_executes_the_smoke_values(study):
    study.write_text("TAG: full\nN: 100\nsmoke: {TAG: small, N: 3}\n")
    assert runner.run(smoke=True) == 0
    run_dir = study.parents[2] / "runs" / "embedded-smoke"
    assert (run_dir / "figures" / "t_sizes.csv").read_text().splitlines()[1] == "small,3,True"
    assert "'TAG': 'small', 'N': 3, 'SMOKE': True" in (run_dir / "90_tiny.log").read_text()


def test_undeclared_smoke_key_is_refused_like_a_misspelling(study):
    study.write_text("TAG: full\nsmoke: {NN: 3}\n")
    for smoke in (False, True):  # a misspelled smoke key is wrong whether or not this run uses it
        with pytest.raises(ParameterError, match=r"^params/embedded/90_tiny.yaml \(smoke:\): notebook 90_tiny has no "
                                                 r"parameter 'NN' \(did you mean 'N'\?\)"):
            runner.run(smoke=smoke)
    study.write_text("TAG: full\nsmoke: [N, 3]\n")
    with pytest.raises(ParameterError, match=r"^params/embedded/90_tiny.yaml: smoke: must be a mapping"):
        runner.run()
    assert _nothing_written(study)


def test_bad_smoke_value_refused_naming_key_and_file_before_anything_runs(study):
    study.write_text("TAG: full\nN: 100\nsmoke: {N: 0}\n")
    with pytest.raises(ParameterError, match=r"^params/embedded/90_tiny.yaml, its smoke: values \(--smoke\): "
                                             r"parameter N = 0: must be an integer in \[1, 1000\]"):
        runner.run(smoke=True)
    assert _nothing_written(study)


def test_bad_full_size_value_refused_even_under_smoke(study):
    """The smoke value of N is fine; the full-size one is not: a smoke run must not hide it."""
    study.write_text("TAG: full\nN: 5000\nsmoke: {N: 3}\n")
    with pytest.raises(ParameterError, match=r"^90_tiny, full-size values \(checked under --smoke too\): "
                                             r"parameter N = 5000: must be an integer in \[1, 1000\]"):
        runner.run(smoke=True)
    with pytest.raises(ParameterError, match=r"full-size values .* parameter N = 0"):  # -p: both sets
        runner.run(smoke=True, overrides=[("N", "0")])
    assert _nothing_written(study)


def test_real_notebook_smoke_values_resolved_and_full_size_checked():
    """Notebook 03 of the paper profile: the smoke values fit LLaVA-1.5's context (2 shots), the full-size
    ones (8 shots) do not, and --smoke refuses the model for them."""
    nb, yaml_file = NOTEBOOKS / "03_in_context_learning.ipynb", PARAMS / "paper" / "03_in_context_learning.yaml"
    params = runner.resolve_parameters(nb, yaml_file, smoke=True)
    assert params["SMOKE"] is True and params["SHOTS"] == [0, 2] and [t["name"] for t in params["TASKS"]] == \
        ["pacs_sketch", "pacs_art_3way"]
    runner.check_context(nb, {**params, "MODEL": "llava-hf/llava-1.5-7b-hf"})  # the smoke set alone would fit
    with pytest.raises(ParameterError, match=r"full-size values .* SHOTS asks for 8 .* At most 5 shots fit"):
        runner.resolve_parameters(nb, yaml_file, smoke=True, overrides={"MODEL": "llava-hf/llava-1.5-7b-hf"})
