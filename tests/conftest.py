"""Shared fixtures: a per-session cache so tests never read or pollute the user's data/cache, and the
session's expensive builds (the micro embedded model), made once and shared by pytest-xdist's workers."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

SUPPORT = Path(__file__).resolve().parent / "support"


def shared_folder(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """``<session temp>/name``, built by ``build(folder)`` once per test session: under pytest-xdist in the
    folder all workers share (the first worker that needs it builds it under a lock, the others wait and
    reuse it), else in the session's own temporary folder."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    folder, done = root / name, root / f"{name}.done"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build(folder)
            done.touch()
    return folder


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory) -> Path:
    """One cache folder for the whole test session, shared by xdist's workers (datasets are built once,
    then reused; the cache's own locks let concurrent builders build each entry once)."""
    return shared_folder(tmp_path_factory, "cache", lambda folder: None)


@pytest.fixture(scope="session")
def micro_model(tmp_path_factory) -> tuple[Path, dict]:
    """The micro embedded model (smoke config, trained in seconds) and the record its training returned,
    trained once per session; tests must not modify it."""
    def build(folder: Path) -> None:
        from mllm_ood.mllm import embedded as em

        rec = em.train_embedded_model(em.load_config(smoke=True), folder / "model", smoke=True)
        (folder / "returned_record.json").write_text(json.dumps(rec))

    folder = shared_folder(tmp_path_factory, "micro_model", build)
    return folder / "model", json.loads((folder / "returned_record.json").read_text())


@pytest.fixture(scope="session", autouse=True)
def _session_isolated_cache(session_cache):
    """The session cache and offline hub for module- and session-scoped fixtures too: they are set up before
    any function-scoped fixture, so without this a module fixture that builds a dataset would write into the
    repository's own data/cache."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLLM_OOD_CACHE", str(session_cache))
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
            mp.setenv(var, "1")
        yield


@pytest.fixture(autouse=True)
def _isolated_cache(session_cache, monkeypatch):
    monkeypatch.setenv("MLLM_OOD_CACHE", str(session_cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def fresh_cache(tmp_path, monkeypatch) -> Path:
    """An empty cache for tests that count builds."""
    path = tmp_path / "cache"
    monkeypatch.setenv("MLLM_OOD_CACHE", str(path))
    return path


def network_guard_env(record: Path) -> dict:
    """Environment that makes every Python process (kernels included) refuse non-loopback connections.

    ``support/sitecustomize.py`` is imported at interpreter start-up through PYTHONPATH; each refused
    attempt is appended to ``record``.
    """
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SUPPORT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["MLLM_OOD_NETWORK_RECORD"] = str(record)
    return env


def smoke_parameters(name: str, profile: str = "embedded", **overrides) -> str:
    """The parameters ``run_all.sh --smoke`` injects into notebook ``name`` (the runner's resolution: the
    YAML with its ``smoke:`` values and SMOKE, then ``overrides``, all checked), as papermill's ``-y`` YAML."""
    import yaml

    from mllm_ood.paths import NOTEBOOKS, PARAMS
    from mllm_ood.runner.planning import resolve_parameters

    params = resolve_parameters(NOTEBOOKS / f"{name}.ipynb", PARAMS / profile / f"{name}.yaml", smoke=True,
                                overrides=overrides)
    assert params["SMOKE"] is True
    return yaml.safe_dump(params)


def tiny_study(tmp_path: Path, monkeypatch, cells) -> Path:
    """A one-notebook study in tmp_path for driving the real runner in seconds: ``notebooks/90_tiny.ipynb``
    built from ``cells`` ((tag, source) pairs), ``params/embedded/`` (empty), and runs/ and figures/ of its
    own; the runner is pointed at them. Returns the params folder of the embedded profile."""
    import nbformat

    from mllm_ood import runner

    nbs, params = tmp_path / "notebooks", tmp_path / "params"
    nbs.mkdir()
    (params / "embedded").mkdir(parents=True)
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": runner.KERNEL, "language": "python",
                                                           "display_name": runner.KERNEL}})
    for tag, src in cells:
        nb.cells.append(nbformat.v4.new_code_cell(src, metadata={"tags": [tag]} if tag else {}))
    nbformat.write(nb, nbs / "90_tiny.ipynb")
    monkeypatch.setattr(runner.planning, "NOTEBOOKS", nbs)
    monkeypatch.setattr(runner.planning, "PARAMS", params)
    monkeypatch.setenv("MLLM_OOD_RUNS", str(tmp_path / "runs"))
    monkeypatch.setenv("MLLM_OOD_FIGURES", str(tmp_path / "figures"))
    return params / "embedded"


# The repository's own cache must come out of a test session as it went in: every test writes to the session
# cache (above). Checked once, by the process that runs the session (xdist's controller, or plain pytest).
_REPO_CACHE = Path(__file__).resolve().parents[1] / "data" / "cache"


def _repo_cache_entries() -> set[str]:
    return {str(p.relative_to(_REPO_CACHE)) for p in _REPO_CACHE.glob("*/*")} if _REPO_CACHE.exists() else set()


def pytest_sessionstart(session):
    session.config._repo_cache_before = _repo_cache_entries()


def pytest_sessionfinish(session, exitstatus):
    if os.environ.get("PYTEST_XDIST_WORKER"):
        return
    new = sorted(_repo_cache_entries() - getattr(session.config, "_repo_cache_before", set()))
    if new:
        print(f"\nFAILED: the test session wrote into the repository's own cache {_REPO_CACHE}: {new[:5]}")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
