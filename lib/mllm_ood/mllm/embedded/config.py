"""The embedded model's training config (``params/embedded/model.yaml``), its hash, and the code
identity recorded with every checkpoint."""

from __future__ import annotations

import copy
import hashlib
import json
from pathlib import Path

from ... import CODE_VERSION
from ...paths import DATA, PARAMS
from ...validation import ParameterError

DEFAULT_CONFIG = PARAMS / "embedded" / "model.yaml"
DEFAULT_MODEL_DIR = DATA / "models" / "embedded_mllm"
RECORD = "training_record.json"


def merge_config(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        out[k] = merge_config(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else copy.deepcopy(v)
    return out


def load_config(path: str | Path | None = None, smoke: bool = False) -> dict:
    """The training config from ``params/embedded/model.yaml`` (or ``path``), with the ``smoke``
    overrides merged in when ``smoke`` is true. The returned dict has no ``smoke`` key; ``smoke``
    records whether the overrides were applied."""
    import yaml

    p = Path(path) if path is not None else DEFAULT_CONFIG
    if not p.is_file():
        raise ParameterError(f"model config: no such file {str(p)!r}")
    raw = yaml.safe_load(p.read_text())
    over = raw.pop("smoke", {}) or {}
    cfg = merge_config(raw, over) if smoke else raw
    cfg["smoke"] = bool(smoke)
    return cfg


def config_hash(config: dict) -> str:
    """16-hex-digit hash of the sorted-JSON config."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def code_version() -> str:
    """The package code version plus a hash of this subpackage's source, recorded with every checkpoint:
    provenance only (which source made it). :func:`~.saving.train_or_load` does not compare it, since a
    comment or a refactor changes it without changing what training produces; the guard compares
    :data:`~.training.TRAINING_VERSION` instead, which a change to what training produces bumps."""
    h = hashlib.sha256()
    for f in sorted(Path(__file__).parent.glob("*.py")):
        h.update(f.read_bytes())
    return f"{CODE_VERSION}+{h.hexdigest()[:12]}"
