"""Loading a model by reference (:func:`load_model`) and asking a reference what its family can do
before loading it (:func:`capabilities_of`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..paths import resolve_model
from ..validation import ParameterError
from . import families
from .base import CAPABILITIES, MLLM
from .refs import HUB_ID, is_endpoint_ref, local_model_type, pick_device, pick_dtype
from .registry import family_class


def load_model(path_or_hub_id: str | Path, device: str | None = None, dtype=None,
               local_files_only: bool | None = None) -> MLLM:
    """Load an MLLM from a local folder (``save_pretrained`` format; a relative path is looked up under
    the repository root first, as notebooks give it) or a hub id ('owner/name'), or connect to one behind
    an OpenAI-compatible endpoint ('openai:<model>@<base_url>', :mod:`mllm_ood.mllm.families.endpoint`). The
    model's class is its family's (:mod:`mllm_ood.mllm.registry`, by ``model_type``); it carries its one
    identity, ``model.fingerprint`` (:func:`mllm_ood.mllm.refs.model_fingerprint`).

    device: 'cpu', 'cuda', 'cuda:1', ... (default: automatic); dtype: torch dtype or name (default:
    automatic). local_files_only: default True for folders; for hub ids, whatever transformers'
    offline settings say. Raises ParameterError for a folder that does not exist or has no transformers
    config, or a hub id that cannot be loaded. A local folder's weights load on first use (its name,
    fingerprint and model type come from its files), so a notebook whose results are all cached never
    loads them; a folder whose weights turn out unloadable raises ParameterError then.
    """
    if is_endpoint_ref(path_or_hub_id):  # 'openai:<model>@<base_url>': a model behind an OpenAI-compatible API
        return families.endpoint.load_endpoint_model(str(path_or_hub_id))
    name = resolve_model(str(path_or_hub_id))
    local = Path(name).expanduser()
    if local.exists():
        model_type = local_model_type(name)
        source, lfo = str(local), True if local_files_only is None else local_files_only
    elif HUB_ID.match(name):
        model_type, source, lfo = None, name, local_files_only
    else:
        raise ParameterError(f"model path {name!r} does not exist (and is not a hub id like 'owner/name')")
    dev = pick_device(device)
    dt = pick_dtype(dev, dtype)
    kw = {} if lfo is None else {"local_files_only": lfo}

    def load():
        from transformers import AutoModelForImageTextToText, AutoProcessor

        try:
            processor = AutoProcessor.from_pretrained(source, **kw)
            model = AutoModelForImageTextToText.from_pretrained(source, dtype=dt, **kw)
        except (OSError, ValueError) as err:
            raise ParameterError(f"cannot load MLLM {name!r}: {err}") from err
        return model.to(dev).eval(), processor

    if model_type is not None:  # a local folder: weights on first use (a fully cached notebook never needs them)
        return family_class(model_type).on_first_use(load, name, dev, dt, model_type)
    model, processor = load()
    return family_class(model.config.model_type)(model, processor, name, dev, dt)


def capabilities_of(ref: str) -> frozenset:
    """What the family of the model ``ref`` names declares it can do (:data:`~mllm_ood.mllm.base.CAPABILITIES`),
    without loading it, so a notebook can refuse a parameter before any compute: an endpoint reference's
    family; a local folder's by its ``config.json`` model type; a hub id's by the stand-in table when listed
    there. A hub model whose type is unknown before loading is taken to offer everything (its family
    refuses what it lacks at first use)."""
    if is_endpoint_ref(ref):
        return family_class("endpoint").capabilities
    model_type = local_model_type(str(ref))
    return frozenset(CAPABILITIES) if model_type is None else family_class(model_type).capabilities


def model_input_view(model_ref: str, images) -> np.ndarray:
    """The images as the model's own image processor hands them to the vision tower (resize, crop, RGB),
    mapped back to [0, 1] for display: (n, height, width, 3) float. Loads only the processor of
    ``model_ref`` (a local folder relative to the repo root, or a hub id), not the weights."""
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(resolve_model(model_ref), local_files_only=True)
    except (OSError, ValueError) as err:
        raise ParameterError(f"cannot load the image processor of {model_ref!r}: {err}") from err
    ip = getattr(processor, "image_processor", processor)
    pixels = np.asarray(ip(list(images), return_tensors="np")["pixel_values"], dtype=np.float32)
    mean = np.asarray(getattr(ip, "image_mean", [0.0] * 3), np.float32)
    std = np.asarray(getattr(ip, "image_std", [1.0] * 3), np.float32)
    return np.clip(pixels.transpose(0, 2, 3, 1) * std + mean, 0.0, 1.0)
