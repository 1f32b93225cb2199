"""Frozen features of a model on a dataset domain, cached: pooled vision-tower output, the language
model's hidden state at the answer position (under paper A's prompt), and raw pixels (a floor).

The vision features come from the MLLM's own tower, or -- paper A's probe -- from a frozen CLIP image
encoder: :func:`with_probe_features` wraps the model so that every ``vision`` feature (and its cache key)
is CLIP's, while answers, answer states and the model's identity stay the MLLM's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..cache import cached_arrays
from ..data import catalog, world
from ..mllm import fingerprint_of, model_reference
from ..mllm.preflight import check_hub_model
from ..mllm.refs import files_digest
from ..paper_b.embedders import load_image, load_image_model
from ..paths import ROOT
from ..progress import tqdm
from ..validation import ParameterError, check_choice
from .probe_protocol import PREPROCESSING, paper_a_pixels
from .probes import pixel_features
from .zero_shot import build_prompt

KINDS = ("vision", "answer_state", "pixels")


def domain_features(model, dataset: str, domain: str, kind: str, n_per_class: int,
                    seed: int = 0, batch_size: int = 64,
                    prompt_style: str = "short") -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(features (n, d) float32, labels (n,), ids) for the first ``n_per_class`` samples per class of
    (dataset, domain). Cached per (model, dataset, domain, kind, n_per_class, seed, code version);
    ``prompt_style`` is the zero-shot prompt under which the answer state is read."""
    check_choice("feature kind", kind, KINDS)
    ds_all, info = catalog.open_dataset(dataset, seed=seed)
    check_choice(f"domain of {dataset}", domain, info.domains)
    ident = model.feature_identity(kind) if isinstance(model, ClipProbeFeatures) else fingerprint_of(model)
    params = {"model": ident if kind != "pixels" else None, "dataset": dataset,
              "domain": domain, "kind": kind, "n": n_per_class, "seed": seed}
    if kind == "answer_state" and prompt_style != "short":  # the short prompt keeps its old cache entries
        params["prompt_style"] = prompt_style

    def build() -> dict:
        ds = ds_all.select([i for i, d in enumerate(ds_all["domain"]) if d == domain])
        ds = world.sample_per_class(ds, n_per_class, mode="first")
        images = list(ds["image"])
        if kind == "vision":
            x = model.vision_features(images, batch_size=batch_size)
        elif kind == "answer_state":
            prompt = build_prompt(info, domain, "plain", style=prompt_style)
            x = model.answer_state([([im], prompt) for im in images], batch_size=batch_size)
        else:
            x = pixel_features(images)
        return {"x": x.astype(np.float32), "y": np.asarray(ds["label"]), "ids": np.asarray(ds["id"])}

    f = cached_arrays("features", params, build, file="features.npz")
    return f["x"], f["y"], [str(i) for i in f["ids"]]


def ood_domains(info, reference: str | None = None) -> list[str]:
    """The domains of a dataset other than its in-distribution reference: the domain of ``reference``
    ('dataset/domain', a notebook parameter) when it names this dataset, else the dataset's own
    ``id_domain`` (embedded datasets; hub datasets have none)."""
    exclude = info.id_domain
    if reference is not None:
        ref_ds, ref_dom = reference.split("/", 1)
        if ref_ds == info.name:
            exclude = ref_dom
    return [d for d in info.domains if d != exclude]


# --------------------------------------------------------------------------------------------------
# paper A's probe on frozen CLIP features

PROBE_SOURCES = ("model", "clip")
PREPROCESSINGS = tuple(dict.fromkeys(PREPROCESSING.values()))  # a CLIP probe source's image preprocessing
# Paper A's code probes OpenAI CLIP ViT-B/16 (clip.load('ViT-B/16'), encode_image); its hub copy:
CLIP_PROBE_MODEL = "openai/clip-vit-base-patch16"


def check_probe_features(value) -> None:
    """Rule for the notebook parameter naming the probe's vision features: 'model' (the MLLM's own tower),
    'clip' (:data:`CLIP_PROBE_MODEL`), or a CLIP checkpoint (hub id or local ``save_pretrained`` folder)."""
    if value in PROBE_SOURCES:
        if value == "clip":
            check_hub_model(CLIP_PROBE_MODEL, "PROBE_FEATURES 'clip', i.e.")
        return
    try:
        model_reference()(value)
    except ParameterError as err:
        raise ParameterError(f"must be 'model', 'clip' or a CLIP checkpoint (hub id or folder): {err}") from None
    check_hub_model(value, "CLIP checkpoint")


