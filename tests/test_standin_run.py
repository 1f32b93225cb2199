"""The paper profile's dry run on stand-ins (`run_all.sh --profile paper --standin`): refusals before any
compute, and a trimmed end-to-end run of every paper notebook offline."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import network_guard_env
from mllm_ood import runner
from mllm_ood.paths import PARAMS, ROOT
from mllm_ood.validation import ParameterError


def test_paper_profile_plans_notebooks_01_to_04_each_with_its_params():
    stems = [nb.stem for nb, _ in runner.plan("paper", None)]
    assert stems and all(not s.startswith("00_") for s in stems) and "02_hypotheses" in stems
    with pytest.raises(ParameterError, match="not part of the paper profile"):
        runner.plan("paper", ["00_embedded_model"])


def test_missing_params_file_is_refused(tmp_path, monkeypatch):
    (tmp_path / "paper").mkdir()
    (tmp_path / "paper" / "01_zero_shot_ood.yaml").write_text((PARAMS / "paper" / "01_zero_shot_ood.yaml").read_text())
    monkeypatch.setattr(runner.planning, "PARAMS", tmp_path)
    with pytest.raises(ParameterError, match="no parameters file paper/02_hypotheses.yaml"):
        runner.plan("paper", None)


def test_too_many_shots_for_the_context_is_refused_with_what_fits():
    nb = ROOT / "notebooks" / "03_in_context_learning.ipynb"
    params = runner.resolve_parameters(nb, PARAMS / "paper" / "03_in_context_learning.yaml")
    runner.check_context(nb, params)  # the committed paper params fit
    with pytest.raises(ParameterError, match=r"parameter SHOTS asks for 8 .* At most 5 shots fit"):
        runner.check_context(nb, {**params, "MODEL": "llava-hf/llava-1.5-7b-hf"})
    runner.check_context(nb, {**params, "MODEL": "llava-hf/llava-1.5-7b-hf", "SHOTS": [0, 2, 4],
                              "LABEL_SHIFT_SHOTS": 4, "SPURIOUS_SHOTS": 4})


def test_cli_refusals_write_nothing(tmp_path, monkeypatch, capsys):
    from mllm_ood.__main__ import main

    monkeypatch.setenv("MLLM_OOD_RUNS", str(tmp_path / "runs"))
    assert main(["run", "--standin"]) == 2
    assert "use it with --profile paper" in capsys.readouterr().err
    assert main(["run", "--profile", "paper", "--standin", "--only", "03", "-p", "MODEL",
                 "llava-hf/llava-1.5-7b-hf"]) == 2
    assert "At most 5 shots fit" in capsys.readouterr().err
    assert main(["run", "--profile", "paper", "--standin", "--only", "01", "-p", "MODEL",
                 "Qwen/Qwen2-VL-7B-Instruct"]) == 2
    assert "torchvision" in capsys.readouterr().err
    assert main(["run", "--profile", "paper", "--standin", "--only", "01", "-p", "DATASETS", "[hub:pacs, hub:imagenet]"]) == 2
    assert "hub:imagenet" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists(), "nothing may be written for a refused run"


@pytest.mark.slow
@pytest.mark.parametrize("extra, n_ok", [
    (["--only", "01", "--only", "02"], 2),
    (["--only", "04"], 1),
    # LLaVA-1.5 holds at most 5 shots: the full-size values must fit too (checked even in smoke), so they are
    # set here, to the smoke sizes (-p wins over the YAML's smoke: values)
    (["--only", "03", "-p", "MODEL", "llava-hf/llava-1.5-7b-hf", "-p", "SHOTS", "[0, 2]", "-p", "LABEL_SHIFT_SHOTS", "2",
      "-p", "SPURIOUS_SHOTS", "2", "-p", "MAJORITY_FRACTIONS", "[0.5, 1.0]", "-p", "TIE_STRENGTHS", "[0.5, 1.0]"], 1),
], ids=["01-02", "04", "03"])
def test_dry_run_of_the_paper_profile_on_standins(extra, n_ok, tmp_path, session_cache):
    """Every paper notebook, trimmed (--smoke), on stand-ins, with the network blocked (three runs, which
    parallel test workers take side by side). Notebook 03 runs on the LLaVA-1.5 stand-in here (2 shots fit
    its context): on the SmolVLM stand-in, 17 tiles per image, its smoke run alone took 238 s (measured);
    tests/test_standins.py covers SmolVLM's scoring."""
    record = tmp_path / "network.log"
    env = network_guard_env(record)
    env.update(MLLM_OOD_CACHE=str(session_cache), MLLM_OOD_RUNS=str(tmp_path / "runs"), OMP_NUM_THREADS="1")
    base = [sys.executable, "-m", "mllm_ood", "run", "--profile", "paper", "--standin", "--smoke"]
    proc = subprocess.run(base + extra, env=env, capture_output=True, text=True, timeout=1200, cwd=ROOT)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    summary = (tmp_path / "runs" / "paper-standin-smoke" / "summary.txt").read_text()
    assert "DRY RUN on stand-ins" in summary and "FAILED" not in summary
    assert summary.count(" ok ") == n_ok, summary
    if "04" in extra:  # paper B's full setup (part 2b) on stand-ins: hub sets, stand-in MLLM, CLIP and XLM-R
        assert "xlm-roberta-base-standin" in summary and "IMAGE_EMBEDDER 'clip' -> stand-in" in summary, summary
        assert "llavabench_shift_synthetic" in summary and "llavabench_shift_natural" in summary, summary
        nb04 = (tmp_path / "runs" / "paper-standin-smoke" / "04_emi_bound.ipynb").read_text()
        assert "PART 2b" in nb04 and "6 shifted scenarios" in nb04 and "llava_bench_coco_frost_5_KeyboardAug_3" in nb04
    figures = list((tmp_path / "runs" / "paper-standin-smoke" / "figures").glob("*.png"))
    assert len(figures) >= 2 * n_ok, figures  # every notebook draws at least two
    assert not record.exists() or not record.read_text(), f"network access attempted:\n{record.read_text()}"
