"""EMI and EMID intervals with resampling units that match the data (mllm_ood.paper_b.emid), the image table
that gives LLaVA-Bench's units, and their wiring through the core."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mllm_ood.paper_b import core, emid
from mllm_ood.paper_b.grids import llava_bench
from mllm_ood.validation import ParameterError


@pytest.fixture(autouse=True)
def isolated_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MLLM_OOD_CACHE", str(tmp_path / "cache"))


def _likelihoods(n_clusters: int, per: int, seed: int, *, shift: float = 0.0, noise: float = 0.0,
                 base: np.ndarray | None = None) -> tuple[emid.ScenarioLikelihoods, np.ndarray]:
    """A scenario whose items come in clusters of ``per`` *identical* items (the same answer about one
    image): its log-likelihood matrices repeat each cluster's row and column."""
    g = np.random.default_rng(seed)
    b = g.standard_normal((n_clusters, n_clusters)) + 3 * np.eye(n_clusters) if base is None else base
    b = b + noise * g.standard_normal(b.shape) - shift * np.eye(n_clusters)
    rep = np.repeat(np.arange(n_clusters), per)
    lm, lr = b[np.ix_(rep, rep)], np.zeros((len(rep), len(rep)))
    st = emid.ScenarioLikelihoods(lm, lr, 0.0, np.array([f"img{c}" for c in rep], dtype=object),
                                  np.array([str(i) for i in range(len(rep))], dtype=object))
    st.emi = st.u0
    return st, b


def _width(draws):
    lo, hi = np.quantile(draws, [0.025, 0.975])
    return hi - lo


def test_cluster_bootstrap_widens_intervals_of_clustered_items():
    st, _ = _likelihoods(30, 3, seed=1)
    as_items = emid.ScenarioLikelihoods(st.lm, st.lr, st.emi, np.arange(90).astype(object), st.ids)
    w_clusters, w_items = _width(st.draws(400, 0)), _width(as_items.draws(400, 0))
    # three copies of one answer are one piece of evidence: resampling items pretends there are 90
    assert w_clusters > 1.4 * w_items


def test_emid_interval_is_paired_when_the_items_are_the_same():
    src, base = _likelihoods(40, 1, seed=2)
    tgt, _ = _likelihoods(40, 1, seed=2, base=base, shift=0.5, noise=0.05)
    order = np.random.default_rng(0).permutation(40)  # the target lists the same items in another order
    shuffled = emid.ScenarioLikelihoods(tgt.lm[np.ix_(order, order)], tgt.lr[np.ix_(order, order)], tgt.emi,
                                        tgt.clusters[order], tgt.ids[order])
    assert np.array_equal(shuffled.ids[emid.pairing(src, shuffled)], src.ids)
    paired, is_paired = emid.emid_draws(src, shuffled, n_boot=400, seed=0)
    other = emid.ScenarioLikelihoods(shuffled.lm, shuffled.lr, shuffled.emi, shuffled.clusters,
                                     np.array([f"x{i}" for i in range(40)], dtype=object))
    unpaired, not_paired = emid.emid_draws(src, other, n_boot=400, seed=0)
    assert is_paired and not not_paired
    assert np.mean(paired) == pytest.approx(src.emi - tgt.emi, abs=0.02)
    assert _width(paired) < 0.5 * _width(unpaired)  # what the two cells share cancels


def test_scenario_intervals_rows():
    src, base = _likelihoods(20, 3, seed=3)
    tgt, _ = _likelihoods(20, 3, seed=3, base=base, shift=0.3, noise=0.1)
    out = emid.scenario_intervals({"id": src, "shifted": tgt}, "id", n_boot=300, seed=0).set_index("scenario")
    assert out.loc["id", "n_clusters"] == 20 and np.isnan(out.loc["id", "emid_low"])
    assert out.loc["shifted", "emid_paired"]
    assert out.loc["shifted", "emid_low"] <= src.emi - tgt.emi <= out.loc["shifted", "emid_high"]
    for s, st in (("id", src), ("shifted", tgt)):
        assert out.loc[s, "emi_low"] <= st.emi <= out.loc[s, "emi_high"]
    with pytest.raises(ParameterError, match="unknown source"):
        emid.scenario_intervals({"id": src}, "nope", n_boot=10)


def test_resolution_shrinks_with_the_sample_and_extrapolates_beyond_it():
    src, base = _likelihoods(80, 1, seed=4)
    tgt, _ = _likelihoods(80, 1, seed=4, base=base, shift=0.2, noise=0.3)
    res = emid.resolution(src, tgt, [10, 40, 80, 320], n_sim=8, n_boot=100, seed=0).set_index("n_clusters")
    assert list(res.index) == [10, 40, 80, 320]
    assert res.loc[10, "median_width"] > res.loc[40, "median_width"] > res.loc[80, "median_width"]
    assert res.loc[320, "how"].startswith("extrapolated") and res.loc[320, "n_sim"] == 0
    assert res.loc[320, "median_width"] == pytest.approx(res.loc[80, "median_width"] / 2)