class ClipProbeFeatures:
    """The MLLM ``model`` whose ``vision_features`` are a frozen CLIP image encoder's embeddings (paper A's
    hypothesis-2 probe): CLIP's projected pooled image output (``visual_projection`` of the vision
    transformer's pooled output, what OpenAI CLIP's ``encode_image`` returns), through ``preprocess``: 'clip'
    (CLIP's own image processor: resize + centre crop + CLIP normalisation) or 'paper_a' (paper A's script: BGR,
    224 x 224 squash, ImageNet statistics; :func:`mllm_ood.paper_a.probe_protocol.paper_a_pixels`). Everything
    else -- answers, answer states, :attr:`fingerprint` -- is the MLLM's, so zero-shot results and answer-state
    features keep their cache entries."""

    def __init__(self, model, clip_model: str, preprocess: str = "clip"):
        check_choice("CLIP probe preprocessing", preprocess, PREPROCESSINGS)
        self.mllm = model  # not 'model': that attribute stays the MLLM's own (its transformers model)
        self.clip_model = str(clip_model)
        self.preprocess = preprocess
        # CLIP's weights and, when not CLIP's own processor, the preprocessing (CLIP's keeps its old entries)
        how = "" if preprocess == "clip" else f"+{preprocess}"
        self.clip_identity = f"clip:{files_digest(self.clip_model)}{how}"

    def __getattr__(self, name):  # answers, answer states, fingerprint, .model: the MLLM's
        if name == "mllm":  # not set yet (copy / unpickling)
            raise AttributeError(name)
        return getattr(self.mllm, name)

    def __repr__(self) -> str:
        how = "" if self.preprocess == "clip" else f", {self.preprocess} preprocessing"
        return f"{self.mllm!r} (probe vision features: CLIP {self.clip_model}{how})"

    def cache_identity(self) -> dict:
        """What keys an analysis of this wrapper (:func:`mllm_ood.cache.content_digest`): the MLLM's
        fingerprint and CLIP's weights, so a probe table of the MLLM's own features is never returned for CLIP's."""
        return {"mllm": fingerprint_of(self.mllm), "vision": self.clip_identity}

    def feature_identity(self, kind: str) -> str:
        """What keys the cached features of ``kind``: CLIP's weights for 'vision', else the MLLM's fingerprint."""
        return self.clip_identity if kind == "vision" else fingerprint_of(self.mllm)

    def vision_features(self, images, batch_size: int = 64, progress: bool = False) -> np.ndarray:
        """CLIP image embeddings (n, projection_dim) float32 of PIL ``images``, not normalised."""
        local = Path(self.clip_model).is_dir()
        processor, net = load_image_model(self.clip_model, local, str(getattr(self.mllm, "device", "cpu")))
        if not hasattr(net, "visual_projection"):
            raise ParameterError(f"{self.clip_model} is not a CLIP model (no visual_projection): {type(net).__name__}")
        images = list(images)
        out = []
        with torch.inference_mode():
            for i in tqdm(range(0, len(images), batch_size), desc="CLIP vision", disable=not progress):
                batch = [load_image(im) for im in images[i:i + batch_size]]
                pixels = (paper_a_pixels(batch) if self.preprocess == "paper_a"
                          else processor(images=batch, return_tensors="pt")["pixel_values"]).to(net.device, net.dtype)
                pooled = net.vision_model(pixel_values=pixels).pooler_output
                out.append(net.visual_projection(pooled).float().cpu().numpy())
        return np.concatenate(out)


def with_probe_features(model, source: str, preprocess: str = "clip"):
    """``model`` itself for ``source`` 'model'; for 'clip' (paper A's CLIP ViT-B/16) or a CLIP checkpoint,
    the model wrapped so that the probes read CLIP's frozen image embeddings (:class:`ClipProbeFeatures`) of
    images prepared by ``preprocess`` ('clip' or 'paper_a'; it does not concern the MLLM's own tower)."""
    check_probe_features(source)
    check_choice("CLIP probe preprocessing", preprocess, PREPROCESSINGS)
    if source == "model":
        return model
    ref = CLIP_PROBE_MODEL if source == "clip" else source
    if not Path(ref).is_absolute() and (ROOT / ref).is_dir():
        ref = str(ROOT / ref)
    return ClipProbeFeatures(model, ref, preprocess=preprocess)
