"""Zero-shot protocol: caching per (model, dataset, domain, mode, prompt), parsing, validation."""

from __future__ import annotations

import numpy as np
import pytest

from mllm_ood.paper_a import zero_shot
from mllm_ood.validation import ParameterError


class FakeModel:
    """Answers 'Answer Choice: [<true class>]' for even rows and nonsense for odd rows; counts calls."""

    fingerprint = "fake-model"

    def __init__(self):
        self.calls = 0

    def generate(self, conversations, max_new_tokens=16, batch_size=8):
        self.calls += 1
        return ["Answer Choice: [zero]" if i % 2 == 0 else "no idea" for i in range(len(conversations))]

    def score_choices(self, conversations, choices, batch_size=8):
        self.calls += 1
        scores = np.zeros((len(conversations), len(choices)))
        scores[:, 1] = 1.0  # always 'one'
        return scores


def test_results_are_cached_and_parsed(fresh_cache):
    model = FakeModel()
    kw = dict(modes=["generate", "loglik"], n_per_class=2)
    first = zero_shot.evaluate(model, ["colored_mnist"], **kw)
    calls = model.calls
    assert calls == 2 * 3  # two modes x three domains
    again = zero_shot.evaluate(model, ["colored_mnist"], **kw)
    assert model.calls == calls, "a rerun must not call the model"
    assert first.equals(again)
    gen = first[first["mode"] == "generate"]
    assert (~gen["parsed"]).sum() == len(gen) // 2, "unparseable replies are counted"
    assert not gen.loc[~gen["parsed"], "correct"].any(), "an unparseable reply counts as wrong"
    assert (gen.loc[gen["parsed"], "correct"] == (gen.loc[gen["parsed"], "label"] == 0)).all()
    ll = first[first["mode"] == "loglik"]
    assert ll["parsed"].all() and (ll["correct"] == (ll["label"] == 1)).all()
    zero_shot.evaluate(model, ["colored_mnist"], variant="domain_context", **kw)
    assert model.calls == 2 * calls, "another prompt is another cache entry"


@pytest.mark.parametrize("kwargs, fragment", [
    ({"datasets": ["imagenet"]}, "unknown dataset 'imagenet'"),
    ({"modes": ["guess"]}, "unknown scoring mode 'guess'"),
    ({"n_per_class": 0}, "must be an integer > 0"),
    ({"sampling": "last"}, "unknown sampling 'last'"),
    ({"variant": "poetic"}, "unknown prompt variant 'poetic'"),
])
def test_bad_parameters_fail_before_the_model_is_called(kwargs, fragment, fresh_cache):
    model = FakeModel()
    args = {"datasets": ["colored_mnist"], **kwargs}
    with pytest.raises(ParameterError, match=fragment):
        zero_shot.evaluate(model, **args)
    assert model.calls == 0