def test_reliability_separates_signal_from_noise():
    emids = np.linspace(0, 0.2, 10)
    sharp = pd.DataFrame({"emid": emids, "emid_low": emids - 0.01, "emid_high": emids + 0.01})
    blurred = pd.DataFrame({"emid": emids / 20, "emid_low": emids / 20 - 0.05, "emid_high": emids / 20 + 0.05})
    r = emid.reliability(sharp)
    assert r["reliability"] > 0.9 and r["n_needed_factor"] < 0.1
    b = emid.reliability(blurred)
    assert b["reliability"] == 0.0 and b["n_needed_factor"] == np.inf
    half = blurred.assign(emid=emids / 2)  # spread comparable to noise: more items would resolve it
    h = emid.reliability(half)
    assert 0 < h["reliability"] < 1 and h["n_needed_factor"] > 0
    assert np.isnan(emid.reliability(sharp.head(2))["reliability"])


def test_llava_bench_questions_cluster_by_image():
    table = pd.read_csv(llava_bench.IMAGES, dtype=str)
    coco = table[table["image_set"] == "coco"]
    # COCO: 30 images x 3 questions, ids 3k..3k+2 about image k
    assert len(coco) == 90 and coco["image"].nunique() == 30
    assert all(coco.groupby(coco["id"].astype(int) // 3)["image"].nunique() == 1)
    wild = table[table["image_set"] == "in_the_wild"]
    assert len(wild) == 60 and wild["image"].nunique() == 24
    got = llava_bench.image_clusters(["coco", "coco", "coco", "in_the_wild"], ["3", "5", "6", "13"])
    assert got[0] == got[1] != got[2] and got[3] == "in_the_wild:004.jpg"
    with pytest.raises(ParameterError, match="no image recorded"):
        llava_bench.image_clusters(["coco"], ["90"])


def test_every_shipped_answer_has_its_image():
    df = llava_bench.table("llava-v1.5-13b")
    sets = np.where(df["scenario"].str.contains("in_the_wild"), "in_the_wild", "coco")
    assert len(set(llava_bench.image_clusters(sets, df["id"]))) == 54


def test_core_analyse_resamples_the_clusters_it_is_given():
    g = np.random.default_rng(0)
    n, d = 30, 8
    topics = np.repeat(g.standard_normal((10, d)), 3, axis=0)  # 10 images x 3 questions, near-identical
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    zt = unit(np.concatenate([topics, topics]) + 0.05 * g.standard_normal((2 * n, d)))
    yr = unit(np.concatenate([topics, topics]) + 0.05 * g.standard_normal((2 * n, d)))
    ym = unit(np.concatenate([topics, topics[::-1]]) + 0.05 * g.standard_normal((2 * n, d)))
    ids = np.array([str(i) for i in range(n)] * 2, dtype=object)
    emb = core.EmbeddedSamples(zt.astype(np.float32), ym.astype(np.float32), yr.astype(np.float32), ids=ids)
    labels = ["a"] * n + ["b"] * n
    images = np.array([f"img{i // 3}" for i in range(n)] * 2, dtype=object)
    kw = {"n_boot": 300, "n_perm": 20, "wasserstein": None, "club_kwargs": {"max_epochs": 5}}
    by_item = core.analyse(emb, labels, "a", **kw).table.set_index("scenario")
    by_image = core.analyse(emb, labels, "a", clusters=images, **kw).table.set_index("scenario")
    assert by_image.loc["a", "emi"] == by_item.loc["a", "emi"]  # the estimate does not depend on the units
    assert by_image.loc["a", "n_clusters"] == 10 and by_item.loc["a", "n_clusters"] == 30
    assert by_image.loc["b", "emid_paired"] and by_image.loc["b", "emid_low"] <= by_image.loc["b", "emid"]
    width = lambda t, c: t.loc["a", f"{c}_high"] - t.loc["a", f"{c}_low"]  # noqa: E731
    assert width(by_image, "emi") > width(by_item, "emi")
    with pytest.raises(ParameterError, match="clusters has 3 labels"):
        core.analyse(emb, labels, "a", clusters=images[:3], **kw)


def test_club_u_from_counts_equals_the_u_statistic_over_the_resample():
    """club_u_counts (sums from row counts) against the definition: positives = the resample's diagonal,
    negatives = every entry of its submatrix whose two positions hold different original rows."""
    g = np.random.default_rng(3)
    L = g.standard_normal((12, 12))
    resamples = [g.integers(0, 12, 12) for _ in range(30)] + [np.arange(12), np.full(5, 4), np.array([2, 2, 7])]

    def brute(s):
        sub = L[np.ix_(s, s)]
        distinct = s[:, None] != s[None, :]
        return np.mean(np.diag(sub)) - sub[distinct].mean() if distinct.any() else np.nan

    got = emid.club_u_counts(L, emid.resample_counts(resamples, 12))
    np.testing.assert_allclose(got, [brute(s) for s in resamples], rtol=1e-12, atol=1e-12)
    assert np.isnan(got[-2]) and emid.club_u(L, np.full(5, 4)) != emid.club_u(L, np.full(5, 4))
