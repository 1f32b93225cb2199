"""Rules for the embedder names of paper B (notebook 04's TEXT_EMBEDDER / IMAGE_EMBEDDER, the ``emi``
command's ``--text-model`` / ``--image-model``), checked before anything loads.

A name the study knows, a local model folder, or a hub id that can be had now
(:func:`mllm_ood.mllm.preflight.check_hub_model`): a misspelled name or an unreachable hub id is refused at
once, not after the first embedding.
"""

from __future__ import annotations

from pathlib import Path

from ..paths import ROOT
from ..mllm.preflight import HUB_ID, check_hub_model
from ..validation import ParameterError
from .embedders import CLIP_MODEL, XLMR_MODEL

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
    """Rule for a text embedder spec (:func:`mllm_ood.paper_b.embedders.text_embedder`): 'minilm', 'e5',
    'xlm-roberta' (paper B's, from the hub), a local folder, or a hub id that can be had now."""
    _check_embedder(value, TEXT_EMBEDDERS, {"xlm-roberta": XLMR_MODEL}, "text embedder")


def check_image_embedder(value, allow_model: bool = True) -> None:
    """Rule for an image embedder spec: 'model' (the MLLM's own tower, when ``allow_model``), 'clip'
    (paper B's CLIP ViT-B/32, from the hub), a local folder, or a hub id that can be had now."""
    names = IMAGE_EMBEDDERS if allow_model else ("clip",)
    _check_embedder(value, names, {"clip": CLIP_MODEL}, "image embedder")
