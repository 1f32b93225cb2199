"""Publishing a notebook's outputs (figures, executed copy, log) from its staging folder, across
filesystems, all or nothing; and the check that an output folder can be written at all.

:func:`publish_files` first brings every file next to its destination under a temporary name (a rename
on the same filesystem, a copy otherwise: ``MLLM_OOD_FIGURES`` on ``/dev/shm``), and only when all of
them are there renames them into place; if any step of the first phase fails, every temporary is
removed or moved back and the error is raised, so the staging folder still holds every output.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from pathlib import Path

from .validation import ParameterError


class PublishError(RuntimeError):
    """A notebook's outputs could not be moved to their destinations (nothing was published)."""


def check_writable_folder(folder, what: str) -> Path:
    """Raise ParameterError unless ``folder`` (or, when it does not exist yet, its nearest existing parent)
    is a folder in which a file can be created; nothing is left behind."""
    folder = Path(folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        if not existing.is_dir():
            raise NotADirectoryError(20, f"{existing} is not a folder")
        probe = existing / f".write-check-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as err:
        raise ParameterError(f"{what} {folder} cannot be written ({err.strerror or err}); make it writable or "
                             f"write elsewhere (MLLM_OOD_RUNS=DIR, MLLM_OOD_FIGURES=DIR)") from None
    return folder


def publish_files(pairs: list[tuple[Path, Path]]) -> None:
    """Move each existing ``src`` to its ``dst`` (see the module docstring); a ``src`` that does not exist
    removes a stale ``dst``. Raises PublishError naming the file that failed, with nothing published."""
    ready: list[tuple[Path, Path, Path, bool]] = []  # (src, tmp, dst, copied)
    try:
        for src, dst in pairs:
            if not src.exists():
                continue
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.parent / f".{dst.name}.publish-{uuid.uuid4().hex[:8]}"
            try:
                os.rename(src, tmp)
                ready.append((src, tmp, dst, False))
            except OSError as err:
                if err.errno != errno.EXDEV:
                    raise
                ready.append((src, tmp, dst, True))  # listed first: a half-written copy is removed too
                shutil.copy2(src, tmp)
    except OSError as err:
        what = f"cannot publish {src.name} to {dst.parent}: {err.strerror or err}"
        for back, tmp, _, copied in reversed(ready):
            if copied:
                tmp.unlink(missing_ok=True)
            elif tmp.exists():
                os.rename(tmp, back)
        raise PublishError(what) from err
    for src, tmp, dst, copied in ready:
        os.replace(tmp, dst)
        if copied:
            src.unlink(missing_ok=True)
    for src, dst in pairs:
        if not src.exists() and dst.exists() and not any(d == dst for _, _, d, _ in ready):
            dst.unlink()  # e.g. no HTML this time: do not leave the previous run's beside the new copy
