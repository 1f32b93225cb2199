"""Content-addressed cache for expensive intermediates (datasets, embeddings, responses, weights).

An entry lives in ``<cache>/<kind>/<key>/`` where ``key`` hashes the sorted-JSON inputs and the code
version. It is built in a temporary sibling folder, every file is listed with its SHA-256 in
``manifest.json``, a ``done`` marker is written last, and only then is the folder renamed into place.
A folder without a valid marker, with a marker from another code version, or whose files do not match
the manifest is treated as absent: it is deleted and rebuilt, never silently used. A process hashes an
entry's files once (the first time it reads the entry); later reads in that process check the marker only.

Analyses (tables computed from tables: bootstrap intervals, verdicts, probe curves) are cached too, by
:func:`cached_analysis`: keyed by their arguments' contents and by a digest of the package's source, so a
warm rerun of a notebook only reads tables and draws figures, and editing any analysis code recomputes.

Concurrent processes: building (or deleting) the entry of a key holds an exclusive lock on
``<cache>/<kind>/.lock-<key>``, so two runs needing the same entry build it once (the second waits,
then reuses it), and ``clean_stale_temporaries`` removes only temporaries whose builder is gone.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

from . import CODE_VERSION
from .paths import cache_dir

log = logging.getLogger(__name__)

MARKER = "done"
MANIFEST = "manifest.json"
# Entries whose files this process has already checked against their manifest: a dataset read ten times
# in one notebook is hashed once.
_CHECKED: set[Path] = set()


def cache_key(kind: str, params: dict) -> str:
    """16-hex-digit key of ``kind``, the JSON-serialisable ``params`` and the code version."""
    blob = json.dumps({"kind": kind, "params": params, "code": CODE_VERSION}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def entry_path(kind: str, params: dict) -> Path:
    """Where the entry for (kind, params) lives, whether or not it exists yet."""
    return cache_dir() / kind / cache_key(kind, params)


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file's bytes, read in 1 MiB blocks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _manifest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and p.name not in (MARKER, MANIFEST)
    }


def array_digest(*arrays) -> str:
    """16-hex-digit hash of arrays' shapes and float32 bytes (a cache-key ingredient for embeddings)."""
    import numpy as np

    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a, dtype=np.float32)
        h.update(str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def exact_digest(*arrays) -> str:
    """16-hex-digit hash of arrays' dtypes, shapes and exact contents (object arrays by their items'
    text), a cache-key ingredient where a float32 view (:func:`array_digest`) would not be exact."""
    import numpy as np

    h = hashlib.sha256()
    for a in arrays:
        a = np.asarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        if a.dtype == object:
            h.update(json.dumps([str(v) for v in a.ravel()]).encode())
        else:
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()[:16]


def _marker_matches(folder: Path, key: str) -> bool:
    try:
        marker = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return False
    return marker.get("code") == CODE_VERSION and marker.get("key") == key


def is_valid(folder: Path, key: str | None = None) -> bool:
    """True when ``folder`` holds a complete entry of this code version whose files match its manifest."""
    try:
        marker = json.loads((folder / MARKER).read_text())
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if marker.get("code") != CODE_VERSION or (key is not None and marker.get("key") != key):
        return False
    return manifest == _manifest(folder)


@contextlib.contextmanager
def _key_lock(folder: Path, key: str, *, wait: bool = True):
    """Exclusive lock on (kind folder, key); yields False instead of waiting when ``wait`` is False and
    another process holds it. The OS releases it when the holder dies, even by SIGKILL."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f".lock-{key}", "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not wait:
                yield False
                return
            log.info("waiting for another process building %s/%s", folder.name, key)
            fcntl.flock(fh, fcntl.LOCK_EX)
        yield True


def cached(kind: str, params: dict, build: Callable[[Path], None]) -> Path:
    """Return the folder of a valid entry for (kind, params), building it with ``build(tmp_folder)`` if needed.

    ``build`` writes its files into the folder it is given. Nothing is visible under the final name
    until the build has finished and its marker is written. Another process building the same entry
    is waited for, not duplicated.
    """
    key = cache_key(kind, params)
    final = cache_dir() / kind / key
    if final in _CHECKED and _marker_matches(final, key):  # files hashed earlier in this process
        return final
    if final.exists() and is_valid(final, key):
        _CHECKED.add(final)
        return final
    with _key_lock(final.parent, key):
        if final.exists():
            if is_valid(final, key):  # built by another process while we waited
                return final
            log.warning("cache entry %s is incomplete, corrupt or stale: rebuilding", final)
            shutil.rmtree(final, ignore_errors=True)
        # Unique per build: two processes never write the same temporary.
        tmp = final.parent / f".tmp-{key}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        try:
            tmp.mkdir()
            build(tmp)
            (tmp / "params.json").write_text(json.dumps({"kind": kind, "params": params}, indent=1, default=str))
            (tmp / MANIFEST).write_text(json.dumps(_manifest(tmp), indent=1, sort_keys=True))
            (tmp / MARKER).write_text(json.dumps({"key": key, "code": CODE_VERSION}))
            os.rename(tmp, final)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return final


def cached_table(kind: str, params: dict, build: Callable[[], "pd.DataFrame"], *, file: str = "table.csv",
                 **read) -> "pd.DataFrame":
    """The table of (kind, params): ``build()`` runs only when the cache has no valid entry. The table is
    stored by ``file``'s ending: CSV (``.csv``; pandas writes and reads floats exactly), JSON lines
    (``.jsonl``, for text: floats keep 10 digits) or a pickle (``.pkl``, dtypes and all), and always
    read back from the stored file (``read``: keyword arguments of ``pandas.read_csv`` / ``read_json``),
    so the first run and every rerun return the same values. The one way every study caches its results."""
    import pandas as pd

    kind_of = file.rsplit(".", 1)[-1]
    if kind_of not in ("csv", "jsonl", "pkl"):
        raise ValueError(f"cached_table stores .csv, .jsonl or .pkl files, not {file!r}")

    def write(folder: Path) -> None:
        table = build()
        if kind_of == "jsonl":
            table.to_json(folder / file, orient="records", lines=True, force_ascii=False)
        elif kind_of == "pkl":
            table.to_pickle(folder / file)
        else:
            table.to_csv(folder / file, index=False)

    path = cached(kind, params, write) / file
    if kind_of == "jsonl":
        return pd.read_json(path, orient="records", lines=True, **read)
    if kind_of == "pkl":
        return pd.read_pickle(path)
    return pd.read_csv(path, **read)


def cached_arrays(kind: str, params: dict, build: Callable[[], dict], *, file: str = "arrays.npz") -> dict:
    """The arrays of (kind, params) as :func:`cached_table` keeps tables: ``build()`` returns
    ``{name: array}``, stored with ``numpy.savez`` and read back from the stored file."""
    import numpy as np

    folder = cached(kind, params, lambda tmp: np.savez(tmp / file, **build()))
    with np.load(folder / file) as f:
        return {k: f[k] for k in f.files}


def clean_stale_temporaries(kind: str | None = None) -> int:
    """Delete leftover ``.tmp-*`` folders (from killed builds) of ``kind``, or of every kind; return how many.

    A temporary whose key is locked belongs to a build still running in another process and is kept.
    """
    root = cache_dir()
    kinds = [root / kind] if kind is not None else [p for p in root.iterdir() if p.is_dir()] if root.exists() else []
    n = 0
    for folder in kinds:
        for tmp in sorted(folder.glob(".tmp-*")) if folder.exists() else []:
            key = tmp.name.split("-")[1] if tmp.name.count("-") >= 2 else ""
            with _key_lock(folder, key or "unkeyed", wait=False) as free:
                if free:
                    shutil.rmtree(tmp, ignore_errors=True)
                    n += 1
    return n


# --------------------------------------------------------------------------------------------------
# Analyses: tables computed from tables (bootstrap intervals, verdicts, probe curves), cached by content


def source_digest() -> str:
    """16-hex-digit hash of every ``.py`` file of the package: part of each analysis key, so editing any
    analysis code recomputes its tables (model answers stay keyed by :data:`CODE_VERSION` alone)."""
    global _SOURCE_DIGEST
    if _SOURCE_DIGEST is None:
        h = hashlib.sha256()
        root = Path(__file__).resolve().parent
        for p in sorted(root.rglob("*.py")):
            h.update(str(p.relative_to(root)).encode())
            h.update(p.read_bytes())
        _SOURCE_DIGEST = h.hexdigest()[:16]
    return _SOURCE_DIGEST


_SOURCE_DIGEST: str | None = None


def content_digest(value) -> str:
    """A stable digest of an analysis argument's content: tables by their index, columns, dtypes and
    values, arrays by :func:`exact_digest`, a model by its fingerprint, containers item by item, plain
    values by their text, an object with a ``cache_identity()`` by what that returns (before its
    ``fingerprint``: a model wrapped to read other features keeps the model's fingerprint). Anything else is
    refused (a default ``repr`` holds a memory address)."""
    import dataclasses

    import numpy as np
    import pandas as pd

    if isinstance(value, (pd.DataFrame, pd.Series)):
        h = hashlib.sha256(pd.util.hash_pandas_object(value, index=True).to_numpy().tobytes())
        cols = [str(value.name)] if isinstance(value, pd.Series) else [str(c) for c in value.columns]
        dtypes = [str(value.dtype)] if isinstance(value, pd.Series) else [str(t) for t in value.dtypes]
        h.update(json.dumps([cols, dtypes]).encode())
        return h.hexdigest()[:16]
    if isinstance(value, np.ndarray):
        return exact_digest(value)
    if callable(getattr(value, "cache_identity", None)):  # first: a wrapped model names what it adds
        return content_digest({"type": type(value).__qualname__, **value.cache_identity()})
    if getattr(value, "fingerprint", None):
        return f"model:{value.fingerprint}"
    if isinstance(value, dict):
        return json.dumps({str(k): content_digest(v) for k, v in value.items()}, sort_keys=True)
    if isinstance(value, (list, tuple)):
        return json.dumps([content_digest(v) for v in value])
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return content_digest({"type": type(value).__qualname__, **dataclasses.asdict(value)})
    if value is None or isinstance(value, (str, int, float, bool, np.integer, np.floating, np.bool_)):
        return repr(value)
    raise TypeError(f"cannot key an analysis cache on a {type(value).__name__}; pass tables, arrays, plain values "
                    f"or a loaded model")


def cached_analysis(kind: str):
    """Decorator: cache a deterministic analysis (its seed is an argument) by its arguments' contents
    (:func:`content_digest`) and the package's source (:func:`source_digest`). The result is pickled
    and read back, so a warm rerun returns the same objects as the first run without recomputing."""
    import functools
    import inspect
    import pickle

    def wrap(fn):
        sig = inspect.signature(fn)

        def key_params(*args, **kwargs) -> dict:
            bound = sig.bind(*args, **kwargs)
            bound.apply_defaults()
            return {"function": f"{fn.__module__}.{fn.__qualname__}", "source": source_digest(),
                    "arguments": {k: content_digest(v) for k, v in bound.arguments.items()}}

        @functools.wraps(fn)
        def cached_call(*args, **kwargs):
            folder = cached(kind, key_params(*args, **kwargs),
                            lambda tmp: (tmp / "value.pkl").write_bytes(pickle.dumps(fn(*args, **kwargs))))
            return pickle.loads((folder / "value.pkl").read_bytes())

        cached_call.uncached = fn
        cached_call.key_params = key_params  # what keys a call (tests check that every argument is in it)
        return cached_call

    return wrap
