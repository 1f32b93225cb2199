"""Nothing lost, nothing wrong (issue 26): a publish that fails fails the run and keeps the outputs, publishing
works across filesystems, a folder that cannot be written is refused before compute, a retrain never deletes
what it did not write, params files are read strictly, stale failure folders go away.

Most tests drive the real runner on a tiny notebook written here (seconds).
"""

from __future__ import annotations

import json
import os
import tempfile
import uuid
from pathlib import Path

import pytest

from conftest import tiny_study
from mllm_ood import runner
from mllm_ood.__main__ import main
from mllm_ood.publish import PublishError, publish_files
from mllm_ood.safe_replace import check_replaceable, install_folder
from mllm_ood.validation import ParameterError

CELLS = [
    ("", "import shutil\nfrom pathlib import Path\n\nimport matplotlib.pyplot as plt\nimport pandas as pd\n\n"
         "from mllm_ood.plotting import save_figure"),
    ("parameters", 'SMOKE: bool = False  # unused\nTAG: str = "good"  # written into the figure\n'
                   'FAIL: bool = False  # fail after the figure\n'
                   'BLOCK: str = ""  # a folder to replace by a file (the publish then fails)'),
    ("", "from mllm_ood.validation import boolean, check_parameters, text\n\n"
         "check_parameters(globals(), SMOKE=boolean(), TAG=text(), FAIL=boolean(), BLOCK=text(nonempty=False))"),
    ("", "fig, ax = plt.subplots()\nax.set_title(TAG)\nsave_figure(fig, 't_fig', pd.DataFrame({'tag': [TAG]}))\n"
         "if BLOCK:\n    shutil.rmtree(BLOCK)\n    Path(BLOCK).write_text('not a folder')\n"
         "if FAIL:\n    raise RuntimeError('failing on purpose')"),
]


@pytest.fixture
def study(tmp_path, monkeypatch):
    (tiny_study(tmp_path, monkeypatch, CELLS) / "90_tiny.yaml").write_text("TAG: good\nsmoke: {}\n")
    return tmp_path


def _other_filesystem() -> Path | None:
    shm = Path("/dev/shm")
    if shm.is_dir() and os.access(shm, os.W_OK) and shm.stat().st_dev != Path(tempfile.gettempdir()).stat().st_dev:
        return shm
    return None


# --------------------------------------------------------------------------------------------------
# publishing


@pytest.mark.skipif(_other_filesystem() is None, reason="no second filesystem (/dev/shm) here")
def test_figures_on_another_filesystem_are_published(study, monkeypatch):
    figs = _other_filesystem() / f"mllm-ood-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("MLLM_OOD_FIGURES", str(figs))
    try:
        assert runner.run() == 0
        assert (figs / "t_fig.csv").read_text().splitlines()[1] == "good"
        run_dir = study / "runs" / "embedded"
        assert (run_dir / "90_tiny.ipynb").is_file() and "ok" in (run_dir / "summary.txt").read_text()
    finally:
        import shutil

        shutil.rmtree(figs, ignore_errors=True)


def test_a_failed_publish_fails_the_run_and_keeps_the_outputs(study, capsys):
    figs = study / "figures"
    assert runner.run() == 0
    assert runner.run(overrides=[("TAG", "new"), ("BLOCK", str(figs))]) == 1  # figures/ becomes a file midway
    run_dir = study / "runs" / "embedded"
    failed = run_dir / "failed" / "90_tiny"
    assert (failed / "figures" / "t_fig.csv").read_text().splitlines()[1] == "new", "the new figure was lost"
    assert (failed / "90_tiny.ipynb").is_file() and (failed / "90_tiny.log").is_file()
    summary = (run_dir / "summary.txt").read_text()
    assert "FAILED" in summary and "publishing its outputs failed" in summary and str(failed) in summary
    assert "ran, but publishing" in capsys.readouterr().err
    assert not (run_dir / "running").exists()


def test_publish_files_is_all_or_nothing(tmp_path):
    stage, dst = tmp_path / "stage", tmp_path / "dst"
    stage.mkdir()
    (stage / "a.csv").write_text("a")
    (stage / "b.csv").write_text("b")
    (tmp_path / "blocked").write_text("a file where a folder should be")
    with pytest.raises(PublishError, match="cannot publish b.csv"):
        publish_files([(stage / "a.csv", dst / "a.csv"), (stage / "b.csv", tmp_path / "blocked" / "b.csv")])
    assert (stage / "a.csv").read_text() == "a" and (stage / "b.csv").read_text() == "b"
    assert not list(dst.glob("*")), "a publish that failed left files at the destination"


def test_unwritable_figures_folder_refused_before_compute(study, monkeypatch, capsys):
    (study / "plain_file").write_text("x")
    monkeypatch.setenv("MLLM_OOD_FIGURES", str(study / "plain_file" / "figures"))
    with pytest.raises(ParameterError, match="the figures folder .* cannot be written"):
        runner.run()
    assert not (study / "runs" / "embedded" / "90_tiny.ipynb").exists()
    assert main(["run"]) == 2 and "cannot be written" in capsys.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_figures_folder_refused_before_compute(study, monkeypatch):
    figs = study / "ro_figures"
    figs.mkdir()
    figs.chmod(0o555)
    monkeypatch.setenv("MLLM_OOD_FIGURES", str(figs))
    try:
        with pytest.raises(ParameterError, match="cannot be written"):
            runner.run()
    finally:
        figs.chmod(0o755)


