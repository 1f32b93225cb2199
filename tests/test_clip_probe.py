"""Paper A's hypothesis-2 probe on frozen CLIP features (notebook 02's PROBE_FEATURES), offline on the tiny
CLIP stand-in: what the wrapped model computes, what keys its cache, how the dry run substitutes it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from mllm_ood import runner
from mllm_ood.data.hub import make_standin_dataset
from mllm_ood.models import standin_clip
from mllm_ood.paper_a.features import (CLIP_PROBE_MODEL, ClipProbeFeatures, check_probe_features, domain_features,
                               with_probe_features)
from mllm_ood.validation import ParameterError


class Tower:
    """An MLLM double: its own vision tower must never be read when the probe reads CLIP."""

    fingerprint = "tower@000000000000"
    device = "cpu"
    model = "the MLLM's transformers model"

    def vision_features(self, images, batch_size=64, progress=False):
        raise AssertionError("the MLLM's own tower was read")

    def answer_state(self, conversations, batch_size=64):
        return np.zeros((len(conversations), 4), np.float32)


def _images(n, seed=0):
    r = np.random.default_rng(seed)
    return [Image.fromarray(r.integers(0, 255, (40, 60, 3), dtype=np.uint8)) for _ in range(n)]


def test_clip_standin_has_the_checkpoint_image_shape():
    from transformers import AutoImageProcessor, AutoModel

    folder = standin_clip(CLIP_PROBE_MODEL)
    assert standin_clip(CLIP_PROBE_MODEL) == folder, "built once, then cached"
    net = AutoModel.from_pretrained(str(folder), local_files_only=True)
    assert type(net).__name__ == "CLIPModel"
    assert (net.config.vision_config.image_size, net.config.vision_config.patch_size) == (224, 16)
    px = AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)(images=_images(1), return_tensors="pt")
    assert tuple(px["pixel_values"].shape) == (1, 3, 224, 224)
    assert standin_clip("openai/clip-vit-base-patch32") != folder
    with pytest.raises(ParameterError, match="no CLIP stand-in"):
        standin_clip("someone/clip-like")


def test_wrapped_model_reads_clip_image_embeddings_and_keeps_the_mllm_identity():
    from transformers import AutoModel

    folder = standin_clip(CLIP_PROBE_MODEL)
    tower = Tower()
    assert with_probe_features(tower, "model") is tower
    wrapped = with_probe_features(tower, str(folder))
    assert isinstance(wrapped, ClipProbeFeatures)
    assert wrapped.fingerprint == tower.fingerprint and wrapped.model == tower.model  # the MLLM's, untouched
    ims = _images(3)
    x = wrapped.vision_features(ims, batch_size=2)
    assert x.shape == (3, 32) and x.dtype == np.float32 and np.isfinite(x).all()
    # encode_image of OpenAI CLIP: the projection of the vision transformer's pooled output
    net = AutoModel.from_pretrained(str(folder), local_files_only=True).eval()
    from transformers import AutoImageProcessor
    px = AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)(images=ims, return_tensors="pt")
    with torch.no_grad():
        ref = net.visual_projection(net.vision_model(pixel_values=px["pixel_values"]).pooler_output).numpy()
    np.testing.assert_allclose(x, ref, rtol=1e-5, atol=1e-6)
    assert wrapped.feature_identity("vision").startswith("clip:")
    assert wrapped.feature_identity("answer_state") == tower.fingerprint
    assert "CLIP" in repr(wrapped)


def test_domain_features_of_a_hub_standin_come_from_clip(tmp_path, monkeypatch):
    make_standin_dataset("pacs", tmp_path / "mirror" / "pacs", per_cell=2)
    monkeypatch.setenv("MLLM_OOD_HUB_MIRROR", str(tmp_path / "mirror"))
    wrapped = with_probe_features(Tower(), str(standin_clip(CLIP_PROBE_MODEL)))
    x, y, ids = domain_features(wrapped, "hub:pacs", "sketch", "vision", n_per_class=2)
    assert x.shape == (14, 32) and sorted(set(y.tolist())) == list(range(7)) and len(ids) == 14
    x2, _, _ = domain_features(wrapped, "hub:pacs", "sketch", "vision", n_per_class=2)  # from the cache
    np.testing.assert_array_equal(x, x2)
    s, _, _ = domain_features(wrapped, "hub:pacs", "sketch", "answer_state", n_per_class=2)  # still the MLLM's
    assert s.shape == (14, 4)


def test_parameter_rule_and_dry_run_substitution(monkeypatch):
    from mllm_ood.preflight import STANDIN_ENV

    check_probe_features("model")
    for hub_ref in ("clip", "openai/clip-vit-base-patch32", "nosuch/clip"):  # offline, not in the hub cache
        with pytest.raises(ParameterError, match="not in the local Hugging Face cache.*HF_HUB_OFFLINE"):
            check_probe_features(hub_ref)
    monkeypatch.setenv(STANDIN_ENV, "1")  # a --standin run replaces them after the checks
    check_probe_features("clip")
    check_probe_features("openai/clip-vit-base-patch32")
    with pytest.raises(ParameterError, match="'model', 'clip' or a CLIP checkpoint"):
        check_probe_features("no such folder")
    assert runner.standin_substitutions({"PROBE_FEATURES": "model"}) == {}
    sub = runner.standin_substitutions({"PROBE_FEATURES": "clip"})
    assert sub == {"PROBE_FEATURES": str(standin_clip(CLIP_PROBE_MODEL))}


def test_a_checkpoint_that_is_not_clip_is_refused():
    from mllm_ood.models import standin_model

    llava = standin_model("llava-hf/llava-1.5-7b-hf")
    with pytest.raises(ParameterError, match="is not a CLIP model"):
        with_probe_features(Tower(), str(llava)).vision_features(_images(1))
