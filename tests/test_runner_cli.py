"""Command line and runner: parameters validated before any compute, one clear error."""

from __future__ import annotations

import subprocess
import sys

import pytest

from mllm_ood.__main__ import main
from mllm_ood.runner.planning import plan
from mllm_ood.validation import ParameterError


def test_plan_validates_names():
    assert [nb.stem for nb, _ in plan("embedded", ["00_embedded_world"])] == ["00_embedded_world"]
    assert [nb.stem for nb, _ in plan("embedded", ["embedded_world"])] == ["00_embedded_world"]
    with pytest.raises(ParameterError, match="unknown profile 'laptop'"):
        plan("laptop", None)
    with pytest.raises(ParameterError, match="unknown notebook 'nope'"):
        plan("embedded", ["nope"])


def test_every_notebook_has_embedded_params():
    for nb, params in plan("embedded", None):
        assert params is not None, f"params/embedded/{nb.stem}.yaml is missing"


def test_cli_reports_bad_input_with_exit_code_2(capsys, fresh_cache):
    assert main(["build-data", "--dataset", "imagenet"]) == 2
    err = capsys.readouterr().err
    assert "unknown dataset 'imagenet'" in err and "rotated_mnist" in err
    assert not fresh_cache.exists(), "nothing may be written for a bad request"
    assert main(["run", "--profile", "cloud"]) == 2
    assert "unknown profile 'cloud'" in capsys.readouterr().err


def test_module_entry_point():
    proc = subprocess.run([sys.executable, "-m", "mllm_ood", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "build-data" in proc.stdout and "run" in proc.stdout


def test_cli_refuses_undeclared_and_bad_p_values_with_exit_code_2(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MLLM_OOD_RUNS", str(tmp_path / "runs"))
    assert main(["run", "--only", "00_embedded_world", "-p", "SEEED", "1"]) == 2
    assert "no parameter 'SEEED' (did you mean 'SEED'?)" in capsys.readouterr().err
    assert main(["run", "--smoke", "--only", "00_embedded_world", "-p", "SEED", "abc"]) == 2
    assert "parameter SEED = 'abc': must be an integer in [0, 4294967295]" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists(), "nothing may be written for a refused run"
