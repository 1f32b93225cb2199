"""Checks before compute of the embedder names (paper B's notebook 04 and the ``emi`` command).

:func:`check_text_embedder` / :func:`check_image_embedder` accept the embedder names the study knows, a
local folder, or a hub id that can be had now (:func:`mllm_ood.mllm.preflight.check_hub_model`: the hub
and API-key checks live there, below the papers).
"""

from __future__ import annotations

from pathlib import Path

from .embedders import CLIP_MODEL, XLMR_MODEL
from .mllm.preflight import HUB_ID, check_hub_model
from .paths import ROOT
from .validation import ParameterError

TEXT_EMBEDDERS = ("minilm", "e5", "xlm-roberta")
IMAGE_EMBEDDERS = ("model", "clip")


def _check_embedder(value, names: tuple, hub_ids: dict, what: str) -> None:
    allowed = f"one of {', '.join(map(repr, names))}, a local model folder, or a hub id owner/name"
    if not isinstance(value, str) or not value.strip():
        raise ParameterError(f"{what} must be {allowed}, got {value!r}")
    if value in names:
        if value in hub_ids:
            check_hub_model(hub_ids[value], f"{what} {value!r}, i.e.")
        return
    if Path(value).is_absolute() or value.startswith(".") or (ROOT / value).exists():
        if not (ROOT / value).is_dir():
            raise ParameterError(f"{what} {value!r}: no such model folder {str(ROOT / value)!r}")
        return
    if not HUB_ID.match(value):
        raise ParameterError(f"unknown {what} {value!r}: must be {allowed}")
    check_hub_model(value, what)


def check_text_embedder(value) -> None:
    """Rule for a text embedder spec (:func:`mllm_ood.embedders.text_embedder`): 'minilm', 'e5',
    'xlm-roberta' (paper B's, from the hub), a local folder, or a hub id that can be had now."""
    _check_embedder(value, TEXT_EMBEDDERS, {"xlm-roberta": XLMR_MODEL}, "text embedder")


def check_image_embedder(value, allow_model: bool = True) -> None:
    """Rule for an image embedder spec: 'model' (the MLLM's own tower, when ``allow_model``), 'clip'
    (paper B's CLIP ViT-B/32, from the hub), a local folder, or a hub id that can be had now."""
    names = IMAGE_EMBEDDERS if allow_model else ("clip",)
    _check_embedder(value, names, {"clip": CLIP_MODEL}, "image embedder")
