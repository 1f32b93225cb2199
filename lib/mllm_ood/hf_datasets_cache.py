"""The ``datasets`` library's own cache (``<cache>/hf_datasets``), checked like the project's entries.

``datasets`` converts a data file into Arrow files once and memory-maps them on every later load; it never
checks them again, so a truncated or damaged Arrow file fails every later run the same way. Here each
Arrow file of a load gets a SHA-256 sidecar (``<file>.sha256``) the first time it is read, a later load
compares the file with it (once per process), and a load that fails or does not match is rebuilt from
the data file (``download_mode="force_redownload"``), with a warning, as :mod:`mllm_ood.cache` rebuilds a
corrupt entry.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from .cache import sha256_file
from .paths import cache_dir

log = logging.getLogger(__name__)
SIDECAR = ".sha256"
_VERIFIED: set[str] = set()


def folder() -> Path:
    """Where ``datasets`` keeps its Arrow files for this project."""
    return cache_dir() / "hf_datasets"


def _mismatch(ds) -> str | None:
    """The first Arrow file of ``ds`` that differs from its sidecar (recording missing sidecars), or None."""
    for entry in ds.cache_files:
        name = entry["filename"]
        if name in _VERIFIED:
            continue
        digest, sidecar = sha256_file(Path(name)), Path(name + SIDECAR)
        if sidecar.exists():
            if sidecar.read_text().strip() != digest:
                return f"{name} does not match its recorded SHA-256"
        else:
            tmp = sidecar.with_name(f".{sidecar.name}.{os.getpid()}.tmp")
            tmp.write_text(digest)
            os.replace(tmp, sidecar)
        _VERIFIED.add(name)
    return None


def load(builder: str, data_files: str, **kwargs):
    """``datasets.load_dataset(builder, data_files=..., split="train")`` through the project's
    ``datasets`` cache, verified, and rebuilt once when its Arrow files are damaged."""
    import datasets

    args = {"data_files": data_files, "split": "train", "cache_dir": str(folder()), **kwargs}
    try:
        ds = datasets.load_dataset(builder, **args)
        problem = _mismatch(ds)
    except Exception as err:  # noqa: BLE001 - a damaged Arrow file fails in pyarrow, in several ways
        problem = f"{type(err).__name__}: {err}"
    if problem is None:
        return ds
    log.warning("the datasets cache of %s is damaged (%s): rebuilding it", data_files, problem[:300])
    ds = datasets.load_dataset(builder, download_mode="force_redownload", **args)
    for entry in ds.cache_files:  # the rebuilt files are the reference from now on
        Path(entry["filename"] + SIDECAR).unlink(missing_ok=True)
        _VERIFIED.discard(entry["filename"])
    problem = _mismatch(ds)
    if problem is not None:
        raise RuntimeError(f"the datasets cache of {data_files} is still damaged after a rebuild: {problem}")
    return ds
