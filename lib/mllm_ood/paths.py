"""Every location the project reads or writes, in one place (showyourwork style)."""

from __future__ import annotations

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT / "data"
RUNS = ROOT / "runs"
PARAMS = ROOT / "params"
NOTEBOOKS = ROOT / "notebooks"
RESOURCES = Path(__file__).resolve().parent / "resources"
MNIST_SPLIT = DATA / "mnist_split.csv"


def cache_dir() -> Path:
    """The cache root (``data/cache``, or ``$MLLM_OOD_CACHE``), re-read from the environment at every call
    so tests can redirect it at run time."""
    return Path(os.environ.get("MLLM_OOD_CACHE") or DATA / "cache")  # set but empty: the default, not the cwd


def figures_dir() -> Path:
    """The figures root (``figures/``, or ``$MLLM_OOD_FIGURES``), re-read from the environment at every
    call so smoke runs write elsewhere."""
    return Path(os.environ.get("MLLM_OOD_FIGURES") or ROOT / "figures")


def claims_dir() -> Path:
    """Where the claims ledger reads every notebook's ``NN_claims.csv``: the figures folder the run publishes
    to (``$MLLM_OOD_CLAIMS``, set by the runner, whose notebooks each write into their own staging folder),
    else :func:`figures_dir`."""
    return Path(os.environ.get("MLLM_OOD_CLAIMS") or figures_dir())


def resolve_model(ref: str) -> str:
    """A model reference as notebooks take it: a path relative to the repo root if one exists there
    (e.g. ``data/models/embedded_mllm``), else ``ref`` unchanged (an absolute path or a hub id)."""
    local = ROOT / ref
    return str(local) if local.exists() else str(ref)
