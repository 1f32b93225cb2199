"""Runs a user can trust: undeclared keys and bad values refused before anything is written, ``-p``
overrides recorded, a failed notebook leaving the previous good figures in place, two runs into one
folder refused instead of mixed, figure temporaries unique per call.

Most tests drive the real runner on a tiny two-figure notebook written here (seconds); the one slow test
runs two real smoke runs of notebook 00_embedded_world at once.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import nbformat
import pytest
import yaml

from conftest import tiny_study
from mllm_ood import runner
from mllm_ood.paths import NOTEBOOKS, ROOT
from mllm_ood.validation import ParameterError

CELLS = [
    ("", "import time\nfrom pathlib import Path\n\nimport matplotlib.pyplot as plt\nimport pandas as pd\n\n"
         "from mllm_ood.plotting import save_figure"),
    ("parameters", 'SMOKE: bool = False  # unused\nTAG: str = "good"  # written into both figures\n'
                   'FAIL: bool = False  # fail between the two figures\nWAIT_FOR: str = ""  # a file to wait for'),
    ("", "from mllm_ood.validation import boolean, check_parameters, text\n\n"
         "check_parameters(globals(), SMOKE=boolean(), TAG=text(), FAIL=boolean(), WAIT_FOR=text(nonempty=False))"),
    ("", "def draw(name):\n    fig, ax = plt.subplots()\n    ax.set_title(TAG)\n"
         "    save_figure(fig, name, pd.DataFrame({'tag': [TAG]}))\n\ndraw('t_first')"),
    ("", "while WAIT_FOR and not Path(WAIT_FOR).exists():\n    time.sleep(0.1)\n"
         "if FAIL:\n    raise RuntimeError('failing on purpose')"),
    ("", "draw('t_second')"),
]


@pytest.fixture
def study(tmp_path, monkeypatch):
    """A one-notebook study in tmp_path: notebooks/, params/embedded/, runs/ and figures/ of its own."""
    (tiny_study(tmp_path, monkeypatch, CELLS) / "90_tiny.yaml").write_text("TAG: good\n")
    return tmp_path


def _tag(csv: Path) -> str:
    return csv.read_text().splitlines()[1]


def test_override_parsing():
    assert runner.parse_override("True") is True and runner.parse_override("None") is None
    assert runner.parse_override("3") == 3 and runner.parse_override("0.5") == 0.5
    assert runner.parse_override("1e9") == 1e9 and runner.parse_override("abc") == "abc"
    assert runner.parse_override("[1, 2]") == [1, 2] and runner.parse_override("[a, b]") == ["a", "b"]
    with pytest.raises(ParameterError, match="not a valid YAML"):
        runner.parse_override("[1, 2")


def test_misspelled_yaml_key_refused_before_anything_is_written(study):
    (study / "params" / "embedded" / "90_tiny.yaml").write_text("TAGG: good\n")
    with pytest.raises(ParameterError, match=r"90_tiny.yaml: notebook 90_tiny has no parameter 'TAGG' "
                                             r"\(did you mean 'TAG'\?\)"):
        runner.run()
    assert not (study / "runs").exists() and not (study / "figures").exists()


def test_misspelled_p_key_and_bad_p_value_refused(study):
    with pytest.raises(ParameterError, match=r"-p: notebook 90_tiny has no parameter 'FAILS'"):
        runner.run(overrides=[("FAILS", "True")])
    with pytest.raises(ParameterError, match=r"^parameter FAIL = 'yes': must be True or False"):
        runner.run(overrides=[("FAIL", "yes")])
    with pytest.raises(ParameterError, match="--retrain applies to notebooks with a RETRAIN parameter"):
        runner.run(retrain=True)
    assert not (study / "runs").exists() and not (study / "figures").exists()


def test_real_notebook_bad_value_refused_before_anything_runs(tmp_path, monkeypatch):
    monkeypatch.setenv("MLLM_OOD_RUNS", str(tmp_path / "runs"))
    with pytest.raises(ParameterError, match=r"^parameter SAMPLES_PER_DOMAIN = 0: must be an integer in \[1, 30\]"):
        runner.run(only=["00_embedded_world"], overrides=[("SAMPLES_PER_DOMAIN", "0")])
    with pytest.raises(ParameterError, match=r"00_embedded_world.yaml|no parameter 'SAMPLE_PER_DOMAIN'"):
        runner.run(only=["00_embedded_world"], overrides=[("SAMPLE_PER_DOMAIN", "3")])
    assert not (tmp_path / "runs").exists()


def test_failure_midway_keeps_previous_figures_and_records_overrides(study, capsys, fresh_cache):
    stale = fresh_cache / "thing" / ".tmp-0123456789abcdef-999-deadbeef"  # left by a killed build
    stale.mkdir(parents=True)
    assert runner.run() == 0
    assert not stale.exists() and "removed 1 stale temporary folder" in capsys.readouterr().out
    run_dir, figs = study / "runs" / "embedded", study / "figures"
    assert _tag(figs / "t_first.csv") == _tag(figs / "t_second.csv") == "good"
    good_copy = (run_dir / "90_tiny.ipynb").read_text()

    assert runner.run(overrides=[("TAG", "bad"), ("FAIL", "True")]) == 1
    err = capsys.readouterr().err
    failed = run_dir / "failed" / "90_tiny"
    assert str(failed) in err and "previous good figures" in err
    # The failed run drew t_first before failing: it went to the failed folder, not figures/.
    assert _tag(figs / "t_first.csv") == "good" and _tag(figs / "t_second.csv") == "good"
    assert _tag(failed / "figures" / "t_first.csv") == "bad" and not (failed / "figures" / "t_second.csv").exists()
    assert (run_dir / "90_tiny.ipynb").read_text() == good_copy, "the previous good executed copy stays"
    assert "failing on purpose" in (failed / "90_tiny.ipynb").read_text()
    assert not (run_dir / "running").exists() and not list(figs.glob(".*tmp"))
    # The overrides are recorded in the log and the summary.
    log = (failed / "90_tiny.log").read_text()
    assert "overrides (-p): TAG='bad', FAIL=True" in log
    summary = (run_dir / "summary.txt").read_text()
    assert "overrides: TAG='bad', FAIL=True" in summary and "FAILED" in summary and str(failed) in summary

    assert runner.run(overrides=[("TAG", "new")]) == 0
    assert _tag(figs / "t_first.csv") == _tag(figs / "t_second.csv") == "new"
    assert "overrides: TAG='new'" in (run_dir / "summary.txt").read_text()


RUN = ("import sys\nfrom pathlib import Path\nimport mllm_ood.runner.planning as r\nfrom mllm_ood.__main__ import main\n"
       "r.NOTEBOOKS, r.PARAMS = Path(sys.argv[1]), Path(sys.argv[2])\nsys.exit(main(sys.argv[3:]))\n")


def test_second_run_into_the_same_folder_is_refused(study):
    """Two runner processes, one folder: the second is refused while the first is writing, which finishes intact."""
    flag = study / "go"
    args = [sys.executable, "-c", RUN, str(study / "notebooks"), str(study / "params"), "run"]
    first = subprocess.Popen([*args, "-p", "TAG", "first", "-p", "WAIT_FOR", str(flag)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    staged = study / "runs" / "embedded" / "running" / "90_tiny" / "figures" / "t_first.csv"
    deadline = time.time() + 120
    while not staged.exists() and time.time() < deadline and first.poll() is None:
        time.sleep(0.2)
    assert staged.exists(), "the first run never reached its first figure"
    second = subprocess.run([*args, "-p", "TAG", "second"], capture_output=True, text=True, timeout=120)
    flag.write_text("go")
    out, err = first.communicate(timeout=120)
    assert second.returncode == 3, second.stderr
    assert "another run is writing here" in second.stderr and f"pid {first.pid}" in second.stderr
    assert first.returncode == 0, err
    figs = study / "figures"
    assert _tag(figs / "t_first.csv") == _tag(figs / "t_second.csv") == "first"
    assert "TAG='first'" in (study / "runs" / "embedded" / "summary.txt").read_text()


def test_terminated_run_keeps_previous_figures(study):
    """SIGTERM (or Ctrl-C) midway: the half-done notebook goes to failed/, figures/ keeps the good ones."""
    assert runner.run() == 0
    args = [sys.executable, "-c", RUN, str(study / "notebooks"), str(study / "params"), "run"]
    proc = subprocess.Popen([*args, "-p", "TAG", "half", "-p", "WAIT_FOR", str(study / "never")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    staged = study / "runs" / "embedded" / "running" / "90_tiny" / "figures" / "t_first.csv"
    deadline = time.time() + 120
    while not staged.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    failed = study / "runs" / "embedded" / "failed" / "90_tiny"
    assert "INTERRUPTED" in out and str(failed) in err
    assert _tag(study / "figures" / "t_first.csv") == "good" and _tag(failed / "figures" / "t_first.csv") == "half"
    assert not (study / "runs" / "embedded" / "running").exists()
    summary = (study / "runs" / "embedded" / "summary.txt").read_text()  # the cell it was in, not "unknown cell"
    assert re.search(r"interrupted at cell \d+ \(running when stopped\) starting 'while WAIT_FOR", summary), summary


SAVER = textwrap.dedent("""
    import sys
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd
    from mllm_ood.plotting import save_figure
    for i in range(25):
        fig, ax = plt.subplots()
        ax.set_title(sys.argv[1])
        save_figure(fig, "shared_name", pd.DataFrame({"who": [sys.argv[1]] * 50}))
        plt.close(fig)
