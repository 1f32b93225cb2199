"""The one sample-id scheme of the data world: which source image a sample was made from.

A source image has its own id (``mnist-00012``, ``printed-3-0001``, ``mol-0042``, a hub dataset's id).
A shifted copy of an MNIST digit (rotated, coloured, textured, corrupted) is named
``<source id>-<shift tag>`` (:func:`derived_id`): ``mnist-00012-rot15``, ``mnist-00012-gaussian_noise-3``.
:func:`source_of` reads the source back, so samples of different shifts pair up by their source digit
(paired intervals, leak-free few-shot episodes)."""

from __future__ import annotations

import re

# Only MNIST digits have shifted copies; their ids are "mnist-" and five digits.
_DERIVED = re.compile(r"^(mnist-\d+)(-.+)?$")


def derived_id(source: str, tag: str) -> str:
    """The id of a shifted copy ``tag`` (e.g. 'rot15', 'textured') of the source image ``source``."""
    return f"{source}-{tag}"


def source_of(sample_id: str) -> str:
    """The source image behind a sample id: every MNIST-derived rendering of one digit (rotated,
    coloured, textured, corrupted) shares its ``mnist-NNNNN``; any other id is its own source."""
    m = _DERIVED.match(str(sample_id))
    return m.group(1) if m else str(sample_id)
