"""The sample-id scheme: which source image a sample was made from.

Every MNIST-derived rendering of one digit (rotated ``mnist-00012-rot15``, coloured, textured, corrupted)
keeps its source's id ``mnist-NNNNN`` as a prefix; every other id (UCI scans, printed digits, molecules,
hub rows) is its own source.
"""

from __future__ import annotations

import re

_SOURCE_RE = re.compile(r"^(mnist-\d+)(-.+)?$")


def source_of(sample_id: str) -> str:
    """The source image behind a sample id: ``mnist-00012`` for ``mnist-00012`` and every rendering of it
    (``mnist-00012-rot60``, ``mnist-00012-textured``); any other id unchanged."""
    m = _SOURCE_RE.match(str(sample_id))
    return m.group(1) if m else str(sample_id)