def test_stale_failure_folder_removed_after_a_success(study):
    run_dir = study / "runs" / "embedded"
    assert runner.run(overrides=[("FAIL", "True")]) == 1
    assert (run_dir / "failed" / "90_tiny").is_dir()
    assert runner.run() == 0
    assert not (run_dir / "failed").exists()


# --------------------------------------------------------------------------------------------------
# params files


def test_repeated_key_in_params_file_refused(study):
    (study / "params" / "embedded" / "90_tiny.yaml").write_text("TAG: one\nTAG: two\nsmoke: {}\n")
    with pytest.raises(ParameterError, match="key 'TAG' repeats"):
        runner.run()
    (study / "params" / "embedded" / "90_tiny.yaml").write_text("TAG: one\nsmoke: {TAG: a, TAG: b}\n")
    with pytest.raises(ParameterError, match="key 'TAG' repeats"):
        runner.run(smoke=True)
    assert not (study / "runs").exists()


def test_smoke_run_of_a_params_file_without_smoke_sizes_refused(study):
    (study / "params" / "embedded" / "90_tiny.yaml").write_text("")
    with pytest.raises(ParameterError, match="has no smoke: mapping, so --smoke would run the full-size values"):
        runner.run(smoke=True)
    assert not (study / "runs").exists()


# --------------------------------------------------------------------------------------------------
# retraining: never delete what this project did not write


def _checkpoint(folder: Path, files=("config.json", "model.safetensors")) -> Path:
    folder.mkdir(parents=True)
    for name in files:
        (folder / name).write_text("{}")
    (folder / "training_record.json").write_text(json.dumps({"config_hash": "0" * 16, "files": [*files,
                                                             "training_record.json"]}))
    return folder


def test_only_a_checkpoint_of_this_project_may_be_replaced(tmp_path):
    root = tmp_path / "repo"
    committed = _checkpoint(root / "data" / "models" / "embedded_mllm")
    guard = {"record": "training_record.json", "root": root, "protected": [committed]}
    for target, why in [(root, "repository root"), (tmp_path, "repository root or a folder above"),
                        (root / "data", "holds the committed checkpoint"),
                        (root / "data" / "models", "holds the committed checkpoint"),
                        (committed, "REPLACE_COMMITTED")]:
        with pytest.raises(ParameterError, match=why):
            check_replaceable(target, **guard)
    check_replaceable(committed, **guard, allow_protected=True)
    notes = root / "notes"
    notes.mkdir()
    (notes / "mine.txt").write_text("keep")
    with pytest.raises(ParameterError, match="not a checkpoint written by this project"):
        check_replaceable(notes, **guard)
    other = _checkpoint(root / "other")
    (other / "results.csv").write_text("keep")
    with pytest.raises(ParameterError, match="also results.csv"):
        check_replaceable(other, **guard)
    (other / "results.csv").unlink()
    new = root / ".tmp-other"
    _checkpoint(new, files=("config.json",))
    install_folder(new, other, **guard)
    assert not (other / "model.safetensors").exists() and (other / "config.json").is_file() and not new.exists()
    assert (notes / "mine.txt").read_text() == "keep" and (committed / "model.safetensors").is_file()


@pytest.mark.parametrize("model_dir", ["data/models", "data", ".", "/"])
def test_retrain_into_a_folder_above_the_checkpoint_refused_before_training(model_dir):
    """--retrain -p MODEL_DIR data/models once trained, then deleted data/models and the committed checkpoint."""
    nb = runner.NOTEBOOKS / "00_embedded_model.ipynb"
    params = runner.resolve_parameters(nb, runner.PARAMS / "embedded" / "00_embedded_model.yaml", retrain=True,
                                       overrides={"MODEL_DIR": model_dir})
    with pytest.raises(ParameterError, match=r"^parameters MODEL_DIR, RETRAIN, REPLACE_COMMITTED \(together\): "):
        runner.check_notebook_parameters(nb, params)


def test_checkpoint_refusals_come_with_the_other_parameter_checks(capsys, tmp_path, monkeypatch):
    monkeypatch.setenv("MLLM_OOD_RUNS", str(tmp_path / "runs"))
    assert main(["run", "--only", "00_embedded_model", "--retrain"]) == 2  # the committed one, without consent
    err = capsys.readouterr().err
    assert "REPLACE_COMMITTED" in err and "committed checkpoint" in err
    assert main(["run", "--only", "00_embedded_model", "-p", "SEED", "5"]) == 2  # another seed, no RETRAIN
    assert "seed: checkpoint 0, requested 5" in capsys.readouterr().err
    assert not (tmp_path / "runs").exists()
