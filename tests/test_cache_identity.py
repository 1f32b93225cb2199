"""Every cached result is keyed by everything that produced it (issue 26, finding 3).

A probe table computed on the MLLM's own vision features was returned for ``PROBE_FEATURES: clip`` (and for
a CLIP that does not exist), because the CLIP wrapper passed the MLLM's fingerprint through. Here: each
argument of each cached analysis changes its key; the feature source is part of the key of the probe tables
and curves; and each input of the cached feature arrays recomputes them.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import numpy as np
import pytest

import mllm_ood
from mllm_ood import cache
from mllm_ood.paper_a import hypotheses
from mllm_ood.paper_a.features import ClipProbeFeatures, domain_features, with_probe_features


class Model:
    """An MLLM double whose features count how often they are computed."""

    device = "cpu"

    def __init__(self, fingerprint="double@000000000001"):
        self.fingerprint = fingerprint
        self.calls = 0

    def vision_features(self, images, batch_size=64, progress=False):
        self.calls += 1
        return np.full((len(images), 3), float(len(self.fingerprint)), np.float32)

    def answer_state(self, conversations, batch_size=64):
        self.calls += 1
        return np.zeros((len(conversations), 2), np.float32)


def _cached_analyses():
    found = {}
    for info in pkgutil.walk_packages(mllm_ood.__path__, "mllm_ood."):
        try:
            module = importlib.import_module(info.name)
        except Exception:  # noqa: BLE001 - a module that needs an optional import is not an analysis
            continue
        for name, fn in vars(module).items():
            if callable(getattr(fn, "key_params", None)) and getattr(fn, "__module__", None) == info.name:
                found[f"{info.name}.{name}"] = fn
    return found


ANALYSES = _cached_analyses()


def test_every_cached_analysis_is_found():
    assert {"mllm_ood.paper_a.hypotheses.probe_tables", "mllm_ood.paper_a.hypotheses.probe_curves",
            "mllm_ood.paper_a.evaluation.accuracy_table"} <= set(ANALYSES)


@pytest.mark.parametrize("name", sorted(ANALYSES))
def test_each_argument_of_each_cached_analysis_changes_its_key(name):
    fn = ANALYSES[name]
    names = list(inspect.signature(fn.uncached).parameters)
    base = {p: 0 for p in names}
    key = cache.cache_key("analysis", fn.key_params(**base))
    for p in names:
        changed = cache.cache_key("analysis", fn.key_params(**{**base, p: 1}))
        assert changed != key, f"{name}: argument {p} does not enter the cache key"


def test_the_probe_feature_source_is_part_of_the_probe_tables_key():
    """The model, CLIP in front of it, another CLIP in front of it, CLIP under paper A's preprocessing: four keys,
    for the tables and the curves."""
    mllm = Model()
    sources = [mllm, ClipProbeFeatures(mllm, "openai/clip-vit-base-patch16"), ClipProbeFeatures(mllm, "nosuch/clip"),
               ClipProbeFeatures(mllm, "openai/clip-vit-base-patch16", preprocess="paper_a")]
    for fn in (hypotheses.probe_tables, hypotheses.probe_curves):
        args = ([["d"], {"d": ["x"]}, 4] if fn is hypotheses.probe_tables else [["d"], {"d": ["x"]}, 4, [1, 2]])
        keys = {cache.cache_key("analysis", fn.key_params(source, *args)) for source in sources}
        assert len(keys) == 4, f"{fn.__name__}: a feature source shares another's cached results"
    # the MLLM's own identity still counts behind the wrapper
    other = ClipProbeFeatures(Model("double@000000000002"), "openai/clip-vit-base-patch16")
    assert cache.content_digest(other) != cache.content_digest(sources[1])


def test_each_input_of_the_cached_features_recomputes(fresh_cache):
    """domain_features: the model, the feature source, dataset, domain, kind, size, seed and prompt style each
    key the cached array (a change computes anew; the same call again is read from the cache)."""
    m = Model()
    base = dict(dataset="digit_styles", domain="mnist", kind="vision", n_per_class=1, seed=0)

    def calls(model, **kw):
        before = model.calls
        domain_features(model, **{**base, **kw})
        return model.calls - before

    assert calls(m) == 1 and calls(m) == 0  # computed once, then cached
    variants = [(Model("double@000000000002"), {}), (m, {"domain": "uci"}), (m, {"n_per_class": 2}),
                (m, {"seed": 1}), (m, {"kind": "answer_state"}),
                (m, {"kind": "answer_state", "prompt_style": "paper_a"})]
    for model, kw in variants:
        assert calls(model, **kw) == 1, f"{kw or 'another model'} was read from another input's cache entry"
    wrapped = with_probe_features(m, "model")
    assert wrapped is m
    # CLIP's features under CLIP's processor and under paper A's preprocessing: two cached arrays
    clip_own, paper = (ClipProbeFeatures(m, "nosuch/clip", preprocess=p) for p in ("clip", "paper_a"))
    for wrapper in (clip_own, paper):
        wrapper.vision_features = m.vision_features
    assert calls(clip_own) == 1 and calls(paper) == 1 and calls(paper) == 0
