"""Seeds: every random choice flows from a parameter; child seeds come from a hash of parent and task."""

from __future__ import annotations

import hashlib

import numpy as np


def derive_seed(parent: int, *task: object) -> int:
    """A 31-bit seed from ``parent`` and a task path, stable across machines and Python versions."""
    text = "/".join([str(int(parent))] + [str(t) for t in task])
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little") & 0x7FFFFFFF


def rng(parent: int, *task: object) -> np.random.Generator:
    """A numpy Generator seeded by ``derive_seed(parent, *task)``."""
    return np.random.default_rng(derive_seed(parent, *task))

