"""Every notebook runs end to end through papermill with the values ``run_all.sh --smoke`` injects (its
params file's ``smoke:`` values and SMOKE=True), with the network blocked; committed notebooks are clean and
in sync with their jupytext pairs; their defaults are the embedded params files' values."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from conftest import network_guard_env, smoke_parameters
from mllm_ood.paths import NOTEBOOKS
from mllm_ood.runner.planning import KERNEL, notebooks

NOTEBOOK_NAMES = [p.stem for p in notebooks()]


def test_there_are_notebooks():
    assert "00_embedded_world" in NOTEBOOK_NAMES


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_papermill_reads_every_parameter(name):
    """papermill's own reading of the parameters cell (what the runner checks keys against and what
    injection overrides) must see every assignment Python sees; papermill drops a line whose comment
    contains ' = ', so such a parameter could never be overridden."""
    import ast

    from mllm_ood.runner.planning import declared_parameters

    nb = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    tree = ast.parse("".join(cell["source"]))
    names = {n.target.id for n in tree.body if isinstance(n, ast.AnnAssign)}
    names |= {t.id for n in tree.body if isinstance(n, ast.Assign) for t in n.targets if isinstance(t, ast.Name)}
    assert set(declared_parameters(NOTEBOOKS / f"{name}.ipynb")) == names


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_committed_notebook_is_clean_and_paired(name):
    nb = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
    for cell in nb["cells"]:
        assert not cell.get("outputs"), f"{name}: committed with outputs"
        assert "injected-parameters" not in cell.get("metadata", {}).get("tags", [])
    tagged = [c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1 and "SMOKE: bool = False" in "".join(tagged[0]["source"])
    assert nb["metadata"]["kernelspec"]["name"] == KERNEL
    pair = NOTEBOOKS / f"{name}.py"
    if pair.exists():
        import jupytext

        from_py = jupytext.read(pair)
        assert [c.source for c in from_py.cells] == ["".join(c["source"]) for c in nb["cells"]], \
            f"{name}.ipynb and {name}.py differ: run `jupytext --sync notebooks/{name}.py`"


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_notebook_smoke_run_offline(name, tmp_path, session_cache):
    record = tmp_path / "network.log"
    env = network_guard_env(record)
    env.update(MLLM_OOD_CACHE=str(session_cache), MLLM_OOD_FIGURES=str(tmp_path / "figures"))
    out = tmp_path / f"{name}.ipynb"
    proc = subprocess.run(
        [sys.executable, "-m", "papermill", str(NOTEBOOKS / f"{name}.ipynb"), str(out), "-k", KERNEL,
         "-y", smoke_parameters(name), "--cwd", str(NOTEBOOKS), "--no-progress-bar"],
        env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    assert not record.exists() or not record.read_text(), f"network access attempted:\n{record.read_text()}"
    assert list((tmp_path / "figures").glob("*.png")), "a smoke run still draws its figures"


def test_network_guard_really_blocks(tmp_path):
    """The guard used above must be able to fail: a connection attempt is refused and recorded."""
    record = tmp_path / "network.log"
    code = ("import socket\n"
            "try:\n socket.create_connection(('192.0.2.1', 80), timeout=1)\n"
            "except OSError as e:\n print('blocked', e)\n")
    proc = subprocess.run([sys.executable, "-c", code], env=network_guard_env(record), capture_output=True, text=True)
    assert "blocked" in proc.stdout and "192.0.2.1" in record.read_text()


def _defaults(name: str) -> dict:
    """{parameter: default} of the notebook's parameters cell."""
    import ast

    nb = json.loads((NOTEBOOKS / f"{name}.ipynb").read_text())
    cell = next(c for c in nb["cells"] if "parameters" in c.get("metadata", {}).get("tags", []))
    return {n.target.id: ast.literal_eval(n.value) for n in ast.parse("".join(cell["source"])).body
            if isinstance(n, ast.AnnAssign)}


RUN_FLAGS = ("SMOKE", "RETRAIN", "REPLACE_COMMITTED")  # set by run_all.sh's options, not study parameters


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
def test_parameter_defaults_agree_with_the_embedded_yaml(name):
    """Every parameter the notebook declares is in params/embedded/<name>.yaml with the same value as its
    default, and the YAML declares nothing else: what a reader sees in the notebook is what run_all.sh runs.
    The run flags are not study parameters; the ``smoke:`` mapping (the smoke run's values) is checked below."""
    import yaml

    from mllm_ood.paths import PARAMS

    defaults = {k: v for k, v in _defaults(name).items() if k not in RUN_FLAGS}
    params = yaml.safe_load((PARAMS / "embedded" / f"{name}.yaml").read_text())
    params.pop("smoke", None)
    assert sorted(params) == sorted(defaults), "parameters in only one of notebook and YAML"
    assert {k: params[k] for k in defaults} == defaults


# Notebooks whose work does not grow with any parameter (the ledger reads the other notebooks' tables).
NOTHING_TO_SHRINK = {"05_claims_ledger"}


@pytest.mark.parametrize("name", NOTEBOOK_NAMES)
@pytest.mark.parametrize("profile", ["embedded", "paper"])
def test_smoke_values_are_declared_parameters_that_shrink_something(name, profile):
    """Each params file's ``smoke:`` mapping names only study parameters the notebook declares (not the run
    flags), each with a value other than its full-size one."""
    import yaml

    from mllm_ood.paths import PARAMS

    path = PARAMS / profile / f"{name}.yaml"
    if not path.exists():
        pytest.skip(f"no params/{profile}/{name}.yaml")
    params = yaml.safe_load(path.read_text())
    smoke = params.pop("smoke", None)
    if name in NOTHING_TO_SHRINK:  # an explicit, empty mapping: --smoke runs it as it is
        assert smoke == {}, f"{path.name}: {name} has nothing to shrink; its smoke: mapping should be empty"
        return
    assert isinstance(smoke, dict) and smoke, f"{path.name}: no smoke: mapping (run_all.sh --smoke would run full size)"
    full = {**_defaults(name), **params}
    assert set(smoke) <= set(full) - set(RUN_FLAGS), f"not study parameters: {sorted(set(smoke) - set(full))}"
    assert not [k for k, v in smoke.items() if full[k] == v], "a smoke value equal to its full-size value"
