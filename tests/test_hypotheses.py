"""Paper A's hypothesis verdict on hand-made tables, one per branch, and the pooled comparison."""

import numpy as np
import pandas as pd
import pytest

from mllm_ood import hypotheses


def outcomes(acc: float, n: int = 200) -> list[bool]:
    """n outcomes with exactly round(acc * n) correct, spread evenly."""
    k = round(acc * n)
    return [bool(i) for i in (np.arange(n) * k // n != (np.arange(n) + 1) * k // n)]


def tables(plain, descriptions, context, vision, lm, pixels=0.1, dataset="d"):
    zs = pd.DataFrame([{"dataset": dataset, "variant": v, "correct": c}
                       for v, acc in [("plain", plain), ("descriptions", descriptions), ("domain_context", context)]
                       for c in outcomes(acc)])
    items = pd.DataFrame([{"dataset": dataset, "domain": "x", "features": f, "correct": c}
                          for f, acc in [("vision", vision), ("answer_state", lm), ("pixels", pixels)]
                          for c in outcomes(acc)])
    return zs, items


@pytest.mark.parametrize("accs, h1, h2_rejected, h3, words", [
    # paper A's pattern: prompts do not help, both probes far above zero-shot
    ((0.3, 0.3, 0.3, 0.9, 0.8), False, True, True, "H3 mapping deficiency"),
    # a richer prompt clearly helps: H1; then H3 is not claimed
    ((0.3, 0.7, 0.3, 0.9, 0.8), True, True, False, "H1 semantic misinterpretation"),
    # the vision probe is no better than zero-shot: H2 not ruled out
    ((0.5, 0.5, 0.5, 0.5, 0.5), False, False, False, "H2 visual feature insufficiency (not ruled out)"),
    # vision clearly above, the answer state not: nothing supported, and the gap is large
    ((0.3, 0.3, 0.3, 0.9, 0.3), False, True, False, "no hypothesis clearly supported"),
])
def test_verdict_branches(accs, h1, h2_rejected, h3, words):
    zs, items = tables(*accs)
    row = hypotheses.verdict(zs, items, ["d"], n_boot=300, seed=0).iloc[0]
    assert (row["H1 supported"], row["H2 rejected"], row["H3 supported"]) == (h1, h2_rejected, h3)
    assert row["verdict"].startswith(words)
    assert row["zero-shot plain"] == pytest.approx(accs[0])


def test_verdict_little_failure_to_explain():
    """Vision probe clearly but only slightly above zero-shot (< 5 points) and no LM-state gain."""
    n = 4000
    zs = pd.DataFrame({"dataset": "d", "variant": np.repeat(["plain", "descriptions", "domain_context"], n),
                       "correct": outcomes(0.95, n) * 3})
    items = pd.DataFrame({"dataset": "d", "domain": "x", "features": np.repeat(["vision", "answer_state", "pixels"], n),
                          "correct": outcomes(0.99, n) + outcomes(0.95, n) + outcomes(0.1, n)})
    row = hypotheses.verdict(zs, items, ["d"], n_boot=300, seed=0).iloc[0]
    assert row["H2 rejected"] and not row["H1 supported"] and not row["H3 supported"]
    assert row["verdict"].startswith("little failure to explain")


def test_verdict_several_datasets_and_both_h1_and_h2():
    zs1, it1 = tables(0.3, 0.3, 0.3, 0.9, 0.8, dataset="a")
    zs2, it2 = tables(0.3, 0.3, 0.7, 0.3, 0.3, dataset="b")
    out = hypotheses.verdict(pd.concat([zs1, zs2]), pd.concat([it1, it2]), ["a", "b"], n_boot=300, seed=0)
    assert list(out["dataset"]) == ["a", "b"]
    assert out.iloc[1]["verdict"] == ("H1 semantic misinterpretation; H2 visual feature insufficiency "
                                      "(not ruled out)")


def test_comparison_pools_each_method():
    zs, items = tables(0.3, 0.4, 0.5, 0.9, 0.8, pixels=0.2)
    out = hypotheses.comparison(zs, items, {"d": 0.1}, ["plain", "descriptions", "domain_context"], n_boot=200)
    assert list(out["method"]) == ["zero-shot: plain", "zero-shot: descriptions", "zero-shot: domain_context",
                                   "probe: vision features", "probe: LM answer state", "probe: raw pixels"]
    assert np.allclose(out["accuracy"], [0.3, 0.4, 0.5, 0.9, 0.8, 0.2])
    assert (out["ci_low"] <= out["accuracy"]).all() and (out["accuracy"] <= out["ci_high"]).all()
    assert (out["n"] == 200).all() and (out["chance"] == 0.1).all()