""")


def test_concurrent_save_figure_uses_unique_temporaries(tmp_path):
    env = {**__import__("os").environ, "MLLM_OOD_FIGURES": str(tmp_path)}
    procs = [subprocess.Popen([sys.executable, "-c", SAVER, who], env=env, stderr=subprocess.PIPE, text=True)
             for who in ("a", "b")]
    errs = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errs
    assert (tmp_path / "shared_name.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set((tmp_path / "shared_name.csv").read_text().splitlines()[1:]) <= {"a", "b"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["shared_name.csv", "shared_name.png"]


@pytest.mark.slow
def test_two_concurrent_smoke_runs_do_not_mix(tmp_path, session_cache):
    """Two real smoke runs of the fastest notebook into one folder: none fails with a collision; a refused
    one says so; the folder holds one complete run."""
    env = {**__import__("os").environ, "MLLM_OOD_RUNS": str(tmp_path / "runs"), "MLLM_OOD_CACHE": str(session_cache)}
    cmd = [str(ROOT / "run_all.sh"), "--smoke", "--only", "00_embedded_world"]
    procs = [subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)]
    lock = tmp_path / "runs" / "embedded-smoke" / runner.LOCK
    deadline = time.time() + 120
    while not (lock.exists() and lock.read_text()) and time.time() < deadline:
        time.sleep(0.1)
    procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    results = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    codes = [r[0] for r in results]
    assert 0 in codes and set(codes) <= {0, 3}, results
    for code, _, err in results:
        assert code == 0 or "another run is writing here" in err
        assert "FileNotFoundError" not in err
    run_dir = tmp_path / "runs" / "embedded-smoke"
    assert (run_dir / "00_embedded_world.ipynb").exists() and (run_dir / "00_embedded_world.html").exists()
    assert list((run_dir / "figures").glob("00_samples_*.png")) and not (run_dir / "running").exists()
    assert re.search(r"00_embedded_world +ok", (run_dir / "summary.txt").read_text())


def test_yaml_parameters_are_mappings(study):
    (study / "params" / "embedded" / "90_tiny.yaml").write_text(yaml.safe_dump(["TAG", "x"]))
    with pytest.raises(ParameterError, match="expected a mapping"):
        runner.run()


def test_progress_bars_go_to_the_progress_log_not_the_notebook(study):
    """A loop's progress bar under the runner lands in <run>/<name>.progress.log; the executed notebook
    carries no progress output."""
    path = study / "notebooks" / "90_tiny.ipynb"
    nb = nbformat.read(path, as_version=4)
    nb.cells.append(nbformat.v4.new_code_cell(
        "from mllm_ood.progress import tqdm\n\nfor _ in tqdm(range(40), desc='tiny loop', mininterval=0):\n"
        "    time.sleep(0.005)\nprint('loop done')"))
    nbformat.write(nb, path)
    assert runner.run() == 0
    run_dir = study / "runs" / "embedded"
    executed = nbformat.read(run_dir / "90_tiny.ipynb", as_version=4)
    text = "".join(o.get("text", "") for c in executed.cells for o in c.get("outputs", []))
    assert "loop done" in text and "tiny loop" not in text and "it/s" not in text
    log = (run_dir / "90_tiny.progress.log").read_text()
    assert "tiny loop" in log and "40/40" in log
    # Each saved figure is shown once: the saved PNG, byte for byte (not drawn again by the inline backend).
    import base64

    shown = [base64.b64decode(o["data"]["image/png"]) for c in executed.cells for o in c.get("outputs", [])
             if "image/png" in o.get("data", {})]
    figs = study / "figures"
    assert shown == [(figs / "t_first.png").read_bytes(), (figs / "t_second.png").read_bytes()]


def _copy_tiny(study, stem: str, params: str) -> None:
    """Another notebook of the tiny study, ``stem``, with its own parameters file."""
    import shutil

    if stem != "90_tiny":
        shutil.copy(study / "notebooks" / "90_tiny.ipynb", study / "notebooks" / f"{stem}.ipynb")
    (study / "params" / "embedded" / f"{stem}.yaml").write_text(params)


def test_notebooks_run_side_by_side_each_with_its_own_figure_folder(study):
    """With two jobs, two notebooks execute at once: each waits for a figure the other stages in its own
    running/<name>/figures/ folder, so one at a time (or a shared figure folder) would time out."""
    staged = study / "runs" / "embedded" / "running"
    (study / "params" / "embedded" / "90_tiny.yaml").write_text(
        f"TAG: a\nWAIT_FOR: {staged / '91_tiny' / 'figures' / 't_first.csv'}\n")
    _copy_tiny(study, "91_tiny", f"TAG: b\nWAIT_FOR: {staged / '90_tiny' / 'figures' / 't_first.csv'}\n")
    assert runner.run(jobs=2, timeout=60) == 0
    summary = (study / "runs" / "embedded" / "summary.txt").read_text()
    assert re.search(r"90_tiny +ok", summary) and re.search(r"91_tiny +ok", summary)
    assert summary.index("90_tiny") < summary.index("91_tiny"), "the summary lists notebooks in order"
    for stem in ("90_tiny", "91_tiny"):  # rendered and published beside the run
        html = (study / "runs" / "embedded" / f"{stem}.html").read_text()
        assert html.startswith("<!DOCTYPE html>") and "data:image/png" in html  # the figure, shown
        assert "save_figure(" not in html and "its code is in the executed notebook" in html  # no code inputs
    with pytest.raises(ParameterError, match="jobs must be a whole number >= 1"):
        runner.run(jobs=0)
    # By default one notebook per core, but the paper profile's hub MLLMs would share one GPU: one at a time.
    assert runner.default_jobs("paper") == 1 and runner.default_jobs("embedded") >= 1


def test_the_model_notebook_runs_first_and_alone(study, capsys):
    """00_embedded_model (it may train the model the others load) finishes before any other notebook starts,
    even with more jobs than notebooks."""
    _copy_tiny(study, "00_embedded_model", "TAG: model\n")
    _copy_tiny(study, "91_tiny", "TAG: other\n")
    assert runner.run(jobs=3) == 0
    out = capsys.readouterr().out
    done = out.index("<== 00_embedded_model.ipynb ok")
    assert done < out.index("==> 90_tiny.ipynb") and done < out.index("==> 91_tiny.ipynb")


def test_the_model_notebook_runs_alone_only_when_it_may_train(tmp_path):
    """Loading the committed checkpoint it trains nothing, so the others may run beside it; with RETRAIN, or a
    MODEL_DIR without a checkpoint (it would train into it), or no MODEL_DIR at all, it runs alone."""
    nb = NOTEBOOKS / "00_embedded_model.ipynb"
    committed = {"MODEL_DIR": "data/models/embedded_mllm", "RETRAIN": False}
    assert not runner.runs_alone(nb, committed)
    assert runner.runs_alone(nb, {**committed, "RETRAIN": True})
    assert runner.runs_alone(nb, {**committed, "MODEL_DIR": str(tmp_path / "new")})
    assert runner.runs_alone(nb, {})
    assert not runner.runs_alone(NOTEBOOKS / "04_emi_bound.ipynb", {"RETRAIN": True})


def test_the_longest_notebooks_start_right_after_the_model_notebook_longest_first(study, capsys):
    """04_emi_bound, 02_hypotheses and 03_in_context_learning (the longest, in that order) start before the
    notebooks numbered below them, so the short ones fill the cores at the end instead of a long one running
    alone there; the summary still lists the notebooks in order."""
    for name in ("04_emi_bound", "03_in_context_learning", "02_hypotheses", "01_short"):
        _copy_tiny(study, name, f"TAG: {name}\n")
    assert runner.run(jobs=1) == 0
    out = capsys.readouterr().out
    starts = [out.index(f"==> {n}.ipynb") for n in ("04_emi_bound", "02_hypotheses", "03_in_context_learning",
                                                     "01_short", "90_tiny")]
    assert starts == sorted(starts)
    summary = (study / "runs" / "embedded" / "summary.txt").read_text()
    listed = [summary.index(n) for n in ("01_short", "02_hypotheses", "03_in_context_learning", "04_emi_bound", "90_tiny")]
    assert listed == sorted(listed)


def test_the_ledger_notebook_starts_after_every_other_notebook_finished(study, capsys):
    """05_claims_ledger gathers what the others publish: with jobs to spare it still starts only once every
    other notebook has finished (and published), and it is listed last."""
    _copy_tiny(study, "05_claims_ledger", "TAG: ledger\n")
    _copy_tiny(study, "01_short", "TAG: short\n")
    assert runner.run(jobs=3) == 0
    out = capsys.readouterr().out
    start = out.index("==> 05_claims_ledger.ipynb")
    assert out.index("<== 01_short.ipynb ok") < start and out.index("<== 90_tiny.ipynb ok") < start
    assert (study / "figures" / "t_first.csv").exists()


def test_terminated_parallel_run_stops_every_running_notebook(study):
    """SIGTERM while two notebooks run: both are stopped and kept under failed/, figures/ untouched."""
    for stem in ("90_tiny", "91_tiny"):
        _copy_tiny(study, stem, f"TAG: {stem}\nWAIT_FOR: {study / 'never'}\n")
    args = [sys.executable, "-c", RUN, str(study / "notebooks"), str(study / "params"), "run", "--jobs", "2"]
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    staged = [study / "runs" / "embedded" / "running" / s / "figures" / "t_first.csv" for s in ("90_tiny", "91_tiny")]
    deadline = time.time() + 120
    while not all(p.exists() for p in staged) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert all(p.exists() for p in staged), "both notebooks should be running"
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    for stem in ("90_tiny", "91_tiny"):
        assert re.search(rf"{stem} +INTERRUPTED", out)
        assert _tag(study / "runs" / "embedded" / "failed" / stem / "figures" / "t_first.csv") == stem
    assert not list((study / "figures").glob("t_*")) and not (study / "runs" / "embedded" / "running").exists()


def test_kernel_messages_go_to_the_notebook_log_not_the_terminal(study, capfd):
    """A kernel's own stderr (ipykernel's start-up warnings, the interrupt jupyter_client sends before a
    shutdown) lands at the end of the notebook's log, after papermill's lines, not on the run's terminal."""
    assert runner.run() == 0
    out, err = capfd.readouterr()
    assert "IPKernelApp" not in out + err and "<== 90_tiny.ipynb ok" in out
    log = (study / "runs" / "embedded" / "90_tiny.log").read_text()
    assert log.startswith("# ") and "# injected parameters:" in log and "IPKernelApp" in log
