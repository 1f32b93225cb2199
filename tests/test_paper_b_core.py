"""The one EMI core (mllm_ood.paper_b.core): scenario spans, EMI with its interval, the bound's terms with
permutation nulls, the bound / text-side sum, correlations with (crossed) bootstrap intervals.

Everything runs on small synthetic embeddings with a CLUB trained for a few epochs, in seconds. The
estimators themselves (CLUB, representation JSD, W2, the permutation null) are checked against closed
forms in test_estimators.py and test_divergences.py.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from mllm_ood.paper_b import arrays, bound, estimators
from mllm_ood.paper_b import core
from mllm_ood.validation import ParameterError


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MLLM_OOD_CACHE", str(tmp_path / "cache"))


def _samples(n: int = 30, d: int = 16, seed: int = 0, with_images: bool = False):
    """Three scenarios of n items: 'src'; 'degraded' (same questions, off-topic answers);
    'reworded' (other questions, good answers)."""
    g = np.random.default_rng(seed)
    topics = g.standard_normal((n, d))
    q_src = topics + 0.1 * g.standard_normal((n, d))
    q_new = topics + 0.1 * g.standard_normal((n, d)) + 2.0 * np.eye(d)[0]
    ref = topics + 0.1 * g.standard_normal((n, d))
    good = ref + 0.1 * g.standard_normal((n, d))
    noise = 3.0 * np.eye(d)[2] + 0.5 * g.standard_normal((n, d))  # off-topic answers, all alike
    zt = arrays.l2_normalise(np.concatenate([q_src, q_src, q_new]))
    ym = arrays.l2_normalise(np.concatenate([good, noise, good]))
    yr = arrays.l2_normalise(np.concatenate([ref, ref, ref]))
    zv = arrays.l2_normalise(np.concatenate([topics, topics + 3 * np.eye(d)[1], topics])) if with_images else None
    ids = np.array([str(i) for i in range(n)] * 3, dtype=object)
    labels = ["src"] * n + ["degraded"] * n + ["reworded"] * n
    return core.EmbeddedSamples(zt, ym, yr, zv, ids=ids), labels


def test_scenario_spans_checks_before_compute():
    spans = core.scenario_spans(["b", "a", "b", "a"] * 5, source="a")
    assert list(spans) == ["a", "b"] and spans["a"].tolist() == [1, 3, 5, 7, 9, 11, 13, 15, 17, 19]
    with pytest.raises(ParameterError, match="only one scenario"):
        core.scenario_spans(["a"] * 20, source="a")
    with pytest.raises(ParameterError, match="unknown source scenario 'z'"):
        core.scenario_spans(["a", "b"] * 10, source="z")
    with pytest.raises(ParameterError, match=r"'b' \(first at line 3\) has 4 samples; at least 10"):
        core.scenario_spans(["a"] * 10 + ["b"] * 4, source="a", first_lines=list(range(-7, 7)))
    assert core.MIN_SAMPLES == 10


def test_analyse_text_only_reports_the_text_side_sum_not_the_bound():
    emb, labels = _samples()
    a = core.analyse(emb, labels, "src", n_boot=200, n_perm=60, club_kwargs={"max_epochs": 5})
    t = a.table.set_index("scenario")
    assert a.text_only and not t["bound_complete"].any()
    assert list(a.table["scenario"]) == ["src", "degraded", "reworded"] and math.isnan(t.loc["src", "emid"])
    for s in ("degraded", "reworded"):
        r = t.loc[s]
        assert r["emid"] == pytest.approx(t.loc["src", "emi"] - r["emi"])
        assert math.isnan(r["jsd_v"])  # unknown, not zero
        assert r["jsd_sum"] == pytest.approx(math.sqrt(r["jsd_t"]) + r["jsd_py"] ** 0.25 + r["jsd_qy"] ** 0.25)
        assert r["w_sum"] == pytest.approx(r["w_t"] + math.sqrt(r["w_py"]) + math.sqrt(r["w_qy"]))
        assert r["jsd_py"] == t.loc["src", "jsd_qy"]  # the source's output term, computed once
    for s, r in t.iterrows():
        assert r["emi_low"] <= r["emi"] <= r["emi_high"]
    # same questions, paired by id: the question term is exactly 0 and not above its null
    assert t.loc["degraded", "jsd_t"] == pytest.approx(0.0, abs=1e-9) and t.loc["degraded", "jsd_t_p"] == 1.0
    # noise answers drift far from the references: that output term stands out from its null ...
    assert t.loc["degraded", "jsd_qy"] > t.loc["degraded", "jsd_qy_null_high"] and t.loc["degraded", "jsd_qy_p"] < 0.05
    # ... and so does the reworded question set
    assert t.loc["reworded", "jsd_t"] > t.loc["reworded", "jsd_t_null_high"] and t.loc["reworded", "jsd_t_p"] < 0.05
    assert "not the bound" in bound.TEXT_ONLY_NOTE and "unknown" in bound.bound_label(False)
    pairs = a.terms[a.terms["term"] == "t"]
    assert pairs["paired"].all()


def test_analyse_with_images_gives_the_complete_bound_and_uses_a_given_club():
    emb, labels = _samples(with_images=True)
    a = core.analyse(emb, labels, "src", n_boot=100, n_perm=40, club_kwargs={"max_epochs": 5})
    t = a.table.set_index("scenario")
    assert t["bound_complete"].all()
    r = t.loc["degraded"]
    want = bound.emid_bound(r["jsd_v"], r["jsd_t"], r["jsd_py"], r["jsd_qy"]).bound
    assert r["jsd_sum"] == pytest.approx(want)
    assert r["jsd_v"] > r["jsd_v_null_high"]  # shifted images
    assert t.loc["reworded", "jsd_v"] == pytest.approx(0.0, abs=1e-9)  # the same images
    club = estimators.CLUB.load(a.club["checkpoint"], device="cpu")
    again = core.analyse(emb, labels, "src", club=club, n_boot=100, n_perm=40)
    np.testing.assert_allclose(again.table["emi"], a.table["emi"], atol=1e-9)
    assert not again.club["trained_now"]
    with pytest.raises(ParameterError, match="width"):
        core.analyse(core.EmbeddedSamples(emb.z_text[:, :8], emb.y_model[:, :8], emb.y_reference[:, :8]),
                     labels, "src", club=club)


def test_emi_interval_is_a_bootstrap_over_the_scenarios_queries():
    emb, labels = _samples(n=20)
    spans = core.scenario_spans(labels, source="src")
    club = estimators.train_club(np.concatenate([emb.x, emb.x]), np.concatenate([emb.y_model, emb.y_reference]),
                           max_epochs=3, seed=0, progress=False, device="cpu")
    t = core.scenario_emis(club, emb, spans, n_boot=300, seed=1)
    # the interval sits around the estimate, about as wide as an independent bootstrap by hand
    idx = spans["degraded"]
    g = np.random.default_rng(5)
    boot = [estimators.effective_mi(club, emb.x[i], emb.y_model[i], emb.y_reference[i]).emi
            for i in (idx[g.integers(0, len(idx), len(idx))] for _ in range(300))]
    row = t.set_index("scenario").loc["degraded"]
    spread = np.quantile(boot, 0.975) - np.quantile(boot, 0.025)
    assert row["emi_low"] < row["emi"] < row["emi_high"]
    assert 0.7 < (row["emi_high"] - row["emi_low"]) / spread < 1.4
    pd.testing.assert_frame_equal(t, core.scenario_emis(club, emb, spans, n_boot=300, seed=1))  # seeded


def test_analyse_rejects_bad_input_before_training(tmp_path):
    emb, labels = _samples()
    with pytest.raises(ParameterError, match="wasserstein"):
        core.analyse(emb, labels, "src", wasserstein="earth-mover")
    with pytest.raises(ParameterError, match="at least 10"):
        core.analyse(emb, labels[:-25] + ["tiny"] * 25, "src")
    with pytest.raises(ParameterError, match="n_perm"):
        core.analyse(emb, labels, "src", n_perm=0)
    with pytest.raises(ParameterError, match="rows"):
        core.EmbeddedSamples(emb.z_text, emb.y_model[:5], emb.y_reference)
    assert not (tmp_path / "cache" / "club").exists()


def test_looseness():
    t = pd.DataFrame({"is_source": [True, False, False, False], "emid": [np.nan, 0.1, 0.2, -0.1],
                      "jsd_sum": [np.nan, 1.0, 1.0, 1.0]})
    lo = core.looseness(t)
    assert lo == {"median_ratio": 7.5, "share_emid_below": 1.0, "n_positive_emid": 2, "n_targets": 3}


# --------------------------------------------------------------------------------------------------
# correlations


def test_correlation_table():
    t = pd.DataFrame({"emid": [1, 2, 3, 4, 5.0], "s": [1, 2, 3, 5, 4.0], "w": [5, 4, 3, 2, 1.0],
                      "r": list("aabbc"), "c": list("xyxyx")})
    s = core.correlation_table(t, {"up": ("emid", "s"), "down": ("emid", "w")}, rows="r", cols="c", n_boot=100,
                               grid="g")
    assert len(s) == 4 and set(s["grid"]) == {"g"}
    assert math.isclose(s[(s["pair"] == "down") & (s["method"] == "spearman")]["r"].iloc[0], -1.0)
    assert core.json_safe({"a": np.float32(1.5), "b": [float("nan"), np.int64(2)]}) == {"a": 1.5, "b": [None, 2]}


def test_pair_log_likelihoods_reproduce_the_club_estimate():
    emb, labels = _samples(n=15)
    club = estimators.train_club(emb.x, emb.y_model, max_epochs=3, seed=0, progress=False, device="cpu")
    L = core.pair_log_likelihoods(club, emb.x[:15], emb.y_model[:15])
    assert L.shape == (15, 15)
    assert np.mean(np.diag(L)) - L.mean() == pytest.approx(club.mi(emb.x[:15], emb.y_model[:15]), abs=1e-6)
    assert core._club_u(L, np.arange(15)) == pytest.approx(np.mean(np.diag(L)) - L[~np.eye(15, dtype=bool)].mean())
