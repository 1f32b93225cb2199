"""Writing a model folder without ever deleting what this project did not write.

A retrain builds its checkpoint in a fresh temporary sibling of the target folder and moves it into place
(:func:`install_folder`). The target may be replaced only when it is itself a model folder written by this
project: it holds a readable training record (``record``) and nothing else than the files a checkpoint
holds (no subfolders, only the names the record lists, or for older records the names Hugging Face's
``save_pretrained`` writes). It may never be the repository root, a folder above it, or a folder holding
a protected checkpoint (the committed one); a protected checkpoint itself only with explicit consent.
:func:`check_replaceable` says why not before any training starts; :func:`install_folder` checks again
when the new folder is ready.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path

from .validation import ParameterError

# What ``save_pretrained`` of a model and its processor writes (older records list no files).
CHECKPOINT_SUFFIXES = (".json", ".safetensors", ".jinja", ".bin", ".model")
CHECKPOINT_NAMES = ("merges.txt", "vocab.txt")


def _record(folder: Path, record: str) -> dict | None:
    try:
        rec = json.loads((folder / record).read_text())
    except (OSError, ValueError):
        return None
    return rec if isinstance(rec, dict) and "config_hash" in rec else None


def foreign_entries(folder: Path, record: str) -> list[str]:
    """The entries of ``folder`` that a checkpoint written by this project would not hold (names)."""
    rec = _record(folder, record) or {}
    listed = set(rec.get("files") or [])
    out = []
    for p in sorted(folder.iterdir()):
        if p.is_symlink() or not p.is_file():
            out.append(p.name + ("/" if p.is_dir() else ""))
        elif listed:
            if p.name not in listed | {record}:
                out.append(p.name)
        elif not (p.name.endswith(CHECKPOINT_SUFFIXES) or p.name in CHECKPOINT_NAMES):
            out.append(p.name)
    return out


def check_replaceable(target, *, record: str, root, protected=(), allow_protected: bool = False,
                      how: str = "") -> None:
    """Raise ParameterError unless ``target`` may receive a newly written checkpoint: it does not exist
    yet, is an empty folder, or is a checkpoint of this project (see the module docstring); never ``root``,
    a folder above ``root``, a folder above any of ``protected``, and one of ``protected`` only with
    ``allow_protected``. ``how``: advice appended to the message."""
    target = Path(target)
    real, root_real = target.resolve(), Path(root).resolve()
    tail = f"; {how}" if how else ""
    if real == root_real or real in root_real.parents:
        raise ParameterError(f"{target} is the repository root or a folder above it; a checkpoint is written "
                             f"into a folder of its own{tail}")
    for p in protected:
        p_real = Path(p).resolve()
        if real in p_real.parents:
            raise ParameterError(f"{target} holds the committed checkpoint {p}; replacing it would delete that "
                                 f"checkpoint and everything beside it{tail}")
        if real == p_real and not allow_protected:
            raise ParameterError(f"{target} is the committed checkpoint; it is replaced only with the explicit "
                                 f"consent (REPLACE_COMMITTED=True){tail}")
    if target.is_symlink() or (target.exists() and not target.is_dir()):
        raise ParameterError(f"{target} exists and is not a folder{tail}")
    if not target.exists() or not any(target.iterdir()):
        return
    if _record(target, record) is None:
        raise ParameterError(f"{target} holds files but no readable {record}: it is not a checkpoint written by "
                             f"this project, and it is never deleted{tail}")
    extra = foreign_entries(target, record)
    if extra:
        shown = ", ".join(extra[:5]) + (f" and {len(extra) - 5} more" if len(extra) > 5 else "")
        raise ParameterError(f"{target} holds a checkpoint and also {shown}, which a checkpoint does not hold; "
                             f"it is never deleted{tail}")


def install_folder(tmp, target, **checks) -> Path:
    """Move the finished folder ``tmp`` to ``target`` (same parent), replacing ``target`` only when
    :func:`check_replaceable` (``checks``: its keyword arguments) allows it. The old folder is first
    renamed aside, so a failure puts it back; it is deleted only once the new one is in place."""
    tmp, target = Path(tmp), Path(target)
    check_replaceable(target, **checks)
    aside = None
    if target.exists():
        aside = target.parent / f".old-{target.name}-{uuid.uuid4().hex[:8]}"
        os.rename(target, aside)
    try:
        os.rename(tmp, target)
    except OSError:
        if aside is not None:
            os.rename(aside, target)
        raise
    if aside is not None:
        shutil.rmtree(aside, ignore_errors=True)
    return target
